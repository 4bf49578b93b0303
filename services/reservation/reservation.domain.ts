/** Pure rules of the reservation context, tested without a broker. */
import crypto from "crypto";

export type ReservationStatus = "PENDING" | "PAYING" | "CONFIRMED" | "CANCELLING" | "CANCELLED" | "EXPIRED";

export interface ReservationRow {
	id: string;
	user_id: string;
	concert_id: string;
	schedule_id: string;
	status: ReservationStatus;
	amount: number | string;
	expires_at: Date | string;
	saga_id: string | null;
	paid_saga_id: string | null;
	payment_id: string | null;
	previous_status: ReservationStatus | null;
	refund_amount: number | string | null;
	/** The show's start, from the hold (null on rows made before the calendar existed). */
	starts_at: Date | string | null;
	created_at: Date | string;
	updated_at: Date | string;
}

export interface SeatRow {
	reservation_id: string;
	seat_id: string;
	label: string;
	grade: string;
	price: number | string;
}

export interface ReservationView {
	id: string;
	status: ReservationStatus;
	userId: string;
	concertId: string;
	scheduleId: string;
	seats: { id: string; label: string; grade: string; price: number }[];
	amount: number;
	expiresAt: string;
	createdAt: string;
	updatedAt: string;
	refund?: { amount: number };
}

/** MariaDB hands back Dates; SQLite the `sqlTime` text (UTC without a zone). */
export const iso = (d: Date | string): string =>
	(d instanceof Date ? d : new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(d) ? d : `${d.replace(" ", "T")}Z`)).toISOString();

/** The API's view; CANCELLING shows as it is (a cancellation in flight), PAYING likewise. */
export function toView(row: ReservationRow, seats: SeatRow[]): ReservationView {
	const view: ReservationView = {
		id: row.id,
		status: row.status,
		userId: row.user_id,
		concertId: row.concert_id,
		scheduleId: row.schedule_id,
		seats: seats
			.filter(s => s.reservation_id === row.id)
			.map(s => ({ id: s.seat_id, label: s.label, grade: s.grade, price: Number(s.price) })),
		amount: Number(row.amount),
		expiresAt: iso(row.expires_at),
		createdAt: iso(row.created_at),
		updatedAt: iso(row.updated_at)
	};
	if (row.refund_amount !== null && row.refund_amount !== undefined) view.refund = { amount: Number(row.refund_amount) };
	return view;
}

/** Can a payment start? PENDING and not past its hold. */
export function payable(row: Pick<ReservationRow, "status" | "expires_at">, now: Date): boolean {
	return row.status === "PENDING" && new Date(iso(row.expires_at)).getTime() > now.getTime();
}

/** Which cancellation saga fits: a PENDING one frees its holds, a CONFIRMED one also refunds and unsells. */
export function cancelSagaType(status: ReservationStatus): "CancelPendingReservation" | "CancelConfirmedReservation" | null {
	if (status === "PENDING") return "CancelPendingReservation";
	if (status === "CONFIRMED") return "CancelConfirmedReservation";
	return null;
}

/** seatIds must be 1..4 distinct ids. Returns the offending field errors, empty when fine. */
export function seatIdProblems(seatIds: string[]): string[] {
	const problems: string[] = [];
	if (new Set(seatIds).size !== seatIds.length) problems.push("seatIds must not repeat a seat");
	return problems;
}

/** Statuses whose seats count against the buyer's limit (CANCELLING may still go back to CONFIRMED). */
export const COUNTED_STATUSES = ["PENDING", "PAYING", "CONFIRMED", "CANCELLING"] as const;

/**
 * How long past its hold a PENDING reservation still counts for its buyer: a payment that read the clock just
 * before the expiry may still be moving it to PAYING (its UPDATE waiting on a busy database), and the expiry
 * sweeper marks it EXPIRED within seconds anyway.
 */
export const EXPIRY_GRACE_MS = 10_000;

/**
 * The per-buyer rule for a new reservation of `wanted` seats, from the buyer's reservations of the schedule in
 * COUNTED_STATUSES: one open (PENDING, PAYING) at a time, and at most `limit` seats in all. A PENDING reservation
 * more than EXPIRY_GRACE_MS past its hold is neither open nor counted: it can no longer be paid.
 */
export function buyerVerdict(
	rows: { id: string; status: string; expires_at: Date | string; seats: number }[],
	wanted: number,
	limit: number,
	now: Date
): { ok: true } | { ok: false; open: string } | { ok: false; taken: number } {
	const live = rows.filter(r => !(r.status === "PENDING" && new Date(iso(r.expires_at)).getTime() + EXPIRY_GRACE_MS <= now.getTime()));
	const open = live.find(r => r.status === "PENDING" || r.status === "PAYING");
	if (open) return { ok: false, open: open.id };
	const taken = live.reduce((n, r) => n + Number(r.seats), 0);
	if (taken + wanted > limit) return { ok: false, taken };
	return { ok: true };
}

/** When a confirmed booking stops being cancellable: `cutoffHours` before the show. */
export function cancelCutoff(startsAt: Date | string, cutoffHours: number): Date {
	return new Date(new Date(iso(startsAt)).getTime() - cutoffHours * 3600_000);
}

/** Longest Idempotency-Key kept as it is inside a saga key; a longer one (the API allows 255) is hashed. */
const RAW_KEY_MAX = 100;

/**
 * The saga key of a payment or a cancellation: `<kind>:<reservationId>:<key>`, one saga per reservation and
 * Idempotency-Key. Keys longer than RAW_KEY_MAX go in as their SHA-256, so every key the API allows fits the
 * saga's 191-character key (a key of 147-255 characters used to fail with a 422 on the internal field `key`).
 */
export function sagaKeyOf(kind: "confirm" | "cancel", reservationId: string, idempotencyKey: string): string {
	const part = idempotencyKey.length > RAW_KEY_MAX ? `sha256:${crypto.createHash("sha256").update(idempotencyKey).digest("hex")}` : idempotencyKey;
	return `${kind}:${reservationId}:${part}`;
}
