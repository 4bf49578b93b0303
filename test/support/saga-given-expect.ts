/**
 * Given/expect for saga definitions (eventuate-tram's style), with no broker and no database: the real
 * `SagaExecutor` drives a definition against the in-memory store, a scripted participant and a fake clock, so a
 * saga that backs off for minutes runs in a millisecond.
 *
 *   const then = await given(confirmReservation, data, { "payment.pay": [transient(), ok({ id: "p1" })] });
 *   expectSaga(then, { status: "COMPLETED", calls: ["reservation.markPaying saga-1:markPaying", ...] });
 *
 * The participant answers each action with its scripted outcomes in order, then agrees (`answers[action]`, or
 * `{}`) once its script is spent. `calls` is every call the engine made, forward and compensating, as
 * "<action> <idempotency key>".
 */
import { Errors } from "moleculer";
import { SagaExecutor, type DriveOutcome, type ExecutorSettings } from "../../sagas/executor";
import type { SagaFailedEvent } from "../../sagas/store";
import type { DeadLetter, JournalEntry, SagaDefinition, SagaError, SagaState, SagaStatus } from "../../sagas/types";
import SagaService from "../../services/saga/saga.service";
import { MemorySagaStore } from "./memory-saga-store";

/** The saga every scenario runs: its id is the prefix of every idempotency key. */
export const SAGA_ID = "saga-1";
const OWNER = "node-1";
const OTHER_OWNER = "node-2";
const START = Date.parse("2030-01-01T00:00:00.000Z");

/** The engine settings the saga service runs with (leases, timeouts, backoff cap, compensation attempts). */
export const SETTINGS: ExecutorSettings = SagaService.settings as ExecutorSettings;

export type Outcome =
	| { kind: "ok"; result: unknown }
	| { kind: "reject"; type: string; code: number }
	| { kind: "transient"; type: string }
	| { kind: "timeout" }
	| { kind: "leaseTaken"; then: Outcome };

/** The participant applied the call and answers `result`. */
export const ok = (result: unknown = {}): Outcome => ({ kind: "ok", result });
/** A business "no": a non-retryable 4xx with a stable type (e.g. INSUFFICIENT_POINTS). */
export const reject = (type: string, code = 409): Outcome => ({ kind: "reject", type, code });
/** A transient fault: a retryable 503 (the participant's store or database is down). */
export const transient = (type = "SERVICE_UNAVAILABLE"): Outcome => ({ kind: "transient", type });
/** The call timed out: the broker's REQUEST_TIMEOUT (the participant may or may not have applied it). */
export const timeout = (): Outcome => ({ kind: "timeout" });
/** While the call is in flight another node takes the saga's lease (this one paused past it); then `outcome`. */
export const leaseTakenThen = (outcome: Outcome): Outcome => ({ kind: "leaseTaken", then: outcome });
/** The same outcome n times in a row. */
export const times = (n: number, outcome: Outcome): Outcome[] => Array.from({ length: n }, () => outcome);

/** Per action name, what the participant answers to its successive calls. */
export type Script = Record<string, Outcome[]>;

export interface Call {
	action: string;
	key: string;
	params: Record<string, unknown>;
}

export interface Then {
	outcome: DriveOutcome;
	/** The saga as the store holds it at the end. */
	saga: SagaState;
	/** The terminal state the executor reported (its `terminal` hook), and the alert it reported with it. */
	terminal?: SagaState;
	terminalAlert?: SagaFailedEvent;
	/** "<action> <idempotency key>", in call order. */
	calls: string[];
	/** The same calls with their params. */
	detail: Call[];
	journal: JournalEntry[];
	deadLetters: DeadLetter[];
	/** `saga.failed` events in the outbox. */
	alerts: SagaFailedEvent[];
	/** The backoff delays the engine waited, in order (on the fake clock: no real time passes). */
	sleeps: number[];
	store: MemorySagaStore;
	/** Drives the saga again (an operator retry after `store.resumeFailed`), appending to the same trace. */
	drive(): Promise<DriveOutcome>;
}

function answer(action: string, outcome: Outcome, store: MemorySagaStore): unknown {
	switch (outcome.kind) {
		case "leaseTaken":
			store.steal(SAGA_ID, OTHER_OWNER, SETTINGS.leaseMs);
			return answer(action, outcome.then, store);
		case "ok":
			return outcome.result;
		case "reject":
			throw new Errors.MoleculerClientError(`${action} says no`, outcome.code, outcome.type, { action });
		case "transient":
			throw new Errors.MoleculerRetryableError(`${action} is unavailable`, 503, outcome.type, { action });
		case "timeout":
			throw new Errors.RequestTimeoutError({ action, nodeID: "participant-node" });
	}
}

/**
 * Given a definition, its data and a scripted participant: starts the saga as `saga.start` does (created leased,
 * its first step journalled RUNNING, then driven fresh) and drives it until it stops.
 */
export async function given<D>(def: SagaDefinition<D>, data: D, script: Script = {}, answers: Record<string, unknown> = {}): Promise<Then> {
	let clock = START;
	const store = new MemorySagaStore(() => clock);
	const remaining = new Map(Object.entries(script).map(([action, outcomes]) => [action, [...outcomes]]));
	const then = { calls: [] as string[], detail: [] as Call[], sleeps: [] as number[] } as Then;
	const executor = new SagaExecutor({
		store,
		owner: OWNER,
		definitions: new Map([[def.type, def as SagaDefinition<unknown>]]),
		settings: SETTINGS,
		newId: (() => {
			let n = 0;
			return () => `dead-letter-${++n}`;
		})(),
		sleep: async ms => {
			then.sleeps.push(ms);
			clock += ms;
		},
		call: async (action, params, opts) => {
			then.calls.push(`${action} ${opts.meta.idempotencyKey}`);
			then.detail.push({ action, key: opts.meta.idempotencyKey, params: JSON.parse(JSON.stringify(params)) as Record<string, unknown> });
			const next = remaining.get(action)?.shift();
			return answer(action, next ?? ok(answers[action] ?? {}), store);
		},
		hooks: {
			terminal: (saga, alert) => {
				then.terminal = saga;
				then.terminalAlert = alert;
			}
		}
	});
	const created = store.create({
		id: SAGA_ID,
		type: def.type,
		key: `key:${SAGA_ID}`,
		data,
		owner: OWNER,
		leaseMs: SETTINGS.leaseMs,
		firstStep: def.steps[0]?.name
	});
	const refresh = async (outcome: DriveOutcome) => {
		then.outcome = outcome;
		then.saga = (await store.get(SAGA_ID))!;
		then.journal = store.journal(SAGA_ID);
		then.deadLetters = store.deadLetters(SAGA_ID);
		then.alerts = [...store.outbox];
		return outcome;
	};
	then.store = store;
	then.drive = async () => refresh(await executor.drive(SAGA_ID));
	await refresh(await executor.drive(SAGA_ID, { fresh: true, saga: created }));
	return then;
}

export interface Expected {
	status: SagaStatus;
	calls: string[];
	/** What the saga keeps of the rejection or failure (checked as a subset); none when it completed. */
	error?: Partial<SagaError>;
	/** The OPEN dead letter (and its alert) a FAILED saga leaves; none otherwise. */
	deadLetter?: { step: string; phase: "forward" | "compensate" };
	/** The backoff delays, when the scenario is about them. */
	sleeps?: number[];
}

/** Expect: the exact calls, the final status, the error, and a dead letter with its alert exactly when FAILED. */
export function expectSaga(then: Then, expected: Expected): void {
	expect(then.calls).toEqual(expected.calls);
	expect(then.outcome).toBe("terminal");
	expect(then.saga.status).toBe(expected.status);
	// What the executor reported (and `saga.start` answers its waiters with) is what it wrote, where it stopped included.
	const reported = (s?: SagaState) =>
		s && { id: s.id, key: s.key, status: s.status, step: s.step, stepName: s.stepName, result: s.result, error: s.error, leaseOwner: s.leaseOwner };
	expect(reported(then.terminal)).toEqual(reported(then.saga));
	expect(then.saga.leaseOwner).toBeNull();
	if (expected.error) expect(then.saga.error).toMatchObject(expected.error);
	else expect(then.saga.error).toBeUndefined();
	if (expected.sleeps) expect(then.sleeps).toEqual(expected.sleeps);
	if (expected.deadLetter) {
		expect(then.deadLetters).toEqual([expect.objectContaining({ ...expected.deadLetter, status: "OPEN", sagaId: SAGA_ID })]);
		const [dl] = then.deadLetters;
		expect(then.alerts).toEqual([
			expect.objectContaining({ sagaId: SAGA_ID, key: then.saga.key, deadLetterId: dl.id, step: dl.step, phase: dl.phase, error: dl.error })
		]);
		expect(then.terminalAlert).toEqual(then.alerts[0]);
	} else {
		expect(then.deadLetters).toEqual([]);
		expect(then.alerts).toEqual([]);
		expect(then.terminalAlert).toBeUndefined();
	}
}
