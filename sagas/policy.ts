/**
 * Pure rules of the engine: which errors are business rejections, how long to back off, what a saga keeps of an
 * error. Error classes do not survive the transporter, so errors are read by their `code`, `type` and
 * `retryable` flag only.
 */
import type { SagaDefinition, SagaError, StepPhase } from "./types";

interface ErrorLike {
	name?: unknown;
	message?: unknown;
	code?: unknown;
	type?: unknown;
	data?: unknown;
	retryable?: unknown;
}

/**
 * A business rejection is a non-retryable client error (4xx): the participant answered "no", and asking again
 * would get the same answer. Everything else (a timeout, an unreachable node, a `retryable` error, a 5xx) is
 * transient: the participant may or may not have applied the call, so it is retried under the same key.
 */
export function isRejection(err: unknown): boolean {
	const e = (err ?? {}) as ErrorLike;
	if (e.retryable === true) return false;
	return typeof e.code === "number" && e.code >= 400 && e.code < 500;
}

/** Exponential backoff: base, 2*base, 4*base... capped at `maxMs`. `attempt` counts from 1 (the failed call). */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number): number {
	const exp = Math.min(attempt - 1, 20);
	return Math.min(maxMs, Math.max(0, baseMs) * 2 ** exp);
}

/** What the saga journals and returns of an error: type, code, message and data; never a stack. */
export function toSagaError(def: Pick<SagaDefinition<unknown>, "rejections">, err: unknown, step: string, phase: StepPhase): SagaError {
	const e = (err ?? {}) as ErrorLike;
	const type = typeof e.type === "string" && e.type ? e.type : "STEP_FAILED";
	const code = typeof e.code === "number" ? e.code : 500;
	const message = typeof e.message === "string" ? e.message.slice(0, 500) : String(err).slice(0, 500);
	const out: SagaError = { type, reason: def.rejections?.[type] ?? type, code, message, step, phase };
	if (e.data !== undefined && e.data !== null) out.data = e.data;
	return out;
}
