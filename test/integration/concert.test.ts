/**
 * The concert service in both run modes: the catalog over HTTP per docs/API.md, and the seat-hold actions the
 * reservation service and the saga call. In cluster mode three concert replicas (two in this process, one in its
 * own OS process) start together against the real MariaDB, Redis and NATS, and the contention tests spread their
 * calls over all three.
 */
import type { ServiceBroker } from "moleculer";
import { createStore } from "../../lib/store";
import type { HoldStore } from "../../services/concert/holds.store";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";

const modes: [string, boolean][] = [
	["embedded", false],
	["cluster", true]
];

interface SeatOut {
	id: string;
	label: string;
	grade: string;
	price: number;
	status: string;
}

interface CallError {
	code?: number;
	type?: string;
	data?: { seatIds?: string[] } & Record<string, unknown>;
}

const ADMIN = { email: "admin@example.com", password: "admin-password" };

describe.each(modes)("concert service (%s)", (mode, cluster) => {
	let env: TestEnv;
	let gateway: ServiceBroker;
	/** Calls go through this broker: in a cluster it has no concert service, so every call crosses NATS. */
	let caller: ServiceBroker;
	/** Node ids of the concert replicas (cluster), to spread calls over all of them explicitly. */
	let replicas: string[] = [];
	let api: string;
	let adminToken: string;
	let userToken: string;

	beforeAll(async () => {
		env = testEnv({ cluster, env: { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password } });
		if (cluster) {
			// Three replicas start at the same moment: migrations take the lock once, and exactly one seeds.
			const [gw, second, spawned] = await Promise.all([env.broker(["api", "user", "concert"]), env.broker(["concert"]), env.spawn(["concert"])]);
			gateway = gw;
			caller = await env.broker([]);
			replicas = [gw.nodeID, second.nodeID, spawned.nodeID];
			await caller.waitForServices(["concert"], 30_000);
			await waitFor(() => replicas.every(id => caller.registry.nodes.get(id)?.available === true), 30_000, "all concert replicas to be visible");
		} else {
			gateway = await env.broker(["api", "user", "concert"]);
			caller = gateway;
		}
		api = gatewayUrl(gateway);
		adminToken = (await http("POST", `${api}/auth/login`, { body: ADMIN })).body.accessToken;
		await http("POST", `${api}/auth/register`, { body: { email: "fan@example.com", password: "fan-password", name: "Fan" } });
		userToken = (await http("POST", `${api}/auth/login`, { body: { email: "fan@example.com", password: "fan-password" } })).body.accessToken;
		expect(adminToken).toEqual(expect.any(String));
		expect(userToken).toEqual(expect.any(String));
	}, 90_000);

	afterAll(async () => {
		await env.cleanup();
	}, 60_000);

	/** The i-th call goes to the i-th replica in turn (cluster); embedded has one. */
	const on = (i: number) => (replicas.length > 0 ? { nodeID: replicas[i % replicas.length] } : {});
	const call = <T = any>(action: string, params: Record<string, unknown>, i = 0): Promise<T> => caller.call(action, params, on(i));
	const fail = (p: Promise<unknown>): Promise<CallError> =>
		p.then(
			v => {
				throw new Error(`expected a failure, got ${JSON.stringify(v)}`);
			},
			e => e as CallError
		);
	const holdsOf = (b: ServiceBroker) => (b.getLocalService("concert") as unknown as { holds: HoldStore }).holds;

	let counter = 0;
	/** A fresh concert (one schedule of rows x perRow seats) so tests never share seats. */
	async function freshSchedule(rows = 2, perRow = 10): Promise<{ concertId: string; scheduleId: string; seats: SeatOut[] }> {
		const concert = await call("concert.create", {
			title: `Test concert ${++counter}`,
			artist: "Test Artist",
			venue: { name: `Test venue ${mode}` },
			schedules: [{ startsAt: "2030-01-01T19:00:00Z" }],
			seats: { rows, perRow, price: 1000, grades: [{ grade: "VIP", rows: 1, price: 3000 }] }
		});
		const scheduleId: string = concert.schedules[0].id;
		const seats: SeatOut[] = await call("concert.seats", { id: scheduleId });
		return { concertId: concert.id, scheduleId, seats };
	}
	const available = async (scheduleId: string): Promise<number> =>
		(await call<{ availableSeats: number }>("concert.getSchedule", { id: scheduleId })).availableSeats;
	const statuses = async (scheduleId: string, ids: string[]): Promise<string[]> => {
		const seats: SeatOut[] = await call("concert.seats", { id: scheduleId });
		return ids.map(id => seats.find(s => s.id === id)!.status);
	};
	const expectConsistent = async () => {
		const v = await call<{ ok: boolean; checks: unknown[] }>("concert.verify", {});
		expect(v).toMatchObject({ ok: true });
	};

	// --- catalog over HTTP ----------------------------------------------------------------------------------------

	it("when the catalog is listed, then the demo concerts were seeded once and pages answer {rows, page, pageSize, total}", async () => {
		const first = await http("GET", `${api}/concerts?page=1&pageSize=2`);
		expect(first.status).toBe(200);
		expect(first.body).toMatchObject({ page: 1, pageSize: 2, total: expect.any(Number) });
		expect(first.body.rows).toHaveLength(2);
		expect(first.body.rows[0]).toEqual({
			id: expect.any(String),
			title: expect.any(String),
			artist: expect.any(String),
			venue: { id: expect.any(String), name: expect.any(String) },
			sales: { opensAt: null, closesAt: null }
		});
		const all = await http("GET", `${api}/concerts?pageSize=100`);
		const demo = all.body.rows.filter((c: { venue: { name: string } }) => c.venue.name.endsWith("(demo)"));
		// Seeded by exactly one of the replicas that started together.
		expect(demo).toHaveLength(3);
		const second = await http("GET", `${api}/concerts?page=2&pageSize=2`);
		expect(second.body.rows[0].id).toBe(all.body.rows[2].id);
		expect((await http("GET", `${api}/concerts`)).body).toMatchObject({ page: 1, pageSize: 20 });
	});

	it("when paging is out of range or not a number, then 422 VALIDATION_ERROR", async () => {
		for (const q of ["pageSize=101", "page=0", "page=abc", "pageSize=-1"]) {
			const res = await http("GET", `${api}/concerts?${q}`);
			expect({ q, status: res.status, type: res.body.type }).toEqual({ q, status: 422, type: "VALIDATION_ERROR" });
		}
	});

	it("when a demo concert is read, then it has schedules and 50+ seats of 2+ grades, all AVAILABLE", async () => {
		const list = await http("GET", `${api}/concerts?pageSize=100`);
		const demo = list.body.rows.find((c: { venue: { name: string } }) => c.venue.name.endsWith("(demo)"));
		const concert = await http("GET", `${api}/concerts/${demo.id}`);
		expect(concert.status).toBe(200);
		expect(concert.body).toEqual({ ...demo, sales: { ...demo.sales, state: "OPEN" }, schedules: expect.any(Array) });
		expect(concert.body.schedules.length).toBeGreaterThanOrEqual(2);
		expect(concert.body.schedules[0]).toEqual({
			id: expect.any(String),
			startsAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
			totalSeats: expect.any(Number),
			availableSeats: expect.any(Number)
		});
		const schedules = await http("GET", `${api}/concerts/${demo.id}/schedules`);
		expect(schedules.status).toBe(200);
		expect(schedules.body).toEqual(concert.body.schedules);
		const seats = await http("GET", `${api}/schedules/${concert.body.schedules[0].id}/seats`);
		expect(seats.status).toBe(200);
		expect(seats.body.length).toBeGreaterThanOrEqual(50);
		expect(seats.body.length).toBe(concert.body.schedules[0].totalSeats);
		expect(new Set(seats.body.map((s: SeatOut) => s.grade)).size).toBeGreaterThanOrEqual(2);
		expect(seats.body[0]).toEqual({ id: expect.any(String), label: "A-1", grade: expect.any(String), price: expect.any(Number), status: "AVAILABLE" });
	});

	it("when an id is unknown or malformed, then 404 NOT_FOUND on every catalog read", async () => {
		for (const path of ["/concerts/nope", "/concerts/nope/schedules", "/schedules/nope/seats", `/concerts/${"x".repeat(80)}`, "/concerts/a%7Db"]) {
			const res = await http("GET", `${api}${path}`);
			expect({ path, status: res.status, type: res.body.type }).toEqual({ path, status: 404, type: "NOT_FOUND" });
		}
	});

	it("when an admin creates a concert, then 201 answers it as GET does and its seat map is generated", async () => {
		const body = {
			title: "Admin Show",
			artist: "Admin Band",
			venue: { name: "Admin Arena" },
			schedules: [{ startsAt: "2030-05-01T19:00:00Z" }, { startsAt: "2030-05-02T19:00:00+09:00" }],
			seats: { rows: 3, perRow: 20, price: 5000, grades: [{ grade: "VIP", rows: 1, price: 9000 }] },
			id: "chosen-by-client",
			extra: "dropped"
		};
		const res = await http("POST", `${api}/admin/concerts`, { token: adminToken, body });
		expect(res.status).toBe(201);
		expect(res.headers.get("location")).toBe(`/api/concerts/${res.body.id}`);
		expect(res.body.id).not.toBe("chosen-by-client");
		expect(res.body).toMatchObject({ title: "Admin Show", artist: "Admin Band", venue: { name: "Admin Arena" } });
		expect(res.body.schedules.map((s: { startsAt: string }) => s.startsAt)).toEqual(["2030-05-01T19:00:00.000Z", "2030-05-02T10:00:00.000Z"]);
		expect(res.body.schedules.every((s: { totalSeats: number; availableSeats: number }) => s.totalSeats === 60 && s.availableSeats === 60)).toBe(true);
		expect((await http("GET", `${api}/concerts/${res.body.id}`)).body).toEqual(res.body);
		const seats: SeatOut[] = (await http("GET", `${api}/schedules/${res.body.schedules[0].id}/seats`)).body;
		expect(seats.filter(s => s.grade === "VIP").map(s => s.price)).toEqual(Array(20).fill(9000));
		expect(seats.filter(s => s.grade === "R")).toHaveLength(40);
		expect(seats.at(-1)!.label).toBe("C-20");
		// The venue is reused by name.
		const again = await http("POST", `${api}/admin/concerts`, { token: adminToken, body: { ...body, title: "Encore" } });
		expect(again.body.venue).toEqual(res.body.venue);
	});

	it("when a non-admin or nobody creates a concert, or the body is invalid, then 403/401/422 and nothing is created", async () => {
		const before = (await http("GET", `${api}/concerts`)).body.total;
		const body = {
			title: "Nope",
			artist: "Nope",
			venue: { name: "Nowhere" },
			schedules: [{ startsAt: "2030-05-01T19:00:00Z" }],
			seats: { rows: 1, perRow: 1, price: 1 }
		};
		expect((await http("POST", `${api}/admin/concerts`, { token: userToken, body })).body).toMatchObject({ code: 403, type: "FORBIDDEN" });
		expect((await http("POST", `${api}/admin/concerts`, { body })).body).toMatchObject({ code: 401, type: "UNAUTHORIZED" });
		const invalid: [string, unknown][] = [
			["schedules[0].startsAt", { ...body, schedules: [{ startsAt: "next friday" }] }],
			["seats.rows", { ...body, seats: { rows: 27, perRow: 1, price: 1 } }],
			["seats.price", { ...body, seats: { rows: 1, perRow: 1, price: 1.5 } }],
			["seats.grades", { ...body, seats: { rows: 1, perRow: 1, price: 1, grades: [{ grade: "VIP", rows: 2, price: 1 }] } }],
			["schedules", { ...body, schedules: [] }],
			["title", { ...body, title: "" }]
		];
		for (const [field, b] of invalid) {
			const res = await http("POST", `${api}/admin/concerts`, { token: adminToken, body: b });
			expect({ field, status: res.status, type: res.body.type }).toEqual({ field, status: 422, type: "VALIDATION_ERROR" });
			expect(res.body.data.map((d: { field: string }) => d.field)).toContain(field);
		}
		expect((await http("GET", `${api}/concerts`)).body.total).toBe(before);
	});

	// --- holds ----------------------------------------------------------------------------------------------------

	it("when seats are held, then they read HELD, availability drops, and the answer carries prices, amount and expiry", async () => {
		const { concertId, scheduleId, seats } = await freshSchedule();
		const ids = [seats[0].id, seats[15].id];
		const before = Date.now();
		const hold = await call("concert.hold", { scheduleId, seatIds: ids, owner: "res-1" });
		expect(hold).toEqual({
			concertId,
			scheduleId,
			owner: "res-1",
			seats: [
				{ id: ids[0], label: "A-1", grade: "VIP", price: 3000 },
				{ id: ids[1], label: "B-6", grade: "R", price: 1000 }
			],
			amount: 4000,
			expiresAt: expect.any(String),
			startsAt: expect.any(String)
		});
		const ttl = new Date(hold.expiresAt).getTime() - before;
		expect(ttl).toBeGreaterThan(env.config.holdTtlSec * 1000 - 5_000);
		expect(ttl).toBeLessThanOrEqual(env.config.holdTtlSec * 1000 + 1_000);
		expect(await statuses(scheduleId, ids)).toEqual(["HELD", "HELD"]);
		expect(await call("concert.getSchedule", { id: scheduleId })).toEqual({
			id: scheduleId,
			concertId,
			startsAt: "2030-01-01T19:00:00.000Z",
			totalSeats: 20,
			availableSeats: 18
		});
		// Idempotent for the same owner and seats: same answer, the expiry does not move.
		expect(await call("concert.hold", { scheduleId, seatIds: ids, owner: "res-1" }, 1)).toEqual(hold);
		expect(await available(scheduleId)).toBe(18);
	});

	it("when one seat of a request is taken, then 409 SEAT_UNAVAILABLE names it and none of the others is held", async () => {
		const { scheduleId, seats } = await freshSchedule();
		await call("concert.hold", { scheduleId, seatIds: [seats[1].id], owner: "res-a" });
		const err = await fail(call("concert.hold", { scheduleId, seatIds: [seats[0].id, seats[1].id, seats[2].id], owner: "res-b" }, 1));
		expect(err).toMatchObject({ code: 409, type: "SEAT_UNAVAILABLE", data: { seatIds: [seats[1].id] } });
		expect(await statuses(scheduleId, [seats[0].id, seats[1].id, seats[2].id])).toEqual(["AVAILABLE", "HELD", "AVAILABLE"]);
		expect(await available(scheduleId)).toBe(19);
	});

	it("when a hold request is malformed or names unknown things, then 422/404 and nothing is held", async () => {
		const { scheduleId, seats } = await freshSchedule();
		const other = await freshSchedule();
		const cases: [string, Record<string, unknown>, number, string][] = [
			["duplicate seat", { scheduleId, seatIds: [seats[0].id, seats[0].id], owner: "r" }, 422, "VALIDATION_ERROR"],
			["five seats", { scheduleId, seatIds: seats.slice(0, 5).map(s => s.id), owner: "r" }, 422, "VALIDATION_ERROR"],
			["no seats", { scheduleId, seatIds: [], owner: "r" }, 422, "VALIDATION_ERROR"],
			["bad owner", { scheduleId, seatIds: [seats[0].id], owner: "r:1" }, 422, "VALIDATION_ERROR"],
			["unknown schedule", { scheduleId: "nope", seatIds: [seats[0].id], owner: "r" }, 404, "NOT_FOUND"],
			["seat of another schedule", { scheduleId, seatIds: [seats[0].id, other.seats[0].id], owner: "r" }, 404, "NOT_FOUND"]
		];
		for (const [name, params, code, type] of cases) {
			const err = await fail(call("concert.hold", params));
			expect({ name, code: err.code, type: err.type }).toEqual({ name, code, type });
		}
		const err = await fail(call("concert.hold", { scheduleId, seatIds: [seats[0].id, other.seats[0].id], owner: "r" }));
		expect(err.data).toMatchObject({ resource: "seat", seatIds: [other.seats[0].id] });
		expect(await available(scheduleId)).toBe(20);
		expect(await available(other.scheduleId)).toBe(20);
	});

	it("when someone other than the owner releases, then nothing changes; the owner's release frees the seats, repeatably", async () => {
		const { scheduleId, seats } = await freshSchedule();
		const seatIds = [seats[0].id, seats[1].id];
		await call("concert.hold", { scheduleId, seatIds, owner: "res-own" });
		expect(await call("concert.release", { scheduleId, seatIds, owner: "res-thief" }, 1)).toMatchObject({ released: 0 });
		expect(await statuses(scheduleId, seatIds)).toEqual(["HELD", "HELD"]);
		const results = await Promise.all([0, 1, 2, 3].map(i => call<{ released: number }>("concert.release", { scheduleId, seatIds, owner: "res-own" }, i)));
		expect(results.reduce((n, r) => n + r.released, 0)).toBe(2);
		expect(await statuses(scheduleId, seatIds)).toEqual(["AVAILABLE", "AVAILABLE"]);
		expect(await available(scheduleId)).toBe(20);
	});

	it("when seats are confirmed, then they are SOLD once, the counter moves once, and repeats or concurrent calls change nothing", async () => {
		const { scheduleId, seats } = await freshSchedule();
		const seatIds = [seats[0].id, seats[1].id, seats[2].id];
		await call("concert.hold", { scheduleId, seatIds, owner: "res-c" });
		const results = await Promise.all(
			Array.from({ length: 12 }, (_, i) => call("concert.confirmSeats", { reservationId: "res-c", scheduleId, seatIds }, i))
		);
		expect(results.every(r => r.status === "SOLD")).toBe(true);
		expect(await call("concert.confirmSeats", { reservationId: "res-c", scheduleId, seatIds })).toMatchObject({ status: "SOLD" });
		expect(await statuses(scheduleId, seatIds)).toEqual(["SOLD", "SOLD", "SOLD"]);
		expect(await available(scheduleId)).toBe(17);
		// The hold is gone (no seat counted twice) and no one else can hold or buy the seats.
		expect(await holdsOf(gateway).owners({ scheduleId, seatIds })).toEqual([null, null, null]);
		expect(await fail(call("concert.hold", { scheduleId, seatIds: [seatIds[0]], owner: "res-x" }))).toMatchObject({
			code: 409,
			type: "SEAT_UNAVAILABLE",
			data: { seatIds: [seatIds[0]] }
		});
		expect(await fail(call("concert.confirmSeats", { reservationId: "res-x", scheduleId, seatIds: [seatIds[1]] }))).toMatchObject({
			code: 409,
			type: "SEAT_UNAVAILABLE"
		});
		await expectConsistent();
	});

	it("when a seat another reservation holds is confirmed, then 409 and it stays that reservation's", async () => {
		const { scheduleId, seats } = await freshSchedule();
		await call("concert.hold", { scheduleId, seatIds: [seats[0].id], owner: "res-holder" });
		expect(await fail(call("concert.confirmSeats", { reservationId: "res-other", scheduleId, seatIds: [seats[0].id] }))).toMatchObject({
			code: 409,
			type: "SEAT_UNAVAILABLE",
			data: { seatIds: [seats[0].id] }
		});
		expect(await statuses(scheduleId, [seats[0].id])).toEqual(["HELD"]);
		expect(await call("concert.confirmSeats", { reservationId: "res-holder", scheduleId, seatIds: [seats[0].id] })).toMatchObject({ status: "SOLD" });
	});

	it("when a sale is re-held (its compensation), then the seats are HELD by the same reservation, once, repeatably and concurrently", async () => {
		const { scheduleId, seats } = await freshSchedule();
		const seatIds = [seats[3].id, seats[4].id];
		await call("concert.hold", { scheduleId, seatIds, owner: "res-r" });
		await call("concert.confirmSeats", { reservationId: "res-r", scheduleId, seatIds });
		expect(await available(scheduleId)).toBe(18);
		const results = await Promise.all(Array.from({ length: 8 }, (_, i) => call("concert.rehold", { reservationId: "res-r", scheduleId, seatIds }, i)));
		expect(results.every(r => r.status === "HELD")).toBe(true);
		expect(await call("concert.rehold", { reservationId: "res-r", scheduleId, seatIds })).toMatchObject({ status: "HELD" });
		expect(await statuses(scheduleId, seatIds)).toEqual(["HELD", "HELD"]);
		expect(await holdsOf(gateway).owners({ scheduleId, seatIds })).toEqual(["res-r", "res-r"]);
		expect(await available(scheduleId)).toBe(18);
		await expectConsistent();
		// Others still cannot take them; and a sale for the compensated reservation that arrives late (a
		// timed-out confirmSeats still queued) is refused: the seats are not sold again (the refused sale lets go of
		// the reservation's hold, which its cancellation releases anyway).
		expect(await fail(call("concert.hold", { scheduleId, seatIds, owner: "res-y" }))).toMatchObject({ code: 409 });
		expect(await fail(call("concert.confirmSeats", { reservationId: "res-r", scheduleId, seatIds }))).toMatchObject({
			code: 409,
			type: "SEAT_UNAVAILABLE"
		});
		expect(await statuses(scheduleId, seatIds)).toEqual(["AVAILABLE", "AVAILABLE"]);
		await expectConsistent();
	});

	it("when a confirmed sale is cancelled (releaseSold), then the seats are AVAILABLE once, repeatably and concurrently", async () => {
		const { scheduleId, seats } = await freshSchedule();
		const seatIds = [seats[5].id, seats[6].id];
		await call("concert.hold", { scheduleId, seatIds, owner: "res-s" });
		await call("concert.confirmSeats", { reservationId: "res-s", scheduleId, seatIds });
		// Another reservation cannot cancel this one's seats.
		expect(await call("concert.releaseSold", { reservationId: "res-other", scheduleId, seatIds })).toMatchObject({ released: 0 });
		expect(await statuses(scheduleId, seatIds)).toEqual(["SOLD", "SOLD"]);
		const results = await Promise.all(
			Array.from({ length: 8 }, (_, i) => call<{ released: number }>("concert.releaseSold", { reservationId: "res-s", scheduleId, seatIds }, i))
		);
		expect(results.reduce((n, r) => n + r.released, 0)).toBe(2);
		expect(await statuses(scheduleId, seatIds)).toEqual(["AVAILABLE", "AVAILABLE"]);
		expect(await available(scheduleId)).toBe(20);
		await expectConsistent();
		expect(await call("concert.hold", { scheduleId, seatIds, owner: "res-next" })).toMatchObject({ owner: "res-next" });
		// The cancelled reservation's late sale is refused; the new holder's seats stay theirs.
		expect(await fail(call("concert.confirmSeats", { reservationId: "res-s", scheduleId, seatIds }))).toMatchObject({ code: 409 });
	});

	it("when the store loses every hold (flushed), then a SOLD seat still cannot be held or sold again", async () => {
		const { scheduleId, seats } = await freshSchedule();
		const sold = [seats[7].id];
		const held = [seats[8].id];
		await call("concert.hold", { scheduleId, seatIds: sold, owner: "res-f" });
		await call("concert.confirmSeats", { reservationId: "res-f", scheduleId, seatIds: sold });
		await call("concert.hold", { scheduleId, seatIds: held, owner: "res-g" });
		if (cluster) {
			const store = createStore(env.config);
			expect(await store.clear()).toBeGreaterThan(0);
			await store.close();
		} else {
			await holdsOf(gateway).clear();
		}
		// The held seat is free again (nothing on disk); the sold one is not.
		expect(await statuses(scheduleId, [...sold, ...held])).toEqual(["SOLD", "AVAILABLE"]);
		const attempts = await Promise.all(
			Array.from({ length: 10 }, (_, i) => call("concert.hold", { scheduleId, seatIds: sold, owner: `res-late-${i}` }, i).catch(e => e))
		);
		expect(attempts.map(e => (e as CallError).type)).toEqual(Array(10).fill("SEAT_UNAVAILABLE"));
		expect(await fail(call("concert.confirmSeats", { reservationId: "res-late", scheduleId, seatIds: sold }))).toMatchObject({ code: 409 });
		expect(await statuses(scheduleId, sold)).toEqual(["SOLD"]);
		expect(await available(scheduleId)).toBe(19);
		await expectConsistent();
	});

	it("when a lease sits on a seat sold to another reservation, then verify reports it under holds", async () => {
		const { scheduleId, seats } = await freshSchedule();
		await call("concert.hold", { scheduleId, seatIds: [seats[13].id], owner: "res-v" });
		await call("concert.confirmSeats", { reservationId: "res-v", scheduleId, seatIds: [seats[13].id] });
		await expectConsistent();
		// Forged around the action (which would refuse it): what a hold path that skipped its sold check leaves.
		await holdsOf(gateway).hold({ scheduleId, seatIds: [seats[13].id], owner: "res-stale", ttlMs: 60_000 });
		const report = await call("concert.verify", {});
		expect(report.ok).toBe(false);
		expect(report.checks.find((c: { name: string }) => c.name === "holds")).toEqual({
			name: "holds",
			ok: false,
			details: { heldButSoldToOthers: [{ scheduleId, seatId: seats[13].id, heldBy: "res-stale", soldTo: "res-v" }] }
		});
		await holdsOf(gateway).release({ scheduleId, seatIds: [seats[13].id], owner: "res-stale" });
		await expectConsistent();
	});

	it("when holds are absent and 20 reservations confirm the same seat at once, then exactly one buys it", async () => {
		const { scheduleId, seats } = await freshSchedule();
		const results = await Promise.all(
			Array.from({ length: 20 }, (_, i) =>
				call("concert.confirmSeats", { reservationId: `res-race-${i}`, scheduleId, seatIds: [seats[9].id] }, i).then(
					() => "sold",
					(e: CallError) => e.type
				)
			)
		);
		expect(results.filter(r => r === "sold")).toHaveLength(1);
		expect(results.filter(r => r === "SEAT_UNAVAILABLE")).toHaveLength(19);
		expect(await available(scheduleId)).toBe(19);
		await expectConsistent();
	});

	it("when 200 callers hold one seat at once across the replicas, then exactly one succeeds", async () => {
		const { scheduleId, seats } = await freshSchedule();
		const seat = seats[10].id;
		const results = await Promise.all(
			Array.from({ length: 200 }, (_, i) =>
				call("concert.hold", { scheduleId, seatIds: [seat], owner: `res-hot-${i}` }, i).then(
					(h: { owner: string }) => h.owner,
					(e: CallError) => e.type
				)
			)
		);
		const winners = results.filter(r => r?.startsWith("res-hot-"));
		expect(winners).toHaveLength(1);
		expect(results.filter(r => r === "SEAT_UNAVAILABLE")).toHaveLength(199);
		expect(await holdsOf(gateway).owners({ scheduleId, seatIds: [seat] })).toEqual(winners);
		expect(await available(scheduleId)).toBe(19);
	});

	it("when overlapping multi-seat holds race in opposite order, then one wins whole and the other gets nothing", async () => {
		const { scheduleId, seats } = await freshSchedule(2, 20);
		for (let round = 0; round < 10; round++) {
			const trio = seats.slice(round * 3, round * 3 + 3).map(s => s.id);
			const [x, y] = await Promise.all([
				call("concert.hold", { scheduleId, seatIds: trio, owner: `res-x${round}` }, round).then(
					() => "x",
					(e: CallError) => e.type
				),
				call("concert.hold", { scheduleId, seatIds: [...trio].reverse(), owner: `res-y${round}` }, round + 1).then(
					() => "y",
					(e: CallError) => e.type
				)
			]);
			expect([x, y].filter(r => r === "SEAT_UNAVAILABLE")).toHaveLength(1);
			expect([x, y].filter(r => r === "x" || r === "y")).toHaveLength(1);
			const winner = x === "x" ? `res-x${round}` : `res-y${round}`;
			expect(await holdsOf(gateway).owners({ scheduleId, seatIds: trio })).toEqual([winner, winner, winner]);
		}
		expect(await available(scheduleId)).toBe(40 - 30);
	});

	it("when a hold's time passes, then its seats are free again without anyone releasing them", async () => {
		// A replica with a 1-second HOLD_TTL_SEC, called directly; it shares the database (and, in a cluster, Redis).
		// It cannot leak into other tests: they address the replicas listed in `replicas` by node id, and an
		// embedded broker is reachable only from itself. The harness stops it in cleanup.
		const short = await env.broker(["concert"], { config: { holdTtlSec: 1 } });
		const { scheduleId, seats } = await freshSchedule();
		const seatIds = [seats[11].id, seats[12].id];
		const via = cluster ? caller : short;
		const opts = cluster ? { nodeID: short.nodeID } : {};
		if (cluster) await waitFor(() => caller.registry.nodes.get(short.nodeID)?.available === true, 10_000, "short-ttl node");
		await via.call("concert.hold", { scheduleId, seatIds, owner: "res-brief" }, opts);
		expect(await via.call("concert.getSchedule", { id: scheduleId }, opts)).toMatchObject({ availableSeats: 18 });
		// Nobody releases it: the seats come back when its 1 s runs out (the bound leaves room for a loaded machine).
		await waitFor(
			async () => (await via.call<{ availableSeats: number }, { id: string }>("concert.getSchedule", { id: scheduleId }, opts)).availableSeats === 20,
			5_000,
			"the 1 s hold to expire"
		);
		const seatsNow: SeatOut[] = await via.call("concert.seats", { id: scheduleId }, opts);
		expect(seatsNow.filter(s => seatIds.includes(s.id)).map(s => s.status)).toEqual(["AVAILABLE", "AVAILABLE"]);
		expect(await via.call("concert.hold", { scheduleId, seatIds, owner: "res-after" }, opts)).toMatchObject({ owner: "res-after" });
	});
});
