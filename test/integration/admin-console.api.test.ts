/**
 * The admin API the operator console (issue 19) added, over HTTP through the real gateway in one process
 * (embedded: SQLite, memory store, in-process events) with every context and a test consumer group: the saga list's
 * age and type filters, step durations in a saga's journal, the live figures, the cluster's nodes, replaying every
 * event dead letter of a kind, and the pages outside /api (/, the booking page, and /admin). Bad filters answer 422 VALIDATION_ERROR
 * and change nothing; non-admins get 403 FORBIDDEN, nobody 401. The browser side is admin-console.browser.test.ts.
 */
import type { ServiceBroker } from "moleculer";
import { adminToken, ownConcert, pay, reserve, seats, shopper } from "../support/booking";
import { EventNodes } from "../support/events";
import { sinkSchema, type SinkStats } from "../support/event-services/sink.service";
import { ProducerService } from "../support/event-services/producer.service";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";

const ADMIN = { ADMIN_EMAIL: "console-admin@example.com", ADMIN_PASSWORD: "console-admin-password" };
const ALL = ["api", "user", "queue", "concert", "payment", "saga", "reservation", "ranking", "notification", "review", "ops"];

describe("admin API of the operator console (embedded)", () => {
	let env: TestEnv;
	let nodes: EventNodes;
	let node: ServiceBroker;
	let api: string;
	let origin: string;
	let admin: string;
	let user: string;
	let sagaId: string;

	beforeAll(async () => {
		env = testEnv({ cluster: false, env: { ...ADMIN, OUTBOX_POLL_MS: "100", DLQ_REDRIVE_SEC: "0" } });
		nodes = new EventNodes(env);
		node = await nodes.node([...ALL, sinkSchema("sink", { maxAttempts: 2 }), ProducerService]);
		api = gatewayUrl(node);
		origin = new URL(api).origin;
		admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
		// One booking: a COMPLETED ConfirmReservation saga with its payment step timed.
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 1000);
		const buyer = await shopper(api, concertId, 5000, "console");
		user = buyer.token;
		const held = await reserve(api, buyer, scheduleId, [(await seats(api, scheduleId))[0].id]);
		expect(held.status).toBe(201);
		const paid = await pay(api, buyer, held.body.id);
		expect(paid.status).toBe(201);
		sagaId = (await http("GET", `${api}/reservations/${held.body.id}`, { token: buyer.token })).body.saga.id;
	}, 90_000);

	afterAll(async () => {
		await nodes?.stop();
		await env?.cleanup();
	}, 30_000);

	it("when a non-admin or nobody calls the new routes, then 403 FORBIDDEN or 401 UNAUTHORIZED", async () => {
		for (const [method, path, body] of [
			["GET", "/admin/nodes"],
			["GET", "/admin/figures"],
			["GET", "/admin/sagas?olderThanSec=1&type=ConfirmReservation"],
			["POST", "/admin/event-dead-letters/replay", { eventType: "test.happened" }]
		] as [string, string, unknown?][]) {
			const asUser = await http(method, `${api}${path}`, { token: user, body });
			expect([path, asUser.status, asUser.body.type]).toEqual([path, 403, "FORBIDDEN"]);
			const anonymous = await http(method, `${api}${path}`, { body });
			expect([path, anonymous.status, anonymous.body.type]).toEqual([path, 401, "UNAUTHORIZED"]);
		}
	});

	it("when the saga list gets bad filters, then 422 VALIDATION_ERROR naming the field", async () => {
		for (const [query, field] of [
			["status=BOGUS", "status"],
			["olderThanSec=-1", "olderThanSec"],
			["olderThanSec=abc", "olderThanSec"],
			["olderThanSec=1.5", "olderThanSec"],
			["since=yesterday", "since"],
			["since=2026-13-45T00:00:00Z", "since"],
			["type=not%20a%20type!", "type"],
			["pageSize=1000", "pageSize"]
		]) {
			const res = await http("GET", `${api}/admin/sagas?${query}`, { token: admin });
			expect([query, res.status, res.body.type]).toEqual([query, 422, "VALIDATION_ERROR"]);
			expect(res.body.data.map((d: { field: string }) => d.field)).toContain(field);
		}
		const figures = await http("GET", `${api}/admin/figures?windowSec=5`, { token: admin });
		expect([figures.status, figures.body.type]).toEqual([422, "VALIDATION_ERROR"]);
	});

	it("when the saga list is filtered by type and age, then only the sagas created in that window are listed", async () => {
		const list = (q: string) => http("GET", `${api}/admin/sagas?${q}`, { token: admin }).then(r => (expect(r.status).toBe(200), r.body));
		const ids = (body: { rows: { id: string }[] }) => body.rows.map(r => r.id);
		expect(ids(await list("type=ConfirmReservation"))).toContain(sagaId);
		expect(ids(await list("type=CancelReservation"))).not.toContain(sagaId);
		expect(ids(await list("olderThanSec=0&status=COMPLETED"))).toContain(sagaId);
		expect((await list("olderThanSec=3600")).total).toBe(0);
		const minuteAgo = new Date(Date.now() - 60_000).toISOString();
		expect(ids(await list(`since=${encodeURIComponent(minuteAgo)}&type=ConfirmReservation`))).toContain(sagaId);
		expect((await list(`since=${encodeURIComponent(new Date(Date.now() + 3600_000).toISOString())}`)).total).toBe(0);
		// A window: created since a minute ago and at least an hour ago is nothing.
		expect((await list(`since=${encodeURIComponent(minuteAgo)}&olderThanSec=3600`)).total).toBe(0);

		const one = await http("GET", `${api}/admin/sagas/${sagaId}`, { token: admin });
		expect(one.status).toBe(200);
		for (const j of one.body.journal) expect(j).toMatchObject({ attempts: expect.any(Number), durationMs: expect.any(Number) });
		expect(one.body.journal.map((j: { step: string }) => j.step)).toContain("pay");
	});

	it("when the live figures are asked for, then bookings, saga outcomes, the payment p99, the outbox and the dead letters are there", async () => {
		const res = await http("GET", `${api}/admin/figures`, { token: admin });
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({
			windowSec: 60,
			sagas: { bookings: 1, outcomes: { COMPLETED: 1, FAILED: 0 }, payment: { samples: 1, p99Ms: expect.any(Number) } },
			outbox: { pending: expect.any(Number), oldestAgeMs: expect.any(Number) },
			deadLetters: { sagas: 0, events: expect.any(Number) },
			unavailable: []
		});
		expect(res.body.sagas.bookingsPerSec).toBeCloseTo(1 / 60, 2);
		expect(Object.keys(res.body.outbox.producers)).toEqual(expect.arrayContaining(["payment", "reservation", "saga"]));
	});

	it("when the nodes are asked for, then this node is listed with its services and no address", async () => {
		const res = await http("GET", `${api}/admin/nodes`, { token: admin });
		expect(res.status).toBe(200);
		const me = res.body.nodes.find((n: { id: string }) => n.id === node.nodeID);
		expect(me).toMatchObject({ available: true, local: true, hostname: expect.any(String), services: expect.arrayContaining(["api", "saga", "ops"]) });
		expect(me.services.some((s: string) => s.startsWith("$"))).toBe(false);
		expect(JSON.stringify(res.body)).not.toMatch(/ipList|127\.0\.0\.1/);
	});

	it("when every dead letter of a kind is replayed, then bad input is a 422 that replays nothing, and a good one replays them all once", async () => {
		const appendPoison = (k: number) =>
			node.call<{ id: string }, unknown>("evproducer.append", { aggregateId: `poison-${k}`, eventType: "test.happened", payload: { poison: true } });
		const ids = [(await appendPoison(1)).id, (await appendPoison(2)).id];
		const letters = async () => (await http("GET", `${api}/admin/event-dead-letters?group=sink`, { token: admin })).body as { event: { id: string } }[];
		await waitFor(async () => (await letters()).length === 2, 10_000, "two dead letters");

		for (const body of [{}, { eventType: "" }, { eventType: "a b" }, { eventType: "test.happened", group: "no/such" }, { eventType: 7 }]) {
			const res = await http("POST", `${api}/admin/event-dead-letters/replay`, { token: admin, body });
			expect([JSON.stringify(body), res.status, res.body.type]).toEqual([JSON.stringify(body), 422, "VALIDATION_ERROR"]);
		}
		expect(await letters()).toHaveLength(2);
		// The figures and the gauge count the letters from the bus itself (its own size, not a read of each letter).
		expect((await http("GET", `${api}/admin/figures`, { token: admin })).body.deadLetters.events).toBe(2);
		expect(await node.call("ops.collectMetrics", {})).toMatchObject({ 'ops.dead_letters.open{"kind":"events"}': 2, "events.dlq.messages": 2 });

		await node.call("sink-sink.fix");
		const none = await http("POST", `${api}/admin/event-dead-letters/replay`, { token: admin, body: { eventType: "reservation.held" } });
		expect(none.status).toBe(202);
		expect(none.body).toMatchObject({ eventType: "reservation.held", replayed: 0 });
		const all = await http("POST", `${api}/admin/event-dead-letters/replay`, { token: admin, body: { eventType: "test.happened", group: "sink" } });
		expect(all.status).toBe(202);
		expect(all.body).toMatchObject({ eventType: "test.happened", group: "sink", replayed: 2 });
		await waitFor(
			async () => Object.values((await node.call<SinkStats, { ids: string[] }>("sink-sink.stats", { ids })).applied).every(n => n === 1),
			5_000,
			"the replays to apply"
		);
		expect(await letters()).toEqual([]);
		expect((await http("GET", `${api}/admin/figures`, { token: admin })).body.deadLetters.events).toBe(0);
	});

	it("when / and /admin are opened, then the booking page and the console page with their assets under a strict CSP; unknown files 404", async () => {
		// The fans' booking page (issue 20; in a browser: booking-page.browser.test.ts), its footer linking the docs and the console.
		const root = await http("GET", `${origin}/`);
		expect(root.status).toBe(200);
		expect(root.headers.get("content-type")).toMatch(/text\/html/);
		expect(root.headers.get("content-security-policy")).toMatch(/default-src 'none'; script-src 'self'.*connect-src 'self'.*frame-ancestors 'none'/);
		expect(root.body).toContain('<script src="/app/app.js"></script>');
		expect(root.body).toContain('<a href="/api/docs">');
		expect(root.body).toContain('<a href="/admin">');
		expect(root.body).not.toMatch(/<script>|style=/);
		const appJs = await http("GET", `${origin}/app/app.js`);
		expect([appJs.status, appJs.headers.get("content-type")]).toEqual([200, "application/javascript; charset=utf-8"]);
		expect(appJs.body).not.toMatch(/\.innerHTML|\.outerHTML|insertAdjacentHTML|localStorage\./);
		expect((await http("GET", `${origin}/app/app.css`)).status).toBe(200);
		for (const name of ["nope.js", "__proto__", "toString", "index.html", "..%2Fapi.service.ts"]) {
			expect([name, (await http("GET", `${origin}/app/${name}`)).status]).toEqual([name, 404]);
		}

		const page = await http("GET", `${origin}/admin`);
		expect(page.status).toBe(200);
		expect(page.headers.get("content-type")).toMatch(/text\/html/);
		expect(page.headers.get("content-security-policy")).toMatch(/default-src 'none'; script-src 'self'.*frame-ancestors 'none'/);
		expect(page.body).toContain('<script src="/admin/console.js"></script>');
		expect(page.body).not.toMatch(/<script>|style=/);

		const js = await http("GET", `${origin}/admin/console.js`);
		expect([js.status, js.headers.get("content-type")]).toEqual([200, "application/javascript; charset=utf-8"]);
		expect(js.body).not.toMatch(/\.innerHTML|\.outerHTML|insertAdjacentHTML|localStorage\./);
		expect((await http("GET", `${origin}/admin/console.css`)).status).toBe(200);
		for (const name of ["nope.js", "__proto__", "toString", "index.html", "..%2Fapi.service.ts"]) {
			expect([name, (await http("GET", `${origin}/admin/${name}`)).status]).toEqual([name, 404]);
		}
		expect((await http("GET", `${origin}/nope`)).status).toBe(404);
		expect((await http("GET", `${api}/nope`)).status).toBe(404);
	});

	it("when the OpenAPI document is read, then the new routes are there with their parameters", async () => {
		const doc = (await http("GET", `${api}/openapi.json`)).body;
		const query = (p: string) => doc.paths[p].get.parameters.map((x: { name: string }) => x.name);
		expect(query("/api/admin/sagas")).toEqual(expect.arrayContaining(["status", "type", "olderThanSec", "since", "page", "pageSize"]));
		expect(query("/api/admin/figures")).toEqual(["windowSec"]);
		expect(doc.paths["/api/admin/nodes"].get.responses["403"]).toBeDefined();
		const replay = doc.paths["/api/admin/event-dead-letters/replay"].post;
		expect(replay.requestBody.content["application/json"].schema).toMatchObject({ required: ["eventType"], properties: { eventType: { type: "string" } } });
	});
});
