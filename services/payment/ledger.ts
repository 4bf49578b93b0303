/**
 * The wallet, its ledger and payments in SQL: every money move is one transaction that changes the balance with a
 * conditional UPDATE (never read-then-write), appends its ledger row, writes the payment row and the outbox rows,
 * and commits or changes nothing. Works on MariaDB (cluster) and SQLite (embedded).
 *
 * Why it is safe under concurrency:
 * - A debit is `UPDATE wallets SET balance = balance - ? WHERE user_id = ? AND balance >= ?`: the row lock makes
 *   the check and the write one step, so 50 racing debits on a wallet that affords 20 leave exactly 20.
 * - `payments.saga_id` is unique and the payment row is the transaction's first write: a duplicate pay waits on the
 *   first one's uncommitted row (InnoDB) or on the write lock (SQLite), then fails on the index and answers the
 *   committed payment. No second debit, the same payment for a retry after a timeout.
 * - A refund flips COMPLETED -> REFUNDED with a conditional UPDATE; only the caller that flipped it credits.
 * - `point_transactions (user_id, type, ref)` is unique: a charge key credits once per wallet, a payment has at
 *   most one PAYMENT and one REFUND row, whatever the code above does.
 * - Every transaction takes its locks in the same order (payment row, then wallet row): no lock cycles. The
 *   deadlocks InnoDB can still report (duplicate-key waiters after a rollback, racing creation of a new wallet)
 *   are retried here, as the victim's whole transaction rolled back.
 * - On SQLite writes queue in-process, one at a time per file (lib/db/sql.ts).
 */
import crypto from "crypto";
import { Transaction, UniqueConstraintError } from "sequelize";
import { isoTime, keysetAfter, pageOf, type AuditPage } from "../../lib/audit";
import { appendOutbox } from "../../lib/outbox";
import { isTransientDbError, sqlTime, type Sql } from "../../lib/db";
import {
	BALANCE_LIMIT,
	chargeReplay,
	payReplay,
	toCheck,
	toPublicPayment,
	toPublicTransaction,
	toUserPayment,
	type Check,
	type LedgerRow,
	type LedgerType,
	type PaymentRow,
	type PayRequest,
	type PublicPayment,
	type PublicTransaction,
	type UserPayment
} from "./payment.domain";
import { BalanceLimitError, IdempotencyKeyReusedError, InsufficientPointsError, PaymentStoreUnavailableError, PaymentVoidedError } from "./errors";

export interface ChargeResult {
	userId: string;
	balance: number;
	transactionId: string;
}

export interface RefundResult {
	refunded: boolean;
	paymentId?: string;
	amount?: number;
}

export interface Page<T> {
	rows: T[];
	page: number;
	pageSize: number;
	total: number;
}

export interface LedgerDeps {
	/** The payment database: conditional updates, deadlock retries and (on SQLite) the per-file writer queue. */
	sql: Sql;
	now?: () => Date;
	newId?: () => string;
	/** Ceiling of a wallet's balance (BALANCE_LIMIT unless a test wants a small one). */
	balanceLimit?: number;
}

/** A ledger row's effect on the balance, in SQL (see `signedAmount`). */
const SIGNED = "CASE WHEN type = 'PAYMENT' THEN -amount ELSE amount END";

/** verify's queries; each answers the ids of its offenders. Standard SQL that MariaDB 10.2+ and SQLite 3.25+ run. */
const VERIFY_SQL = {
	balanceEqualsLedger: `
		SELECT w.user_id AS id FROM wallets w
		LEFT JOIN (SELECT user_id, SUM(${SIGNED}) AS total FROM point_transactions GROUP BY user_id) l ON l.user_id = w.user_id
		WHERE w.balance <> COALESCE(l.total, 0)
		UNION
		SELECT DISTINCT t.user_id AS id FROM point_transactions t LEFT JOIN wallets w ON w.user_id = t.user_id WHERE w.user_id IS NULL`,
	noNegative: `
		SELECT user_id AS id FROM wallets WHERE balance < 0
		UNION
		SELECT id FROM point_transactions WHERE balance_after < 0`,
	ledgerChain: `
		SELECT DISTINCT user_id AS id FROM (
			SELECT user_id, balance_after,
				SUM(${SIGNED}) OVER (PARTITION BY user_id ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
			FROM point_transactions
		) chain WHERE running <> balance_after`,
	paymentRows: `
		SELECT p.id AS id FROM payments p LEFT JOIN point_transactions t ON t.payment_id = p.id
		GROUP BY p.id, p.status, p.user_id, p.amount
		HAVING NOT (
				(p.status = 'COMPLETED' AND SUM(CASE WHEN t.type = 'PAYMENT' THEN 1 ELSE 0 END) = 1 AND SUM(CASE WHEN t.type = 'REFUND' THEN 1 ELSE 0 END) = 0)
				OR (p.status = 'REFUNDED' AND SUM(CASE WHEN t.type = 'PAYMENT' THEN 1 ELSE 0 END) = 1 AND SUM(CASE WHEN t.type = 'REFUND' THEN 1 ELSE 0 END) = 1)
				OR (p.status = 'VOIDED' AND COUNT(t.id) = 0)
			)
			OR SUM(CASE WHEN t.id IS NOT NULL AND (p.user_id IS NULL OR t.user_id <> p.user_id OR t.amount <> p.amount) THEN 1 ELSE 0 END) > 0
		UNION
		SELECT COALESCE(t.payment_id, t.id) AS id FROM point_transactions t LEFT JOIN payments p ON p.id = t.payment_id
		WHERE t.type <> 'CHARGE' AND p.id IS NULL`
};

/** A payment as the ops consistency check reads it. */
export interface AuditPaymentRow {
	id: string;
	sagaId: string;
	reservationId: string | null;
	userId: string | null;
	amount: number;
	status: string;
	updatedAt: string;
}

export class PaymentLedger {
	private readonly sql: Sql;
	private readonly now: () => Date;
	private readonly newId: () => string;
	private readonly balanceLimit: number;

	constructor(deps: LedgerDeps) {
		this.sql = deps.sql;
		this.now = deps.now ?? (() => new Date());
		this.newId = deps.newId ?? (() => crypto.randomUUID());
		this.balanceLimit = deps.balanceLimit ?? BALANCE_LIMIT;
	}

	// Money moves

	/** Credits `amount` once per (user, key); the same key again answers the first result. */
	async charge(userId: string, key: string, amount: number): Promise<ChargeResult> {
		const prior = await this.findCharge(userId, key);
		if (prior) return this.replayCharge(prior, amount);
		try {
			return await this.inTransaction(async t => {
				const now = this.now();
				await this.ensureWallet(userId, now, t);
				const credited = await this.sql.update(
					"UPDATE wallets SET balance = balance + ?, version = version + 1, updated_at = ? WHERE user_id = ? AND balance <= ?",
					[amount, sqlTime(now), userId, this.balanceLimit - amount],
					t
				);
				if (credited !== 1) throw new BalanceLimitError(userId, this.balanceLimit);
				const balance = await this.lockedBalance(userId, t);
				const id = await this.appendLedger({ userId, type: "CHARGE", amount, balance, ref: key, paymentId: null, now }, t);
				await appendOutbox(this.sql, t, {
					aggregateType: "wallet",
					aggregateId: userId,
					eventType: "points.charged",
					payload: { userId, transactionId: id, amount, balanceAfter: balance, chargedAt: now.toISOString() }
				});
				return { userId, balance, transactionId: id };
			});
		} catch (err) {
			if (err instanceof UniqueConstraintError) {
				const winner = await this.findCharge(userId, key);
				if (winner) return this.replayCharge(winner, amount);
			}
			throw err;
		}
	}

	/**
	 * Saga step 1: debits the reservation amount once per saga id. A retry or a concurrent duplicate gets the same
	 * payment; not enough points is a 402 that changed nothing; a saga whose refund already ran gets 409.
	 */
	async pay(req: PayRequest): Promise<PublicPayment> {
		// No lookup first: the payment's INSERT is the transaction's first statement, and the unique saga id turns a
		// retry, a concurrent duplicate or a voided saga into the UniqueConstraintError below, before any debit. The
		// lookup cost every first payment a round trip to answer the rare replay.
		try {
			return await this.inTransaction(async t => {
				const now = this.now();
				const id = this.newId();
				// First write: from here on a duplicate of this saga id waits for this transaction to end.
				// Order matters on MariaDB: no plain (snapshot) read may come before the wallet's row lock, because
				// appendOutbox reads the aggregate's last version from the snapshot, which must already include the
				// previous lock holder's commit (otherwise two debits would claim the same wallet event version).
				await this.sql.insert(
					"INSERT INTO payments (id, saga_id, reservation_id, user_id, amount, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'COMPLETED', ?, ?)",
					[id, req.sagaId, req.reservationId, req.userId, req.amount, sqlTime(now), sqlTime(now)],
					t
				);
				// A free ticket (seats priced 0) is paid from any wallet, also one never charged.
				if (req.amount === 0) await this.ensureWallet(req.userId, now, t);
				const debited = await this.sql.update(
					"UPDATE wallets SET balance = balance - ?, version = version + 1, updated_at = ? WHERE user_id = ? AND balance >= ?",
					[req.amount, sqlTime(now), req.userId, req.amount],
					t
				);
				if (debited !== 1) throw new InsufficientPointsError(req.userId, req.amount);
				const balance = await this.lockedBalance(req.userId, t);
				const txId = await this.appendLedger({ userId: req.userId, type: "PAYMENT", amount: req.amount, balance, ref: id, paymentId: id, now }, t);
				await appendOutbox(this.sql, t, {
					aggregateType: "payment",
					aggregateId: id,
					// The payment was created above: this is its first event.
					version: 1,
					eventType: "payment.completed",
					payload: {
						paymentId: id,
						sagaId: req.sagaId,
						reservationId: req.reservationId,
						userId: req.userId,
						amount: req.amount,
						paymentDate: now.toISOString()
					}
				});
				await appendOutbox(this.sql, t, {
					aggregateType: "wallet",
					aggregateId: req.userId,
					eventType: "points.deducted",
					payload: {
						userId: req.userId,
						transactionId: txId,
						paymentId: id,
						amount: req.amount,
						balanceAfter: balance,
						transactionDate: now.toISOString()
					}
				});
				return toPublicPayment({
					id,
					saga_id: req.sagaId,
					reservation_id: req.reservationId,
					user_id: req.userId,
					amount: req.amount,
					status: "COMPLETED",
					created_at: now,
					updated_at: now,
					refunded_at: null
				});
			});
		} catch (err) {
			if (err instanceof UniqueConstraintError) {
				const winner = await this.findPaymentBySaga(req.sagaId);
				if (winner) return this.replayPay(winner, req);
			}
			throw err;
		}
	}

	/**
	 * Compensation and cancellation: refunds the saga's payment once. Without a payment it records the saga id as
	 * VOIDED, so a pay that arrives later (its caller timed out, the saga compensated) is refused instead of
	 * debiting after its compensation ran.
	 */
	async refund(sagaId: string, reason?: string): Promise<RefundResult> {
		let payment = await this.findPaymentBySaga(sagaId);
		if (!payment) {
			const now = this.now();
			try {
				await this.sql.transaction(t =>
					this.sql.insert(
						"INSERT INTO payments (id, saga_id, reservation_id, user_id, amount, status, refund_reason, created_at, updated_at) VALUES (?, ?, NULL, NULL, 0, 'VOIDED', ?, ?, ?)",
						[this.newId(), sagaId, reason ?? null, sqlTime(now), sqlTime(now)],
						t
					)
				);
				return { refunded: false };
			} catch (err) {
				if (!(err instanceof UniqueConstraintError)) throw this.translate(err);
				// A pay (or another void) committed the saga id first: answer what is there now.
				payment = await this.findPaymentBySaga(sagaId);
				if (!payment) throw err;
			}
		}
		if (payment.status === "VOIDED") return { refunded: false };
		const result = { refunded: true, paymentId: payment.id, amount: Number(payment.amount) };
		if (payment.status === "REFUNDED") return result;

		const p = payment;
		await this.inTransaction(async t => {
			const now = this.now();
			const flipped = await this.sql.update(
				"UPDATE payments SET status = 'REFUNDED', refund_reason = ?, refunded_at = ?, updated_at = ? WHERE id = ? AND status = 'COMPLETED'",
				[reason ?? null, sqlTime(now), sqlTime(now), p.id],
				t
			);
			// Someone else refunded it between our read and this update: their refund is the one.
			if (flipped !== 1) return;
			const amount = Number(p.amount);
			const credited = await this.sql.update(
				"UPDATE wallets SET balance = balance + ?, version = version + 1, updated_at = ? WHERE user_id = ?",
				[amount, sqlTime(now), p.user_id],
				t
			);
			if (credited !== 1) throw new Error(`wallet of payment ${p.id} is missing`);
			const balance = await this.lockedBalance(p.user_id!, t);
			const txId = await this.appendLedger({ userId: p.user_id!, type: "REFUND", amount, balance, ref: p.id, paymentId: p.id, now }, t);
			await appendOutbox(this.sql, t, {
				aggregateType: "payment",
				aggregateId: p.id,
				eventType: "payment.refunded",
				payload: {
					paymentId: p.id,
					sagaId: p.saga_id,
					reservationId: p.reservation_id,
					userId: p.user_id!,
					amount,
					transactionId: txId,
					balanceAfter: balance,
					reason: reason ?? null,
					refundedAt: now.toISOString()
				}
			});
			// The wallet's own event of the credit (seed 003 PointRollbackEvent): its stream has every balance move.
			await appendOutbox(this.sql, t, {
				aggregateType: "wallet",
				aggregateId: p.user_id!,
				eventType: "points.refunded",
				payload: { userId: p.user_id!, amount, transactionId: txId, paymentId: p.id, balanceAfter: balance, refundedAt: now.toISOString() }
			});
		});
		return result;
	}

	// Reads

	async balance(userId: string): Promise<{ userId: string; balance: number }> {
		const [row] = await this.select<{ balance: number }>("SELECT balance FROM wallets WHERE user_id = ?", [userId]);
		return { userId, balance: row ? Number(row.balance) : 0 };
	}

	async transactions(userId: string, page: number, pageSize: number): Promise<Page<PublicTransaction>> {
		const rows = await this.select<LedgerRow>("SELECT * FROM point_transactions WHERE user_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?", [
			userId,
			pageSize,
			(page - 1) * pageSize
		]);
		const [count] = await this.select<{ n: number }>("SELECT COUNT(*) AS n FROM point_transactions WHERE user_id = ?", [userId]);
		return { rows: rows.map(toPublicTransaction), page, pageSize, total: Number(count?.n ?? 0) };
	}

	async paymentsOf(userId: string, page: number, pageSize: number): Promise<Page<UserPayment>> {
		const rows = await this.select<PaymentRow>(
			"SELECT * FROM payments WHERE user_id = ? AND status <> 'VOIDED' ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
			[userId, pageSize, (page - 1) * pageSize]
		);
		const [count] = await this.select<{ n: number }>("SELECT COUNT(*) AS n FROM payments WHERE user_id = ? AND status <> 'VOIDED'", [userId]);
		return { rows: rows.map(r => toUserPayment(this.numeric(r))), page, pageSize, total: Number(count?.n ?? 0) };
	}

	/** The payment when it exists and belongs to `userId`; null otherwise (the caller answers 404 for both). */
	async paymentOf(userId: string, id: string): Promise<UserPayment | null> {
		const [row] = await this.select<PaymentRow>("SELECT * FROM payments WHERE id = ? AND user_id = ?", [id, userId]);
		return row ? toUserPayment(this.numeric(row)) : null;
	}

	async paymentBySaga(sagaId: string): Promise<PublicPayment | null> {
		const row = await this.findPaymentBySaga(sagaId);
		return row ? toPublicPayment(row) : null;
	}

	/**
	 * The money invariants of `checkInvariants`, computed by the database (aggregates and a window function, so the
	 * check does not load the ledger into memory): each balance equals the sum of its ledger and every ledger row
	 * has a wallet; no negative balance or balance-after; each wallet's running balance is unbroken; each payment
	 * has exactly its ledger rows, with its user and amount, and no PAYMENT/REFUND row points at no payment.
	 * The queries share one snapshot (a REPEATABLE READ transaction on MariaDB, the queued writer slot on SQLite):
	 * read apart, a debit committing between them would show up as a false offender on a live system.
	 */
	async verify(): Promise<{ ok: boolean; checks: Check[] }> {
		const read = async (t: Transaction) => {
			const ids = async (sql: string) => (await this.select<{ id: string }>(sql, [], t)).map(r => String(r.id));
			return [
				toCheck("wallet-balance-equals-ledger", await ids(VERIFY_SQL.balanceEqualsLedger)),
				toCheck("no-negative-balance", await ids(VERIFY_SQL.noNegative)),
				toCheck("ledger-chain", await ids(VERIFY_SQL.ledgerChain)),
				toCheck("payment-has-ledger-rows", await ids(VERIFY_SQL.paymentRows))
			];
		};
		// REPEATABLE READ named, not assumed: a server configured for READ COMMITTED would give each query its own view.
		const checks = await this.sql.transaction(read, { isolationLevel: Transaction.ISOLATION_LEVELS.REPEATABLE_READ });
		return { ok: checks.every(c => c.ok), checks };
	}

	/**
	 * One keyset page of payments for the ops consistency check (lib/audit.ts): by id; with `since`, those changed
	 * since then in change order; with `reservationIds`, the payments of those reservations (one page of ids).
	 */
	async auditPayments(q: { limit: number; after?: string[]; since?: Date; reservationIds?: string[] }): Promise<AuditPage<AuditPaymentRow>> {
		const where: string[] = [];
		const params: unknown[] = [];
		if (q.reservationIds) {
			const ids = q.reservationIds.slice(0, q.limit);
			if (ids.length === 0) return { rows: [], next: null };
			where.push(`reservation_id IN (${ids.map(() => "?").join(",")})`);
			params.push(...ids);
		}
		if (q.since) {
			where.push("updated_at >= ?");
			params.push(sqlTime(q.since));
		}
		const keys = q.since ? ["updated_at", "id"] : ["id"];
		if (q.after) {
			const k = keysetAfter(keys, q.since ? [sqlTime(new Date(q.after[0])), q.after[1] ?? ""] : [q.after[0]]);
			where.push(k.sql);
			params.push(...k.params);
		}
		const limit = q.limit;
		const rows = await this.select<{
			id: string;
			saga_id: string;
			reservation_id: string | null;
			user_id: string | null;
			amount: number | string;
			status: string;
			updated_at: Date | string;
		}>(
			`SELECT id, saga_id, reservation_id, user_id, amount, status, updated_at FROM payments${where.length ? ` WHERE ${where.join(" AND ")}` : ""}
			 ORDER BY ${keys.join(", ")} LIMIT ${limit + 1}`,
			params
		);
		return pageOf(
			rows,
			limit,
			r => ({
				id: r.id,
				sagaId: r.saga_id,
				reservationId: r.reservation_id,
				userId: r.user_id,
				amount: Number(r.amount),
				status: r.status,
				updatedAt: isoTime(r.updated_at)
			}),
			r => (q.since ? [isoTime(r.updated_at), r.id] : [r.id])
		);
	}

	// Helpers

	private replayCharge(prior: LedgerRow, amount: number): ChargeResult {
		if (chargeReplay({ amount: Number(prior.amount) }, amount) === "reused") {
			throw new IdempotencyKeyReusedError({ transactionId: prior.id });
		}
		return { userId: prior.user_id, balance: Number(prior.balance_after), transactionId: prior.id };
	}

	private replayPay(existing: PaymentRow, req: PayRequest): PublicPayment {
		switch (payReplay(existing, req)) {
			case "replay":
				return toPublicPayment(existing);
			case "voided":
				throw new PaymentVoidedError(req.sagaId, existing.status === "VOIDED" ? undefined : existing.id);
			case "reused":
				throw new IdempotencyKeyReusedError({ sagaId: req.sagaId, paymentId: existing.id });
		}
	}

	private async findCharge(userId: string, key: string): Promise<LedgerRow | null> {
		const [row] = await this.select<LedgerRow>("SELECT * FROM point_transactions WHERE user_id = ? AND type = 'CHARGE' AND ref = ?", [userId, key]);
		return row ?? null;
	}

	private async findPaymentBySaga(sagaId: string): Promise<PaymentRow | null> {
		const [row] = await this.select<PaymentRow>("SELECT * FROM payments WHERE saga_id = ?", [sagaId]);
		return row ? this.numeric(row) : null;
	}

	private numeric(row: PaymentRow): PaymentRow {
		return { ...row, amount: Number(row.amount) };
	}

	/** Creates the wallet if it is missing; on MariaDB this also takes the wallet's row lock. */
	private async ensureWallet(userId: string, now: Date, t: Transaction): Promise<void> {
		const sql = this.sql.mysql
			? "INSERT INTO wallets (user_id, balance, version, created_at, updated_at) VALUES (?, 0, 0, ?, ?) ON DUPLICATE KEY UPDATE user_id = user_id"
			: "INSERT INTO wallets (user_id, balance, version, created_at, updated_at) VALUES (?, 0, 0, ?, ?) ON CONFLICT(user_id) DO NOTHING";
		await this.sql.insert(sql, [userId, sqlTime(now), sqlTime(now)], t);
	}

	/** The balance as this transaction left it (a locking read on MariaDB: never a stale snapshot). */
	private async lockedBalance(userId: string, t: Transaction): Promise<number> {
		const [row] = await this.select<{ balance: number }>(`SELECT balance FROM wallets WHERE user_id = ?${this.sql.forUpdate}`, [userId], t);
		return Number(row.balance);
	}

	private async appendLedger(
		e: { userId: string; type: LedgerType; amount: number; balance: number; ref: string; paymentId: string | null; now: Date },
		t: Transaction
	): Promise<string> {
		const id = this.newId();
		await this.sql.insert(
			"INSERT INTO point_transactions (id, user_id, type, amount, balance_after, ref, payment_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			[id, e.userId, e.type, e.amount, e.balance, e.ref, e.paymentId, sqlTime(e.now)],
			t
		);
		return id;
	}

	private async select<T extends object>(sql: string, replacements: unknown[] = [], transaction?: Transaction): Promise<T[]> {
		try {
			return await this.sql.select<T>(sql, replacements, transaction);
		} catch (err) {
			throw this.translate(err);
		}
	}

	/** One transaction (queued per file on SQLite, retried whole after an InnoDB deadlock); transient faults -> 503. */
	private async inTransaction<T>(fn: (t: Transaction) => Promise<T>): Promise<T> {
		try {
			return await this.sql.transaction(fn);
		} catch (err) {
			throw this.translate(err);
		}
	}

	private translate(err: unknown): unknown {
		return isTransientDbError(err) ? new PaymentStoreUnavailableError() : err;
	}
}
