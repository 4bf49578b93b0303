/**
 * Errors of the payment context, each with a stable `type` and ids only in `data`. The client errors are
 * non-retryable business rejections (a saga compensates at once, docs/DESIGN.md section 4); only
 * PAYMENT_STORE_UNAVAILABLE is retryable.
 */
import { Errors } from "moleculer";

/** Not enough points for the debit; nothing was changed. */
export class InsufficientPointsError extends Errors.MoleculerClientError {
	constructor(userId: string, amount: number) {
		super("Not enough points", 402, "INSUFFICIENT_POINTS", { userId, amount });
		this.name = "InsufficientPointsError";
	}
}

/** A state-changing call that must be idempotent came without an Idempotency-Key. */
export class IdempotencyKeyRequiredError extends Errors.MoleculerClientError {
	constructor() {
		super("The Idempotency-Key header is required", 400, "IDEMPOTENCY_KEY_REQUIRED");
		this.name = "IdempotencyKeyRequiredError";
	}
}

/** The Idempotency-Key is not 1..255 printable characters. */
export class IdempotencyKeyInvalidError extends Errors.MoleculerClientError {
	constructor() {
		super("The Idempotency-Key must be 1..255 printable characters", 400, "IDEMPOTENCY_KEY_INVALID");
		this.name = "IdempotencyKeyInvalidError";
	}
}

/** The key was used before for a different request (another amount, user or reservation). */
export class IdempotencyKeyReusedError extends Errors.MoleculerClientError {
	constructor(data: Record<string, string>) {
		super("This idempotency key was used for a different request", 422, "IDEMPOTENCY_KEY_REUSED", data);
		this.name = "IdempotencyKeyReusedError";
	}
}

/**
 * The saga's payment was compensated (refunded, or voided because the refund ran before any payment existed):
 * a late or replayed `pay` must not debit after its compensation.
 */
export class PaymentVoidedError extends Errors.MoleculerClientError {
	constructor(sagaId: string, paymentId?: string) {
		super("The payment of this saga was voided or refunded", 409, "PAYMENT_VOIDED", paymentId ? { sagaId, paymentId } : { sagaId });
		this.name = "PaymentVoidedError";
	}
}

/** A charge would push the balance over the wallet's ceiling. */
export class BalanceLimitError extends Errors.MoleculerClientError {
	constructor(userId: string, limit: number) {
		super("The charge would exceed the wallet's balance limit", 422, "BALANCE_LIMIT_EXCEEDED", { userId, limit: String(limit) });
		this.name = "BalanceLimitError";
	}
}

/** The database is busy or unreachable: the caller may retry (every operation here is idempotent). */
export class PaymentStoreUnavailableError extends Errors.MoleculerRetryableError {
	constructor() {
		super("Payment store temporarily unavailable", 503, "PAYMENT_STORE_UNAVAILABLE");
		this.name = "PaymentStoreUnavailableError";
	}
}
