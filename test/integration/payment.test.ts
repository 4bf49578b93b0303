/**
 * The wallet's invariants on the real servers: two payment nodes and a caller node talking over NATS, one MariaDB
 * schema, racing callers. Counts are exact and every test ends with the ledger's own `verify` and direct SQL.
 */
import type { ServiceBroker } from "moleculer";
import type mysql from "mysql2/promise";
import { physicalDatabaseName } from "../../lib/db";
import { testEnv, waitFor, type TestEnv } from "../support/harness";
import { mariadb, scalar } from "../support/payment";

/**
 * A caller that gives up after 400 ms and does not retry by itself. Not tracked: the broker would otherwise wait
 * for the abandoned remote request at shutdown (moleculer keeps a timed-out remote call in its tracker).
 */
const TIMES_OUT = { timeout: 400, retries: 0, tracking: false };

interface Payment {
	id: string;
	sagaId: string;
	amount: number;
	status: string;
	createdAt: string;
}

describe("payments on MariaDB across nodes (cluster)", () => {
	let env: TestEnv;
	let caller: ServiceBroker;
	let sql: mysql.Connection;
	let n = 0;
	const user = () => `pay-user-${++n}`;

	beforeAll(async () => {
		env = testEnv({ cluster: true });
		await Promise.all([env.broker(["payment"], { nodeID: `${env.id}-pay-a` }), env.broker(["payment"], { nodeID: `${env.id}-pay-b` })]);
		caller = await env.broker([], { nodeID: `${env.id}-caller` });
		await waitFor(
			() => caller.registry.getServiceList({ onlyAvailable: true }).filter(s => s.name === "payment").length === 2,
			20_000,
			"both payment nodes"
		);
		sql = await mariadb(physicalDatabaseName(env.config.sql, "payment"));
	}, 90_000);

	afterAll(async () => {
		await sql?.end();
		await env.cleanup();
	}, 60_000);

	const meta = (userId: string, idempotencyKey?: string) => ({ user: { id: userId, email: `${userId}@example.com`, role: "user" }, idempotencyKey });
	const charge = (userId: string, amount: number, key: string) =>
		caller.call<{ userId: string; balance: number; transactionId: string }, { amount: number }>("payment.charge", { amount }, { meta: meta(userId, key) });
	const pay = (userId: string, sagaId: string, amount: number, opts: { timeout?: number; retries?: number; tracking?: boolean; nodeID?: string } = {}) =>
		caller.call<Payment, Record<string, unknown>>("payment.pay", { sagaId, reservationId: `res-${sagaId}`, userId, amount }, opts);
	const balance = async (userId: string) => (await caller.call<{ balance: number }, object>("payment.balance", {}, { meta: meta(userId) })).balance;
	const rows = (userId: string, type: string) => scalar(sql, "SELECT COUNT(*) FROM point_transactions WHERE user_id = ? AND type = ?", [userId, type]);
	const verify = () => caller.call<{ ok: boolean; checks: { name: string; ok: boolean }[] }>("payment.verify");
	/** Transactions of the payment nodes blocked on a row lock right now (InnoDB's own view of it). */
	const lockWaits = () =>
		scalar(
			sql,
			"SELECT COUNT(*) FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id WHERE t.trx_state = 'LOCK WAIT' AND p.DB = ?",
			[physicalDatabaseName(env.config.sql, "payment")]
		);
	/** InnoDB refreshes INNODB_TRX only when it was left unread for 100 ms: polled faster, it never changes. */
	const LOCK_POLL_MS = 200;

	it("when 50 debits race on a wallet that affords 20, then exactly 20 succeed and the balance ends at 0", async () => {
		const u = user();
		await charge(u, 2000, "seed");
		const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => pay(u, `race-${u}-${i}`, 100)));
		const ok = results.filter(r => r.status === "fulfilled");
		const rejected = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
		expect(ok).toHaveLength(20);
		expect(rejected.map(r => [r.reason.code, r.reason.type, r.reason.retryable])).toEqual(Array(30).fill([402, "INSUFFICIENT_POINTS", false]));
		expect(await balance(u)).toBe(0);
		expect(await rows(u, "PAYMENT")).toBe(20);
		expect(await scalar(sql, "SELECT COUNT(*) FROM payments WHERE user_id = ?", [u])).toBe(20);
		expect(await scalar(sql, "SELECT MIN(balance_after) FROM point_transactions WHERE user_id = ?", [u])).toBe(0);
		expect(await scalar(sql, "SELECT COUNT(*) FROM outbox_events WHERE event_type = 'points.deducted' AND aggregate_id = ?", [u])).toBe(20);
		expect((await verify()).ok).toBe(true);
	});

	it("when one saga id is paid 10 times at once, then one debit and every caller gets the same payment", async () => {
		const u = user();
		await charge(u, 1000, "seed");
		const results = await Promise.all(Array.from({ length: 10 }, () => pay(u, `dup-${u}`, 300)));
		expect(new Set(results.map(p => p.id)).size).toBe(1);
		expect(results[0]).toMatchObject({ sagaId: `dup-${u}`, amount: 300, status: "COMPLETED" });
		expect(await balance(u)).toBe(700);
		expect(await rows(u, "PAYMENT")).toBe(1);
		expect(await scalar(sql, "SELECT COUNT(*) FROM outbox_events WHERE event_type = 'payment.completed' AND aggregate_id = ?", [results[0].id])).toBe(1);
	});

	it("when one saga id races 10 times on a wallet that cannot afford it, then all get 402 and nothing is written", async () => {
		// After the first attempt rolls back, InnoDB hands the waiting duplicates their chance together, and may pick
		// deadlock victims among them: the ledger retries those transactions whole (the caller's own retries are off
		// here, so this proves the service does it), never surfacing a 500 or a 503.
		const u = user();
		await charge(u, 100, "seed");
		const results = await Promise.allSettled(Array.from({ length: 10 }, () => pay(u, `poor-${u}`, 101, { retries: 0 })));
		const reasons = results.map(r => (r.status === "rejected" ? r.reason.type : "PAID"));
		expect(reasons).toEqual(Array(10).fill("INSUFFICIENT_POINTS"));
		expect(await balance(u)).toBe(100);
		expect(await scalar(sql, "SELECT COUNT(*) FROM payments WHERE saga_id = ?", [`poor-${u}`])).toBe(0);
		expect(await rows(u, "PAYMENT")).toBe(0);
	});

	it("when a refund is asked 10 times at once, then one credit and every answer names the payment", async () => {
		const u = user();
		await charge(u, 1000, "seed");
		const p = await pay(u, `ref-${u}`, 400);
		const results = await Promise.all(Array.from({ length: 10 }, () => caller.call("payment.refund", { sagaId: p.sagaId, reason: "compensation" })));
		for (const r of results) expect(r).toEqual({ refunded: true, paymentId: p.id, amount: 400 });
		expect(await balance(u)).toBe(1000);
		expect(await rows(u, "REFUND")).toBe(1);
		expect(await caller.call("payment.getBySaga", { sagaId: p.sagaId })).toMatchObject({ id: p.id, status: "REFUNDED" });
		await expect(pay(u, p.sagaId, 400)).rejects.toMatchObject({ code: 409, type: "PAYMENT_VOIDED" });
		expect(await balance(u)).toBe(1000);
	});

	it("when the caller times out while the debit waits and commits, then the retry gets the same payment and one debit", async () => {
		const u = user();
		await charge(u, 1000, "seed");
		const sagaId = `slow-${u}`;
		// Another connection holds the wallet's row lock: the debit blocks inside its transaction.
		const lock = await mariadb(physicalDatabaseName(env.config.sql, "payment"));
		try {
			await lock.query("START TRANSACTION");
			await lock.query("SELECT balance FROM wallets WHERE user_id = ? FOR UPDATE", [u]);
			const timedOut = await pay(u, sagaId, 250, TIMES_OUT).catch(e => e);
			expect(timedOut).toMatchObject({ type: "REQUEST_TIMEOUT", retryable: true });
			// The retry arrives while the first attempt still holds its uncommitted payment row.
			const retryWhileBlocked = pay(u, sagaId, 250);
			// Both wait: the first attempt on the wallet's row lock, the retry on the first one's payment row.
			await waitFor(async () => (await lockWaits()) === 2, 10_000, "the retry to wait behind the first attempt", LOCK_POLL_MS);
			expect(await scalar(sql, "SELECT COUNT(*) FROM payments WHERE saga_id = ?", [sagaId])).toBe(0);
			await lock.query("COMMIT");
			const retried = await retryWhileBlocked;
			const late = await pay(u, sagaId, 250);
			expect(late).toEqual(retried);
			expect(await caller.call("payment.getBySaga", { sagaId })).toMatchObject({ id: retried.id, status: "COMPLETED" });
		} finally {
			await lock.end();
		}
		expect(await balance(u)).toBe(750);
		expect(await rows(u, "PAYMENT")).toBe(1);
	});

	it("when the caller times out and the saga compensates while the debit is still blocked, then the money comes back", async () => {
		const u = user();
		await charge(u, 1000, "seed");
		const sagaId = `comp-${u}`;
		const lock = await mariadb(physicalDatabaseName(env.config.sql, "payment"));
		try {
			await lock.query("START TRANSACTION");
			await lock.query("SELECT balance FROM wallets WHERE user_id = ? FOR UPDATE", [u]);
			await expect(pay(u, sagaId, 600, TIMES_OUT)).rejects.toMatchObject({ type: "REQUEST_TIMEOUT" });
			const refund = caller.call("payment.refund", { sagaId, reason: "payment step timed out" });
			// Both wait: the debit on the wallet's row lock, the refund's void on the debit's payment row.
			await waitFor(async () => (await lockWaits()) === 2, 10_000, "the refund to wait behind the debit", LOCK_POLL_MS);
			await lock.query("COMMIT");
			// The refund waited for the debit's transaction, then refunded what it committed.
			expect(await refund).toMatchObject({ refunded: true, amount: 600 });
		} finally {
			await lock.end();
		}
		await waitFor(async () => (await rows(u, "REFUND")) === 1, 5000, "the refund");
		expect(await balance(u)).toBe(1000);
		expect(await rows(u, "PAYMENT")).toBe(1);
		await expect(pay(u, sagaId, 600)).rejects.toMatchObject({ type: "PAYMENT_VOIDED" });
	});

	it("when the refund runs before any payment, then the saga is voided and a late pay debits nothing", async () => {
		const u = user();
		await charge(u, 1000, "seed");
		const sagaId = `void-${u}`;
		expect(await caller.call("payment.refund", { sagaId, reason: "x".repeat(5000) })).toEqual({ refunded: false });
		await expect(pay(u, sagaId, 100)).rejects.toMatchObject({ code: 409, type: "PAYMENT_VOIDED", retryable: false });
		expect(await balance(u)).toBe(1000);
	});

	it("when a charge is sent 10 times at once with one key, then one credit; another amount under it is 422", async () => {
		const u = user();
		const results = await Promise.all(Array.from({ length: 10 }, () => charge(u, 5000, "charge-key")));
		expect(new Set(results.map(r => r.transactionId)).size).toBe(1);
		expect(results.every(r => r.balance === 5000)).toBe(true);
		expect(await charge(u, 5000, "charge-key")).toEqual(results[0]);
		await expect(charge(u, 4000, "charge-key")).rejects.toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
		expect(await balance(u)).toBe(5000);
		expect(await rows(u, "CHARGE")).toBe(1);
		expect(await scalar(sql, "SELECT COUNT(*) FROM outbox_events WHERE event_type = 'points.charged' AND aggregate_id = ?", [u])).toBe(1);
	});

	it("when 20 different charges race on a wallet that does not exist yet, then all 20 land once", async () => {
		const u = user();
		const results = await Promise.all(
			Array.from({ length: 20 }, (_, i) =>
				caller.call<{ balance: number }, { amount: number }>("payment.charge", { amount: 10 + i }, { meta: meta(u, `k${i}`), retries: 0 })
			)
		);
		const total = Array.from({ length: 20 }, (_, i) => 10 + i).reduce((a, b) => a + b, 0);
		expect(Math.max(...results.map(r => r.balance))).toBe(total);
		expect(new Set(results.map(r => r.balance)).size).toBe(20);
		expect(await balance(u)).toBe(total);
		expect(await rows(u, "CHARGE")).toBe(20);
		expect(await scalar(sql, "SELECT COUNT(*) FROM wallets WHERE user_id = ?", [u])).toBe(1);
	});

	it("when verify runs while money moves, then it reads one consistent snapshot and reports no false offender", async () => {
		const u = user();
		await charge(u, 100_000, "seed");
		let moving = true;
		const debits = Promise.allSettled(Array.from({ length: 60 }, (_, i) => pay(u, `live-${u}-${i}`, 7))).finally(() => (moving = false));
		const verdicts: boolean[] = [];
		while (moving || verdicts.length < 3) verdicts.push((await verify()).ok);
		await debits;
		expect(verdicts.every(ok => ok)).toBe(true);
		expect(await balance(u)).toBe(100_000 - 60 * 7);
	});

	it("when the payment node is killed mid-debit, then nothing was half-written and the retry on another node debits once", async () => {
		const doomed = await env.spawn(["payment"], { nodeID: `${env.id}-pay-doomed` });
		await waitFor(() => caller.registry.getNodeList({ onlyAvailable: true }).some(n => n.id === doomed.nodeID), 20_000, "the doomed node");
		const u = user();
		await charge(u, 1000, "seed");
		const sagaId = `crash-${u}`;
		let killedAt = 0;
		const lock = await mariadb(physicalDatabaseName(env.config.sql, "payment"));
		try {
			await lock.query("START TRANSACTION");
			await lock.query("SELECT balance FROM wallets WHERE user_id = ? FOR UPDATE", [u]);
			await expect(pay(u, sagaId, 250, { ...TIMES_OUT, nodeID: doomed.nodeID })).rejects.toMatchObject({ type: "REQUEST_TIMEOUT" });
			// The debit is inside its transaction on the doomed node (payment row written, waiting for the wallet).
			await doomed.kill();
			killedAt = Date.now();
			await lock.query("COMMIT");
		} finally {
			await lock.end();
		}
		// What the caller's registry does by itself once the dead node misses its heartbeats (15 s), done now so the
		// following calls are not routed to a corpse.
		(caller.registry as unknown as { nodes: { disconnected(id: string, unexpected: boolean): void } }).nodes.disconnected(doomed.nodeID, true);
		const retried = await pay(u, sagaId, 250, { nodeID: `${env.id}-pay-a` });
		expect(retried).toMatchObject({ sagaId, amount: 250, status: "COMPLETED" });
		// The payment is the retry's own: the doomed node's transaction (begun before the kill) was rolled back.
		expect(Date.parse(retried.createdAt)).toBeGreaterThanOrEqual(killedAt);
		expect(await pay(u, sagaId, 250, { nodeID: `${env.id}-pay-b` })).toEqual(retried);
		expect(await balance(u)).toBe(750);
		expect(await rows(u, "PAYMENT")).toBe(1);
		expect(await scalar(sql, "SELECT COUNT(*) FROM payments WHERE saga_id = ?", [sagaId])).toBe(1);
	}, 60_000);

	it("when rows are tampered with on MariaDB, then verify names the offenders; put back, it passes", async () => {
		const u = user();
		await charge(u, 100, "seed");
		const p = await pay(u, `tamper-${u}`, 40);
		await sql.query("UPDATE wallets SET balance = balance + 1 WHERE user_id = ?", [u]);
		await sql.query("UPDATE point_transactions SET balance_after = -1 WHERE payment_id = ?", [p.id]);
		await sql.query("UPDATE payments SET amount = 41 WHERE id = ?", [p.id]);
		try {
			const broken = await caller.call<{ ok: boolean; checks: { name: string; details: { ids: string[] } }[] }>("payment.verify");
			expect(broken.ok).toBe(false);
			expect(Object.fromEntries(broken.checks.map(c => [c.name, c.details.ids]))).toEqual({
				"wallet-balance-equals-ledger": [u],
				"no-negative-balance": [expect.any(String)],
				"ledger-chain": [u],
				"payment-has-ledger-rows": [p.id]
			});
		} finally {
			await sql.query("UPDATE wallets SET balance = balance - 1 WHERE user_id = ?", [u]);
			await sql.query("UPDATE point_transactions SET balance_after = 60 WHERE payment_id = ?", [p.id]);
			await sql.query("UPDATE payments SET amount = 40 WHERE id = ?", [p.id]);
		}
		expect((await verify()).ok).toBe(true);
	});

	it("when everything above has run, then every money invariant holds", async () => {
		const result = await verify();
		expect(result.checks.map(c => [c.name, c.ok])).toEqual([
			["wallet-balance-equals-ledger", true],
			["no-negative-balance", true],
			["ledger-chain", true],
			["payment-has-ledger-rows", true]
		]);
		expect(await scalar(sql, "SELECT COUNT(*) FROM wallets WHERE balance < 0")).toBe(0);
		const ledgerSum = await scalar(sql, "SELECT COALESCE(SUM(CASE type WHEN 'PAYMENT' THEN -amount ELSE amount END), 0) FROM point_transactions");
		expect(await scalar(sql, "SELECT COALESCE(SUM(balance), 0) FROM wallets")).toBe(ledgerSum);
	});
});
