/**
 * Who can act in a cluster: a real three-broker cluster on a private NATS server that requires credentials,
 * against the attacks of issue 14, as an insider on the network would run them:
 *   - without the NATS credentials a process cannot even connect;
 *   - with them but without CLUSTER_SECRET, a Moleculer broker of its own sends well-formed packets straight to
 *     the nodes (payment.pay / refund / charge, concert.confirmSeats, saga.start, reservation.cancel,
 *     api.addRoute / removeRoute, a saga.failed event), registers its own `user.login`, and publishes events to
 *     JetStream: none of it has any effect (balances, seats, sagas, routes, alerts, notifications, ranking);
 *   - a control: the same packet from a process that holds the secret does move money, so the attack packets
 *     are real and the secret is what stops them.
 */
import crypto from "crypto";
import path from "path";
import { connect } from "nats";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { PacketAuthMiddleware } from "../../lib/cluster-auth";
import { adminToken, balance, ownConcert, pay, reservation, reserve, seats, shopper, type Shopper } from "../support/booking";
import { catalogEvent, publishRaw } from "../support/events";
import { gatewayUrl, http, TEST_CLUSTER_SECRET, testEnv, waitFor, type TestEnv } from "../support/harness";
import { freePort, startNatsServer, type PrivateNats } from "../support/nats-server";

// Moleculer's packet class (not in its package exports): what a node's transit publishes.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Packet } = require(path.join(path.dirname(require.resolve("moleculer")), "src/packets")) as {
	Packet: new (type: string, target: string | null, payload: unknown) => unknown;
};

const NATS_USER = "crp-node";
const NATS_PASSWORD = crypto.randomBytes(12).toString("hex");
const ADMIN = { ADMIN_EMAIL: "ops@example.com", ADMIN_PASSWORD: "ops-password" };
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

/** A broker that is not one of ours: plain Moleculer on the same NATS and namespace, with or without the secret. */
async function outsider(env: TestEnv, nats: PrivateNats, opts: { secret?: string; services?: ServiceSchema[] } = {}): Promise<ServiceBroker> {
	const broker = new ServiceBroker({
		namespace: env.config.namespace,
		nodeID: `outsider-${crypto.randomBytes(3).toString("hex")}`,
		transporter: { type: "NATS", options: { servers: [`127.0.0.1:${nats.port}`], user: NATS_USER, pass: NATS_PASSWORD } },
		logger: false,
		middlewares: opts.secret ? [PacketAuthMiddleware({ secret: opts.secret })] : []
	});
	for (const s of opts.services ?? []) broker.createService(s);
	await broker.start();
	return broker;
}

/** A request packet exactly as a Moleculer node sends one, straight to a node; resolves with the answer, or null. */
async function rawCall(from: ServiceBroker, nodeID: string, action: string, params: unknown, meta: Record<string, unknown> = {}): Promise<unknown> {
	const transit = from.transit as unknown as {
		pendingRequests: Map<string, { resolve(v: unknown): void; reject(e: unknown): void; action: unknown; nodeID: string; ctx: unknown }>;
		publish(p: unknown): Promise<void>;
	};
	const id = crypto.randomUUID();
	const answer = new Promise<unknown>((resolve, reject) => {
		transit.pendingRequests.set(id, { resolve, reject, action: { name: action }, nodeID, ctx: { id, nodeID, options: {}, action: { name: action } } });
	});
	await transit.publish(
		new Packet("REQ", nodeID, {
			id,
			action,
			params,
			meta,
			headers: {},
			timeout: 3000,
			level: 1,
			tracing: null,
			parentID: null,
			requestID: id,
			caller: null,
			stream: false
		})
	);
	const timeout = sleep(3000).then(() => null);
	const result = await Promise.race([answer.catch(err => ({ error: (err as Error).message })), timeout]);
	transit.pendingRequests.delete(id);
	return result;
}

describe("cluster membership over an authenticated NATS", () => {
	let nats: PrivateNats;
	let env: TestEnv;
	let gateway: ServiceBroker;
	let booking: ServiceBroker;
	let eventsNode: ServiceBroker;
	let api: string;
	let admin: string;
	let victim: Shopper;
	let scheduleId: string;
	let concertId: string;
	let paid: { reservationId: string; sagaId: string; seatId: string };
	let metricsPort: number;
	const outsiders: ServiceBroker[] = [];

	beforeAll(async () => {
		nats = await startNatsServer({ user: NATS_USER, password: NATS_PASSWORD });
		env = testEnv({ cluster: true, env: { ...ADMIN, TRANSPORTER: nats.url, NATS_USER, NATS_PASSWORD, RATE_LIMIT_PER_MINUTE: "0" } });
		metricsPort = await freePort();
		[gateway, booking, eventsNode] = await Promise.all([
			env.broker(["api", "user", "queue"]),
			env.broker(["concert", "reservation", "saga", "payment"], { config: { metricsPort } }),
			env.broker(["ranking", "notification", "review"])
		]);
		await gateway.waitForServices(["concert", "reservation", "saga", "payment", "ranking", "notification"], 30_000);
		api = gatewayUrl(gateway);
		admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
		({ concertId, scheduleId } = await ownConcert(api, admin, 1, 6, 1000));
		victim = await shopper(api, concertId, 100_000);
		const seat = (await seats(api, scheduleId))[0].id;
		const held = await reserve(api, victim, scheduleId, [seat]);
		const done = await pay(api, victim, held.body.id);
		expect(done.status).toBe(201);
		const detail = await reservation(api, victim, held.body.id);
		paid = { reservationId: held.body.id, sagaId: detail.saga.id, seatId: seat };
		// The booking's events reached the ranking before the attacks start.
		await waitFor(async () => (await rankingScore()) === 1, 15_000, "the ranking to count the sale");
	}, 120_000);

	afterAll(async () => {
		await Promise.all(outsiders.map(b => b.stop().catch(() => undefined)));
		await env.cleanup();
		await nats.stop();
	}, 60_000);

	const rankingScore = async () =>
		((await http("GET", `${api}/rankings/concerts?limit=100`)).body as { concertId: string; score: number }[]).find(r => r.concertId === concertId)
			?.score ?? 0;

	/** Everything the attacks below could change. */
	const world = async () => ({
		balance: await balance(api, victim),
		reservation: (await reservation(api, victim, paid.reservationId)).status,
		payments: (await http("GET", `${api}/payments`, { token: victim.token })).body.rows.map((p: { status: string }) => p.status),
		seats: (await seats(api, scheduleId)).map(s => `${s.label}:${s.status}`),
		sagas:
			(await http("GET", `${api}/admin/sagas?pageSize=100`, { token: admin })).body.total ??
			(await http("GET", `${api}/admin/sagas`, { token: admin })).body.length,
		alerts: JSON.stringify((await http("GET", `${api}/admin/alerts`, { token: admin })).body),
		notifications: (await http("GET", `${api}/notifications?pageSize=100`, { token: victim.token })).body.total,
		ranking: await rankingScore()
	});

	it("when a process has no NATS credentials, then the server refuses its connection", async () => {
		await expect(connect({ servers: `127.0.0.1:${nats.port}` })).rejects.toMatchObject({ code: "AUTHORIZATION_VIOLATION" });
		await expect(connect({ servers: `127.0.0.1:${nats.port}`, user: NATS_USER, pass: "wrong" })).rejects.toMatchObject({ code: "AUTHORIZATION_VIOLATION" });
	});

	it("when a broker with the NATS credentials but not the cluster secret sends the attack packets, then nothing changes and each is counted as rejected", async () => {
		const rogue = await outsider(env, nats);
		outsiders.push(rogue);
		const before = await world();
		const free = (await seats(api, scheduleId)).find(s => s.status === "AVAILABLE")!;
		const attacks: [ServiceBroker, string, unknown, Record<string, unknown>?][] = [
			[booking, "payment.pay", { sagaId: `rogue-${crypto.randomUUID()}`, reservationId: "r-none", userId: victim.userId, amount: 90_000 }],
			[booking, "payment.refund", { sagaId: paid.sagaId, reason: "rogue" }],
			[booking, "payment.charge", { amount: 1_000_000 }, { user: { id: victim.userId, email: "x", role: "user" }, idempotencyKey: "rogue-charge" }],
			[booking, "concert.confirmSeats", { reservationId: `rogue-${crypto.randomUUID()}`, scheduleId, seatIds: [free.id] }],
			[
				booking,
				"saga.start",
				{
					type: "ConfirmReservation",
					key: `rogue-${crypto.randomUUID()}`,
					data: { reservationId: paid.reservationId, userId: victim.userId, amount: 1 }
				}
			],
			[
				booking,
				"reservation.cancel",
				{ id: paid.reservationId },
				{ user: { id: victim.userId, email: "x", role: "user" }, idempotencyKey: "rogue-cancel" }
			],
			[gateway, "api.addRoute", { route: { name: "rogue", path: "/api/rogue", mappingPolicy: "all", aliases: { "GET sagas": "saga.list" } } }],
			[gateway, "api.removeRoute", { name: "api-write" }]
		];
		const answers = await Promise.all(attacks.map(([node, action, params, meta]) => rawCall(rogue, node.nodeID, action, params, meta)));
		expect(answers).toEqual(attacks.map(() => null));
		// A saga.failed event straight to the events node (it raises an admin alert when real).
		await (rogue.transit as unknown as { publish(p: unknown): Promise<void> }).publish(
			new Packet("EVENT", eventsNode.nodeID, {
				id: crypto.randomUUID(),
				event: "saga.failed",
				data: { sagaId: "rogue", type: "X", deadLetterId: 1, error: "rogue" },
				groups: ["notification"],
				broadcast: false,
				meta: {},
				headers: {},
				level: 1,
				needAck: false
			})
		);
		// A sleep on purpose: it shows that the forged event raises no alert (the calls above already had their 3 s).
		await sleep(1500);
		expect(await world()).toEqual(before);
		expect((await http("GET", `${api}/rogue/sagas`, { token: admin })).status).toBe(404);
		// The write routes are all still there.
		expect((await http("POST", `${api}/points/charge`, { token: victim.token, body: { amount: 1 } })).body.type).toBe("IDEMPOTENCY_KEY_REQUIRED");
		// Counted on the node they were sent to, not just ignored by chance.
		const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
		const rejected = metrics.split("\n").filter(l => l.startsWith("cluster_packets_rejected_total") && l.includes('reason="malformed"'));
		expect(rejected.length).toBeGreaterThan(0);
		expect(Number(rejected[0].split(" ").pop())).toBeGreaterThanOrEqual(6);
	}, 30_000);

	it("when a broker without the secret offers its own user.login, then the cluster never sees it and no login reaches it", async () => {
		let captured = 0;
		const rogue = await outsider(env, nats, {
			services: [{ name: "user", actions: { login: { visibility: "published", handler: () => (captured++, { accessToken: "stolen" }) } } }]
		});
		outsiders.push(rogue);
		// A sleep on purpose: it shows that the rogue's discovery packets, sent as it started, add no node.
		await sleep(1500);
		expect(gateway.registry.nodes.get(rogue.nodeID)).toBeUndefined();
		for (let i = 0; i < 9; i++) {
			const res = await http("POST", `${api}/auth/login`, { body: { email: ADMIN.ADMIN_EMAIL, password: ADMIN.ADMIN_PASSWORD } });
			expect(res.status).toBe(200);
			expect(res.body.accessToken).not.toBe("stolen");
		}
		expect(captured).toBe(0);
	}, 30_000);

	it("when events reach JetStream unsigned or signed with another secret, then the consumers drop them: no ranking, no notification", async () => {
		const before = await world();
		const forged = (n: number) =>
			catalogEvent("reservation.confirmed", `forged-${n}-${crypto.randomUUID()}`, 2, {
				reservationId: `forged-${n}`,
				userId: victim.userId,
				concertId,
				scheduleId,
				seatIds: ["a", "b", "c", "d"],
				amount: 4000
			});
		const where = { servers: `127.0.0.1:${nats.port}`, user: NATS_USER, pass: NATS_PASSWORD };
		await publishRaw(env.config.namespace, [forged(1), forged(2)], null, where);
		await publishRaw(env.config.namespace, [forged(3)], "another-secret-of-at-least-32-characters!", where);
		// A signed one after them: once it is counted, the consumers have had their turn at the forged ones.
		await publishRaw(
			env.config.namespace,
			[
				catalogEvent("reservation.confirmed", `marker-${crypto.randomUUID()}`, 2, {
					reservationId: "marker",
					userId: "nobody",
					concertId: "marker-concert",
					scheduleId: "marker-schedule",
					seatIds: ["m"],
					amount: 100
				})
			],
			TEST_CLUSTER_SECRET,
			where
		);
		await waitFor(
			async () => ((await http("GET", `${api}/rankings/concerts?limit=100`)).body as { concertId: string }[]).some(r => r.concertId === "marker-concert"),
			15_000,
			"the signed marker to be counted"
		);
		expect(await world()).toEqual(before);
	}, 30_000);

	it("when a process holds the cluster secret, then the same packet moves money: the attacks above were real, and the secret is what stopped them", async () => {
		const insider = await outsider(env, nats, { secret: TEST_CLUSTER_SECRET });
		outsiders.push(insider);
		const control = await shopper(api, concertId, 0, "control");
		const answer = await rawCall(
			insider,
			booking.nodeID,
			"payment.charge",
			{ amount: 777 },
			{ user: { id: control.userId, email: "c", role: "user" }, idempotencyKey: "insider-charge" }
		);
		expect(answer).toMatchObject({ userId: control.userId, balance: 777 });
		expect(await balance(api, control)).toBe(777);
	}, 30_000);
});
