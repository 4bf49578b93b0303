/**
 * The ledger's money moves on SQLite (embedded mode): once-only charges, pays and refunds, 402 that changes
 * nothing, voided sagas, concurrency with exact counts, and `verify` catching each broken invariant.
 * The same rules on MariaDB across nodes: test/integration/payment.test.ts.
 */
import { QueryTypes } from "sequelize";
import { checkInvariants, type Check, type LedgerRow, type PaymentRow, type WalletRow } from "../../services/payment/payment.domain";
import { sqliteLedger, type SqliteLedger } from "../support/payment";

describe("payment ledger on SQLite", () => {
	let db: SqliteLedger;
	let n = 0;
	const user = () => `u-${++n}`;

	beforeAll(async () => {
		db = await sqliteLedger();
	});
	afterAll(async () => {
		await db.close();
	});

	const ledgerRows = (userId: string, type?: string) =>
		db.count(`SELECT COUNT(*) AS n FROM point_transactions WHERE user_id = ?${type ? " AND type = ?" : ""}`, type ? [userId, type] : [userId]);
	const outbox = (eventType: string, aggregateId: string) =>
		db.count("SELECT COUNT(*) AS n FROM outbox_events WHERE event_type = ? AND aggregate_id = ?", [eventType, aggregateId]);

	it("when a charge is repeated with the same key, then one credit and the first result comes back", async () => {
		const u = user();
		const first = await db.ledger.charge(u, "k1", 500);
		expect(first).toEqual({ userId: u, balance: 500, transactionId: expect.any(String) });
		await db.ledger.charge(u, "k2", 100);
		const again = await db.ledger.charge(u, "k1", 500);
		expect(again).toEqual(first);
		expect(await db.ledger.balance(u)).toEqual({ userId: u, balance: 600 });
		expect(await ledgerRows(u, "CHARGE")).toBe(2);
		expect(await outbox("points.charged", u)).toBe(2);
	});

	it("when a key comes back with another amount, then 422 IDEMPOTENCY_KEY_REUSED and nothing changes", async () => {
		const u = user();
		await db.ledger.charge(u, "k", 500);
		await expect(db.ledger.charge(u, "k", 501)).rejects.toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
		expect((await db.ledger.balance(u)).balance).toBe(500);
		// Keys belong to a wallet: another user's identical key is another charge.
		const other = user();
		expect((await db.ledger.charge(other, "k", 7)).balance).toBe(7);
	});

	it("when 10 charges with one key race, then exactly one credit", async () => {
		const u = user();
		const results = await Promise.all(Array.from({ length: 10 }, () => db.ledger.charge(u, "same", 1000)));
		expect(new Set(results.map(r => r.transactionId)).size).toBe(1);
		expect((await db.ledger.balance(u)).balance).toBe(1000);
		expect(await ledgerRows(u)).toBe(1);
	});

	it("when a charge would pass the wallet ceiling, then 422 BALANCE_LIMIT_EXCEEDED and nothing changes", async () => {
		const small = await sqliteLedger({ balanceLimit: 1000 });
		try {
			await small.ledger.charge("u", "a", 600);
			await expect(small.ledger.charge("u", "b", 401)).rejects.toMatchObject({ code: 422, type: "BALANCE_LIMIT_EXCEEDED" });
			expect((await small.ledger.balance("u")).balance).toBe(600);
			expect(await small.count("SELECT COUNT(*) AS n FROM point_transactions")).toBe(1);
			expect((await small.ledger.charge("u", "b", 400)).balance).toBe(1000);
		} finally {
			await small.close();
		}
	});

	it("when a pay is retried with the same saga id, then one debit and the same payment", async () => {
		const u = user();
		await db.ledger.charge(u, "c", 1000);
		const req = { sagaId: `s-${u}`, reservationId: "r1", userId: u, amount: 300 };
		const first = await db.ledger.pay(req);
		expect(first).toMatchObject({ sagaId: req.sagaId, reservationId: "r1", userId: u, amount: 300, status: "COMPLETED" });
		expect(await db.ledger.pay(req)).toEqual(first);
		expect((await db.ledger.balance(u)).balance).toBe(700);
		expect(await ledgerRows(u, "PAYMENT")).toBe(1);
		expect(await outbox("payment.completed", first.id)).toBe(1);
		expect(await outbox("points.deducted", u)).toBe(1);
	});

	it("when the same saga id comes with another amount, then 422 IDEMPOTENCY_KEY_REUSED and no second debit", async () => {
		const u = user();
		await db.ledger.charge(u, "c", 1000);
		await db.ledger.pay({ sagaId: `s-${u}`, reservationId: "r", userId: u, amount: 100 });
		await expect(db.ledger.pay({ sagaId: `s-${u}`, reservationId: "r", userId: u, amount: 200 })).rejects.toMatchObject({
			code: 422,
			type: "IDEMPOTENCY_KEY_REUSED"
		});
		expect((await db.ledger.balance(u)).balance).toBe(900);
	});

	it("when the points do not cover the amount, then 402 INSUFFICIENT_POINTS and nothing is written", async () => {
		const u = user();
		await db.ledger.charge(u, "c", 100);
		const sagaId = `s-${u}`;
		await expect(db.ledger.pay({ sagaId, reservationId: "r", userId: u, amount: 101 })).rejects.toMatchObject({
			code: 402,
			type: "INSUFFICIENT_POINTS",
			retryable: false
		});
		await expect(db.ledger.pay({ sagaId: `s-${user()}`, reservationId: "r", userId: "no-wallet", amount: 1 })).rejects.toMatchObject({
			type: "INSUFFICIENT_POINTS"
		});
		expect((await db.ledger.balance(u)).balance).toBe(100);
		expect(await db.ledger.paymentBySaga(sagaId)).toBeNull();
		expect(await ledgerRows(u, "PAYMENT")).toBe(0);
		expect(await outbox("points.deducted", u)).toBe(0);
		// The failed attempt left no trace: the same saga id can pay once the wallet can afford it.
		await db.ledger.charge(u, "c2", 1);
		expect((await db.ledger.pay({ sagaId, reservationId: "r", userId: u, amount: 101 })).status).toBe("COMPLETED");
	});

	it("when 30 debits race on a wallet that affords 10, then exactly 10 succeed and the balance is 0", async () => {
		const u = user();
		await db.ledger.charge(u, "c", 1000);
		const results = await Promise.allSettled(
			Array.from({ length: 30 }, (_, i) => db.ledger.pay({ sagaId: `race-${u}-${i}`, reservationId: `r${i}`, userId: u, amount: 100 }))
		);
		const ok = results.filter(r => r.status === "fulfilled");
		const rejected = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
		expect(ok).toHaveLength(10);
		expect(rejected.map(r => r.reason.type)).toEqual(Array(20).fill("INSUFFICIENT_POINTS"));
		expect((await db.ledger.balance(u)).balance).toBe(0);
		expect(await ledgerRows(u, "PAYMENT")).toBe(10);
	});

	it("when the same saga id is paid 10 times at once, then one debit and every caller gets that payment", async () => {
		const u = user();
		await db.ledger.charge(u, "c", 1000);
		const req = { sagaId: `dup-${u}`, reservationId: "r", userId: u, amount: 250 };
		const results = await Promise.all(Array.from({ length: 10 }, () => db.ledger.pay(req)));
		expect(new Set(results.map(r => r.id)).size).toBe(1);
		expect((await db.ledger.balance(u)).balance).toBe(750);
		expect(await ledgerRows(u, "PAYMENT")).toBe(1);
	});

	it("when a refund is asked 10 times at once, then one credit and each answer names the payment", async () => {
		const u = user();
		await db.ledger.charge(u, "c", 1000);
		const p = await db.ledger.pay({ sagaId: `ref-${u}`, reservationId: "r", userId: u, amount: 400 });
		const results = await Promise.all(Array.from({ length: 10 }, () => db.ledger.refund(p.sagaId, "compensation")));
		for (const r of results) expect(r).toEqual({ refunded: true, paymentId: p.id, amount: 400 });
		expect((await db.ledger.balance(u)).balance).toBe(1000);
		expect(await ledgerRows(u, "REFUND")).toBe(1);
		expect(await outbox("payment.refunded", p.id)).toBe(1);
		// The wallet's stream has the credit too (PointRollbackEvent), once, with the balance after it.
		expect(await outbox("points.refunded", u)).toBe(1);
		const [credit] = await db.sequelize.query<{ payload: string }>(
			"SELECT payload FROM outbox_events WHERE event_type = 'points.refunded' AND aggregate_id = ?",
			{
				replacements: [u],
				type: QueryTypes.SELECT
			}
		);
		expect(JSON.parse(credit.payload)).toMatchObject({ userId: u, amount: 400, paymentId: p.id, balanceAfter: 1000 });
		expect((await db.ledger.paymentBySaga(p.sagaId))?.status).toBe("REFUNDED");
		// A replayed pay after its compensation ran is refused, not debited again.
		await expect(db.ledger.pay({ sagaId: p.sagaId, reservationId: "r", userId: u, amount: 400 })).rejects.toMatchObject({
			code: 409,
			type: "PAYMENT_VOIDED"
		});
		expect((await db.ledger.balance(u)).balance).toBe(1000);
	});

	it("when the refund runs before any payment, then it voids the saga and a late pay is refused", async () => {
		const u = user();
		await db.ledger.charge(u, "c", 1000);
		const sagaId = `void-${u}`;
		expect(await db.ledger.refund(sagaId, "timeout")).toEqual({ refunded: false });
		expect(await db.ledger.refund(sagaId, "timeout")).toEqual({ refunded: false });
		await expect(db.ledger.pay({ sagaId, reservationId: "r", userId: u, amount: 10 })).rejects.toMatchObject({
			code: 409,
			type: "PAYMENT_VOIDED"
		});
		expect((await db.ledger.balance(u)).balance).toBe(1000);
		expect((await db.ledger.paymentBySaga(sagaId))?.status).toBe("VOIDED");
		expect((await db.ledger.paymentsOf(u, 1, 20)).total).toBe(0);
	});

	it("when pay and refund of one saga race, then the wallet ends either untouched or paid-and-refunded", async () => {
		for (let i = 0; i < 10; i++) {
			const u = user();
			await db.ledger.charge(u, "c", 500);
			const sagaId = `pr-${u}`;
			await Promise.allSettled([db.ledger.pay({ sagaId, reservationId: "r", userId: u, amount: 500 }), db.ledger.refund(sagaId, "race")]);
			// Whatever the order, the compensation won: no money is gone for good.
			expect((await db.ledger.balance(u)).balance).toBe(500);
			expect(["VOIDED", "REFUNDED"]).toContain((await db.ledger.paymentBySaga(sagaId))?.status);
		}
	});

	it("when a user reads payments and transactions, then only their own appear, newest first, paged", async () => {
		const u = user();
		await db.ledger.charge(u, "c", 1000);
		const a = await db.ledger.pay({ sagaId: `pa-${u}`, reservationId: "ra", userId: u, amount: 100 });
		const b = await db.ledger.pay({ sagaId: `pb-${u}`, reservationId: "rb", userId: u, amount: 200 });
		const tx = await db.ledger.transactions(u, 1, 2);
		expect(tx.total).toBe(3);
		expect(tx.rows.map(r => [r.type, r.amount, r.balanceAfter])).toEqual([
			["PAYMENT", 200, 700],
			["PAYMENT", 100, 900]
		]);
		expect(new Date(tx.rows[0].createdAt).toISOString()).toBe(tx.rows[0].createdAt);
		const list = await db.ledger.paymentsOf(u, 1, 20);
		expect(list.total).toBe(2);
		expect(list.rows.map(p => p.id).sort()).toEqual([a.id, b.id].sort());
		expect(list.rows[0]).not.toHaveProperty("sagaId");
		expect(await db.ledger.paymentOf(u, a.id)).toMatchObject({ id: a.id, reservationId: "ra", amount: 100, status: "COMPLETED" });
		expect(await db.ledger.paymentOf("someone-else", a.id)).toBeNull();
	});

	it("when everything went through the ledger, then verify is ok; when rows are tampered with, it names them", async () => {
		const clean = await db.ledger.verify();
		expect(clean.checks.map(c => [c.name, c.ok])).toEqual([
			["wallet-balance-equals-ledger", true],
			["no-negative-balance", true],
			["ledger-chain", true],
			["payment-has-ledger-rows", true]
		]);
		expect(clean.ok).toBe(true);

		const u = user();
		await db.ledger.charge(u, "c", 1000);
		const p = await db.ledger.pay({ sagaId: `t-${u}`, reservationId: "r", userId: u, amount: 100 });
		await db.sequelize.query("UPDATE wallets SET balance = -5 WHERE user_id = ?", { replacements: [u] });
		await db.sequelize.query("DELETE FROM point_transactions WHERE payment_id = ?", { replacements: [p.id] });
		const broken = await db.ledger.verify();
		expect(broken.ok).toBe(false);
		const byName = Object.fromEntries(broken.checks.map(c => [c.name, c]));
		expect(byName["wallet-balance-equals-ledger"].details.ids).toEqual([u]);
		expect(byName["no-negative-balance"].details.ids).toEqual([u]);
		expect(byName["payment-has-ledger-rows"].details.ids).toEqual([p.id]);
		// Put it back so the ledger of this file stays consistent.
		await db.sequelize.query("DELETE FROM payments WHERE id = ?", { replacements: [p.id] });
		await db.sequelize.query("UPDATE wallets SET balance = 1000 WHERE user_id = ?", { replacements: [u] });
		expect((await db.ledger.verify()).ok).toBe(true);
	});

	describe("verify's SQL against the in-memory reference", () => {
		/** Charges, debits, a refund and a void for three users: the ledger every corruption starts from. */
		async function seeded(): Promise<{ db: SqliteLedger; p1: string; p2: string }> {
			const fresh = await sqliteLedger();
			const l = fresh.ledger;
			await l.charge("a", "c1", 1000);
			await l.charge("b", "c1", 300);
			await l.charge("c", "c1", 50);
			const p1 = await l.pay({ sagaId: "s1", reservationId: "r1", userId: "a", amount: 400 });
			const p2 = await l.pay({ sagaId: "s2", reservationId: "r2", userId: "a", amount: 100 });
			await l.pay({ sagaId: "s3", reservationId: "r3", userId: "b", amount: 300 });
			await l.refund("s2", "test");
			await l.refund("s-void", "test");
			await l.charge("a", "c2", 5);
			return { db: fresh, p1: p1.id, p2: p2.id };
		}

		async function reference(d: SqliteLedger): Promise<Check[]> {
			const q = <T extends object>(sql: string) => d.sequelize.query<T>(sql, { type: QueryTypes.SELECT });
			const wallets = await q<WalletRow>("SELECT user_id, balance, version FROM wallets");
			const ledger = await q<LedgerRow>("SELECT * FROM point_transactions");
			const payments = await q<PaymentRow>("SELECT * FROM payments");
			return checkInvariants(
				wallets.map(w => ({ ...w, balance: Number(w.balance) })),
				ledger.map(r => ({ ...r, seq: Number(r.seq), amount: Number(r.amount), balance_after: Number(r.balance_after) })),
				payments.map(p => ({ ...p, amount: Number(p.amount) }))
			);
		}

		const sorted = (checks: Check[]) => checks.map(c => ({ ...c, details: { ...c.details, ids: [...c.details.ids].sort() } }));

		const now = "2026-01-01 00:00:00.000";
		const corruptions: [string, (ids: { p1: string; p2: string }) => [string, unknown[]]][] = [
			["nothing", () => ["SELECT 1", []]],
			["a balance drifts", () => ["UPDATE wallets SET balance = balance + 1 WHERE user_id = 'a'", []]],
			["a balance goes negative", () => ["UPDATE wallets SET balance = -3 WHERE user_id = 'b'", []]],
			["a balance-after is rewritten", ({ p1 }) => ["UPDATE point_transactions SET balance_after = balance_after + 5 WHERE payment_id = ?", [p1]]],
			["a refund row disappears", ({ p2 }) => ["DELETE FROM point_transactions WHERE payment_id = ? AND type = 'REFUND'", [p2]]],
			[
				"a payment is debited twice",
				({ p1 }) => [
					"INSERT INTO point_transactions (id, user_id, type, amount, balance_after, ref, payment_id, created_at) VALUES ('dup', 'a', 'PAYMENT', 400, 105, 'again', ?, ?)",
					[p1, now]
				]
			],
			[
				"a refund points at no payment",
				() => [
					"INSERT INTO point_transactions (id, user_id, type, amount, balance_after, ref, payment_id, created_at) VALUES ('orphan', 'c', 'REFUND', 5, 55, 'ghost', 'ghost', ?)",
					[now]
				]
			],
			[
				"a ledger row has no wallet",
				() => [
					"INSERT INTO point_transactions (id, user_id, type, amount, balance_after, ref, payment_id, created_at) VALUES ('nowallet', 'z', 'CHARGE', 5, 5, 'k', NULL, ?)",
					[now]
				]
			],
			["a payment's amount changes", ({ p1 }) => ["UPDATE payments SET amount = amount + 1 WHERE id = ?", [p1]]],
			["a refunded payment reads completed", ({ p2 }) => ["UPDATE payments SET status = 'COMPLETED' WHERE id = ?", [p2]]],
			["a debit row moves to another wallet", ({ p1 }) => ["UPDATE point_transactions SET user_id = 'c' WHERE payment_id = ?", [p1]]],
			[
				"a voided saga has a debit",
				() => [
					"INSERT INTO point_transactions (id, user_id, type, amount, balance_after, ref, payment_id, created_at) SELECT 'voidrow', 'c', 'PAYMENT', 0, 50, id, id, ? FROM payments WHERE status = 'VOIDED'",
					[now]
				]
			]
		];

		it.each(corruptions)("when %s, then the SQL checks name the same offenders as the reference", async (name, corrupt) => {
			const { db: d, p1, p2 } = await seeded();
			try {
				const [sql, replacements] = corrupt({ p1, p2 });
				await d.sequelize.query(sql, { replacements });
				const got = await d.ledger.verify();
				const want = await reference(d);
				expect(sorted(got.checks)).toEqual(sorted(want));
				// Each corruption must be caught (and the untouched ledger must pass), or the comparison proves nothing.
				expect(got.ok).toBe(name === "nothing");
			} finally {
				await d.close();
			}
		});
	});
});
