/** Pure rules of the reservation context, tested without a broker. */
import crypto from "crypto";
import { NotFoundError } from "../../lib/errors";
import { ReservationNotCancellableError, ReservationNotPayableError, ReservationStateError } from "./errors";

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
		seats: seats.filter(s => s.reservation_id === row.id).map(s => ({ id: s.seat_id, label: s.label, grade: s.grade, price: Number(s.price) })),
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

/** A reservation's columns that say which saga moved it: `saga_id` (the last one), `paid_saga_id` (the payment's). */
type SagaColumn = "saga_id" | "paid_saga_id";

/** A saga's forward step: applied by this saga once; a repeat of it answers as before; anything else is refused. */
interface StepTransition {
	kind: "step";
	from: readonly ReservationStatus[];
	to: ReservationStatus;
	/** Unchanged, yet this saga's own earlier run of the step: in one of `statuses`, moved by this saga (`by`). */
	repeat: { statuses: readonly ReservationStatus[]; by: SagaColumn };
	/** What any other caller is answered, given the status the reservation is in. */
	refusal(reservationId: string, status: ReservationStatus): Error;
}

/**
 * A compensation (undoes only what its own saga did, never refused: it answers the status it leaves) or the
 * expiry sweep (a reservation it lost to a payment is left alone). `PREVIOUS_STATUS`: back to the status kept when
 * the cancellation began.
 */
interface UndoTransition {
	kind: "compensation" | "sweep";
	from: readonly ReservationStatus[];
	to: ReservationStatus | "PREVIOUS_STATUS";
}

/**
 * The reservation's state machine, one row per transition, named after the action (or the sweep) that makes it.
 * Each is one conditional UPDATE in reservation.repo.ts on these `from` states (plus its saga fence), whose
 * affected-row count says whether it applied: two racers (the sweeper and a payment, two sagas) cannot both win.
 * When a forward step changed nothing, `decide` reads from here whether it is that saga's own repeat or a refusal.
 */
export const TRANSITIONS = {
	/** ConfirmReservation step 0, while the hold runs: the saga takes the reservation. */
	markPaying: {
		kind: "step",
		from: ["PENDING"],
		to: "PAYING",
		repeat: { statuses: ["PAYING", "CONFIRMED"], by: "saga_id" },
		// Still PENDING yet not taken: its hold ran out (or the saga was voided).
		refusal: (id, status) => new ReservationNotPayableError(id, status === "PENDING" ? "EXPIRED" : status)
	},
	/** Compensation of markPaying. */
	revertPaying: { kind: "compensation", from: ["PAYING"], to: "PENDING" },
	/** ConfirmReservation step 2: paid, with its reservation.confirmed event. */
	confirm: {
		kind: "step",
		from: ["PAYING"],
		to: "CONFIRMED",
		repeat: { statuses: ["CONFIRMED"], by: "paid_saga_id" },
		refusal: (id, status) => new ReservationStateError(id, status, "PAYING")
	},
	/** Compensation of confirm: the confirmation is undone by cancelling (a PAYING one is reverted instead). */
	voidConfirmation: { kind: "compensation", from: ["CONFIRMED"], to: "CANCELLED" },
	/** Cancel sagas, step 0, from the status the saga expects. */
	beginCancel: {
		kind: "step",
		from: ["PENDING", "CONFIRMED"],
		to: "CANCELLING",
		repeat: { statuses: ["CANCELLING", "CANCELLED"], by: "saga_id" },
		refusal: (id, status) => new ReservationNotCancellableError(id, status)
	},
	/** Compensation of beginCancel. */
	abortCancel: { kind: "compensation", from: ["CANCELLING"], to: "PREVIOUS_STATUS" },
	/** Cancel sagas, last step, with its reservation.cancelled event. */
	finishCancel: {
		kind: "step",
		from: ["CANCELLING"],
		to: "CANCELLED",
		repeat: { statuses: ["CANCELLED"], by: "saga_id" },
		refusal: (id, status) => new ReservationStateError(id, status, "CANCELLING")
	},
	/** The sweeper: a hold that ran out before any payment took it. */
	expire: { kind: "sweep", from: ["PENDING"], to: "EXPIRED" }
} as const satisfies Record<string, StepTransition | UndoTransition>;

/** The transitions a saga's forward step makes. */
export type StepName = { [K in keyof typeof TRANSITIONS]: (typeof TRANSITIONS)[K]["kind"] extends "step" ? K : never }[keyof typeof TRANSITIONS];

/** What a forward step answers: its change, a repeat of this saga's own (the status as it is), or a refusal. */
export type StepVerdict = { outcome: "apply" | "repeat"; status: ReservationStatus } | { outcome: "refuse"; error: Error };

/**
 * The verdict on a forward step of saga `sagaId` from its conditional UPDATE: `changed` rows (1: it applied) and,
 * when it changed nothing, the reservation as it is now (null: there is none). Only a repeat changes nothing and
 * answers as the first run did; every other caller gets the step's refusal.
 */
export function decide(
	step: StepName,
	changed: number,
	row: Pick<ReservationRow, "status" | "saga_id" | "paid_saga_id"> | null,
	reservationId: string,
	sagaId: string
): StepVerdict {
	const t: StepTransition = TRANSITIONS[step];
	if (changed === 1) return { outcome: "apply", status: t.to };
	if (!row) return { outcome: "refuse", error: new NotFoundError("reservation", reservationId) };
	if (row[t.repeat.by] === sagaId && t.repeat.statuses.includes(row.status)) return { outcome: "repeat", status: row.status };
	return { outcome: "refuse", error: t.refusal(reservationId, row.status) };
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
