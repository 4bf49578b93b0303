/**
 * The saga definition DSL (docs/DESIGN.md section 5, docs/STYLE.md practice 4). A definition is data: a type name, the
 * steps in order with their compensations, and the business error types that count as rejections. It reads top
 * to bottom on one screen; the engine (executor.ts) does journalling, retries, leases and compensation order.
 *
 *   export const confirmSaga = defineSaga<ConfirmData>({
 *     type: "ConfirmReservation",
 *     steps: [
 *       { name: "pay", action: "payment.pay", params: (d, results, saga) => ({ sagaId: saga.id, ... }),
 *         compensate: { action: "payment.refund", params: (d, r, saga) => ({ sagaId: saga.id }) },
 *         retry: { attempts: 3, backoffMs: 200 }, timeout: 3000 },
 *       ...
 *     ],
 *     rejections: { INSUFFICIENT_POINTS: "not enough points" }
 *   });
 */

/** RUNNING -> COMPLETED, or COMPENSATING -> COMPENSATED, or FAILED (dead-lettered, waiting for an operator). */
export type SagaStatus = "RUNNING" | "COMPENSATING" | "COMPLETED" | "COMPENSATED" | "FAILED";

export const ACTIVE_STATUSES: readonly SagaStatus[] = ["RUNNING", "COMPENSATING"];
export const TERMINAL_STATUSES: readonly SagaStatus[] = ["COMPLETED", "COMPENSATED", "FAILED"];

export type StepPhase = "forward" | "compensate";

/** The results of the steps that completed so far, by step name. */
export type StepResults = Record<string, unknown>;

export interface RetryPolicy {
	/** Calls in total (1 = no retry). */
	attempts: number;
	/** Delay before the second call; doubles per attempt up to the engine's maximum. */
	backoffMs: number;
}

/** Which saga a `params` function builds a call for: e.g. `payment.pay` is keyed by the saga id. */
export interface SagaRef {
	id: string;
	type: string;
	key: string;
}

export interface CompensationDef<D> {
	action: string;
	params(data: D, results: StepResults, saga: SagaRef): Record<string, unknown>;
}

export interface StepDef<D> {
	/** Unique within the saga; part of the idempotency key `<sagaId>:<name>`. */
	name: string;
	/** The participant action, called with `ctx.call`. */
	action: string;
	params(data: D, results: StepResults, saga: SagaRef): Record<string, unknown>;
	/** Undoes the step; called under the key `<sagaId>:<name>:compensate`. Steps without one are skipped. */
	compensate?: CompensationDef<D>;
	/** Transient failures (timeouts, unreachable nodes, `retryable` errors) of the forward call. */
	retry?: RetryPolicy;
	/** Per-call timeout in ms (the engine's default otherwise). */
	timeout?: number;
	/**
	 * Past the point of no return (eventuate's "retriable transaction", after the pivot): a failure of this step
	 * never undoes the saga. It is retried per `retry`; if it still fails, or its participant rejects it, the
	 * saga is parked FAILED with a dead letter, and an operator retry resumes this step. Only the last steps of
	 * a saga can be retriable, and they have no compensation.
	 */
	retriable?: boolean;
}

export interface SagaDefinition<D = Record<string, unknown>> {
	type: string;
	steps: StepDef<D>[];
	/** Business error type -> rejection reason; any non-retryable 4xx rejects, these name the reason. */
	rejections?: Record<string, string>;
	/** Builds the saga's result from the step results when it completes (all step results by default). */
	result?(data: D, results: StepResults, saga: SagaRef): unknown;
}

/**
 * Checks a definition once, at load, and keeps the data type of its `params` functions. (They are declared as
 * methods so a `SagaDefinition<MyData>` fits the engine's registry of `SagaDefinition<unknown>`.)
 */
export function defineSaga<D>(def: SagaDefinition<D>): SagaDefinition<D> {
	if (!/^[A-Za-z][A-Za-z0-9_.-]{0,63}$/.test(def.type)) throw new Error(`saga type "${def.type}" is not a valid name`);
	const names = new Set<string>();
	for (const step of def.steps) {
		if (names.has(step.name)) throw new Error(`saga ${def.type}: duplicate step name ${step.name}`);
		if (!/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(step.name)) throw new Error(`saga ${def.type}: bad step name "${step.name}"`);
		if (step.retry && (step.retry.attempts < 1 || step.retry.backoffMs < 0)) throw new Error(`saga ${def.type}: bad retry of ${step.name}`);
		if (step.retriable && step.compensate) throw new Error(`saga ${def.type}: retriable step ${step.name} cannot have a compensation`);
		if (!step.retriable && def.steps.slice(0, def.steps.indexOf(step)).some(s => s.retriable)) {
			throw new Error(`saga ${def.type}: step ${step.name} follows a retriable step, so it must be retriable too`);
		}
		names.add(step.name);
	}
	return def;
}

/** The error a saga keeps: what rejected it or what failed, with ids only in `data`. */
export interface SagaError {
	/** Stable UPPER_SNAKE type of the participant error (e.g. INSUFFICIENT_POINTS) or of the engine's. */
	type: string;
	/** The definition's rejection reason, or the type when the definition names none. */
	reason: string;
	code: number;
	message: string;
	data?: unknown;
	step: string;
	phase: StepPhase;
}

/** A saga as stored and as `saga.start` / `saga.get` answer it. */
export interface SagaState {
	id: string;
	type: string;
	key: string;
	status: SagaStatus;
	/** Index of the step being run (forward) or compensated (compensating, FAILED). */
	step: number;
	stepName: string | null;
	attempts: number;
	data: unknown;
	results: StepResults;
	result?: unknown;
	error?: SagaError;
	leaseOwner: string | null;
	leaseExpiresAt: number | null;
	createdAt: string;
	updatedAt: string;
}

export interface JournalEntry {
	id: number;
	sagaId: string;
	step: string;
	stepIndex: number;
	phase: StepPhase;
	status: "RUNNING" | "SUCCEEDED" | "FAILED" | "REJECTED";
	attempts: number;
	result?: unknown;
	error?: unknown;
	owner: string | null;
	startedAt: string;
	finishedAt: string | null;
}

export interface DeadLetter {
	id: string;
	sagaId: string;
	sagaType: string;
	step: string;
	phase: StepPhase;
	error: unknown;
	status: "OPEN" | "RETRIED" | "RESOLVED";
	note: string | null;
	createdAt: string;
	updatedAt: string;
}
