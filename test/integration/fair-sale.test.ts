/**
 * A fair sale (issue 16) over HTTP against the real services: per-buyer limits enforced by the reservations
 * database (embedded, and a three-broker cluster whose two booking nodes race for one buyer), the sales calendar
 * (pre-queue, closed sales, a show in the past, the cancellation cutoff, reviews only after the show), and a waiting
 * room that forgets who left and closes a sold-out line. Each reproduction of the issue fails on the code before it.
 */
import type { ServiceBroker } from "moleculer";
import { adminToken, ownConcert, pay, reserve, seats, shopper, type Shopper } from "../support/booking";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";

const ADMIN = { ADMIN_EMAIL: "ops@example.com", ADMIN_PASSWORD: "ops-password" };
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
const CORE = ["api", "user", "queue", "concert", "payment", "saga", "reservation"];

/** A new signed-in account with points (and no waiting-room token yet). */
async function account(api: string, tag: string, points = 10_000): Promise<{ token: string }> {
	const email = `${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}@example.com`;
	await http("POST", `${api}/auth/register`, { body: { email, password: "password-1", name: tag } });
	const token = (await http("POST", `${api}/auth/login`, { body: { email, password: "password-1" } })).body.accessToken as string;
	await http("POST", `${api}/points/charge`, { token, body: { amount: points }, headers: { "idempotency-key": `charge-${email}` } });
	return { token };
}

/** Seats of the schedule by status. */
async function seatCounts(api: string, scheduleId: string): Promise<Record<string, number>> {
	const out: Record<string, number> = { AVAILABLE: 0, HELD: 0, SOLD: 0 };
	for (const s of await seats(api, scheduleId)) out[s.status]++;
	return out;
}

/** Every reservation of the shopper for the schedule that counts against the limit, and its seats. */
async function countedSeats(api: string, s: Shopper, scheduleId: string): Promise<number> {
	const list = await http("GET", `${api}/reservations?pageSize=100`, { token: s.token });
	return (list.body.rows as { scheduleId: string; status: string; seats: unknown[] }[])
		.filter(r => r.scheduleId === scheduleId && ["PENDING", "PAYING", "CONFIRMED", "CANCELLING"].includes(r.status))
		.reduce((n, r) => n + r.seats.length, 0);
}

describe.each([
	["embedded", false],
	["a three-broker cluster", true]
])("per-buyer limits (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let api: string;
	let admin: string;

	beforeAll(async () => {
		env = testEnv({ cluster, env: { ...ADMIN, QUEUE_MAX_ACTIVE: "1000" } });
		let gateway: ServiceBroker;
		if (cluster) {
			// Two booking brokers: one buyer's attempts reach both and race in the database, not in one process.
			[gateway] = await Promise.all([
				env.broker(["api", "user", "queue", "concert"]),
				env.broker(["reservation", "saga", "payment"]),
				env.broker(["reservation", "saga", "payment"])
			]);
			await gateway.waitForServices(["reservation", "saga", "payment"], 30_000);
		} else {
			gateway = await env.broker(CORE);
		}
		api = gatewayUrl(gateway);
		admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when one token sends 5 parallel holds of 4 seats, then exactly one reservation is made and only its seats are held", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 4, 5, 100);
		const u = await shopper(api, concertId, 100_000);
		const all = await seats(api, scheduleId);
		const answers = await Promise.all(
			Array.from({ length: 5 }, (_, i) =>
				reserve(
					api,
					u,
					scheduleId,
					all.slice(i * 4, i * 4 + 4).map(s => s.id)
				)
			)
		);
		const statuses = answers.map(a => a.status).sort();
		expect(statuses).toEqual([201, 409, 409, 409, 409]);
		for (const a of answers.filter(x => x.status === 409)) expect(a.body.type).toBe("OPEN_RESERVATION_EXISTS");
		await waitFor(async () => (await seatCounts(api, scheduleId)).HELD === 4, 10_000, "only the winner's 4 seats held");
		expect(await countedSeats(api, u, scheduleId)).toBe(4);
	}, 60_000);

	it("when a buyer keeps buying, then the seats end at exactly the limit, whatever mix of parallel holds and payments", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 4, 30, 100);
		const u = await shopper(api, concertId, 100_000);
		const all = await seats(api, scheduleId);
		let next = 0;
		// Rounds of 6 parallel holds of 1-2 seats, then the winners paid in parallel with two keys each.
		for (let round = 0; round < 10 && (await countedSeats(api, u, scheduleId)) < 4; round++) {
			const holds = await Promise.all(
				Array.from({ length: 6 }, () => {
					const n = 1 + (next % 3 === 0 ? 1 : 0);
					const ids = all.slice(next, next + n).map(s => s.id);
					next += n;
					return reserve(api, u, scheduleId, ids);
				})
			);
			for (const h of holds) if (h.status !== 201) expect(["OPEN_RESERVATION_EXISTS", "SEAT_LIMIT_EXCEEDED"]).toContain(h.body.type);
			const made = holds.filter(h => h.status === 201);
			expect(made.length).toBeLessThanOrEqual(1);
			const paid = await Promise.all(made.flatMap(h => [pay(api, u, h.body.id, `a-${h.body.id}`), pay(api, u, h.body.id, `b-${h.body.id}`)]));
			// A purchase uses the token up (the saga's last step): the buyer enters the waiting room again to buy more.
			if (paid.some(p => p.status === 201)) {
				const again = await http("POST", `${api}/queue/tokens`, { token: u.token, body: { concertId } });
				expect(again.body.status).toBe("ACTIVE");
				u.queueToken = again.body.token;
			}
			expect(await countedSeats(api, u, scheduleId)).toBeLessThanOrEqual(4);
		}
		expect(await countedSeats(api, u, scheduleId)).toBe(4);
		await waitFor(async () => (await seatCounts(api, scheduleId)).SOLD === 4, 10_000, "4 seats sold");
		const c = await seatCounts(api, scheduleId);
		expect(c).toEqual({ AVAILABLE: 116, HELD: 0, SOLD: 4 });
		const over = await reserve(api, u, scheduleId, [all[119].id]);
		expect(over.status).toBe(409);
		expect(over.body).toMatchObject({ type: "SEAT_LIMIT_EXCEEDED", data: { limit: 4, taken: 4 } });
	}, 120_000);
});

describe("the sales calendar (embedded)", () => {
	let env: TestEnv;
	let api: string;
	let admin: string;

	beforeAll(async () => {
		env = testEnv({ cluster: false, env: { ...ADMIN, QUEUE_MAX_ACTIVE: "1000", CANCEL_CUTOFF_HOURS: "1" } });
		api = gatewayUrl(await env.broker([...CORE, "review"]));
		admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	const user = async (concertId: string, tag = "c") => ({ ...(await account(api, tag)), concertId });

	it("when a show is in the past, then its concert cannot be entered, held or paid (409 SALES_CLOSED)", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 100, { startsAt: new Date("2020-06-01T19:00:00Z") });
		const u = await user(concertId);
		const enter = await http("POST", `${api}/queue/tokens`, { token: u.token, body: { concertId } });
		expect(enter.status).toBe(409);
		expect(enter.body.type).toBe("SALES_CLOSED");
		const detail = await http("GET", `${api}/concerts/${concertId}`);
		expect(detail.body.sales).toMatchObject({ state: "CLOSED" });
		expect((await seatCounts(api, scheduleId)).AVAILABLE).toBe(4);
	}, 30_000);

	it("when sales close while a reservation is held, then its payment, a new hold and a new entry are refused with SALES_CLOSED, and nothing is charged", async () => {
		const closesAt = new Date(Date.now() + 4000);
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 100, { sales: { closesAt: closesAt.toISOString() } });
		const u = await shopper(api, concertId, 1000);
		const w = await shopper(api, concertId, 1000, "w");
		const [a, b] = await seats(api, scheduleId);
		const held = await reserve(api, u, scheduleId, [a.id]);
		expect(held.status).toBe(201);
		// The services read the sale window against their own clock (none to inject on this path): sleep past the
		// close, plus the 2 s their window caches may lag.
		await sleep(closesAt.getTime() - Date.now() + 2500);
		const paid = await pay(api, u, held.body.id);
		expect(paid.status).toBe(409);
		expect(paid.body.type).toBe("SALES_CLOSED");
		expect((await http("GET", `${api}/points`, { token: u.token })).body.balance).toBe(1000);
		const other = await shopper(api, concertId, 0).catch((e: Error) => e);
		expect(String(other)).toMatch(/SALES_CLOSED/);
		const hold = await reserve(api, w, scheduleId, [b.id]);
		expect(hold.status).toBe(409);
		expect(hold.body.type).toBe("SALES_CLOSED");
		// Only the reservation held before the close still holds its seat; nothing was sold.
		expect(await seatCounts(api, scheduleId)).toEqual({ AVAILABLE: 3, HELD: 1, SOLD: 0 });
		// The waiting room's periodic sale check closes the line: a token from before the close now reads CLOSED.
		const poll = () => http("GET", `${api}/queue/tokens/${encodeURIComponent(w.queueToken)}`, { token: w.token });
		await waitFor(async () => (await poll()).body.status === "CLOSED", 10_000, "the line closed CLOSED");
	}, 40_000);

	it("when an admin sets a sale window, then it is validated (open < close <= the last show) and only admins may", async () => {
		const show = new Date(Date.now() + 10 * 86400_000);
		const { concertId } = await ownConcert(api, admin, 1, 2, 100, { startsAt: show });
		const put = (body: unknown, token = admin) => http("PUT", `${api}/admin/concerts/${concertId}/sales`, { token, body });
		expect((await put({ opensAt: new Date(Date.now() + 86400_000).toISOString(), closesAt: new Date(Date.now() + 3600_000).toISOString() })).status).toBe(
			422
		);
		expect((await put({ closesAt: new Date(show.getTime() + 1000).toISOString() })).status).toBe(422);
		expect((await put({ opensAt: "tomorrow" })).status).toBe(422);
		const u = await user(concertId);
		expect((await put({ opensAt: null, closesAt: null }, u.token)).status).toBe(403);
		const ok = await put({ opensAt: new Date(Date.now() + 3600_000).toISOString(), closesAt: show.toISOString() });
		expect(ok.status).toBe(200);
		expect(ok.body.sales).toMatchObject({ state: "NOT_OPEN", closesAt: show.toISOString() });
		expect((await http("PUT", `${api}/admin/concerts/no-such/sales`, { token: admin, body: {} })).status).toBe(404);
	}, 30_000);

	it("when users enter before the opening, then they are PRE_QUEUE with the opening time and are admitted when it comes", async () => {
		const opensAt = new Date(Date.now() + 3000);
		const { concertId } = await ownConcert(api, admin, 1, 4, 100, { sales: { opensAt: opensAt.toISOString() } });
		const users = await Promise.all([user(concertId, "p1"), user(concertId, "p2")]);
		const tokens = [];
		for (const u of users) {
			const t = await http("POST", `${api}/queue/tokens`, { token: u.token, body: { concertId } });
			expect(t.status).toBe(201);
			expect(t.body).toMatchObject({ status: "PRE_QUEUE", position: 0, opensAt: opensAt.toISOString() });
			expect(t.body.etaSeconds).toBeGreaterThan(0);
			tokens.push(t.body.token as string);
		}
		// The waiting room reads the opening against its own clock (none to inject on this path): sleep past it.
		await sleep(opensAt.getTime() - Date.now() + 1500);
		for (let i = 0; i < 2; i++) {
			const s = await http("GET", `${api}/queue/tokens/${encodeURIComponent(tokens[i])}`, { token: users[i].token });
			expect(s.body.status).toBe("ACTIVE");
		}
	}, 30_000);

	it("when a confirmed booking is cancelled inside the cutoff, then 409 CANCELLATION_CLOSED; outside it, a full refund", async () => {
		const soon = await ownConcert(api, admin, 1, 2, 100, { startsAt: new Date(Date.now() + 30 * 60_000) });
		const later = await ownConcert(api, admin, 1, 2, 100);
		for (const [c, expected] of [
			[soon, 409],
			[later, 200]
		] as const) {
			const u = await shopper(api, c.concertId, 1000);
			const [seat] = await seats(api, c.scheduleId);
			const r = await reserve(api, u, c.scheduleId, [seat.id]);
			expect((await pay(api, u, r.body.id)).status).toBe(201);
			const cancel = await http("POST", `${api}/reservations/${r.body.id}/cancel`, {
				token: u.token,
				headers: { "idempotency-key": `cancel-${r.body.id}` }
			});
			expect(cancel.status).toBe(expected);
			if (expected === 409) expect(cancel.body.type).toBe("CANCELLATION_CLOSED");
			else expect(cancel.body.refund).toEqual({ amount: 100 });
			expect((await http("GET", `${api}/points`, { token: u.token })).body.balance).toBe(expected === 409 ? 900 : 1000);
		}
	}, 60_000);

	it("when the keys are long or have spaces and the seats are free, then payment and cancellation work", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 2, 0);
		const u = await shopper(api, concertId, 0);
		const [seat] = await seats(api, scheduleId);
		const r = await reserve(api, u, scheduleId, [seat.id]);
		const longKey = `k ${"x".repeat(250)}`;
		const paid = await pay(api, u, r.body.id, longKey);
		expect(paid.status).toBe(201);
		expect(paid.body.amount).toBe(0);
		expect((await pay(api, u, r.body.id, longKey)).headers.get("idempotent-replayed")).toBe("true");
		const cancel = await http("POST", `${api}/reservations/${r.body.id}/cancel`, { token: u.token, headers: { "idempotency-key": "y".repeat(255) } });
		expect(cancel.status).toBe(200);
	}, 30_000);
});

describe("reviews follow the calendar (embedded)", () => {
	let env: TestEnv;
	let broker: ServiceBroker;
	let api: string;
	let admin: string;

	beforeAll(async () => {
		env = testEnv({ cluster: false, env: { ...ADMIN, QUEUE_MAX_ACTIVE: "1000", CANCEL_CUTOFF_HOURS: "0" } });
		broker = await env.broker([...CORE, "review"]);
		api = gatewayUrl(broker);
		admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when a review is written before the show, without a booking, or after a cancellation, then 403; after the show, 201", async () => {
		const startsAt = new Date(Date.now() + 6000);
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 100, { startsAt });
		const review = (token: string) => http("POST", `${api}/concerts/${concertId}/reviews`, { token, body: { rating: 5, content: "Great night" } });
		const [a, b] = await seats(api, scheduleId);
		const fan = await shopper(api, concertId, 1000, "fan");
		const quitter = await shopper(api, concertId, 1000, "quit");
		const r1 = await reserve(api, fan, scheduleId, [a.id]);
		expect((await pay(api, fan, r1.body.id)).status).toBe(201);
		const r2 = await reserve(api, quitter, scheduleId, [b.id]);
		expect((await pay(api, quitter, r2.body.id)).status).toBe(201);
		expect((await http("POST", `${api}/reservations/${r2.body.id}/cancel`, { token: quitter.token, headers: { "idempotency-key": "q" } })).status).toBe(
			200
		);

		const early = await review(fan.token);
		expect(early.status).toBe(403);
		expect(early.body).toMatchObject({ type: "REVIEW_NOT_ALLOWED", data: { reason: "SHOW_NOT_YET" } });
		// The review service reads the show's start against its own clock (none to inject on this path): sleep past it.
		await sleep(startsAt.getTime() - Date.now() + 500);
		expect((await review(fan.token)).status).toBe(201);
		const cancelled = await review(quitter.token);
		expect(cancelled.body).toMatchObject({ type: "REVIEW_NOT_ALLOWED", data: { reason: "NO_BOOKING" } });
		const stranger = await shopper(api, concertId, 0, "none").catch(() => null);
		if (stranger) expect((await review(stranger.token)).status).toBe(403);
	}, 60_000);

	it("when a reservation.cancelled event arrives for a user with no confirmed booking left, then their review is withdrawn", async () => {
		const { concertId } = await ownConcert(api, admin, 1, 2, 100);
		const svc = broker.getLocalService("review") as unknown as {
			sequelize: { query(sql: string, o: { replacements: unknown[] }): Promise<unknown> };
			withdrawReview(e: unknown): Promise<void>;
		};
		const userId = `u-${Date.now().toString(36)}`;
		await svc.sequelize.query("INSERT INTO reviews (id, concert_id, user_id, rating, content, created_at) VALUES (?, ?, ?, 5, 'x', ?)", {
			replacements: [`r-${userId}`, concertId, userId, new Date()]
		});
		await svc.withdrawReview({
			id: "e1",
			type: "reservation.cancelled",
			aggregateType: "reservation",
			aggregateId: "r",
			version: 3,
			createdAt: new Date().toISOString(),
			payload: { userId, concertId }
		});
		const list = await http("GET", `${api}/concerts/${concertId}/reviews`);
		expect(list.body.total).toBe(0);
	}, 30_000);
});

describe.each([
	["embedded", false],
	["cluster", true]
])("a waiting room that knows who is still there (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let api: string;
	let admin: string;
	let gateway: ServiceBroker;

	beforeAll(async () => {
		env = testEnv({ cluster, env: { ...ADMIN, QUEUE_MAX_ACTIVE: "1", QUEUE_WAITING_TTL_SEC: "5", CANCEL_CUTOFF_HOURS: "0" } });
		gateway = await env.broker(CORE);
		api = gatewayUrl(gateway);
		admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	const person = async (concertId: string, tag: string) => {
		const { token } = await account(api, tag);
		const q = await http("POST", `${api}/queue/tokens`, { token, body: { concertId } });
		return { token, queueToken: q.body.token as string, first: q.body, userId: "", concertId };
	};
	const poll = (p: { token: string; queueToken: string }) => http("GET", `${api}/queue/tokens/${encodeURIComponent(p.queueToken)}`, { token: p.token });

	it("when a waiting user stops polling, then they leave the line (EXPIRED) and the next moves up", async () => {
		const { concertId } = await ownConcert(api, admin, 1, 4, 100);
		const first = await person(concertId, "a");
		const gone = await person(concertId, "b");
		const keen = await person(concertId, "c");
		expect(first.first.status).toBe("ACTIVE");
		expect([gone.first.position, keen.first.position]).toEqual([1, 2]);
		// The others poll once a second, as clients do, until the line lets the silent one go (its 5 s TTL) and the
		// next moves up.
		await waitFor(
			async () => {
				await poll(first);
				return (await poll(keen)).body.position === 1;
			},
			20_000,
			"the silent user to leave the line",
			1_000
		);
		const g = await poll(gone);
		expect(g.status).toBe(200);
		expect(g.body.status).toBe("EXPIRED");
		expect((await poll(keen)).body).toMatchObject({ status: "WAITING", position: 1 });
	}, 60_000);

	it("when the last seats are sold, then the line closes SOLD_OUT for everyone and is freed; a cancellation reopens it to those still polling", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 2, 100);
		const buyer = await person(concertId, "buyer");
		const waiter = await person(concertId, "waiter");
		expect(waiter.first).toMatchObject({ status: "WAITING", position: 1 });
		const all = await seats(api, scheduleId);
		const r = await reserve(
			api,
			{ ...buyer, userId: "", concertId },
			scheduleId,
			all.map(s => s.id)
		);
		expect(r.status).toBe(201);
		expect((await pay(api, { ...buyer, userId: "", concertId }, r.body.id)).status).toBe(201);
		await waitFor(async () => (await poll(waiter)).body.status === "SOLD_OUT", 15_000, "the waiting user told SOLD_OUT");
		const late = await http("POST", `${api}/queue/tokens`, { token: waiter.token, body: { concertId } });
		expect(late.status).toBe(409);
		expect(late.body.type).toBe("SOLD_OUT");
		const stats = await http("GET", `${api}/admin/queues/${concertId}`, { token: admin });
		expect(stats.body).toMatchObject({ state: "SOLD_OUT", waiting: 0, active: 0 });
		if (cluster) {
			// The store holds nothing of the line but its closed marker.
			const redis = (gateway.getLocalService("queue") as unknown as { store: { redis: { keys(p: string): Promise<string[]> } } }).store.redis;
			const keys = await redis.keys(`*queue:{${concertId}}:*`);
			expect(keys.map(k => k.slice(k.lastIndexOf(":") + 1))).toEqual(["state"]);
		}

		const cancel = await http("POST", `${api}/reservations/${r.body.id}/cancel`, { token: buyer.token, headers: { "idempotency-key": "give-back" } });
		expect(cancel.status).toBe(200);
		let back: { status: string; token: string } | undefined;
		await waitFor(async () => ["WAITING", "ACTIVE"].includes((back = (await poll(waiter)).body).status), 15_000, "the line reopened to the waiting user");
		// Taken back under a new token, never the id presented (which could have been anyone's).
		expect(back!.token).not.toBe(waiter.queueToken);
	}, 90_000);
});
