/**
 * Errors the gateway raises itself, before any service sees the request. All are 4xx with a stable type: a bad
 * request is the client's fault, never a server fault, so none of them counts against a circuit breaker.
 */
import { Errors } from "moleculer";

/** Idempotency-Key problems (docs/API.md conventions): 400 missing or malformed, 409 in progress, 422 reused. */
export class IdempotencyError extends Errors.MoleculerClientError {
	constructor(code: number, type: string, message: string) {
		super(message, code, type);
		this.name = "IdempotencyError";
	}
}

/** A JSON body or query past the gateway's structural limits (nesting depth, keys, items, values). */
export class BodyTooComplexError extends Errors.MoleculerClientError {
	constructor(limit: "depth" | "keys" | "items" | "values", max: number) {
		super(`The request is too deeply nested or too large (${limit} at most ${max})`, 400, "BODY_TOO_COMPLEX", { limit, max });
		this.name = "BadRequestError";
	}
}

/** A body that is JSON but not an object (every route takes an object or nothing). */
export class InvalidBodyError extends Errors.MoleculerClientError {
	constructor() {
		super("The request body must be a JSON object", 400, "INVALID_BODY");
		this.name = "BadRequestError";
	}
}

/** A string with control characters (NUL and friends) or broken UTF-16 anywhere in the body, query or path. */
export class InvalidCharactersError extends Errors.MoleculerClientError {
	constructor(field: string) {
		super("The request has control characters or invalid Unicode in a field", 400, "INVALID_CHARACTERS", [{ field }]);
		this.name = "BadRequestError";
	}
}
