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
 * | saga.failed            | (admin alert)              | broker event; the saga's dead letter is the record | notification |
 *
 * Seed 003's choreographed availability update (the concert service decrementing `seat_availability` when it
 * receives SeatReservedEvent) is deliberately not a consumer here: the concert service owns every seat change and
 * makes it itself, synchronously. `concert.confirmSeats` (saga step 3) inserts the sold seats and raises
 * `seat_availability.sold_seats` in one transaction, `concert.releaseSold` lowers it in the one that removes them,
 * and held seats are counted from the live holds at read time (availableSeats = total - sold - held). A second,
 * event-driven copy of the same count could only lag behind or drift from it (and would count a seat twice if the
 * event were redelivered); the database row that sells a seat is the one truth (DESIGN.md section 3).
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
