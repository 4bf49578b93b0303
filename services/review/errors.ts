import { Errors } from "moleculer";

/** Only a user with a confirmed reservation for the concert may review it (seed 003, review service). */
export class ReviewNotAllowedError extends Errors.MoleculerClientError {
	/** `reason`: NO_BOOKING (no confirmed booking of this concert) or SHOW_NOT_YET (the show has not taken place). */
	constructor(concertId: string, reason: "NO_BOOKING" | "SHOW_NOT_YET" = "NO_BOOKING") {
		super(
			reason === "SHOW_NOT_YET"
				? "A review can be written once the show has taken place"
				: "Only a user with a confirmed booking for this concert may review it",
			403,
			"REVIEW_NOT_ALLOWED",
			{ concertId, reason }
		);
		this.name = "ReviewNotAllowedError";
	}
}

export class ReviewExistsError extends Errors.MoleculerClientError {
	constructor(concertId: string) {
		super("You have already reviewed this concert", 409, "REVIEW_EXISTS", { concertId });
		this.name = "ReviewExistsError";
	}
}

/**
 * The catalog or the reservation service could not be asked. Without this the broker's SERVICE_NOT_FOUND would
 * reach the client as a 404, which would claim the concert does not exist.
 */
export class ReviewPeerUnavailableError extends Errors.MoleculerRetryableError {
	constructor(service: string) {
		super("Service temporarily unavailable", 503, "SERVICE_UNAVAILABLE", { service });
		this.name = "ServiceUnavailableError";
	}
}

/** Calls a peer; "no such service / node" becomes a retryable 503 instead of a 404. */
export async function callPeer<T>(service: string, call: () => Promise<T>): Promise<T> {
	try {
		return await call();
	} catch (err) {
		const type = (err as { type?: string }).type;
		if (type === "SERVICE_NOT_FOUND" || type === "SERVICE_NOT_AVAILABLE") throw new ReviewPeerUnavailableError(service);
		throw err;
	}
}
