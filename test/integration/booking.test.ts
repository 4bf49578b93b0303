/**
 * The product end to end over HTTP: waiting room, hold, pay (the ConfirmReservation saga), cancel, expiry,
 * with the seed's failure points injected into the real participants. Cluster mode runs three brokers over the
 * real NATS with MariaDB and Redis; embedded mode runs the journey in one process.
 */
import { Errors, type ServiceBroker } from "moleculer";
import { adminToken, balance, ownConcert, pay, reservation, reserve, seats, shopper, type Shopper } from "../support/booking";
import { Faults } from "../support/faults";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";

const ADMIN = { ADMIN_EMAIL: "ops@example.com", ADMIN_PASSWORD: "ops-password" };
const injected = () => new Errors.MoleculerClientError("injected fault", 409, "INJECTED_FAULT");

async function startPlatform(env: TestEnv, faults: Faults, cluster: boolean): Promise<ServiceBroker> {
	const middlewares = [faults.middleware()];
	const all = ["api", "user", "queue", "concert", "payment", "saga", "reservation", "ranking", "notification"];
	if (!cluster) return env.broker(all, { middlewares });
	const [gateway] = await Promise.all([
		env.broker(["api", "user", "queue"], { middlewares }),
		env.broker(["reservation", "saga", "concert"], { middlewares }),
		env.broker(["payment", "ranking", "notification"], { middlewares })
	]);
	await gateway.waitForServices(["reservation", "saga", "concert", "payment"], 30_000);
	return gateway;
}

describe.each([
	["embedded", false],
	["cluster", true]
])("booking journey (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let api: string;
	let admin: string;

	beforeAll(async () => {
		env = testEnv({ cluster, env: ADMIN });
		api = gatewayUrl(await startPlatform(env, new Faults(), cluster));
		admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when a user queues, holds two seats, pays and cancels, then money, seats, token and reservation follow", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 2, 5, 1500);
		const u = await shopper(api, concertId, 10_000);
		const [a, b] = (await seats(api, scheduleId)).slice(0, 2);

		const held = await reserve(api, u, scheduleId, [a.id, b.id]);
		expect(held.status).toBe(201);
		expect(held.body).toMatchObject({ status: "PENDING", concertId, scheduleId, amount: 3000 });
		expect(held.body.seats.map((s: { id: string }) => s.id).sort()).toEqual([a.id, b.id].sort());
		expect(
			(await seats(api, scheduleId))
				.filter(s => s.status === "HELD")
				.map(s => s.id)
				.sort()
		).toEqual([a.id, b.id].sort());

		const paid = await pay(api, u, held.body.id);
		expect(paid.status).toBe(201);
		expect(paid.body).toMatchObject({
			reservationId: held.body.id,
			amount: 3000,
			status: "COMPLETED",
			reservation: { id: held.body.id, status: "CONFIRMED" }
		});
		expect(await balance(api, u)).toBe(7000);
		expect(
			(await seats(api, scheduleId))
				.filter(s => s.status === "SOLD")
				.map(s => s.id)
				.sort()
		).toEqual([a.id, b.id].sort());
		const detail = await reservation(api, u, held.body.id);
		expect(detail).toMatchObject({ status: "CONFIRMED", payment: { id: paid.body.id, amount: 3000, status: "COMPLETED" }, saga: { status: "COMPLETED" } });

		// Step 4 expired the waiting-room token: it cannot book again.
		const again = await reserve(api, u, scheduleId, [(await seats(api, scheduleId))[4].id]);
		expect(again.status).toBe(403);
		expect(again.body.type).toBe("QUEUE_TOKEN_NOT_ACTIVE");

		// Step 5, eventually: the ranking counts the two seats and the inbox tells the user.
		const score = async () =>
			((await http("GET", `${api}/rankings/concerts?limit=100`)).body as { concertId: string; score: number }[]).find(r => r.concertId === concertId)
				?.score ?? 0;
		await waitFor(async () => (await score()) === 2, 15_000, "the ranking to count the sold seats");
		const inboxTypes = async () => ((await http("GET", `${api}/notifications`, { token: u.token })).body.rows ?? []).map((n: { type: string }) => n.type);
		await waitFor(async () => (await inboxTypes()).includes("RESERVATION_CONFIRMED"), 15_000, "the confirmation notification");
		expect(await inboxTypes()).toEqual(expect.arrayContaining(["RESERVATION_HELD", "RESERVATION_CONFIRMED", "PAYMENT_COMPLETED"]));

		const cancelled = await http("POST", `${api}/reservations/${held.body.id}/cancel`, { token: u.token, headers: { "idempotency-key": "cancel-1" } });
		expect(cancelled.status).toBe(200);
		expect(cancelled.body).toEqual({ id: held.body.id, status: "CANCELLED", refund: { amount: 3000 } });
		expect(await balance(api, u)).toBe(10_000);
		expect((await seats(api, scheduleId)).every(s => s.status === "AVAILABLE")).toBe(true);
		const payment = await http("GET", `${api}/payments/${paid.body.id}`, { token: u.token });
		expect(payment.body.status).toBe("REFUNDED");

		await waitFor(async () => (await score()) === 0, 15_000, "the ranking to take the cancelled seats off");
		await waitFor(async () => (await inboxTypes()).includes("PAYMENT_REFUNDED"), 15_000, "the refund notification");

		const twice = await http("POST", `${api}/reservations/${held.body.id}/cancel`, { token: u.token, headers: { "idempotency-key": "cancel-2" } });
		expect(twice.status).toBe(409);
		expect(twice.body.type).toBe("RESERVATION_NOT_CANCELLABLE");
	});

	it("when a PENDING reservation is cancelled, then its seats are free and nothing is charged", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 800);
		const u = await shopper(api, concertId, 5000);
		const [a] = await seats(api, scheduleId);
		const held = await reserve(api, u, scheduleId, [a.id]);
		const res = await http("POST", `${api}/reservations/${held.body.id}/cancel`, { token: u.token, headers: { "idempotency-key": "c" } });
		expect(res.status).toBe(200);
		expect(res.body).toEqual({ id: held.body.id, status: "CANCELLED" });
		expect((await seats(api, scheduleId))[0].status).toBe("AVAILABLE");
		expect(await balance(api, u)).toBe(5000);
		const late = await pay(api, u, held.body.id);
		expect(late.status).toBe(409);
		expect(late.body.type).toBe("RESERVATION_NOT_PAYABLE");
	});

	it("when points are short, then 402 INSUFFICIENT_POINTS, the reservation is PENDING again with its seats held", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 5000);
		const u = await shopper(api, concertId, 4999);
		const [a] = await seats(api, scheduleId);
		const held = await reserve(api, u, scheduleId, [a.id]);
		const res = await pay(api, u, held.body.id);
		expect(res.status).toBe(402);
		expect(res.body.type).toBe("INSUFFICIENT_POINTS");
		expect((await reservation(api, u, held.body.id)).status).toBe("PENDING");
		expect((await seats(api, scheduleId))[0].status).toBe("HELD");
		expect(await balance(api, u)).toBe(4999);

		// Top up and pay again with a new key: it goes through.
		await http("POST", `${api}/points/charge`, { token: u.token, body: { amount: 1 }, headers: { "idempotency-key": "topup" } });
		const retry = await pay(api, u, held.body.id, "second-try");
		expect(retry.status).toBe(201);
		expect(await balance(api, u)).toBe(0);
	});

	it("when someone else's reservation is read, paid or cancelled, then 404 as if it did not exist", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 100);
		const owner = await shopper(api, concertId, 1000);
		const other = await shopper(api, concertId, 1000);
		const held = await reserve(api, owner, scheduleId, [(await seats(api, scheduleId))[0].id]);
		expect((await http("GET", `${api}/reservations/${held.body.id}`, { token: other.token })).status).toBe(404);
		expect((await pay(api, other, held.body.id)).status).toBe(404);
		expect((await http("POST", `${api}/reservations/${held.body.id}/cancel`, { token: other.token, headers: { "idempotency-key": "x" } })).status).toBe(
			404
		);
		const mine = await http("GET", `${api}/reservations`, { token: other.token });
		expect(mine.body.total).toBe(0);
		expect(await balance(api, owner)).toBe(1000);
		expect((await reservation(api, owner, held.body.id)).status).toBe("PENDING");
	});

	it("when the waiting-room token is missing, foreign or for another concert, then 403 and nothing is held", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 100);
		const other = await ownConcert(api, admin, 1, 4, 100);
		const u = await shopper(api, concertId, 1000);
		const v = await shopper(api, other.concertId, 1000);
		const seat = (await seats(api, scheduleId))[0].id;
		const none = await http("POST", `${api}/reservations`, { token: u.token, body: { scheduleId, seatIds: [seat] } });
		const foreign = await http("POST", `${api}/reservations`, {
			token: u.token,
			body: { scheduleId, seatIds: [seat] },
			headers: { "x-queue-token": v.queueToken }
		});
		for (const r of [none, foreign]) {
			expect(r.status).toBe(403);
			expect(r.body.type).toBe("QUEUE_TOKEN_NOT_ACTIVE");
		}
		expect((await seats(api, scheduleId))[0].status).toBe("AVAILABLE");
	});

	it("when the request is malformed, then 422 and nothing is held", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 6, 100);
		const u = await shopper(api, concertId, 1000);
		const ids = (await seats(api, scheduleId)).map(s => s.id);
		for (const seatIds of [[], ids.slice(0, 5), [ids[0], ids[0]]]) {
			const r = await reserve(api, u, scheduleId, seatIds);
			expect({ n: seatIds.length, status: r.status, type: r.body.type }).toEqual({ n: seatIds.length, status: 422, type: "VALIDATION_ERROR" });
		}
		expect((await seats(api, scheduleId)).every(s => s.status === "AVAILABLE")).toBe(true);
	});
});

describe.each([
	["embedded", false],
	["cluster: three brokers over NATS, MariaDB, Redis", true]
])("booking under faults (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let api: string;
	let admin: string;
	let gateway: ServiceBroker;
	const faults = new Faults();

	beforeAll(async () => {
		env = testEnv({ cluster, env: ADMIN });
		gateway = await startPlatform(env, faults, cluster);
		api = gatewayUrl(gateway);
		admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
	}, 120_000);
	afterEach(() => faults.clear());
	afterAll(() => env.cleanup(), 60_000);

	async function bookOne(price = 2000): Promise<{ u: Shopper; scheduleId: string; seatId: string; id: string }> {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, price);
		const u = await shopper(api, concertId, 10_000);
		const seatId = (await seats(api, scheduleId))[0].id;
		const held = await reserve(api, u, scheduleId, [seatId]);
		expect(held.status).toBe(201);
		return { u, scheduleId, seatId, id: held.body.id };
	}

	async function tokenActive(u: Shopper): Promise<boolean> {
		const r = await http("GET", `${api}/queue/tokens/${u.queueToken}`, { token: u.token });
		return r.status === 200 && r.body.status === "ACTIVE";
	}

	async function paymentsVerified(): Promise<void> {
		const report = await gateway.call<{ ok: boolean }, Record<string, never>>("payment.verify", {});
		expect(report.ok).toBe(true);
	}

	it("when step 2 (confirm) fails, then the payment is refunded and the reservation is PENDING with seats held", async () => {
		const b = await bookOne();
		faults.fail("reservation.confirm", injected);
		const res = await pay(api, b.u, b.id);
		expect(res.status).toBe(409);
		expect(res.body.type).toBe("INJECTED_FAULT");
		expect(await balance(api, b.u)).toBe(10_000);
		expect((await reservation(api, b.u, b.id)).status).toBe("PENDING");
		expect((await seats(api, b.scheduleId))[0].status).toBe("HELD");
		expect(await tokenActive(b.u)).toBe(true);
		await paymentsVerified();
	});

	it("when step 3 (sell seats) fails, then the reservation is cancelled, refunded, and its seats are free", async () => {
		const b = await bookOne();
		faults.fail("concert.confirmSeats", injected);
		const res = await pay(api, b.u, b.id);
		expect(res.status).toBe(409);
		expect(await balance(api, b.u)).toBe(10_000);
		expect((await reservation(api, b.u, b.id)).status).toBe("CANCELLED");
		expect((await seats(api, b.scheduleId))[0].status).toBe("AVAILABLE");
		await paymentsVerified();
	});

	it("when step 4 (expire token) fails, then seats are re-held and released, the reservation cancelled and refunded", async () => {
		const b = await bookOne();
		faults.fail("queue.expire", injected);
		const res = await pay(api, b.u, b.id);
		expect(res.status).toBe(409);
		expect(await balance(api, b.u)).toBe(10_000);
		expect((await reservation(api, b.u, b.id)).status).toBe("CANCELLED");
		expect((await seats(api, b.scheduleId))[0].status).toBe("AVAILABLE");
		// Seed scenario 1: no CONFIRMED booking exists beside the still-live token, so it cannot book twice.
		const mine = await http("GET", `${api}/reservations`, { token: b.u.token });
		expect(mine.body.rows.filter((r: { status: string }) => r.status === "CONFIRMED")).toHaveLength(0);
		await paymentsVerified();
	});

	it("when a step after the refund keeps failing, then the cancellation parks FAILED for an operator, never back to CONFIRMED", async () => {
		const b = await bookOne(1200);
		expect((await pay(api, b.u, b.id)).status).toBe(201);
		faults.fail("concert.releaseSold", injected);
		const res = await http("POST", `${api}/reservations/${b.id}/cancel`, { token: b.u.token, headers: { "idempotency-key": "stuck" } });
		expect(res.status).toBe(202);
		expect(res.body.status).toBe("FAILED");
		// Refunded, seats still sold, the reservation held in CANCELLING: nothing was undone past the pivot.
		expect(await balance(api, b.u)).toBe(10_000);
		expect((await reservation(api, b.u, b.id)).status).toBe("CANCELLING");
		const letters = await http("GET", `${api}/admin/dead-letters`, { token: admin });
		expect(JSON.stringify(letters.body)).toContain(res.body.sagaId);

		// The operator fixes the cause and retries the saga: it finishes the cancellation once.
		faults.clear();
		const retry = await http("POST", `${api}/admin/sagas/${res.body.sagaId}/retry`, { token: admin });
		expect(retry.status).toBe(202);
		await waitFor(async () => (await reservation(api, b.u, b.id)).status === "CANCELLED", 15_000, "the retried cancellation");
		expect(await balance(api, b.u)).toBe(10_000);
		expect((await seats(api, b.scheduleId))[0].status).toBe("AVAILABLE");
		await paymentsVerified();
	}, 30_000);

	it("when the payment commits but answers after the step timeout, then it is retried under its key: one debit, confirmed", async () => {
		const b = await bookOne(2500);
		faults.delayAfter("payment.pay", 3500, { times: 1 });
		const res = await pay(api, b.u, b.id);
		expect(res.status).toBe(201);
		expect(faults.calls.get("payment.pay")).toBeGreaterThanOrEqual(2);
		expect(await balance(api, b.u)).toBe(7500);
		const list = await http("GET", `${api}/payments`, { token: b.u.token });
		expect(list.body.rows ?? list.body).toHaveLength(1);
		expect((await reservation(api, b.u, b.id)).status).toBe("CONFIRMED");
		await paymentsVerified();
	}, 30_000);

	it("when pay is double-clicked with one key, then one saga and one debit", async () => {
		const b = await bookOne(1000);
		const results = await Promise.all(Array.from({ length: 5 }, () => pay(api, b.u, b.id, "double-click")));
		const created = results.filter(r => r.status === 201);
		expect(created.length).toBeGreaterThanOrEqual(1);
		for (const r of results) expect([201, 409]).toContain(r.status);
		for (const r of results.filter(x => x.status === 409)) expect(r.body.type).toBe("IDEMPOTENCY_KEY_IN_PROGRESS");
		expect(new Set(created.map(r => r.body.id)).size).toBe(1);
		expect(await balance(api, b.u)).toBe(9000);
	});

	it("when pay is sent with different keys at once, then one payment and the others are told it is not payable", async () => {
		const b = await bookOne(1000);
		const results = await Promise.all(Array.from({ length: 5 }, (_, i) => pay(api, b.u, b.id, `key-${i}`)));
		expect(results.filter(r => r.status === 201)).toHaveLength(1);
		for (const r of results.filter(x => x.status !== 201)) {
			expect(r.status).toBe(409);
			expect(r.body.type).toBe("RESERVATION_NOT_PAYABLE");
		}
		expect(await balance(api, b.u)).toBe(9000);
		await paymentsVerified();
	});

	it("when a hold expires while payments race the sweeper, then each reservation is paid or expired, never both", async () => {
		const short = testEnv({ cluster, env: { ...ADMIN, HOLD_TTL_SEC: "2" } });
		try {
			// Each debit answers 800 ms late, so reservations paid just before expiry are still PAYING when their
			// hold runs out and the sweeper comes by: it must leave them to the payment.
			const slowPay = new Faults();
			slowPay.delayAfter("payment.pay", 800);
			const shortApi = gatewayUrl(await startPlatform(short, slowPay, cluster));
			const shortAdmin = await adminToken(shortApi, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
			const { concertId, scheduleId } = await ownConcert(shortApi, shortAdmin, 1, 8, 1000);
			const ids = (await seats(shortApi, scheduleId)).map(s => s.id);
			const users = await Promise.all(ids.map(() => shopper(shortApi, concertId, 5000)));
			const held = await Promise.all(users.map((u, i) => reserve(shortApi, u, scheduleId, [ids[i]])));
			const expiresAt = new Date(held[0].body.expiresAt).getTime();
			// Pay at staggered moments around the expiry while the sweeper runs on its own.
			await Promise.all(
				users.map(async (u, i) => {
					const at = expiresAt - 400 + i * 100;
					await new Promise(r => setTimeout(r, Math.max(0, at - Date.now())));
					return pay(shortApi, u, held[i].body.id);
				})
			);
			await waitFor(
				async () => {
					const all = await Promise.all(users.map((u, i) => reservation(shortApi, u, held[i].body.id)));
					return all.every(r => r.status === "CONFIRMED" || r.status === "EXPIRED");
				},
				20_000,
				"every reservation to settle"
			);
			const seatStatus = new Map((await seats(shortApi, scheduleId)).map(s => [s.id, s.status]));
			for (let i = 0; i < users.length; i++) {
				const r = await reservation(shortApi, users[i], held[i].body.id);
				const bal = await balance(shortApi, users[i]);
				if (r.status === "CONFIRMED") {
					expect({ i, bal, seat: seatStatus.get(ids[i]), payment: r.payment?.status }).toEqual({ i, bal: 4000, seat: "SOLD", payment: "COMPLETED" });
				} else {
					expect({ i, status: r.status, bal, seat: seatStatus.get(ids[i]) }).toEqual({ i, status: "EXPIRED", bal: 5000, seat: "AVAILABLE" });
				}
			}
			// Both outcomes happened: the boundary was really raced (payments sent before it, some after).
			const statuses = await Promise.all(users.map((u, i) => reservation(shortApi, u, held[i].body.id).then(r => r.status)));
			expect(statuses).toContain("CONFIRMED");
			expect(statuses).toContain("EXPIRED");
		} finally {
			await short.cleanup();
		}
	}, 90_000);
});
