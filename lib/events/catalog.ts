/**
 * The event catalog (docs/DESIGN.md section 7) with seed 003's payload fields. Producers write these payloads with
 * `appendOutbox` (which adds `eventId` and `version`); consumers read them from `EventMessage.payload`. Every
 * event's aggregate version is `EventMessage.version` (per reservation, per payment, per wallet).
 *
 * | event                   | seed 003 name              | aggregate   | consumers                 |
 * |-------------------------|----------------------------|-------------|---------------------------|
 * | reservation.held        | SeatReservedEvent          | reservation | notification              |
 * | reservation.confirmed   | ReservationConfirmedEvent  | reservation | ranking, notification     |
 * | reservation.cancelled   | ReservationRollbackEvent   | reservation | ranking, notification     |
 * | reservation.expired     | (seat hold TTL ran out)    | reservation | ranking, notification     |
 * | reservation.rolled_back | OrderRollbackEvent         | reservation | none yet                  |
 * | payment.completed       | PaymentCompletedEvent      | payment     | notification              |
 * | payment.refunded        | PaymentRollbackEvent       | payment     | notification              |
 * | points.charged          | (wallet top-up)            | wallet      | none yet                  |
 * | points.deducted         | PointDeductedEvent         | wallet      | none yet                  |
 * | points.refunded         | PointRollbackEvent         | wallet      | none yet                  |
 * | saga.failed             | (admin alert)              | saga        | notification              |
 *
 * Seed 003's OrderStatusUpdatedEvent is not one more event: each change of a reservation's status that others need
 * to know already has its own (held: PENDING, confirmed, cancelled, expired, rolled_back: PENDING again), in the
 * transaction that makes the change, with one version sequence per reservation, so a consumer that wants "the
 * status changed" subscribes to those. The one change without an event is PENDING -> PAYING (and CANCELLING), the
 * saga's own bookkeeping between two of them: publishing it would cost every checkout an outbox row for nobody.
 *
 * Seed 003's choreographed availability update (the concert service decrementing `seat_availability` when it
 * receives SeatReservedEvent) is deliberately not a consumer here: the concert service owns every seat change and
 * makes it itself, synchronously. `concert.confirmSeats` (saga step 3) inserts the sold seats and raises
 * `seat_availability.sold_seats` in one transaction, `concert.releaseSold` lowers it in the one that removes them,
 * and held seats are counted from the live holds at read time (availableSeats = total - sold - held). A second,
 * event-driven copy of the same count could only lag behind or drift from it (and would count a seat twice if the
 * event were redelivered); the database row that sells a seat is the one truth (docs/DESIGN.md section 3).
 */

import Validator, { type ValidationSchema } from "fastest-validator";
import type { EventMessage } from "./types";

/** seed 003 SeatReservedEvent {reservationId, scheduleId, seatIds, reservedAt, expiresAt} + who and which concert. */
export interface ReservationHeld {
	reservationId: string;
	userId: string;
	concertId: string;
	scheduleId: string;
	seatIds: string[];
	amount: number;
	reservedAt: string;
	expiresAt: string;
}

/** seed 003 ReservationConfirmedEvent {reservationId, scheduleId, seatIds} + who, which concert, how much. */
export interface ReservationConfirmed {
	reservationId: string;
	userId: string;
	concertId: string;
	scheduleId: string;
	seatIds: string[];
	amount: number;
}

export interface ReservationCancelled {
	reservationId: string;
	userId: string;
	concertId: string;
	scheduleId: string;
	seatIds: string[];
	amount: number;
	/** True when the reservation had been CONFIRMED (ranking takes its seats back off). */
	wasConfirmed: boolean;
	refundAmount?: number;
	reason: string;
}

/** seed 003 OrderRollbackEvent: a reservation back to PENDING after its payment's saga compensated. */
export interface ReservationRolledBack extends ReservationConfirmed {
	status: "PENDING";
	reason: string;
}

export interface ReservationExpired {
	reservationId: string;
	userId: string;
	concertId: string;
	scheduleId: string;
	seatIds: string[];
	amount: number;
}

/** seed 003 PaymentCompletedEvent. */
export interface PaymentCompleted {
	paymentId: string;
	sagaId: string;
	reservationId: string;
	userId: string;
	amount: number;
	paymentDate: string;
}

/** seed 003 PaymentRollbackEvent {paymentId, reason} + who and how much, and the wallet credit it made. */
export interface PaymentRefunded {
	paymentId: string;
	sagaId: string;
	/** null for a payment made outside a reservation (none today; the column allows it). */
	reservationId: string | null;
	userId: string;
	amount: number;
	transactionId: string;
	balanceAfter: number;
	reason: string | null;
	refundedAt: string;
}

export interface PointsCharged {
	userId: string;
	amount: number;
	transactionId: string;
	balanceAfter: number;
	chargedAt: string;
}

/** seed 003 PointDeductedEvent. */
export interface PointsDeducted {
	userId: string;
	amount: number;
	transactionId: string;
	paymentId: string;
	balanceAfter: number;
	transactionDate: string;
}

/** seed 003 PointRollbackEvent: the wallet credit of a refund (the wallet's stream then has every balance move). */
export interface PointsRefunded {
	userId: string;
	amount: number;
	transactionId: string;
	paymentId: string;
	balanceAfter: number;
	refundedAt: string;
}

/** The `saga.failed` admin alert: a saga parked FAILED with its dead letter (written in the same transaction). */
export interface SagaFailed {
	sagaId: string;
	type: string;
	key: string;
	step: string;
	phase: "forward" | "compensate";
	deadLetterId: string;
	error: unknown;
}

export interface EventCatalog {
	"reservation.held": ReservationHeld;
	"reservation.confirmed": ReservationConfirmed;
	"reservation.cancelled": ReservationCancelled;
	"reservation.expired": ReservationExpired;
	"reservation.rolled_back": ReservationRolledBack;
	"payment.completed": PaymentCompleted;
	"payment.refunded": PaymentRefunded;
	"points.charged": PointsCharged;
	"points.deducted": PointsDeducted;
	"points.refunded": PointsRefunded;
	"saga.failed": SagaFailed;
}

export type CatalogEventType = keyof EventCatalog;

/** An event of the catalog as a consumer receives it: its payload typed by its name and already validated. */
export type CatalogEvent<T extends CatalogEventType = CatalogEventType> = {
	[K in T]: Omit<EventMessage, "type" | "payload"> & { type: K; payload: EventCatalog[K] & Stamped };
}[T];

/** What `appendOutbox` adds to every payload. */
export interface Stamped {
	eventId: string;
	version: number;
}

const id = { type: "string", min: 1, max: 191 } as const;
const ids = { type: "array", min: 1, items: id } as const;
const points = { type: "number", integer: true, min: 0 } as const;
const time = { type: "string", min: 1 } as const;
const stamp = { eventId: { type: "string", optional: true }, version: { type: "number", integer: true, min: 1, optional: true } } as const;
const reservation = { reservationId: id, userId: id, concertId: id, scheduleId: id, seatIds: ids, amount: points } as const;
const balance = { type: "number", integer: true } as const;

/**
 * The payloads as fastest-validator schemas, checked at every consumer before its handler runs (a payload that
 * fails goes to the dead letter at once, with the reason). Each entry must accept what the interface above
 * describes (the schema is stricter in places the type cannot say: integers, non-negative amounts, non-empty ids);
 * `test/unit/events.catalog.test.ts` checks a sample of each, typed by its interface, and the integration tests run
 * the real producers' events through the consumers.
 */
export const EVENT_SCHEMAS: { [T in CatalogEventType]: ValidationSchema } = {
	"reservation.held": { ...stamp, ...reservation, reservedAt: time, expiresAt: time },
	"reservation.confirmed": { ...stamp, ...reservation },
	"reservation.cancelled": { ...stamp, ...reservation, wasConfirmed: "boolean", refundAmount: { ...points, optional: true }, reason: "string" },
	"reservation.expired": { ...stamp, ...reservation },
	"reservation.rolled_back": { ...stamp, ...reservation, status: { type: "equal", value: "PENDING" }, reason: "string" },
	"payment.completed": { ...stamp, paymentId: id, sagaId: id, reservationId: id, userId: id, amount: points, paymentDate: time },
	"payment.refunded": {
		...stamp,
		paymentId: id,
		sagaId: id,
		reservationId: { ...id, nullable: true },
		userId: id,
		amount: points,
		transactionId: id,
		balanceAfter: balance,
		reason: { type: "string", nullable: true },
		refundedAt: time
	},
	"points.charged": { ...stamp, userId: id, amount: points, transactionId: id, balanceAfter: balance, chargedAt: time },
	"points.deducted": { ...stamp, userId: id, amount: points, transactionId: id, paymentId: id, balanceAfter: balance, transactionDate: time },
	"points.refunded": { ...stamp, userId: id, amount: points, transactionId: id, paymentId: id, balanceAfter: balance, refundedAt: time },
	"saga.failed": {
		...stamp,
		sagaId: id,
		type: id,
		key: id,
		step: id,
		phase: { type: "enum", values: ["forward", "compensate"] },
		deadLetterId: id,
		error: { type: "any", optional: true, nullable: true }
	}
};

const validator = new Validator();
const checks = new Map<string, (payload: unknown) => true | { field?: string; message?: string }[]>();

export const isCatalogEvent = (type: string): type is CatalogEventType => Object.prototype.hasOwnProperty.call(EVENT_SCHEMAS, type);

/** What is wrong with a payload of `type` (empty: nothing), in the validator's words with the field names. */
export function payloadProblems(type: CatalogEventType, payload: unknown): string[] {
	let check = checks.get(type);
	if (!check) {
		check = validator.compile({ $$root: true, type: "object", props: EVENT_SCHEMAS[type] }) as (
			payload: unknown
		) => true | { field?: string; message?: string }[];
		checks.set(type, check);
	}
	const result = check(payload);
	return result === true ? [] : result.map(r => r.message ?? `invalid ${r.field ?? "payload"}`);
}
