/**
 * Errors of the concert context. Callers (the reservation service, the saga engine) branch on `type` and on the
 * `retryable` flag, never on the class: classes do not survive the transporter.
 */
import { Errors } from "moleculer";

/**
 * Some of the asked seats are held by someone else or sold: nothing was held (all or nothing). `data.seatIds`
 * names exactly the seats that were in the way, so a client can pick others.
 */
export class SeatUnavailableError extends Errors.MoleculerClientError {
	constructor(seatIds: string[]) {
		super("Some of the seats are not available", 409, "SEAT_UNAVAILABLE", { seatIds: [...seatIds] });
		this.name = "SeatUnavailableError";
	}
}

/** Seat ids that do not belong to the schedule: reads like a missing resource (docs/API.md: 404 NOT_FOUND). */
export class SeatNotFoundError extends Errors.MoleculerClientError {
	constructor(seatIds: string[]) {
		super("seat not found", 404, "NOT_FOUND", { resource: "seat", seatIds: [...seatIds] });
		this.name = "NotFoundError";
	}
}

/**
 * A re-hold found the seats briefly held by another caller (one whose own check is about to see the seat SOLD
 * and let go). Transient: the saga engine retries a compensation that fails with it.
 */
export class SeatsBusyError extends Errors.MoleculerRetryableError {
	constructor(seatIds: string[]) {
		super("Seats are briefly busy, retry", 503, "SEATS_BUSY", { seatIds: [...seatIds] });
		this.name = "SeatsBusyError";
	}
}

/** A sale transaction lost a deadlock or a lock wait: nothing was written, and a retry is safe. */
export class SaleContentionError extends Errors.MoleculerRetryableError {
	constructor() {
		super("Seat sale contended, retry", 503, "SALE_CONTENDED");
		this.name = "SaleContentionError";
	}
}

/**
 * A hold for an owner whose caller gave up on it (`concert.release` with `abandon`): it arrived after the give-up
 * and is refused, so it cannot block seats with no reservation behind it. Nobody waits for this answer.
 */
export class HoldAbandonedError extends Errors.MoleculerClientError {
	constructor(owner: string) {
		super("The hold was given up by its caller", 409, "HOLD_ABANDONED", { owner });
		this.name = "HoldAbandonedError";
	}
}

/** The concert's sales have not opened yet (its waiting room takes entries into the pre-queue meanwhile). */
export class SalesNotOpenError extends Errors.MoleculerClientError {
	constructor(concertId: string, opensAt: string | null) {
		super("Sales for this concert have not opened yet", 409, "SALES_NOT_OPEN", { concertId, opensAt });
		this.name = "SalesNotOpenError";
	}
}

/** The concert's sales have closed, or the show has started: no holds, sales or payments any more. */
export class SalesClosedError extends Errors.MoleculerClientError {
	constructor(concertId: string, scheduleId?: string) {
		super("Sales for this show are closed", 409, "SALES_CLOSED", { concertId, ...(scheduleId ? { scheduleId } : {}) });
		this.name = "SalesClosedError";
	}
}
