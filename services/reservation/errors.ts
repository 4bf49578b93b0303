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
