import { Errors } from "moleculer";

/** `saga.start` with a type no definition in sagas/registry.ts has. */
export class UnknownSagaTypeError extends Errors.MoleculerClientError {
	constructor(type: string) {
		super("Unknown saga type", 422, "UNKNOWN_SAGA_TYPE", { type });
		this.name = "UnknownSagaTypeError";
	}
}

/** An operator retry of a saga that is not FAILED (running, finished, or resumed by another retry already). */
export class SagaNotRetryableError extends Errors.MoleculerClientError {
	constructor(id: string, status: string) {
		super("Only a FAILED saga can be retried", 409, "SAGA_NOT_RETRYABLE", { id, status });
		this.name = "SagaNotRetryableError";
	}
}

/** A dead letter that was retried or resolved already. */
export class DeadLetterClosedError extends Errors.MoleculerClientError {
	constructor(id: string, status: string) {
		super("This dead letter was handled already", 409, "DEAD_LETTER_CLOSED", { id, status });
		this.name = "DeadLetterClosedError";
	}
}

/** `saga.start` with a key that already belongs to a saga of another type: keys are unique across types. */
export class SagaKeyConflictError extends Errors.MoleculerClientError {
	constructor(key: string, existingType: string) {
		super("This key belongs to a saga of another type", 409, "SAGA_KEY_CONFLICT", { key, type: existingType });
		this.name = "SagaKeyConflictError";
	}
}
