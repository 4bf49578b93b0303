import { Errors } from "moleculer";

/**
 * The token is not an ACTIVE token of this user for this concert: unknown, malformed, still waiting, lapsed,
 * left, someone else's, or for another concert. One answer for all of them, so a caller learns nothing about
 * tokens that are not theirs.
 */
export class QueueTokenNotActiveError extends Errors.MoleculerClientError {
	constructor(concertId?: string) {
		super("The queue token is not active for this user and concert", 403, "QUEUE_TOKEN_NOT_ACTIVE", concertId ? { concertId } : undefined);
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
