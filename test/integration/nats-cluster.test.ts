/**
 * The platform on a three-server NATS cluster with JetStream (issue 21): three private nats-server processes
 * clustered on free ports (test/support/nats-cluster.ts), TRANSPORTER listing all three and JETSTREAM_REPLICAS=3,
 * three brokers (gateway; booking; money and projections) spread over the servers by the client's shuffle of the
 * list, MariaDB and Redis shared as usual. It shows that:
 * - the booking journey passes, and the run's streams and consumer groups keep three copies;
 * - an install whose streams were made with one copy is scaled to three by a node started with
 *   JETSTREAM_REPLICAS=3, its consumer groups with them, without losing their position;
 * - killing one server (SIGKILL; the one holding the most of our NATS connections, made the leader of the events
 *   stream and of the ranking and notification consumers first) while bookings run loses nothing: every booking
 *   completes or answers a clean retryable error, every connection that was on the dead server moves to another
 *   one and the nodes still call each other, and every event is delivered (the ranking equals the seats sold, one
 *   confirmation and one payment notification per booking, each event stored once, no dead letter, no consumer
 *   behind); the killed server then starts again and catches up.
 * The figures (journey line, errors, reconnect time, events) are printed for the docs.
 */
import crypto from "crypto";
import type { ServiceBroker } from "moleculer";
import { connect, type JetStreamManager, type NatsConnection } from "nats";
import { JetStreamEventBus, streamNames } from "../../lib/events";
import { adminToken, ownConcert, pay, reservation, seats, shopper, type Shopper } from "../support/booking";
import { deleteEventStreams, makeEvent, streamEvents } from "../support/events";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { journeyLine, runJourney } from "../support/journey";
import { startNatsCluster, type PrivateNatsCluster } from "../support/nats-cluster";
import { OPS_ADMIN } from "../support/ops";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

/** An error answer a client may retry: the platform said "not now", not "no" (and not a crash). */
const retryable = (status: number, type?: string) =>
	status === 503 || status === 504 || status === 429 || (status === 409 && type === "IDEMPOTENCY_KEY_IN_PROGRESS");

interface Answer {
	step: "hold" | "pay";
	status: number;
	type?: string;
	atMs: number;
}

describe("on a three-server NATS cluster with JETSTREAM_REPLICAS=3", () => {
	let cluster: PrivateNatsCluster;
	let env: TestEnv;
	let brokers: ServiceBroker[];
	let api: string;
	let admin: string;
	let nc: NatsConnection;
	let jsm: JetStreamManager;
	let names: ReturnType<typeof streamNames>;

	beforeAll(async () => {
		cluster = await startNatsCluster({ servers: 3 });
		env = testEnv({ cluster: true, env: { ...OPS_ADMIN, ...cluster.env } });
		names = streamNames(env.config.namespace);
		// The split of test/support/ops.ts's opsCluster; each broker lists the servers from another one first (the
		// client shuffles the list anyway: where each lands is reported, not assumed).
		const node = (services: string[], i: number) =>
			env.broker(services, { config: { transporter: { ...env.config.transporter!, servers: rotate(cluster.urls, i).map(u => new URL(u).host) } } });
		brokers = await Promise.all([
			node(["api", "user", "queue"], 0),
			node(["reservation", "saga", "concert"], 1),
			node(["payment", "ranking", "notification"], 2)
		]);
		await brokers[0].waitForServices(["reservation", "saga", "concert", "payment", "ranking", "notification"], 45_000);
		api = gatewayUrl(brokers[0]);
		admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		nc = await connect({ servers: cluster.urls.map(u => new URL(u).host), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
		jsm = await nc.jetstreamManager();
	}, 120_000);

	afterAll(async () => {
		await env?.cleanup();
		// env.cleanup() deletes streams on the shared NATS: this run's are on the private cluster.
		if (cluster && env) await deleteEventStreams(env.config.namespace, cluster.urls).catch(() => undefined);
		await nc?.close().catch(() => undefined);
		await cluster?.stop();
	}, 60_000);

	const rankingScore = async (concertId: string): Promise<number> => {
		const res = await http("GET", `${api}/rankings/concerts?limit=100`);
		return (res.body as { concertId: string; score: number }[]).find(r => r.concertId === concertId)?.score ?? 0;
	};
	/** The fan's inbox, counted by notification type. */
	const inbox = async (fan: Shopper): Promise<Record<string, number>> => {
		const res = await http("GET", `${api}/notifications?pageSize=100`, { token: fan.token });
		const out: Record<string, number> = {};
		for (const r of res.body.rows as { type: string }[]) out[r.type] = (out[r.type] ?? 0) + 1;
		return out;
	};
	/** Every consumer group of the run is done: nothing pending, nothing unacknowledged. */
	const groupsIdle = async (): Promise<boolean> => {
		for await (const c of jsm.consumers.list(names.events)) if (c.num_pending > 0 || c.num_ack_pending > 0) return false;
		return true;
	};
	/** The server each broker's NATS connections are on: the transporter's, and the event bus's (by its name in /connz). */
	const connections = async (): Promise<{ node: string; kind: "transport" | "bus"; server: number }[]> => {
		const out: { node: string; kind: "transport" | "bus"; server: number }[] = [];
		const running = cluster.servers.map((s, i) => ({ s, i })).filter(x => x.s.running());
		const byServer = await Promise.all(running.map(async x => ({ i: x.i, names: await cluster.clientNames(x.i) })));
		for (const b of brokers) {
			const client = (b.transit?.tx as unknown as { client?: NatsConnection }).client;
			const at = cluster.servers.findIndex(s => client?.getServer() === `127.0.0.1:${s.port}`);
			out.push({ node: b.nodeID, kind: "transport", server: at });
			// A node none of whose services publishes or consumes events has no bus connection.
			const bus = byServer.find(x => x.names.includes(b.nodeID))?.i;
			if (bus !== undefined) out.push({ node: b.nodeID, kind: "bus", server: bus });
		}
		return out;
	};

	it("when fans book on it, then the journey passes and the streams and consumer groups keep 3 copies", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 10, 1000);
		const run = await runJourney(api, { concertId, scheduleId, fans: 8, concurrency: 4 });
		console.log(journeyLine("nats cluster (3 servers, JETSTREAM_REPLICAS=3)", run));
		console.log(`nats cluster: NATS connections per server ${JSON.stringify(await connections())}`);

		for (const stream of [names.events, names.dlq]) {
			const info = await jsm.streams.info(stream);
			expect(info.config.num_replicas).toBe(3);
			expect(info.cluster?.leader).toBeTruthy();
			expect(info.cluster?.replicas).toHaveLength(2);
		}
		const groups: string[] = [];
		for await (const c of jsm.consumers.list(names.events)) {
			groups.push(c.name);
			// Inherited from the stream (num_replicas 0): a leader and two replicas.
			expect(c.cluster?.replicas).toHaveLength(2);
		}
		expect(groups).toEqual(expect.arrayContaining(["ranking", "notification"]));

		// Delivered on the cluster like on one server: the ranking counts the seats, each fan has the confirmation.
		await waitFor(async () => (await rankingScore(concertId)) === 8, 20_000, "the ranking of the journey's concert");
		for (const fan of run.fans) await waitFor(async () => (await inbox(fan)).RESERVATION_CONFIRMED === 1, 20_000, "the confirmation notification");
	}, 90_000);

	it("when a node with JETSTREAM_REPLICAS=3 starts on streams made with one copy, then the streams and the groups' consumers are scaled to 3 and keep their position", async () => {
		const ns = `${env.id}-scale`;
		const url = cluster.urls.join(",");
		const scaled = streamNames(ns);
		const seen: string[] = [];
		const group = { group: "scaled", types: ["test.happened"], handler: async (e: { id: string }) => void seen.push(e.id) };
		const warnings: string[] = [];
		const one = new JetStreamEventBus({ url, namespace: ns, replicas: 1 });
		const three = new JetStreamEventBus({ url, namespace: ns, replicas: 3, warn: m => warnings.push(m) });
		try {
			await one.subscribe(group);
			const first = makeEvent("test.happened", "a", 1, {});
			await one.publish(first);
			await waitFor(() => seen.includes(first.id), 10_000, "the first event");
			expect((await jsm.streams.info(scaled.events)).config.num_replicas).toBe(1);
			await one.close();

			// A release with JETSTREAM_REPLICAS=3 starts: the same group on the scaled consumer.
			await three.subscribe(group);
			// While the stream's new replicas elect a leader, a publish answers 503 for a moment: retried as the
			// outbox relay retries a row (lib/outbox.ts), under the same message id.
			const second = makeEvent("test.happened", "a", 2, {});
			await waitFor(
				() =>
					three.publish(second).then(
						() => true,
						() => false
					),
				15_000,
				"a publish on the scaled stream",
				200
			);
			await waitFor(() => seen.includes(second.id), 15_000, "the second event");
			expect(seen).toEqual([first.id, second.id]);
			// Settled: a leader and two current replicas each (while it moves, a stream lists its old peers too).
			const settled = (c?: { leader?: string; replicas?: { current: boolean }[] }) =>
				!!c?.leader && c.replicas?.length === 2 && c.replicas.every(r => r.current);
			await waitFor(
				async () => {
					for (const stream of [scaled.events, scaled.dlq]) {
						const info = await jsm.streams.info(stream);
						if (info.config.num_replicas !== 3 || !settled(info.cluster)) return false;
					}
					return settled((await jsm.consumers.info(scaled.events, "scaled")).cluster);
				},
				15_000,
				"three settled copies of both streams and of the group's consumer",
				200
			);
			expect(warnings).toEqual([]);
		} finally {
			await three.destroy().catch(() => undefined);
			await Promise.all([one.close(), three.close()]);
		}
	}, 60_000);

	it("when the server with most connections (and the events stream's leader) is killed during bookings, then every booking ends CONFIRMED or answered a retryable error, the nodes reconnect, and every event is delivered", async () => {
		const fans = 24;
		const { concertId, scheduleId } = await ownConcert(api, admin, 3, 10, 1000);
		const map = (await seats(api, scheduleId)).filter(s => s.status === "AVAILABLE");
		const shoppers = await Promise.all(Array.from({ length: fans }, () => shopper(api, concertId, 100_000, "nc")));

		// The victim: the server holding most of the brokers' connections, and made the events stream's leader
		// (JetStream picks a new leader at random on a step-down), so the kill costs both reconnects and elections.
		const before = await connections();
		const counts = cluster.servers.map((_, i) => before.filter(c => c.server === i).length);
		const victim = counts.indexOf(Math.max(...counts));
		// The same for the ranking and notification groups' consumers: their new leaders must take over the pulls.
		const victimName = cluster.servers[victim].name;
		const leaderOf = async (consumer?: string) =>
			consumer
				? (await jsm.consumers.info(names.events, consumer).catch(() => undefined))?.cluster?.leader
				: (await jsm.streams.info(names.events).catch(() => undefined))?.cluster?.leader;
		for (const consumer of [undefined, "ranking", "notification"]) {
			const stepDown = consumer ? `CONSUMER.LEADER.STEPDOWN.${names.events}.${consumer}` : `STREAM.LEADER.STEPDOWN.${names.events}`;
			for (let i = 0; i < 20 && (await leaderOf(consumer)) !== victimName; i++) {
				await nc.request(`$JS.API.${stepDown}`, undefined, { timeout: 5000 }).catch(() => undefined);
				await waitFor(async () => !!(await leaderOf(consumer)), 10_000, "a new leader", 100);
			}
			expect(await leaderOf(consumer)).toBe(victimName);
		}
		const onVictim = before.filter(c => c.server === victim);
		const groupLeaders: string[] = [];
		for await (const c of jsm.consumers.list(names.events)) if (c.cluster?.leader === victimName) groupLeaders.push(c.name);
		expect(onVictim.length).toBeGreaterThan(0);

		// Bookings, 8 at a time; each step retried on a retryable answer with the same Idempotency-Key, as a client does.
		const answers: Answer[] = [];
		const unclean: Answer[] = [];
		let killedAt = 0;
		let started = 0;
		let done = 0;
		const t0 = Date.now();
		const step = async (name: Answer["step"], call: () => Promise<{ status: number; body: any }>, ok: number) => {
			for (let attempt = 0; ; attempt++) {
				const res = await call().catch(() => ({ status: 0, body: undefined }));
				if (res.status === ok) return res.body;
				const a: Answer = { step: name, status: res.status, type: res.body?.type, atMs: Date.now() - t0 };
				answers.push(a);
				if (!retryable(res.status, a.type) || attempt >= 30) {
					unclean.push(a);
					throw new Error(`${name}: ${res.status} ${JSON.stringify(res.body)}`);
				}
				await sleep(Number(res.body?.retryAfter ?? 0) * 1000 || 500);
			}
		};
		const book = async (i: number) => {
			const fan = shoppers[i];
			const seat = map[i];
			started++;
			const held = await step(
				"hold",
				() =>
					http("POST", `${api}/reservations`, {
						token: fan.token,
						body: { scheduleId, seatIds: [seat.id] },
						headers: { "x-queue-token": fan.queueToken, "idempotency-key": `hold-${fan.userId}` }
					}),
				201
			);
			await step("pay", () => pay(api, fan, held.id), 201);
			done++;
			return held.id as string;
		};
		let next = 0;
		const reservationIds: string[] = [];
		const worker = async () => {
			for (let i = next++; i < fans; i = next++) reservationIds[i] = await book(i);
		};
		// Mid-run (some bookings done, others in flight) the victim dies; from then on, how long until every
		// connection there was is back, none on the dead server.
		let after = before;
		let reconnectMs = -1;
		const killer = (async () => {
			await waitFor(() => done >= 2, 30_000, "the first bookings", 10);
			await cluster.kill(victim);
			killedAt = Date.now();
			await waitFor(
				async () => {
					after = await connections();
					return after.length === before.length && after.every(c => c.server >= 0 && c.server !== victim);
				},
				20_000,
				"every connection on another server",
				50
			);
			reconnectMs = Date.now() - killedAt;
		})();
		await Promise.all([...Array.from({ length: 8 }, worker), killer]);
		const wallMs = Date.now() - t0;
		expect(started).toBe(fans);
		expect(killedAt).toBeGreaterThan(0);
		expect(unclean).toEqual([]);
		for (let i = 0; i < fans; i++) expect((await reservation(api, shoppers[i], reservationIds[i])).status).toBe("CONFIRMED");

		// The transport reconnected (above): every connection left the dead server, and the nodes still see and call
		// each other (the seat map comes from the booking node, the ranking from the third).
		expect(reconnectMs).toBeGreaterThanOrEqual(0);
		expect(after.filter(c => c.server === victim)).toEqual([]);
		for (const b of brokers) for (const other of brokers) expect(b.registry.nodes.get(other.nodeID)?.available).toBe(true);
		expect((await seats(api, scheduleId)).filter(s => s.status === "SOLD")).toHaveLength(fans);

		// Every event delivered: the consumers resumed on the new leaders and caught up.
		const bookedAt = Date.now();
		await waitFor(async () => (await rankingScore(concertId)) === fans, 60_000, "the ranking to equal the sales", 250);
		const rankingMs = Date.now() - bookedAt;
		await waitFor(groupsIdle, 60_000, "every consumer group to be done", 250);
		const idleMs = Date.now() - bookedAt;
		const inboxes = await Promise.all(
			shoppers.map(async fan => {
				let box: Record<string, number> = {};
				await waitFor(
					async () => (box = await inbox(fan)).RESERVATION_CONFIRMED === 1 && box.PAYMENT_COMPLETED === 1,
					30_000,
					"the fan's notifications",
					250
				);
				return box;
			})
		);
		const inboxMs = Date.now() - bookedAt;
		expect(inboxes.every(b => b.RESERVATION_CONFIRMED === 1 && b.PAYMENT_COMPLETED === 1)).toBe(true);
		const confirmed = (await streamEvents(env.config.namespace, cluster.urls)).filter(
			e => e.type === "reservation.confirmed" && reservationIds.includes(String(e.aggregateId))
		);
		// One each: a publish retried by the relay after a timeout was stored once (its message id).
		expect(confirmed).toHaveLength(fans);
		expect(new Set(confirmed.map(e => e.aggregateId)).size).toBe(fans);
		expect((await jsm.streams.info(names.dlq)).state.messages).toBe(0);
		expect(await groupsIdle()).toBe(true);
		const leader = (await jsm.streams.info(names.events)).cluster?.leader;
		expect(leader).not.toBe(cluster.servers[victim].name);

		const errors = answers.map(a => `${a.step} ${a.status}${a.type ? ` ${a.type}` : ""}`);
		console.log(
			`nats cluster kill: ${fans} bookings in ${wallMs} ms, server ${cluster.servers[victim].name} killed at ${killedAt - t0} ms ` +
				`with ${onVictim.length} of ${before.length} connections, the events stream's leadership and ${groupLeaders.length} consumer groups' (${groupLeaders.join(", ")}); ` +
				`${fans} CONFIRMED, ${answers.length} retryable answers (${JSON.stringify(tally(errors))}), 0 other errors; ` +
				`every connection on another server ${reconnectMs} ms after the kill; new stream leader ${leader}; ` +
				`events: ranking ${await rankingScore(concertId)}/${fans} seats, ${confirmed.length} reservation.confirmed in the stream for ${fans} bookings, ` +
				`${inboxes.length}/${fans} inboxes complete, 0 dead letters; after the last booking: ranking equal to the sales in ${rankingMs} ms, every group done (nothing pending or unacknowledged) in ${idleMs} ms, every inbox complete in ${inboxMs} ms`
		);

		// The killed server comes back and catches up: three current copies of the stream again.
		const restartAt = Date.now();
		await cluster.restart(victim);
		await waitFor(
			async () => {
				const info = await jsm.streams.info(names.events).catch(() => undefined);
				return (info?.cluster?.replicas ?? []).length === 2 && info!.cluster!.replicas!.every(r => r.current && !r.offline);
			},
			30_000,
			"the restarted server to catch up",
			200
		);
		console.log(`nats cluster heal: ${cluster.servers[victim].name} back with current copies ${Date.now() - restartAt} ms after its restart`);
		// And a booking after the heal goes through end to end, event included.
		const late = await shopper(api, concertId, 100_000, "nc");
		const held = await http("POST", `${api}/reservations`, {
			token: late.token,
			body: { scheduleId, seatIds: [map[fans].id] },
			headers: { "x-queue-token": late.queueToken, "idempotency-key": crypto.randomUUID() }
		});
		expect(held.status).toBe(201);
		expect((await pay(api, late, held.body.id)).status).toBe(201);
		await waitFor(async () => (await rankingScore(concertId)) === fans + 1, 20_000, "the late booking in the ranking");
	}, 180_000);
});

function rotate<T>(list: T[], i: number): T[] {
	return [...list.slice(i), ...list.slice(0, i)];
}

function tally(items: string[]): Record<string, number> {
	const out: Record<string, number> = {};
	for (const x of items) out[x] = (out[x] ?? 0) + 1;
	return out;
}
