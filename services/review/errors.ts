import { Errors } from "moleculer";

/** Only a user with a confirmed reservation for the concert may review it (seed 003, review service). */
export class ReviewNotAllowedError extends Errors.MoleculerClientError {
	constructor(concertId: string) {
		super("Only a user with a confirmed reservation for this concert may review it", 403, "REVIEW_NOT_ALLOWED", { concertId });
		this.name = "ReviewNotAllowedError";
	}
}

export class ReviewExistsError extends Errors.MoleculerClientError {
	constructor(concertId: string) {
		super("You have already reviewed this concert", 409, "REVIEW_EXISTS", { concertId });
		this.name = "ReviewExistsError";
	}
}
