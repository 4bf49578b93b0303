/**
 * The saga executor: drives one saga from its journalled state to a terminal state, on the node that holds its
 * lease. It knows nothing about the participants: each step is an action name, params built from the saga data
 * and the earlier steps' results, and an optional compensation.
 *
 * - Before each call the step is journalled RUNNING (with the attempt number), after it SUCCEEDED, FAILED or
 *   REJECTED, each time together with the instance's cursor in one fenced transaction (store.ts).
 * - Forward step: a business rejection (non-retryable 4xx) compensates the completed steps in reverse order. A
 *   transient failure is retried with backoff under the same idempotency key `<sagaId>:<step>`; once its
 *   attempts are spent the step is in doubt (a timed-out call may still have applied), so it is compensated too,
 *   together with the completed ones. Compensations must therefore accept "nothing to undo". A `retriable` step
 *   (past the point of no return) never compensates: when it fails for good the saga is parked FAILED.
 * - Compensation: retried with backoff under `<sagaId>:<step>:compensate`; past the limit the saga is FAILED and
 *   a dead letter and the `saga.failed` alert (outbox) are written in the same transaction. Nothing is dropped: an operator retry resumes the same
 *   compensation.
 * - Resuming after a crash re-runs the in-flight call (journalled RUNNING) under the same key; participants are
 *   idempotent per key, so it has no second effect.
 */
import { backoffDelay, isRejection, toSagaError } from "./policy";
import type { Fence, InstancePatch, SagaFailedEvent, SagaJournal } from "./store";
import type { SagaDefinition, SagaRef, SagaState, StepPhase, StepResults } from "./types";

export interface StepCallOptions {
	timeout: number;
	meta: { sagaId: string; idempotencyKey: string };
}

export type StepCaller = (action: string, params: Record<string, unknown>, opts: StepCallOptions) => Promise<unknown>;

export interface ExecutorSettings {
	/** How long a lease lasts without renewal. */
	leaseMs: number;
	/** Per-call timeout of steps that set none. */
	stepTimeoutMs: number;
	/** Upper bound of any backoff delay. */
	maxBackoffMs: number;
	/** Calls of one compensation before the saga is parked as FAILED. */
	compensationAttempts: number;
	compensationBackoffMs: number;
}

export interface ExecutorHooks {
	/** Every finished call: its latency and how it ended. */
	step?(type: string, step: string, phase: StepPhase, ms: number, outcome: "ok" | "rejected" | "error"): void;
	/** The saga reached COMPLETED, COMPENSATED or FAILED (with the alert written with its dead letter). */
	terminal?(saga: SagaState, alert?: SagaFailedEvent): void;
	/** This node stopped driving a saga because another node holds its lease now. */
	lost?(sagaId: string): void;
	log?(level: "info" | "warn" | "error", msg: string): void;
}

export interface ExecutorDeps {
	/** The service's SagaStore; any store with its fencing semantics (the definition tests use one in memory). */
	store: SagaJournal;
	/** This node's lease owner id. */
	owner: string;
	definitions: ReadonlyMap<string, SagaDefinition<unknown>>;
	call: StepCaller;
	settings: ExecutorSettings;
	newId: () => string;
	sleep?: (ms: number) => Promise<void>;
	/** True once the node is shutting down (before the broker drains its in-flight calls). */
	stopRequested?: () => boolean;
	hooks?: ExecutorHooks;
}

export type DriveOutcome = "terminal" | "lost" | "stopped" | "unknown-type" | "not-owner";

const delay = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms).unref());

export class SagaExecutor {
	private stopping = false;

	constructor(private readonly deps: ExecutorDeps) {}

	/** Stop before the next call of every saga this executor drives; their leases are given up. */
	stop(): void {
		this.stopping = true;
	}

	private stopped(): boolean {
		return this.stopping || this.deps.stopRequested?.() === true;
	}

	/**
	 * Drives a saga whose lease this owner holds, until it is terminal, the lease is lost or the node stops.
	 * `fresh`: the saga was just created with its first step journalled RUNNING (store.create's `firstStep`), so
	 * the first call goes out without another journal write; `saga` is then the state create answered, which saves
	 * reading it back.
	 */
	async drive(id: string, opts: { fresh?: boolean; saga?: SagaState } = {}): Promise<DriveOutcome> {
		const { store, owner } = this.deps;
		const saga = opts.fresh && opts.saga?.id === id ? opts.saga : await store.get(id);
		if (!saga || saga.leaseOwner !== owner) return "not-owner";
		const def = this.deps.definitions.get(saga.type);
		if (!def) {
			// A node without this definition (an older version) leaves it to one that has it.
			this.log("warn", `saga ${id}: unknown type ${saga.type} on this node; releasing it`);
			await store.release({ id, owner });
			return "unknown-type";
		}
		const fence: Fence = { id, owner };
		const run = { saga, def, fence, results: { ...saga.results } as StepResults };
		const fresh = opts.fresh === true && saga.status === "RUNNING" && saga.step === 0 && saga.attempts === 1;
		const outcome = saga.status === "RUNNING" ? await this.forward(run, fresh) : await this.compensate(run);
		if (outcome === "stopped") await store.release(fence).catch(() => undefined);
		if (outcome === "lost") this.deps.hooks?.lost?.(id);
		return outcome;
	}

	private async forward(run: Run, fresh: boolean): Promise<DriveOutcome> {
		const { saga, def, fence, results } = run;
		const { store, settings } = this.deps;
		// Set when this step's first RUNNING entry was journalled already: with the saga's creation, or with the
		// previous step's result.
		let startJournalled = fresh;
		for (let i = saga.step; i < def.steps.length; i++) {
			const step = def.steps[i];
			const policy = step.retry ?? { attempts: 1, backoffMs: 0 };
			let attempt = i === saga.step ? saga.attempts - (fresh ? 1 : 0) : 0;
			for (;;) {
				if (this.stopped()) return "stopped";
				attempt++;
				const running = { stepIndex: i, step: step.name, phase: "forward" as const, attempts: attempt };
				if (
					!startJournalled &&
					!(await store.record(fence, settings.leaseMs, { ...running, status: "RUNNING" }, { step: i, stepName: step.name, attempts: attempt }))
				) {
					return "lost";
				}
				startJournalled = false;
				const started = Date.now();
				let result: unknown;
				try {
					result = await this.deps.call(step.action, step.params(saga.data, results, ref(saga)), {
						timeout: step.timeout ?? settings.stepTimeoutMs,
						meta: { sagaId: saga.id, idempotencyKey: `${saga.id}:${step.name}` }
					});
				} catch (err) {
					const error = toSagaError(def, err, step.name, "forward");
					if (step.retriable && (isRejection(err) || attempt >= policy.attempts)) {
						// Past the point of no return: park for an operator rather than undo a committed outcome.
						this.deps.hooks?.step?.(def.type, step.name, "forward", Date.now() - started, isRejection(err) ? "rejected" : "error");
						const alert = await store.park(
							fence,
							{ ...running, status: isRejection(err) ? "REJECTED" : "FAILED", error },
							{ status: "FAILED", attempts: attempt, error },
							{ id: this.deps.newId(), sagaType: def.type, sagaKey: saga.key, step: step.name, phase: "forward", error }
						);
						if (!alert) return "lost";
						return this.finish(
							after(saga, { status: "FAILED", step: i, stepName: step.name, attempts: attempt, error, releaseLease: true }, results, store.now()),
							alert
						);
					}
					if (isRejection(err)) {
						this.deps.hooks?.step?.(def.type, step.name, "forward", Date.now() - started, "rejected");
						// The participant said no: this attempt applied nothing, so the completed steps are undone. But
						// when an earlier attempt of this step failed in doubt (a timeout), that attempt may still be
						// queued at the participant and apply later: the step is compensated too, so its compensation
						// leaves the record that turns the late attempt away (a refund voids the saga's payment key).
						const from = attempt > 1 ? i : i - 1;
						const ok = await store.record(
							fence,
							settings.leaseMs,
							{ ...running, status: "REJECTED", error },
							{ status: "COMPENSATING", step: from, stepName: def.steps[from]?.name ?? null, attempts: 0, error }
						);
						if (!ok) return "lost";
						return this.compensate({ ...run, saga: { ...saga, status: "COMPENSATING", step: from, attempts: 0, error } });
					}
					this.deps.hooks?.step?.(def.type, step.name, "forward", Date.now() - started, "error");
					if (attempt < policy.attempts) {
						if (!(await store.record(fence, settings.leaseMs, { ...running, status: "FAILED", error }, { attempts: attempt }))) return "lost";
						await this.sleep(backoffDelay(attempt, policy.backoffMs, settings.maxBackoffMs));
						continue;
					}
					// Attempts spent: the step is in doubt (a timed-out call may have applied), so it is compensated
					// along with the completed ones.
					const ok = await store.record(
						fence,
						settings.leaseMs,
						{ ...running, status: "FAILED", error },
						{ status: "COMPENSATING", step: i, stepName: step.name, attempts: 0, error }
					);
					if (!ok) return "lost";
					return this.compensate({ ...run, saga: { ...saga, status: "COMPENSATING", step: i, attempts: 0, error } });
				}
				this.deps.hooks?.step?.(def.type, step.name, "forward", Date.now() - started, "ok");
				results[step.name] = result ?? null;
				const done = { ...running, status: "SUCCEEDED" as const, result: result ?? null };
				if (i === def.steps.length - 1) {
					const patch = {
						step: i + 1,
						stepName: null,
						attempts: 0,
						results,
						status: "COMPLETED" as const,
						result: this.result(def, saga, results),
						releaseLease: true
					};
					if (!(await store.record(fence, settings.leaseMs, done, patch))) return "lost";
					return this.finish(after(saga, patch, results, store.now()));
				} else {
					// This step's result and the next step's start in one transaction: one commit fewer per step.
					const next = def.steps[i + 1];
					const start = { stepIndex: i + 1, step: next.name, phase: "forward" as const, attempts: 1, status: "RUNNING" as const };
					if (!(await store.record(fence, settings.leaseMs, [done, start], { step: i + 1, stepName: next.name, attempts: 1, results })))
						return "lost";
					startJournalled = true;
				}
				break;
			}
		}
		// Nothing (left) to run: a resumed saga whose last step had completed.
		const patch = { status: "COMPLETED" as const, result: this.result(def, saga, results), releaseLease: true };
		if (!(await store.patch(fence, settings.leaseMs, patch))) return "lost";
		return this.finish(after(saga, patch, results, store.now()));
	}

	private async compensate(run: Run): Promise<DriveOutcome> {
		const { saga, def, fence, results } = run;
		const { store, settings } = this.deps;
		let j = nextCompensable(def, saga.step);
		let attempt = j === saga.step ? saga.attempts : 0;
		while (j >= 0) {
			const step = def.steps[j];
			const comp = step.compensate!;
			if (this.stopped()) return "stopped";
			attempt++;
			const running = { stepIndex: j, step: step.name, phase: "compensate" as const, attempts: attempt };
			if (!(await store.record(fence, settings.leaseMs, { ...running, status: "RUNNING" }, { step: j, stepName: step.name, attempts: attempt }))) {
				return "lost";
			}
			const started = Date.now();
			try {
				const result = await this.deps.call(comp.action, comp.params(saga.data, results, ref(saga)), {
					timeout: step.timeout ?? settings.stepTimeoutMs,
					meta: { sagaId: saga.id, idempotencyKey: `${saga.id}:${step.name}:compensate` }
				});
				this.deps.hooks?.step?.(def.type, step.name, "compensate", Date.now() - started, "ok");
				const next = nextCompensable(def, j - 1);
				const patch: InstancePatch =
					next < 0
						? { step: -1, stepName: null, attempts: 0, status: "COMPENSATED", releaseLease: true }
						: { step: next, stepName: def.steps[next].name, attempts: 0 };
				if (!(await store.record(fence, settings.leaseMs, { ...running, status: "SUCCEEDED", result: result ?? null }, patch))) return "lost";
				if (next < 0) return this.finish(after(saga, patch, results, store.now()));
				j = next;
				attempt = 0;
			} catch (err) {
				this.deps.hooks?.step?.(def.type, step.name, "compensate", Date.now() - started, "error");
				const error = toSagaError(def, err, step.name, "compensate");
				if (attempt < settings.compensationAttempts) {
					if (!(await store.record(fence, settings.leaseMs, { ...running, status: "FAILED", error }, { attempts: attempt }))) return "lost";
					await this.sleep(backoffDelay(attempt, settings.compensationBackoffMs, settings.maxBackoffMs));
					continue;
				}
				// Parked for an operator: FAILED and its dead letter in one transaction, so neither exists alone.
				const alert = await store.park(
					fence,
					{ ...running, status: "FAILED", error },
					{ status: "FAILED", attempts: attempt },
					{ id: this.deps.newId(), sagaType: def.type, sagaKey: saga.key, step: step.name, phase: "compensate", error }
				);
				if (!alert) return "lost";
				return this.finish(
					after(saga, { status: "FAILED", step: j, stepName: step.name, attempts: attempt, releaseLease: true }, results, store.now()),
					alert
				);
			}
		}
		// Nothing (left) to compensate: rejected at the first step, no step has a compensation, or a resumed saga
		// whose last compensation had completed.
		const patch: InstancePatch = { step: -1, stepName: null, attempts: 0, status: "COMPENSATED", releaseLease: true };
		if (!(await store.patch(fence, settings.leaseMs, patch))) return "lost";
		return this.finish(after(saga, patch, results, store.now()));
	}

	/** The saga reached a terminal state (as this driver wrote it: no read back). */
	private finish(saga: SagaState, alert?: SagaFailedEvent): DriveOutcome {
		this.deps.hooks?.terminal?.(saga, alert);
		return "terminal";
	}

	private result(def: SagaDefinition<unknown>, saga: SagaState, results: StepResults): unknown {
		return def.result ? def.result(saga.data, results, ref(saga)) : results;
	}

	/** Backoff that ends early when the node starts stopping, so a stopping node gives its leases up promptly. */
	private async sleep(ms: number): Promise<void> {
		if (this.deps.sleep) return this.deps.sleep(ms);
		const until = Date.now() + ms;
		while (!this.stopped() && Date.now() < until) await delay(Math.min(100, until - Date.now()));
	}

	private log(level: "info" | "warn" | "error", msg: string): void {
		this.deps.hooks?.log?.(level, msg);
	}
}

interface Run {
	saga: SagaState;
	def: SagaDefinition<unknown>;
	fence: Fence;
	results: StepResults;
}

const ref = (s: SagaState): SagaRef => ({ id: s.id, type: s.type, key: s.key });

/** The instance as a fenced write with `patch` left it, as the store would read it back (JSON values). */
function after(saga: SagaState, patch: InstancePatch, results: StepResults, now: number): SagaState {
	const s: SagaState = { ...saga, results: JSON.parse(JSON.stringify(results)) as StepResults, updatedAt: new Date(now).toISOString() };
	if (patch.releaseLease) {
		s.leaseOwner = null;
		s.leaseExpiresAt = null;
	}
	if (patch.status !== undefined) s.status = patch.status;
	if (patch.step !== undefined) s.step = patch.step;
	if (patch.stepName !== undefined) s.stepName = patch.stepName;
	if (patch.attempts !== undefined) s.attempts = patch.attempts;
	if (patch.result !== undefined) s.result = JSON.parse(JSON.stringify(patch.result)) as unknown;
	if (patch.error === null) delete s.error;
	else if (patch.error !== undefined) s.error = patch.error;
	return s;
}

/** The highest step index <= from that has a compensation, or -1. */
function nextCompensable(def: SagaDefinition<unknown>, from: number): number {
	for (let j = Math.min(from, def.steps.length - 1); j >= 0; j--) if (def.steps[j].compensate) return j;
	return -1;
}
