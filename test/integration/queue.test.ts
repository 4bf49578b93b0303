/**
 * The waiting room over HTTP, in both run modes: embedded (one process, memory store) and cluster (gateway and
 * queue on separate brokers over the real NATS, state in the real Redis). `concert.get` is a test-only stand-in
 * (test/support/queue.ts): the catalog is another context.
 */
import type { ServiceBroker } from "moleculer";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { concertId, fakeConcertService, testUser, userDirectory, type FakeConcert, type TestUser } from "../support/queue";

const modes: [string, boolean][] = [
	["embedded", false],
	["cluster", true]
];

describe.each(modes)("waiting room over HTTP (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let gateway: ServiceBroker;
	let api: string;
	let fake: FakeConcert;
	let admin: TestUser;
	const concerts = Array.from({ length: 12 }, () => concertId());
	let nextConcert = 0;
	const newConcert = () => concerts[nextConcert++];

	beforeAll(async () => {
		env = testEnv({ cluster, env: { QUEUE_MAX_ACTIVE: "100", RATE_LIMIT_PER_MINUTE: "0" } });
		fake = fakeConcertService(concerts);
		if (cluster) {
			gateway = await env.broker(["api"]);
			await env.broker(["queue"]);
		} else {
			gateway = await env.broker(["api", "queue"]);
		}
		await gateway.createService(fake.schema);
		await gateway.createService(userDirectory());
		await gateway.waitForServices(["queue", "concert", "user"], 20_000);
		api = gatewayUrl(gateway);
		admin = testUser(env.config.jwt.secret!, "admin");
	}, 60_000);

	afterAll(async () => {
		await env.cleanup();
	}, 60_000);

	const user = () => testUser(env.config.jwt.secret!);
	const enter = (u: TestUser, concert: string) => http("POST", `${api}/queue/tokens`, { token: u.token, body: { concertId: concert } });
	const status = (u: TestUser, token: string) => http("GET", `${api}/queue/tokens/${encodeURIComponent(token)}`, { token: u.token });
	const leave = (u: TestUser, token: string) => http("DELETE", `${api}/queue/tokens/${encodeURIComponent(token)}`, { token: u.token });
	const stats = (concert: string, as: TestUser = admin) => http("GET", `${api}/admin/queues/${concert}`, { token: as.token });

	it("when 150 users enter at once with a cap of 100, then 100 are ACTIVE and 50 wait at 1..50, and the line then advances in order", async () => {
		const concert = newConcert();
		const users = Array.from({ length: 150 }, user);
		const entered = await Promise.all(users.map(u => enter(u, concert)));
		expect(entered.map(r => r.status)).toEqual(Array(150).fill(201));
		const active = entered.filter(r => r.body.status === "ACTIVE");
		const waiting = entered.filter(r => r.body.status === "WAITING");
		expect(active).toHaveLength(100);
		expect(waiting).toHaveLength(50);
		expect(waiting.map(r => r.body.position).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
		for (const r of active) {
			expect(r.body).toEqual({
				token: expect.stringMatching(new RegExp(`^${concert}\\.[A-Za-z0-9_-]{22}$`)),
				concertId: concert,
				status: "ACTIVE",
				position: 0,
				etaSeconds: 0,
				expiresAt: expect.any(String)
			});
			expect(Date.parse(r.body.expiresAt)).toBeGreaterThan(Date.now() + 590_000);
		}
		for (const r of waiting) {
			expect(r.body).toMatchObject({ status: "WAITING", expiresAt: null });
			expect(r.body.etaSeconds).toBeGreaterThan(0);
		}
		expect(entered[0].headers.get("location")).toBe(`/api/queue/tokens/${encodeURIComponent(entered[0].body.token)}`);
		expect((await stats(concert)).body).toEqual({
			concertId: concert,
			state: "OPEN",
			waiting: 50,
			active: 100,
			maxActive: 100,
			admittedPerMinute: 100,
			admittedTotal: 100
		});

		// The line in arrival order (its positions), then free one slot per round, alternating the user's DELETE and
		// the payment saga's expire: each round admits exactly the user at position 1.
		const owners = new Map(entered.map((r, i) => [r.body.token as string, users[i]]));
		const line = waiting
			.slice()
			.sort((a, b) => a.body.position - b.body.position)
			.map(r => r.body.token as string);
		const actives = active.map(r => r.body.token as string);
		for (let round = 0; round < line.length; round++) {
			const freed = actives.shift()!;
			if (round % 2 === 0) expect((await leave(owners.get(freed)!, freed)).status).toBe(204);
			else expect(await gateway.call("queue.expire", { token: freed })).toEqual({ expired: true });
			const head = await status(owners.get(line[round])!, line[round]);
			expect({ round, status: head.body.status, position: head.body.position }).toEqual({ round, status: "ACTIVE", position: 0 });
			if (round + 1 < line.length) {
				const next = await status(owners.get(line[round + 1])!, line[round + 1]);
				expect({ round, position: next.body.position }).toEqual({ round, position: 1 });
			}
			actives.push(line[round]);
		}
		expect((await stats(concert)).body).toMatchObject({ waiting: 0, active: 100, admittedTotal: 150 });
	});

	it("when a user enters again, then 200 with the same token and the concert is looked up once", async () => {
		const concert = newConcert();
		const u = user();
		const before = fake.calls();
		const first = await enter(u, concert);
		const again = await enter(u, concert);
		expect(first.status).toBe(201);
		expect(again.status).toBe(200);
		expect(again.body.token).toBe(first.body.token);
		expect((await stats(concert)).body).toMatchObject({ active: 1, admittedTotal: 1 });
		expect(fake.calls() - before).toBe(1);
	});

	it("when 30 users enter a concert at once on a cold cache, then the catalog is asked once, not once per entry", async () => {
		const concert = newConcert();
		const before = fake.calls();
		const entered = await Promise.all(Array.from({ length: 30 }, () => enter(user(), concert)));
		expect(entered.map(r => r.status)).toEqual(Array(30).fill(201));
		expect(fake.calls() - before).toBe(1);
	});

	it("when the concert is unknown or the body is bad, then 404 or 422 and nothing is queued", async () => {
		const u = user();
		const unknown = await enter(u, "no-such-concert");
		expect(unknown.status).toBe(404);
		expect(unknown.body).toMatchObject({ code: 404, type: "NOT_FOUND" });
		expect((await stats("no-such-concert")).body).toMatchObject({ waiting: 0, active: 0, admittedTotal: 0 });

		for (const body of [{}, { concertId: "" }, { concertId: "bad id!" }, { concertId: 42 }, { concertId: "x".repeat(65) }]) {
			const res = await http("POST", `${api}/queue/tokens`, { token: u.token, body });
			expect({ body, status: res.status, type: res.body.type }).toEqual({ body, status: 422, type: "VALIDATION_ERROR" });
		}
		const anon = await http("POST", `${api}/queue/tokens`, { body: { concertId: concerts[0] } });
		expect(anon.status).toBe(401);
	});

	it("when another user reads or deletes my token, then 404 and my token is untouched", async () => {
		const concert = newConcert();
		const me = user();
		const other = user();
		const mine = (await enter(me, concert)).body.token as string;
		for (const res of [await status(other, mine), await leave(other, mine)]) {
			expect(res.status).toBe(404);
			expect(res.body).toMatchObject({ type: "NOT_FOUND" });
		}
		const malformed = await status(me, `${concert}.short`);
		expect(malformed.status).toBe(404);
		expect((await status(me, mine)).body).toMatchObject({ status: "ACTIVE" });
		expect((await leave(me, mine)).status).toBe(204);
		// A token that left says so (to its owner only) rather than "not found"; leaving again finds nothing.
		expect((await status(me, mine)).body).toMatchObject({ status: "LEFT", position: 0 });
		expect((await status(other, mine)).status).toBe(404);
		expect((await leave(me, mine)).status).toBe(404);
	});

	it("when a token is validated, then only the owner's ACTIVE token for its own concert passes", async () => {
		const concert = newConcert();
		const otherConcert = newConcert();
		const me = user();
		const token = (await enter(me, concert)).body.token as string;
		const ok = await gateway.call("queue.validate", { token, userId: me.id, concertId: concert });
		expect(ok).toEqual({ ok: true, token, concertId: concert, userId: me.id, expiresAt: expect.any(String) });

		const rejected = async (params: { token: string; userId: string; concertId: string }) => {
			const err = await gateway.call("queue.validate", params).then(
				() => null,
				(e: { code?: number; type?: string }) => e
			);
			return err && { code: err.code, type: err.type };
		};
		const notActive = { code: 403, type: "QUEUE_TOKEN_NOT_ACTIVE" };
		expect(await rejected({ token, userId: user().id, concertId: concert })).toEqual(notActive);
		expect(await rejected({ token, userId: me.id, concertId: otherConcert })).toEqual(notActive);
		expect(await rejected({ token: "garbage", userId: me.id, concertId: concert })).toEqual(notActive);
		// A token for the other concert, presented for this one.
		const elsewhere = (await enter(me, otherConcert)).body.token as string;
		expect(await rejected({ token: elsewhere, userId: me.id, concertId: concert })).toEqual(notActive);
		expect((await leave(me, token)).status).toBe(204);
		expect(await rejected({ token, userId: me.id, concertId: concert })).toEqual(notActive);
	});

	it("when a waiting token is validated, then it is refused until the user is admitted", async () => {
		const concert = newConcert();
		const users = Array.from({ length: 101 }, user);
		const tokens: string[] = [];
		for (const batch of [users.slice(0, 100), users.slice(100)]) {
			tokens.push(...(await Promise.all(batch.map(u => enter(u, concert)))).map(r => r.body.token as string));
		}
		const last = users[100];
		const lastToken = tokens[100];
		expect((await status(last, lastToken)).body).toMatchObject({ status: "WAITING", position: 1 });
		await expect(gateway.call("queue.validate", { token: lastToken, userId: last.id, concertId: concert })).rejects.toMatchObject({
			code: 403,
			type: "QUEUE_TOKEN_NOT_ACTIVE"
		});
		expect(await gateway.call("queue.expire", { token: tokens[0] })).toEqual({ expired: true });
		expect(await gateway.call("queue.expire", { token: tokens[0] })).toEqual({ expired: false });
		expect(await gateway.call("queue.validate", { token: lastToken, userId: last.id, concertId: concert })).toMatchObject({ ok: true });
		expect((await stats(concert)).body).toMatchObject({ waiting: 0, active: 100, admittedTotal: 101 });
	});

	it("when a non-admin asks for queue stats, then 403 FORBIDDEN", async () => {
		const res = await stats(concerts[0], user());
		expect(res.status).toBe(403);
		expect(res.body.type).toBe("FORBIDDEN");
	});

	it("when the queue's health is asked, then it reports its store", async () => {
		expect(await gateway.call("queue.health")).toMatchObject({ ok: true, store: cluster ? "redis" : "memory" });
	});

	it("when the concert catalog is not running, then 503 SERVICE_UNAVAILABLE (not a misleading 404) and nothing is queued", async () => {
		const bare = testEnv({ cluster, env: { RATE_LIMIT_PER_MINUTE: "0" } });
		try {
			const node = await bare.broker(["api", "queue"]);
			await node.createService(userDirectory());
			const u = testUser(bare.config.jwt.secret!);
			const res = await http("POST", `${gatewayUrl(node)}/queue/tokens`, { token: u.token, body: { concertId: concerts[0] } });
			expect(res.status).toBe(503);
			expect(res.body).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE" });
			expect(await node.call("queue.stats", { concertId: concerts[0] })).toMatchObject({ waiting: 0, active: 0, admittedTotal: 0 });
		} finally {
			await bare.cleanup();
		}
	}, 30_000);

	it("when an active token lapses and nobody calls, then the periodic sweep admits the next in line", async () => {
		// Its own install: a cap of 1 and a one-second lifetime.
		const short = testEnv({ cluster, env: { QUEUE_MAX_ACTIVE: "1", QUEUE_ACTIVE_TTL_SEC: "1", RATE_LIMIT_PER_MINUTE: "0" } });
		try {
			const node = await short.broker(["api", "queue"]);
			const concert = concerts[concerts.length - 1];
			await node.createService(fakeConcertService([concert]).schema);
			await node.createService(userDirectory());
			const url = gatewayUrl(node);
			const a = testUser(short.config.jwt.secret!);
			const b = testUser(short.config.jwt.secret!);
			const ta = (await http("POST", `${url}/queue/tokens`, { token: a.token, body: { concertId: concert } })).body;
			const tb = (await http("POST", `${url}/queue/tokens`, { token: b.token, body: { concertId: concert } })).body;
			expect([ta.status, tb.status]).toEqual(["ACTIVE", "WAITING"]);
			expect(tb.etaSeconds).toBe(1);
			const read = () => http("GET", `${url}/queue/tokens/${encodeURIComponent(tb.token)}`, { token: b.token });
			await waitFor(async () => (await read()).body.status === "ACTIVE", 5_000, "the sweep to admit b");
			expect((await http("GET", `${url}/queue/tokens/${encodeURIComponent(ta.token)}`, { token: a.token })).body).toMatchObject({ status: "EXPIRED" });
		} finally {
			await short.cleanup();
		}
	}, 30_000);
});

describe("waiting room with the real concert catalog (embedded)", () => {
	let env: TestEnv;
	let node: ServiceBroker;

	beforeAll(async () => {
		env = testEnv({ cluster: false, env: { RATE_LIMIT_PER_MINUTE: "0" } });
		node = await env.broker(["api", "queue", "concert"]);
		await node.createService(userDirectory());
	}, 60_000);

	afterAll(async () => {
		await env.cleanup();
	}, 60_000);

	it("when a concert exists in the catalog, then its queue opens; an unknown id answers 404", async () => {
		const adminMeta = { meta: { user: { id: "admin-1", email: "admin@example.com", role: "admin" } } };
		const concert = await node.call<{ id: string }, Record<string, unknown>>(
			"concert.create",
			{
				title: "Queue test",
				artist: "Band",
				venue: { name: "Hall" },
				schedules: [{ startsAt: "2030-01-01T19:00:00Z" }],
				seats: { rows: 1, perRow: 4, price: 1000 }
			},
			adminMeta
		);
		const api = gatewayUrl(node);
		const u = testUser(env.config.jwt.secret!);
		const ok = await http("POST", `${api}/queue/tokens`, { token: u.token, body: { concertId: concert.id } });
		expect(ok.status).toBe(201);
		expect(ok.body).toMatchObject({ concertId: concert.id, status: "ACTIVE" });
		const unknown = await http("POST", `${api}/queue/tokens`, { token: u.token, body: { concertId: "00000000-0000-4000-8000-000000000000" } });
		expect(unknown.status).toBe(404);
		expect(unknown.body.type).toBe("NOT_FOUND");
	});
});
