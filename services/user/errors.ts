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
