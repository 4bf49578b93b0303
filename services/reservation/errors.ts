import { Errors } from "moleculer";

/** Expired, cancelled, already paid or being paid: POST /api/payments answers 409. */
export class ReservationNotPayableError extends Errors.MoleculerClientError {
	constructor(reservationId: string, status: string) {
		super(`Reservation is ${status.toLowerCase()} and cannot be paid`, 409, "RESERVATION_NOT_PAYABLE", { reservationId, status });
		this.name = "ReservationNotPayableError";
	}
}

export class ReservationNotCancellableError extends Errors.MoleculerClientError {
	constructor(reservationId: string, status: string) {
		super(`Reservation is ${status.toLowerCase()} and cannot be cancelled`, 409, "RESERVATION_NOT_CANCELLABLE", { reservationId, status });
		this.name = "ReservationNotCancellableError";
	}
}

/** The waiting-room token is missing, not ACTIVE, or not this user's for this concert. */
export class QueueTokenRequiredError extends Errors.MoleculerClientError {
	constructor() {
		super("An ACTIVE waiting-room token for this concert is required (X-Queue-Token)", 403, "QUEUE_TOKEN_NOT_ACTIVE");
		this.name = "QueueTokenNotActiveError";
	}
}

/** A participant step was asked to act on a reservation in a state the saga did not leave it in. */
export class ReservationStateError extends Errors.MoleculerClientError {
	constructor(reservationId: string, status: string, expected: string) {
		super(`Reservation is ${status}, expected ${expected}`, 409, "RESERVATION_STATE_CONFLICT", { reservationId, status });
		this.name = "ReservationStateError";
	}
}

/**
 * The per-buyer limits (MAX_SEATS_PER_BUYER per user and schedule across PENDING, PAYING and CONFIRMED
 * reservations; one open reservation per user and schedule): nothing was held.
 */
export class SeatLimitExceededError extends Errors.MoleculerClientError {
	constructor(scheduleId: string, limit: number, taken: number) {
		super(`At most ${limit} seats per buyer for this show; you have ${taken}`, 409, "SEAT_LIMIT_EXCEEDED", { scheduleId, limit, taken });
		this.name = "SeatLimitExceededError";
	}
}

export class OpenReservationExistsError extends Errors.MoleculerClientError {
	constructor(scheduleId: string, reservationId: string) {
		super("You already have an open reservation for this show: pay or cancel it first", 409, "OPEN_RESERVATION_EXISTS", { scheduleId, reservationId });
		this.name = "OpenReservationExistsError";
	}
}

/** A confirmed booking past the cancellation cutoff (CANCEL_CUTOFF_HOURS before the show) is not refunded. */
export class CancellationClosedError extends Errors.MoleculerClientError {
	constructor(reservationId: string, cutoff: string) {
		super("The cancellation period for this show has ended", 409, "CANCELLATION_CLOSED", { reservationId, cutoff });
		this.name = "CancellationClosedError";
	}
}

/** The show has started (or its sales closed): no payment any more. */
export class ShowSalesClosedError extends Errors.MoleculerClientError {
	constructor(reservationId: string) {
		super("Sales for this show are closed", 409, "SALES_CLOSED", { reservationId });
		this.name = "SalesClosedError";
	}
}
