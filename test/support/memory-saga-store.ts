/**
 * An in-memory `SagaJournal` for the saga definition tests: the executor runs against it with no database. It keeps
 * the semantics of sagas/store.ts the executor relies on: every write is fenced by the lease owner (a write by a
 * node that lost the lease changes nothing and answers false), one journal row per (saga, step, phase) whose
 * attempts count up in place, and a FAILED park writes its dead letter and the `saga.failed` alert together.
 * Values go through JSON on the way in and out, as they do through the database's TEXT columns.
 */
import crypto from "crypto";
import {
	newSagaState,
	type Fence,
	type InstancePatch,
	type JournalWrite,
	type NewDeadLetter,
	type NewSaga,
	type SagaFailedEvent,
	type SagaJournal
} from "../../sagas/store";
import type { DeadLetter, JournalEntry, SagaState } from "../../sagas/types";

const copy = <T>(v: T): T => (v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T));
const iso = (ms: number) => new Date(ms).toISOString();

export class MemorySagaStore implements SagaJournal {
	private readonly instances = new Map<string, SagaState>();
	private readonly steps: JournalEntry[] = [];
	private readonly letters: DeadLetter[] = [];
	/** The `saga.failed` events as the outbox holds them, in write order. */
	readonly outbox: SagaFailedEvent[] = [];
	private nextStepId = 1;

	constructor(readonly now: () => number = Date.now) {}

	/** As `SagaStore.create`: a RUNNING saga leased to `owner`, with its first step journalled RUNNING. */
	create(input: NewSaga): SagaState {
		if ([...this.instances.values()].some(s => s.key === input.key)) throw new Error(`saga key ${input.key} exists`);
		const now = this.now();
		const saga = newSagaState(input, now);
		this.instances.set(saga.id, saga);
		if (input.firstStep)
			this.upsert({ id: input.id, owner: input.owner }, [{ stepIndex: 0, step: input.firstStep, phase: "forward", status: "RUNNING", attempts: 1 }], now);
		return copy(saga);
	}

	async get(id: string): Promise<SagaState | undefined> {
		return copy(this.instances.get(id));
	}

	async release(fence: Fence): Promise<void> {
		const saga = this.held(fence);
		if (!saga) return;
		saga.leaseOwner = null;
		saga.leaseExpiresAt = null;
	}

	async record(fence: Fence, leaseMs: number, entry: JournalWrite | JournalWrite[], patch: InstancePatch): Promise<boolean> {
		const saga = this.held(fence);
		if (!saga) return false;
		const now = this.now();
		apply(saga, patch, now, leaseMs);
		this.upsert(fence, Array.isArray(entry) ? entry : [entry], now);
		return true;
	}

	async park(fence: Fence, entry: JournalWrite, patch: InstancePatch, deadLetter: NewDeadLetter): Promise<SagaFailedEvent | false> {
		const saga = this.held(fence);
		if (!saga) return false;
		const now = this.now();
		apply(saga, { ...patch, releaseLease: true }, now, 0);
		this.upsert(fence, [entry], now);
		this.letters.push({
			id: deadLetter.id,
			sagaId: fence.id,
			sagaType: deadLetter.sagaType,
			step: deadLetter.step,
			phase: deadLetter.phase,
			error: copy(deadLetter.error),
			status: "OPEN",
			note: null,
			createdAt: iso(now),
			updatedAt: iso(now)
		});
		const event: SagaFailedEvent = {
			sagaId: fence.id,
			type: deadLetter.sagaType,
			key: deadLetter.sagaKey,
			step: deadLetter.step,
			phase: deadLetter.phase,
			deadLetterId: deadLetter.id,
			error: copy(deadLetter.error) ?? null,
			eventId: crypto.randomUUID(),
			// The outbox's per-aggregate version: the saga's first alert is 1.
			version: this.outbox.filter(e => e.sagaId === fence.id).length + 1
		};
		this.outbox.push(event);
		return copy(event);
	}

	async patch(fence: Fence, leaseMs: number, patch: InstancePatch): Promise<boolean> {
		const saga = this.held(fence);
		if (!saga) return false;
		apply(saga, patch, this.now(), leaseMs);
		return true;
	}

	/**
	 * As `SagaStore.resumeFailed` (an operator's retry): a FAILED saga goes back to RUNNING when its latest dead
	 * letter is of a forward step, else to COMPENSATING, leased to `owner`, with a fresh attempt count.
	 */
	resumeFailed(id: string, owner: string, leaseMs: number): boolean {
		const saga = this.instances.get(id);
		if (!saga || saga.status !== "FAILED") return false;
		const last = this.letters.filter(d => d.sagaId === id).at(-1);
		const now = this.now();
		saga.status = last?.phase === "forward" ? "RUNNING" : "COMPENSATING";
		saga.attempts = 0;
		saga.leaseOwner = owner;
		saga.leaseExpiresAt = now + leaseMs;
		saga.updatedAt = iso(now);
		return true;
	}

	/** Another node takes the lease (as a claim after an expiry would): this owner's next write is refused. */
	steal(id: string, owner: string, leaseMs: number): void {
		const saga = this.instances.get(id)!;
		saga.leaseOwner = owner;
		saga.leaseExpiresAt = this.now() + leaseMs;
	}

	journal(sagaId: string): JournalEntry[] {
		return copy(this.steps.filter(s => s.sagaId === sagaId));
	}

	deadLetters(sagaId: string): DeadLetter[] {
		return copy(this.letters.filter(d => d.sagaId === sagaId));
	}

	private held(fence: Fence): SagaState | undefined {
		const saga = this.instances.get(fence.id);
		return saga && saga.leaseOwner === fence.owner ? saga : undefined;
	}

	/** One row per (saga, step, phase), updated in place: the SQL store's upsert. */
	private upsert(fence: Fence, entries: JournalWrite[], now: number): void {
		for (const e of entries) {
			const fields = {
				status: e.status,
				attempts: e.attempts,
				result: copy(e.result),
				error: copy(e.error),
				owner: fence.owner,
				finishedAt: e.status === "RUNNING" ? null : iso(now)
			};
			const row = this.steps.find(s => s.sagaId === fence.id && s.step === e.step && s.phase === e.phase);
			if (row) Object.assign(row, fields);
			else
				this.steps.push({
					id: this.nextStepId++,
					sagaId: fence.id,
					step: e.step,
					stepIndex: e.stepIndex,
					phase: e.phase,
					startedAt: iso(now),
					...fields
				});
		}
	}
}

/** A fenced instance write as `patchClause` in sagas/store.ts makes it: renews (or releases) the lease. */
function apply(saga: SagaState, patch: InstancePatch, now: number, leaseMs: number): void {
	saga.updatedAt = iso(now);
	if (patch.releaseLease) {
		saga.leaseOwner = null;
		saga.leaseExpiresAt = null;
	} else {
		saga.leaseExpiresAt = now + leaseMs;
	}
	if (patch.status !== undefined) saga.status = patch.status;
	if (patch.step !== undefined) saga.step = patch.step;
	if (patch.stepName !== undefined) saga.stepName = patch.stepName;
	if (patch.attempts !== undefined) saga.attempts = patch.attempts;
	if (patch.results !== undefined) saga.results = copy(patch.results);
	if (patch.result !== undefined) saga.result = copy(patch.result);
	if (patch.error === null) delete saga.error;
	else if (patch.error !== undefined) saga.error = copy(patch.error);
}
