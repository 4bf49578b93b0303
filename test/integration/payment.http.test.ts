/**
 * Points and payments over HTTP through the gateway (docs/API.md, Points; Reservations and payments: the GET routes),
 * in both run modes: embedded (SQLite, in-process) and cluster (MariaDB, Redis, NATS). Debits come from the saga's
 * side (`payment.pay`), since POST /api/payments belongs to reservations.
 */
import type { ServiceBroker } from "moleculer";
import { acquireEventBus, releaseEventBus, type EventMessage, type Subscription } from "../../lib/events";
import { gatewayUrl, waitFor, http, testEnv, type TestEnv } from "../support/harness";

const modes: [string, boolean][] = [
	["embedded", false],
	["cluster", true]
];

describe.each(modes)("points and payments over HTTP (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let broker: ServiceBroker;
	let api: string;
	let n = 0;
	let listener: ServiceBroker;
	let subscription: Subscription;
	/** Every payment event the outbox relay published, by event id (delivery is at least once). */
	const events = new Map<string, EventMessage>();

	beforeAll(async () => {
		env = testEnv({ cluster });
		broker = await env.broker(["api", "user", "payment"]);
		api = gatewayUrl(broker);
		// A consumer group as the notification or ranking context would have one (same node in embedded mode).
		listener = cluster ? await env.broker([]) : broker;
		subscription = await acquireEventBus(listener).subscribe({
			group: "payment-http-test",
			types: ["points.charged", "points.deducted", "payment.completed", "payment.refunded"],
			handler: async event => {
				events.set(event.id, event);
			}
		});
	}, 90_000);

	afterAll(async () => {
		await subscription?.stop();
		if (listener) await releaseEventBus(listener);
		await env.cleanup();
	}, 60_000);

	/** A fresh registered user and their access token. */
	async function login(): Promise<{ id: string; token: string }> {
		const email = `wallet${++n}@example.com`;
		const reg = await http("POST", `${api}/auth/register`, { body: { email, password: "correct horse", name: "W" } });
		const log = await http("POST", `${api}/auth/login`, { body: { email, password: "correct horse" } });
		return { id: reg.body.id, token: log.body.accessToken };
	}
	const chargeReq = (token: string, body: unknown, key?: string) =>
		http("POST", `${api}/points/charge`, { token, body, headers: key === undefined ? {} : { "idempotency-key": key } });
	const balanceOf = async (token: string) => (await http("GET", `${api}/points`, { token })).body.balance;

	it("when a user charges with a key, then the balance, the ledger and a replay answer per docs/API.md", async () => {
		const me = await login();
		expect(await http("GET", `${api}/points`, { token: me.token })).toMatchObject({ status: 200, body: { userId: me.id, balance: 0 } });

		const first = await chargeReq(me.token, { amount: 5000 }, "charge-1");
		expect(first.status).toBe(200);
		expect(first.body).toEqual({ userId: me.id, balance: 5000, transactionId: expect.any(String) });

		const replay = await chargeReq(me.token, { amount: 5000 }, "charge-1");
		expect(replay.status).toBe(200);
		expect(replay.body).toEqual(first.body);
		expect(await balanceOf(me.token)).toBe(5000);

		const tx = await http("GET", `${api}/points/transactions`, { token: me.token });
		expect(tx.status).toBe(200);
		expect(tx.body).toEqual({
			rows: [{ id: first.body.transactionId, type: "CHARGE", amount: 5000, balanceAfter: 5000, createdAt: expect.any(String) }],
			page: 1,
			pageSize: 20,
			total: 1
		});
		expect(Number.isNaN(Date.parse(tx.body.rows[0].createdAt))).toBe(false);
	});

	it("when the Idempotency-Key is missing or malformed, then 400 and no credit", async () => {
		const me = await login();
		const missing = await chargeReq(me.token, { amount: 100 });
		expect(missing.status).toBe(400);
		expect(missing.body).toMatchObject({ code: 400, type: "IDEMPOTENCY_KEY_REQUIRED" });
		const tooLong = await chargeReq(me.token, { amount: 100 }, "k".repeat(256));
		expect(tooLong.status).toBe(400);
		expect(tooLong.body.type).toBe("IDEMPOTENCY_KEY_INVALID");
		expect(await balanceOf(me.token)).toBe(0);
	});

	it("when the same key comes with another amount, then 422 IDEMPOTENCY_KEY_REUSED and one credit", async () => {
		const me = await login();
		await chargeReq(me.token, { amount: 700 }, "k");
		const reused = await chargeReq(me.token, { amount: 701 }, "k");
		expect(reused.status).toBe(422);
		expect(reused.body.type).toBe("IDEMPOTENCY_KEY_REUSED");
		expect(await balanceOf(me.token)).toBe(700);
	});

	it("when 10 identical charges race over HTTP, then exactly one credit; the others replay it or answer 409", async () => {
		// The gateway's idempotency layer answers 409 IDEMPOTENCY_KEY_IN_PROGRESS while the first request runs; the
		// action's own key (tested without the gateway in payment.test.ts) is the guard behind it.
		const me = await login();
		const results = await Promise.all(Array.from({ length: 10 }, () => chargeReq(me.token, { amount: 1234 }, "double-click")));
		const ok = results.filter(r => r.status === 200);
		const busy = results.filter(r => r.status !== 200);
		expect(ok.length).toBeGreaterThanOrEqual(1);
		expect(busy.map(r => [r.status, r.body.type])).toEqual(Array(busy.length).fill([409, "IDEMPOTENCY_KEY_IN_PROGRESS"]));
		expect(new Set(ok.map(r => r.body.transactionId)).size).toBe(1);
		const after = await chargeReq(me.token, { amount: 1234 }, "double-click");
		expect(after.body).toEqual(ok[0].body);
		expect(await balanceOf(me.token)).toBe(1234);
	});

	it("when the amount is out of range or not an integer, then 422 VALIDATION_ERROR names it and nothing changes", async () => {
		const me = await login();
		for (const amount of [0, -5, 10_000_001, 1.5, "100", null]) {
			const res = await chargeReq(me.token, { amount }, `bad-${String(amount)}`);
			expect({ amount, status: res.status, type: res.body.type }).toEqual({ amount, status: 422, type: "VALIDATION_ERROR" });
			expect(res.body.data.map((d: { field: string }) => d.field)).toEqual(["amount"]);
		}
		expect((await chargeReq(me.token, { amount: 10_000_000 }, "max")).status).toBe(200);
		expect(await balanceOf(me.token)).toBe(10_000_000);
	});

	it("when the body names another user, then the caller's own wallet is charged", async () => {
		const me = await login();
		const other = await login();
		const res = await chargeReq(me.token, { amount: 50, userId: other.id }, "sneaky");
		expect(res.body.userId).toBe(me.id);
		expect(await balanceOf(me.token)).toBe(50);
		expect(await balanceOf(other.token)).toBe(0);
	});

	it("when a saga pays and refunds, then the owner sees the payment and the ledger; anyone else gets 404", async () => {
		const me = await login();
		const other = await login();
		await chargeReq(me.token, { amount: 1000 }, "c");
		const paid = await broker.call<{ id: string }, Record<string, unknown>>("payment.pay", {
			sagaId: `saga-${me.id}`,
			reservationId: "res-1",
			userId: me.id,
			amount: 300
		});

		const list = await http("GET", `${api}/payments`, { token: me.token });
		expect(list.status).toBe(200);
		expect(list.body).toMatchObject({ page: 1, pageSize: 20, total: 1 });
		expect(list.body.rows).toEqual([{ id: paid.id, reservationId: "res-1", amount: 300, status: "COMPLETED", createdAt: expect.any(String) }]);

		const one = await http("GET", `${api}/payments/${paid.id}`, { token: me.token });
		expect(one.status).toBe(200);
		expect(one.body).toEqual(list.body.rows[0]);

		const foreign = await http("GET", `${api}/payments/${paid.id}`, { token: other.token });
		const missing = await http("GET", `${api}/payments/no-such-payment`, { token: other.token });
		expect(foreign.status).toBe(404);
		expect(foreign.body.type).toBe("NOT_FOUND");
		expect(missing.status).toBe(404);
		expect(foreign.body.message).toBe(missing.body.message);
		expect((await http("GET", `${api}/payments`, { token: other.token })).body.total).toBe(0);

		await broker.call("payment.refund", { sagaId: `saga-${me.id}`, reason: "cancelled" });
		expect((await http("GET", `${api}/payments/${paid.id}`, { token: me.token })).body).toMatchObject({
			status: "REFUNDED",
			refundedAt: expect.any(String)
		});
		const tx = await http("GET", `${api}/points/transactions?page=1&pageSize=2`, { token: me.token });
		expect(tx.body.total).toBe(3);
		expect(tx.body.rows.map((r: { type: string; amount: number; balanceAfter: number }) => [r.type, r.amount, r.balanceAfter])).toEqual([
			["REFUND", 300, 1000],
			["PAYMENT", 300, 700]
		]);
		expect((await http("GET", `${api}/points/transactions?pageSize=101`, { token: me.token })).status).toBe(422);
	});

	it("when points move, then the outbox relay publishes each event once with its payload", async () => {
		const me = await login();
		const charged = await chargeReq(me.token, { amount: 900 }, "evt");
		const sagaId = `evt-${me.id}`;
		const paid = await broker.call<{ id: string }, Record<string, unknown>>("payment.pay", {
			sagaId,
			reservationId: "res-evt",
			userId: me.id,
			amount: 400
		});
		await broker.call("payment.refund", { sagaId, reason: "cancelled" });
		const mine = () => [...events.values()].filter(e => e.aggregateId === me.id || e.aggregateId === paid.id);
		await waitFor(() => mine().length === 4, 10_000, "four payment events");
		const byType = Object.fromEntries(mine().map(e => [e.type, e]));
		expect(byType["points.charged"]).toMatchObject({
			aggregateType: "wallet",
			aggregateId: me.id,
			version: 1,
			payload: { userId: me.id, transactionId: charged.body.transactionId, amount: 900, balanceAfter: 900 }
		});
		expect(byType["points.deducted"]).toMatchObject({
			aggregateId: me.id,
			version: 2,
			payload: { userId: me.id, paymentId: paid.id, amount: 400, balanceAfter: 500 }
		});
		expect(byType["payment.completed"]).toMatchObject({
			aggregateType: "payment",
			aggregateId: paid.id,
			version: 1,
			payload: { paymentId: paid.id, sagaId, reservationId: "res-evt", userId: me.id, amount: 400 }
		});
		expect(byType["payment.refunded"]).toMatchObject({
			aggregateId: paid.id,
			version: 2,
			payload: { paymentId: paid.id, sagaId, amount: 400, balanceAfter: 900, reason: "cancelled" }
		});
	});

	it("when no token is sent, then every points and payments route answers 401", async () => {
		const routes: [string, string][] = [
			["GET", "/points"],
			["POST", "/points/charge"],
			["GET", "/points/transactions"],
			["GET", "/payments"],
			["GET", "/payments/x"]
		];
		for (const [method, path] of routes) {
			const res = await http(method, `${api}${path}`, method === "POST" ? { body: { amount: 1 }, headers: { "idempotency-key": "k" } } : {});
			expect({ path, status: res.status, type: res.body.type }).toEqual({ path, status: 401, type: "UNAUTHORIZED" });
		}
	});

	it("when the internal actions are asked for over HTTP, then 404", async () => {
		for (const path of ["/payment/pay", "/payment.pay", "/payment/refund", "/payment/verify"]) {
			const res = await http("POST", `${api}${path}`, { body: { sagaId: "s", userId: "u", reservationId: "r", amount: 1 } });
			expect({ path, status: res.status }).toEqual({ path, status: 404 });
		}
	});

	it("when everything above has run, then verify finds every invariant intact", async () => {
		const result = await broker.call<{ ok: boolean; checks: { ok: boolean }[] }>("payment.verify");
		expect(result.ok).toBe(true);
		expect(result.checks).toHaveLength(4);
	});
});
