/**
 * The event catalog (DESIGN.md section 7) with seed 003's payload fields. Producers write these payloads with
 * `appendOutbox` (which adds `eventId` and `version`); consumers read them from `EventMessage.payload`. Every
 * event's aggregate version is `EventMessage.version` (per reservation, per payment, per wallet).
 *
 * | event                  | seed 003 name              | aggregate   | consumers                 |
 * |------------------------|----------------------------|-------------|---------------------------|
 * | reservation.held       | SeatReservedEvent          | reservation | notification              |
 * | reservation.confirmed  | ReservationConfirmedEvent  | reservation | ranking, notification     |
 * | reservation.cancelled  | ReservationRollbackEvent   | reservation | ranking, notification     |
 * | reservation.expired    | (seat hold TTL ran out)    | reservation | ranking, notification     |
 * | payment.completed      | PaymentCompletedEvent      | payment     | notification              |
 * | payment.refunded       | PaymentRollbackEvent       | payment     | notification              |
 * | points.charged         | (wallet top-up)            | wallet      | none yet                  |
 * | points.deducted        | PointDeductedEvent         | wallet      | none yet                  |
 * | saga.failed            | (admin alert)              | broker event, not durable: the saga's dead letter is | notification |
 *
 * Seed 003's choreographed availability update (the concert service decrementing `seat_availability` when it
 * receives SeatReservedEvent) is deliberately not a consumer here: in this design the concert service changes
 * seat state itself, synchronously, in its own transaction (a hold is `concert.hold`, a sale is
 * `concert.confirmSeats` inside the saga, and availability is counted from the sold seats and live holds it owns).
 * A second, event-driven copy of the same count could only lag behind or drift from it; the database row that
 * sells a seat is the one truth (DESIGN.md section 3).
 */

/** seed 003 SeatReservedEvent {reservationId, scheduleId, seatIds, reservedAt, expiresAt} + who and which concert. */
export interface ReservationHeld {
	reservationId: string;
	userId: string;
	concertId: string;
	scheduleId: string;
	seatIds: string[];
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
	/** True when the reservation had been CONFIRMED (ranking takes its seats back off). */
	wasConfirmed: boolean;
	refundAmount?: number;
	reason: string;
}

export interface ReservationExpired {
	reservationId: string;
	userId: string;
	concertId: string;
	scheduleId: string;
	seatIds: string[];
}

/** seed 003 PaymentCompletedEvent. */
export interface PaymentCompleted {
	paymentId: string;
	reservationId: string;
	userId: string;
	amount: number;
	paymentDate: string;
}

/** seed 003 PaymentRollbackEvent {paymentId, reason} + who and how much. */
export interface PaymentRefunded {
	paymentId: string;
	reservationId: string;
	userId: string;
	amount: number;
	reason: string;
}

export interface PointsCharged {
	userId: string;
	amount: number;
	transactionId: string;
}

/** seed 003 PointDeductedEvent. */
export interface PointsDeducted {
	userId: string;
	amount: number;
	transactionId: string;
	paymentId: string;
}

export interface EventCatalog {
	"reservation.held": ReservationHeld;
	"reservation.confirmed": ReservationConfirmed;
	"reservation.cancelled": ReservationCancelled;
	"reservation.expired": ReservationExpired;
	"payment.completed": PaymentCompleted;
	"payment.refunded": PaymentRefunded;
	"points.charged": PointsCharged;
	"points.deducted": PointsDeducted;
}

export type CatalogEventType = keyof EventCatalog;
