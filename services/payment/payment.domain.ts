/**
 * Pure rules of the payment context (wallets, the points ledger, payments), tested without a broker or a
 * database: limits, key checks, how a replayed request is answered, the public shapes, and the consistency
 * checks `verify` runs over the rows it reads.
 */

export const CHARGE_MIN = 1;
export const CHARGE_MAX = 10_000_000;
/** Largest single debit a saga may ask for (4 seats at any sane price fit far below it). */
export const PAY_MAX = 1_000_000_000;
/** A wallet never holds more than this: far inside Number.MAX_SAFE_INTEGER, so sums stay exact in JS. */
export const BALANCE_LIMIT = 1_000_000_000_000;

export type LedgerType = "CHARGE" | "PAYMENT" | "REFUND";
/** VOIDED marks a saga whose refund ran before any payment: the row holds the saga id so a late pay is refused. */
export type PaymentStatus = "COMPLETED" | "REFUNDED" | "VOIDED";

export interface LedgerRow {
	seq: number;
	id: string;
	user_id: string;
	type: LedgerType;
	/** Always positive; the type gives the direction. */
	amount: number;
	balance_after: number;
	/** CHARGE: the idempotency key; PAYMENT and REFUND: the payment id. */
	ref: string;
	payment_id: string | null;
	created_at: Date | string;
}

export interface PaymentRow {
	id: string;
	saga_id: string;
	reservation_id: string | null;
	user_id: string | null;
	amount: number;
	status: PaymentStatus;
	created_at: Date | string;
	updated_at: Date | string;
	refunded_at: Date | string | null;
}

export interface WalletRow {
	user_id: string;
	balance: number;
	version: number;
}

export interface PublicTransaction {
	id: string;
	type: LedgerType;
	amount: number;
	balanceAfter: number;
	createdAt: string;
}

export interface PublicPayment {
	id: string;
	sagaId: string;
	reservationId: string | null;
	userId: string | null;
	amount: number;
	status: PaymentStatus;
	createdAt: string;
	refundedAt?: string;
}

/** docs/API.md's Idempotency-Key rule (lib/idempotency-key.ts), re-exported for the payment context. */
export { isValidIdempotencyKey } from "../../lib/idempotency-key";

/** The balance change a ledger row stands for. */
export function signedAmount(type: LedgerType, amount: number): number {
	return type === "PAYMENT" ? -amount : amount;
}

/** A charge key seen before: the same amount is a replay of the first result, another amount a misuse. */
export function chargeReplay(existing: Pick<LedgerRow, "amount">, amount: number): "replay" | "reused" {
	return existing.amount === amount ? "replay" : "reused";
}

export interface PayRequest {
	sagaId: string;
	reservationId: string;
	userId: string;
	amount: number;
}

/**
 * A payment already exists for the saga id: a COMPLETED one for the same request is the answer to a retry; one
 * for another request means the key is misused; a REFUNDED or VOIDED one means the compensation already ran and
 * this pay is late, so it must not debit.
 */
export function payReplay(existing: PaymentRow, req: PayRequest): "replay" | "reused" | "voided" {
	if (existing.status !== "COMPLETED") return "voided";
	const same = existing.user_id === req.userId && existing.reservation_id === req.reservationId && existing.amount === req.amount;
	return same ? "replay" : "reused";
}

export function toIso(d: Date | string): string {
	return (d instanceof Date ? d : new Date(typeof d === "string" && !/[zZ]|[+-]\d\d:?\d\d$/.test(d) ? `${d.replace(" ", "T")}Z` : d)).toISOString();
}

export function toPublicTransaction(row: LedgerRow): PublicTransaction {
	return {
		id: row.id,
		type: row.type,
		amount: Number(row.amount),
		balanceAfter: Number(row.balance_after),
		createdAt: toIso(row.created_at)
	};
}

export function toPublicPayment(row: PaymentRow): PublicPayment {
	const p: PublicPayment = {
		id: row.id,
		sagaId: row.saga_id,
		reservationId: row.reservation_id,
		userId: row.user_id,
		amount: Number(row.amount),
		status: row.status,
		createdAt: toIso(row.created_at)
	};
	if (row.refunded_at) p.refundedAt = toIso(row.refunded_at);
	return p;
}

export type UserPayment = Omit<PublicPayment, "sagaId" | "userId">;

/** What a user sees of their own payment (docs/API.md: GET /api/payments/:id): no saga id, no user id. */
export function toUserPayment(row: PaymentRow): UserPayment {
	const { sagaId: _s, userId: _u, ...rest } = toPublicPayment(row);
	return rest;
}

// Consistency checks (verify)

export interface Check {
	name: string;
	ok: boolean;
	details: { offenders: number; ids: string[] };
}

const MAX_IDS = 20;

/** A check's verdict: ok when nothing offends; the first few offender ids for the operator. */
export function toCheck(name: string, offenders: string[]): Check {
	const unique = [...new Set(offenders)];
	return { name, ok: unique.length === 0, details: { offenders: unique.length, ids: unique.slice(0, MAX_IDS) } };
}

/**
 * The money invariants over every wallet, ledger row and payment, in memory. `verify` runs the same rules as SQL
 * aggregates (the ledger grows without bound); this function is their readable statement and the reference the
 * SQL is tested against.
 * - wallet-balance-equals-ledger: each balance is the sum of its ledger (and no ledger belongs to no wallet);
 * - no-negative-balance: no wallet and no ledger row's balance-after is below zero;
 * - ledger-chain: per wallet, in order, each row's balance-after is the previous one plus its amount;
 * - payment-has-ledger-rows: COMPLETED has one PAYMENT row and no REFUND, REFUNDED one of each, VOIDED none,
 *   all with the payment's user and amount, and no PAYMENT/REFUND row points at an unknown payment.
 */
export function checkInvariants(wallets: WalletRow[], rows: LedgerRow[], payments: PaymentRow[]): Check[] {
	const ledger = [...rows].sort((a, b) => (a.user_id < b.user_id ? -1 : a.user_id > b.user_id ? 1 : a.seq - b.seq));
	const sums = new Map<string, number>();
	const chainBroken = new Set<string>();
	const negativeRows: string[] = [];
	let prevUser: string | undefined;
	let running = 0;
	for (const row of ledger) {
		if (row.user_id !== prevUser) {
			prevUser = row.user_id;
			running = 0;
		}
		running += signedAmount(row.type, Number(row.amount));
		if (running !== Number(row.balance_after)) chainBroken.add(row.user_id);
		if (Number(row.balance_after) < 0) negativeRows.push(row.id);
		sums.set(row.user_id, (sums.get(row.user_id) ?? 0) + signedAmount(row.type, Number(row.amount)));
	}

	const walletIds = new Set(wallets.map(w => w.user_id));
	const balanceMismatch = wallets.filter(w => Number(w.balance) !== (sums.get(w.user_id) ?? 0)).map(w => w.user_id);
	const orphanLedger = [...sums.keys()].filter(u => !walletIds.has(u));
	const negative = wallets.filter(w => Number(w.balance) < 0).map(w => w.user_id);

	const byPayment = new Map<string, LedgerRow[]>();
	const paymentIds = new Set(payments.map(p => p.id));
	const badPayments = new Set<string>();
	for (const row of ledger) {
		if (row.type === "CHARGE") continue;
		if (!row.payment_id || !paymentIds.has(row.payment_id)) {
			badPayments.add(row.payment_id ?? row.id);
			continue;
		}
		const list = byPayment.get(row.payment_id) ?? [];
		list.push(row);
		byPayment.set(row.payment_id, list);
	}
	for (const p of payments) {
		const rows = byPayment.get(p.id) ?? [];
		const debits = rows.filter(r => r.type === "PAYMENT");
		const refunds = rows.filter(r => r.type === "REFUND");
		const want = p.status === "COMPLETED" ? [1, 0] : p.status === "REFUNDED" ? [1, 1] : [0, 0];
		const matches = rows.every(r => r.user_id === p.user_id && Number(r.amount) === Number(p.amount));
		if (debits.length !== want[0] || refunds.length !== want[1] || !matches) badPayments.add(p.id);
	}

	return [
		toCheck("wallet-balance-equals-ledger", [...balanceMismatch, ...orphanLedger]),
		toCheck("no-negative-balance", [...negative, ...negativeRows]),
		toCheck("ledger-chain", [...chainBroken]),
		toCheck("payment-has-ledger-rows", [...badPayments])
	];
}
