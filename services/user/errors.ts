import { Errors } from "moleculer";

export class EmailTakenError extends Errors.MoleculerClientError {
	constructor() {
		super("An account with this email already exists", 409, "EMAIL_TAKEN");
		this.name = "EmailTakenError";
	}
}

/** One answer for a wrong password and an unknown email: the response never tells which. */
export class InvalidCredentialsError extends Errors.MoleculerClientError {
	constructor() {
		super("Invalid email or password", 401, "INVALID_CREDENTIALS");
		this.name = "InvalidCredentialsError";
	}
}

/**
 * Too many login attempts for this account or from this address in the current minute (LOGIN_LIMIT_PER_ACCOUNT,
 * LOGIN_LIMIT_PER_ADDRESS). The gateway turns `retryAfterSec` into a Retry-After header.
 */
export class LoginThrottledError extends Errors.MoleculerClientError {
	constructor(retryAfterSec: number) {
		super("Too many sign-in attempts, try again later", 429, "LOGIN_THROTTLED", { retryAfterSec });
		this.name = "LoginThrottledError";
	}
}

/** This node is hashing as many passwords as it may and its queue is full: try again in a second. */
export class AuthBusyError extends Errors.MoleculerClientError {
	constructor() {
		super("Too many sign-ins at this moment, try again shortly", 429, "AUTH_BUSY", { retryAfterSec: 1 });
		this.name = "AuthBusyError";
	}
}
