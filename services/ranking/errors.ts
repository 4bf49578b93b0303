import { Errors } from "moleculer";

/** The reservation service (the truth a rebuild reads) could not be asked: a 503, never the broker's 404. */
export class RankingTruthUnavailableError extends Errors.MoleculerRetryableError {
	constructor() {
		super("Service temporarily unavailable", 503, "SERVICE_UNAVAILABLE", { service: "reservation" });
		this.name = "ServiceUnavailableError";
	}
}

/** The ranking's store holds no ranking yet (lost with Redis, being rebuilt): an event is retried later. */
export class RankingNotReadyError extends Errors.MoleculerRetryableError {
	constructor() {
		super("The ranking is being rebuilt", 503, "RANKING_NOT_READY");
		this.name = "RankingNotReadyError";
	}
}

/** Another node's rebuild still runs after the wait: try again in a moment. */
export class RankingRebuildRunningError extends Errors.MoleculerClientError {
	constructor() {
		super("A ranking rebuild is already running", 409, "RANKING_REBUILD_RUNNING");
		this.name = "RankingRebuildRunningError";
	}
}
