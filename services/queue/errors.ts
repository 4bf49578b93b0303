import { Errors } from "moleculer";

/**
 * The token is not an ACTIVE token of this user for this concert: unknown, malformed, still waiting, lapsed,
 * left, someone else's, or for another concert. One answer for all of them, so a caller learns nothing about
 * tokens that are not theirs.
 */
export class QueueTokenNotActiveError extends Errors.MoleculerClientError {
	/** `status`: what the caller's own token is instead (WAITING, EXPIRED, SOLD_OUT...), when it is theirs. */
	constructor(concertId?: string, status?: string) {
		super(
			"The queue token is not active for this user and concert",
			403,
			"QUEUE_TOKEN_NOT_ACTIVE",
			concertId ? { concertId, ...(status ? { status } : {}) } : undefined
		);
		this.name = "QueueTokenNotActiveError";
	}
}

/** A service the queue needs (the concert catalog) is not reachable: transient, safe to retry. */
export class QueueDependencyUnavailableError extends Errors.MoleculerRetryableError {
	constructor() {
		super("Service temporarily unavailable", 503, "SERVICE_UNAVAILABLE");
		this.name = "ServiceUnavailableError";
	}
}

/**
 * The concert's line is closed: SOLD_OUT (nothing left to sell: no seat available and none held) or CLOSED (its
 * sales have ended). Entering is refused with that type.
 */
export class QueueLineClosedError extends Errors.MoleculerClientError {
	constructor(concertId: string, state: "SOLD_OUT" | "CLOSED") {
		super(
			state === "SOLD_OUT" ? "This concert is sold out" : "Sales for this concert are closed",
			409,
			state === "SOLD_OUT" ? "SOLD_OUT" : "SALES_CLOSED",
			{ concertId }
		);
		this.name = "QueueLineClosedError";
	}
}
