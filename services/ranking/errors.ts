import { Errors } from "moleculer";

/** The reservation service (the truth a rebuild reads) could not be asked: a 503, never the broker's 404. */
export class RankingTruthUnavailableError extends Errors.MoleculerRetryableError {
	constructor() {
		super("Service temporarily unavailable", 503, "SERVICE_UNAVAILABLE", { service: "reservation" });
		this.name = "ServiceUnavailableError";
	}
}
