/**
 * Saga persistence in the saga service's own database (SQLite embedded, MariaDB in a cluster): instances, the
 * step journal and dead letters, in the tables of services/saga/migrations.
 *
 * Leases and fencing: every write a driver makes carries `WHERE id = ? AND lease_owner = ?` and bumps `rev`, and
 * the driver checks the affected rows. A node whose lease was taken over (it paused past the expiry and another
 * node claimed the saga) therefore cannot write another step: its write affects no row and it stops driving.
 * `rev` also makes every fenced UPDATE change the row, so MariaDB's affected-rows count (changed rows, not
 * matched rows) is exact. A claim is one conditional UPDATE (`lease expired OR mine`), so of several nodes racing
 * for the same expired lease exactly one sees an affected row.
 *
 * Times are epoch milliseconds in BIGINT columns: portable across both dialects, millisecond precision, and
 * compared with the node's injectable clock.
 */
import { UniqueConstraintError, type Transaction } from "sequelize";
import type { Sql } from "../lib/db";
import { appendOutbox } from "../lib/outbox";
import type { DeadLetter, JournalEntry, SagaError, SagaState, SagaStatus, StepPhase, StepResults } from "./types";

interface InstanceRow {
	id: string;
	type: string;
	saga_key: string;
	status: SagaStatus;
	data: string;
	results: string;
	current_step: number;
	step_name: string | null;
	attempts: number;
	lease_owner: string | null;
	lease_expires_at: number | string | null;
	rev: number;
	result: string | null;
	error: string | null;
	created_at: number | string;
	updated_at: number | string;
}

interface StepRow {
	id: number;
	saga_id: string;
	step: string;
	step_index: number;
	phase: StepPhase;
	status: JournalEntry["status"];
	attempts: number;
	result: string | null;
	error: string | null;
	owner: string | null;
	started_at: number | string;
	finished_at: number | string | null;
}

interface DeadLetterRow {
	id: string;
	saga_id: string;
	saga_type: string;
	step: string;
	phase: StepPhase;
	error: string | null;
	status: DeadLetter["status"];
	note: string | null;
	created_at: number | string;
	updated_at: number | string;
}

/** Who is writing: the saga and the lease owner that must still hold it. */
export interface Fence {
	id: string;
	owner: string;
}

/** Fields of an instance a driver changes together with a journal entry. */
export interface InstancePatch {
	status?: SagaStatus;
	step?: number;
	stepName?: string | null;
	attempts?: number;
	results?: StepResults;
	result?: unknown;
	error?: SagaError | null;
	/** Give the lease up (terminal states): another node may then pick the saga up only through an admin retry. */
	releaseLease?: boolean;
}

export interface JournalWrite {
	stepIndex: number;
	step: string;
	phase: StepPhase;
	status: JournalEntry["status"];
	attempts: number;
	result?: unknown;
	error?: unknown;
}

export interface NewDeadLetter {
	id: string;
	sagaType: string;
	sagaKey: string;
	step: string;
	phase: StepPhase;
	error: unknown;
}

/** A saga to create: RUNNING, leased to `owner`, with its first step journalled RUNNING when `firstStep` is given. */
export interface NewSaga {
	id: string;
	type: string;
	key: string;
	data: unknown;
	owner: string;
	leaseMs: number;
	firstStep?: string;
}

/** The state a new saga starts in (what `create` writes; the in-memory journal of the tests starts from it too). */
export function newSagaState(input: NewSaga, now: number): SagaState {
	const at = new Date(now).toISOString();
	return {
		id: input.id,
		type: input.type,
		key: input.key,
		status: "RUNNING",
		step: 0,
		stepName: input.firstStep ?? null,
		attempts: input.firstStep ? 1 : 0,
		data: JSON.parse(JSON.stringify(input.data ?? {})) as unknown,
		results: {},
		leaseOwner: input.owner,
		leaseExpiresAt: now + input.leaseMs,
		createdAt: at,
		updatedAt: at
	};
}

/** The `saga.failed` admin alert (docs/DESIGN.md section 7), as written to the outbox. */
export interface SagaFailedEvent {
	eventId: string;
	version: number;
	sagaId: string;
	type: string;
	key: string;
	step: string;
	phase: StepPhase;
	deadLetterId: string;
	error: unknown;
}

/**
 * What the executor needs of a store: read a saga, and fenced writes of its journal and instance. `SagaStore`
 * is the durable one; the saga definition tests drive the executor with an in-memory one of the same semantics.
 */
export interface SagaJournal {
	/** The clock of every time the store writes. */
	readonly now: () => number;
	get(id: string): Promise<SagaState | undefined>;
	release(fence: Fence): Promise<void>;
	record(fence: Fence, leaseMs: number, entry: JournalWrite | JournalWrite[], patch: InstancePatch): Promise<boolean>;
	park(fence: Fence, entry: JournalWrite, patch: InstancePatch, deadLetter: NewDeadLetter): Promise<SagaFailedEvent | false>;
	patch(fence: Fence, leaseMs: number, patch: InstancePatch): Promise<boolean>;
}

const json = (v: unknown): string | null => (v === undefined ? null : JSON.stringify(v));
const parse = <T>(s: string | null | undefined): T | undefined => (s === null || s === undefined ? undefined : (JSON.parse(s) as T));
const iso = (ms: number | string | null): string | null => (ms === null ? null : new Date(Number(ms)).toISOString());

export class SagaStore implements SagaJournal {
	/** Write statements and commits, for the closing figure "journal writes per saga" (bench/quick-saga.ts). */
	writes = 0;
	commits = 0;

	private readonly upsertTail: string;
	/** MariaDB: the group commit that creates and journal writes go through. */
	private readonly group: GroupCommit;

	constructor(
		/** The saga service's database: its SQLite writer queue, deadlock rule and compound statements (lib/db). */
		private readonly sql: Sql,
		/** The clock of every time this store writes (injectable in tests). */
		readonly now: () => number = Date.now,
		/** Writes of different sagas committed together, at most this many per transaction (1: each alone). */
		groupCommitMax = GROUP_COMMIT_MAX
	) {
		this.upsertTail = sql.upsertTail(["saga_id", "step", "phase"], ["status", "attempts", "result", "error", "owner", "finished_at"]);
		this.group = new GroupCommit(sql, groupCommitMax, () => this.commits++);
	}

	/** Group commit figures: transactions written and the writes they carried (writes / batches = mean batch size). */
	get groupCommit(): { batches: number; writes: number; largest: number } {
		return { batches: this.group.batches, writes: this.group.writes, largest: this.group.largest };
	}

	/** An UPDATE through the Sql, counted (a write, and a commit when it runs on its own). */
	private update(sql: string, replacements: unknown[], transaction?: Transaction): Promise<number> {
		this.writes++;
		if (!transaction) this.commits++;
		return this.sql.update(sql, replacements, transaction);
	}

	/** An INSERT through the Sql, counted as `update` is. */
	private insert(sql: string, replacements: unknown[], transaction?: Transaction): Promise<void> {
		this.writes++;
		if (!transaction) this.commits++;
		return this.sql.insert(sql, replacements, transaction);
	}

	private select<T extends object>(sql: string, replacements: unknown[], transaction?: Transaction): Promise<T[]> {
		return this.sql.select<T>(sql, replacements, transaction);
	}

	/**
	 * Creates a RUNNING saga leased to `owner`, or finds the one that already has this key (the unique index on
	 * `saga_key`, not a lookup, is what makes one saga per key under concurrency). With `firstStep`, the first
	 * step's RUNNING journal entry is written in the same transaction (one commit fewer per saga); the driver
	 * then calls it without journalling again.
	 */
	async create(input: NewSaga): Promise<{ created: boolean; saga: SagaState }> {
		const now = this.now();
		const instance = {
			sql: "INSERT INTO saga_instances (id, type, saga_key, status, data, results, current_step, step_name, attempts, lease_owner, lease_expires_at, rev, created_at, updated_at) VALUES (?, ?, ?, 'RUNNING', ?, '{}', 0, ?, ?, ?, ?, 0, ?, ?)",
			args: [
				input.id,
				input.type,
				input.key,
				JSON.stringify(input.data ?? {}),
				input.firstStep ?? null,
				input.firstStep ? 1 : 0,
				input.owner,
				now + input.leaseMs,
				now,
				now
			]
		};
		const step = input.firstStep && {
			sql: "INSERT INTO saga_steps (saga_id, step, step_index, phase, status, attempts, result, error, owner, started_at, finished_at) VALUES (?, ?, 0, 'forward', 'RUNNING', 1, NULL, NULL, ?, ?, NULL)",
			args: [input.id, input.firstStep, input.owner, now]
		};
		try {
			if (this.sql.mysql) {
				this.writes += step ? 2 : 1;
				// Unconditional: its bit is set whenever the inserts ran (a duplicate key raises instead).
				await this.group.write(
					bit => `${instance.sql};\n${step ? `${step.sql};\n` : ""}SET n = n + ${bit};`,
					[...instance.args, ...(step ? step.args : [])]
				);
			} else {
				this.commits++;
				await this.sql.transaction(async transaction => {
					await this.insert(instance.sql, instance.args, transaction);
					if (step) await this.insert(step.sql, step.args, transaction);
				});
			}
		} catch (err) {
			if (!(err instanceof UniqueConstraintError)) throw err;
			const existing = await this.getByKey(input.key);
			if (!existing) throw err;
			return { created: false, saga: existing };
		}
		// What the INSERT wrote, without reading it back.
		return { created: true, saga: newSagaState(input, now) };
	}

	async get(id: string): Promise<SagaState | undefined> {
		const [row] = await this.select<InstanceRow>("SELECT * FROM saga_instances WHERE id = ?", [id]);
		return row ? toState(row) : undefined;
	}

	async getByKey(key: string): Promise<SagaState | undefined> {
		const [row] = await this.select<InstanceRow>("SELECT * FROM saga_instances WHERE saga_key = ?", [key]);
		return row ? toState(row) : undefined;
	}

	/** `createdBefore` / `createdSince`: created before, or at or after, these times (ms): the admin list's age filters. */
	async list(opts: {
		status?: SagaStatus;
		type?: string;
		createdBefore?: number;
		createdSince?: number;
		offset: number;
		limit: number;
	}): Promise<{ rows: SagaState[]; total: number }> {
		const where: string[] = [];
		const args: unknown[] = [];
		if (opts.status) {
			where.push("status = ?");
			args.push(opts.status);
		}
		if (opts.type) {
			where.push("type = ?");
			args.push(opts.type);
		}
		if (opts.createdBefore !== undefined) {
			where.push("created_at < ?");
			args.push(opts.createdBefore);
		}
		if (opts.createdSince !== undefined) {
			where.push("created_at >= ?");
			args.push(opts.createdSince);
		}
		const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
		const rows = await this.select<InstanceRow>(`SELECT * FROM saga_instances ${clause} ORDER BY created_at DESC, id LIMIT ? OFFSET ?`, [
			...args,
			opts.limit,
			opts.offset
		]);
		const [count] = await this.select<{ n: number }>(`SELECT COUNT(*) AS n FROM saga_instances ${clause}`, args);
		return { rows: rows.map(toState), total: Number(count?.n ?? 0) };
	}

	/**
	 * The operator console's live figures, over the sagas created since `since` (ms; the created_at index): how
	 * many of each type ended in each status, and the durations (ms) of the finished forward calls of `step`
	 * (the newest `maxSamples`), for its percentiles. Every replica shares this database, so it is the cluster's.
	 */
	async figures(
		since: number,
		step: string,
		maxSamples: number
	): Promise<{ counts: { type: string; status: SagaStatus; n: number }[]; durations: number[] }> {
		const [counts, durations] = await Promise.all([
			this.select<{ type: string; status: SagaStatus; n: number | string }>(
				"SELECT type, status, COUNT(*) AS n FROM saga_instances WHERE created_at >= ? GROUP BY type, status",
				[since]
			),
			this.select<{ ms: number | string }>(
				`SELECT st.finished_at - st.started_at AS ms FROM saga_steps st JOIN saga_instances si ON si.id = st.saga_id
				 WHERE si.created_at >= ? AND st.step = ? AND st.phase = 'forward' AND st.finished_at IS NOT NULL
				 ORDER BY st.id DESC LIMIT ?`,
				[since, step, maxSamples]
			)
		]);
		return { counts: counts.map(c => ({ type: c.type, status: c.status, n: Number(c.n) })), durations: durations.map(d => Number(d.ms)) };
	}

	async journal(sagaId: string): Promise<JournalEntry[]> {
		const rows = await this.select<StepRow>("SELECT * FROM saga_steps WHERE saga_id = ? ORDER BY id", [sagaId]);
		return rows.map(r => ({
			id: Number(r.id),
			sagaId: r.saga_id,
			step: r.step,
			stepIndex: Number(r.step_index),
			phase: r.phase,
			status: r.status,
			attempts: Number(r.attempts),
			result: parse(r.result),
			error: parse(r.error),
			owner: r.owner,
			startedAt: iso(r.started_at)!,
			finishedAt: iso(r.finished_at)
		}));
	}

	/**
	 * Takes the lease of an active saga when it has expired (its node died) or is already ours. One conditional
	 * UPDATE: of several nodes racing for the same expired lease, exactly one gets an affected row.
	 */
	async claim(id: string, owner: string, leaseMs: number): Promise<boolean> {
		const now = this.now();
		const n = await this.update(
			"UPDATE saga_instances SET lease_owner = ?, lease_expires_at = ?, rev = rev + 1, updated_at = ? WHERE id = ? AND status IN ('RUNNING', 'COMPENSATING') AND (lease_owner IS NULL OR lease_expires_at < ? OR lease_owner = ?)",
			[owner, now + leaseMs, now, id, now, owner]
		);
		return n === 1;
	}

	/**
	 * Extends the leases this owner still holds on the given sagas, in one statement however many a node drives;
	 * returns how many it still held. Only sagas being driven are renewed: a saga whose driver died in this
	 * process must expire so that the recovery scan picks it up.
	 */
	async renew(ids: string[], owner: string, leaseMs: number): Promise<number> {
		if (ids.length === 0) return 0;
		const now = this.now();
		return this.update(
			`UPDATE saga_instances SET lease_expires_at = ?, rev = rev + 1 WHERE lease_owner = ? AND status IN ('RUNNING', 'COMPENSATING') AND id IN (${ids.map(() => "?").join(", ")})`,
			[now + leaseMs, owner, ...ids]
		);
	}

	/** Gives a lease up early (graceful stop): another node resumes the saga at its next recovery scan. */
	async release(fence: Fence): Promise<void> {
		await this.update("UPDATE saga_instances SET lease_owner = NULL, lease_expires_at = NULL, rev = rev + 1 WHERE id = ? AND lease_owner = ?", [
			fence.id,
			fence.owner
		]);
	}

	/** Active sagas nobody holds: their node died (lease expired) or gave them up. */
	async findOrphans(limit: number): Promise<string[]> {
		const rows = await this.select<{ id: string }>(
			"SELECT id FROM saga_instances WHERE status IN ('RUNNING', 'COMPENSATING') AND (lease_owner IS NULL OR lease_expires_at < ?) ORDER BY updated_at LIMIT ?",
			[this.now(), limit]
		);
		return rows.map(r => r.id);
	}

	/**
	 * Journal entries (one, or a step's result with the next step's start) and the matching instance change, in
	 * one transaction, fenced by the lease. Returns false (and writes nothing) when this owner no longer holds the
	 * saga. A deadlock victim's transaction is run again by the Sql (lib/db), whole.
	 */
	async record(fence: Fence, leaseMs: number, entry: JournalWrite | JournalWrite[], patch: InstancePatch): Promise<boolean> {
		return (await this.fencedWrite(fence, leaseMs, entry, patch)) !== false;
	}

	/**
	 * Like `record`, for the write that parks a saga as FAILED: with it, in the same transaction, its dead letter
	 * and the `saga.failed` admin alert in the outbox (lib/outbox.ts), so neither exists without the other.
	 * Returns the alert as written (its event id lets a direct emit and the relay's be deduplicated), or false.
	 */
	async park(fence: Fence, entry: JournalWrite, patch: InstancePatch, deadLetter: NewDeadLetter): Promise<SagaFailedEvent | false> {
		const out = await this.fencedWrite(fence, 0, entry, { ...patch, releaseLease: true }, deadLetter);
		return out === false ? false : out.event!;
	}

	private async fencedWrite(
		fence: Fence,
		leaseMs: number,
		entry: JournalWrite | JournalWrite[],
		patch: InstancePatch,
		deadLetter?: NewDeadLetter
	): Promise<false | { event?: SagaFailedEvent }> {
		const now = this.now();
		const { sets, args } = patchClause(patch, now, leaseMs);
		const fenced = { sql: `UPDATE saga_instances SET ${sets.join(", ")} WHERE id = ? AND lease_owner = ?`, args: [...args, fence.id, fence.owner] };
		// One upsert per (saga, step, phase): attempts count up in place. An atomic upsert rather than
		// update-then-insert, which on MariaDB takes gap locks that deadlock concurrent sagas.
		const entries = Array.isArray(entry) ? entry : [entry];
		const journal = {
			sql: `INSERT INTO saga_steps (saga_id, step, step_index, phase, status, attempts, result, error, owner, started_at, finished_at) VALUES ${entries.map(() => "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", ")} ${this.upsertTail}`,
			args: entries.flatMap(e => [
				fence.id,
				e.step,
				e.stepIndex,
				e.phase,
				e.status,
				e.attempts,
				json(e.result),
				json(e.error),
				fence.owner,
				now,
				e.status === "RUNNING" ? null : now
			])
		};
		if (this.sql.mysql && !deadLetter) {
			// The journal entry is written only when the fenced update changed the instance, in the same transaction
			// (a group commit with the other sagas' writes of the moment: each keeps its own condition and answer).
			this.writes += 2;
			const ok = await this.group.write(
				bit => `${fenced.sql};\nIF ROW_COUNT() = 1 THEN\nSET n = n + ${bit};\n${journal.sql};\nEND IF;`,
				[...fenced.args, ...journal.args]
			);
			return ok ? {} : false;
		}
		this.commits++;
		return this.sql.transaction(async transaction => {
			const n = await this.update(fenced.sql, fenced.args, transaction);
			if (n !== 1) return false;
			await this.insert(journal.sql, journal.args, transaction);
			if (deadLetter) {
				await this.insert(
					"INSERT INTO dead_letters (id, saga_id, saga_type, step, phase, error, status, note, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'OPEN', NULL, ?, ?)",
					[deadLetter.id, fence.id, deadLetter.sagaType, deadLetter.step, deadLetter.phase, json(deadLetter.error), now, now],
					transaction
				);
				const payload = {
					sagaId: fence.id,
					type: deadLetter.sagaType,
					key: deadLetter.sagaKey,
					step: deadLetter.step,
					phase: deadLetter.phase,
					deadLetterId: deadLetter.id,
					error: deadLetter.error ?? null
				};
				this.writes++;
				const { id, version } = await appendOutbox(this.sql, transaction, {
					aggregateType: "saga",
					aggregateId: fence.id,
					eventType: "saga.failed",
					payload
				});
				return { event: { ...payload, eventId: id, version } };
			}
			return {};
		});
	}

	/** Instance-only fenced change (the final COMPLETED/COMPENSATED write, which has no step of its own). */
	async patch(fence: Fence, leaseMs: number, patch: InstancePatch): Promise<boolean> {
		const { sets, args } = patchClause(patch, this.now(), leaseMs);
		return (await this.update(`UPDATE saga_instances SET ${sets.join(", ")} WHERE id = ? AND lease_owner = ?`, [...args, fence.id, fence.owner])) === 1;
	}

	/**
	 * Operator retry: a FAILED saga is resumed where it stopped, leased to `owner`, with a fresh attempt count:
	 * COMPENSATING at the compensation that failed, or RUNNING at the retriable step that failed (the phase of its
	 * latest dead letter says which). Conditional on FAILED, so two concurrent retries resume it once.
	 */
	async resumeFailed(id: string, owner: string, leaseMs: number): Promise<boolean> {
		const [last] = await this.select<{ phase: StepPhase }>("SELECT phase FROM dead_letters WHERE saga_id = ? ORDER BY created_at DESC, id LIMIT 1", [id]);
		const status: SagaStatus = last?.phase === "forward" ? "RUNNING" : "COMPENSATING";
		const now = this.now();
		const n = await this.update(
			"UPDATE saga_instances SET status = ?, attempts = 0, lease_owner = ?, lease_expires_at = ?, rev = rev + 1, updated_at = ? WHERE id = ? AND status = 'FAILED'",
			[status, owner, now + leaseMs, now, id]
		);
		return n === 1;
	}

	/**
	 * FAILED sagas that an operator has not settled (an OPEN dead letter), oldest first: when the last one parked
	 * (ms) and how many times the saga has been parked in all (its dead letters of any status).
	 */
	async parkedSagas(limit: number): Promise<{ sagaId: string; parkedAt: number; parked: number }[]> {
		const rows = await this.select<{ saga_id: string; parked_at: number | string; parked: number | string }>(
			`SELECT d.saga_id, MAX(d.created_at) AS parked_at, (SELECT COUNT(*) FROM dead_letters a WHERE a.saga_id = d.saga_id) AS parked
			 FROM dead_letters d JOIN saga_instances s ON s.id = d.saga_id
			 WHERE d.status = 'OPEN' AND s.status = 'FAILED'
			 GROUP BY d.saga_id ORDER BY MAX(d.created_at) LIMIT ?`,
			[limit]
		);
		return rows.map(r => ({ sagaId: r.saga_id, parkedAt: Number(r.parked_at), parked: Number(r.parked) }));
	}

	async deadLetters(opts: { status?: DeadLetter["status"]; sagaId?: string; offset: number; limit: number }): Promise<{ rows: DeadLetter[]; total: number }> {
		const where: string[] = [];
		const args: unknown[] = [];
		if (opts.status) (where.push("status = ?"), args.push(opts.status));
		if (opts.sagaId) (where.push("saga_id = ?"), args.push(opts.sagaId));
		const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
		const rows = await this.select<DeadLetterRow>(`SELECT * FROM dead_letters ${clause} ORDER BY created_at DESC, id LIMIT ? OFFSET ?`, [
			...args,
			opts.limit,
			opts.offset
		]);
		const [count] = await this.select<{ n: number }>(`SELECT COUNT(*) AS n FROM dead_letters ${clause}`, args);
		return { rows: rows.map(toDeadLetter), total: Number(count?.n ?? 0) };
	}

	async deadLetter(id: string): Promise<DeadLetter | undefined> {
		const [row] = await this.select<DeadLetterRow>("SELECT * FROM dead_letters WHERE id = ?", [id]);
		return row ? toDeadLetter(row) : undefined;
	}

	/** OPEN -> RETRIED or RESOLVED, conditionally: a dead letter is handled once. */
	async closeDeadLetter(id: string, status: "RETRIED" | "RESOLVED", note: string | null): Promise<boolean> {
		const n = await this.update("UPDATE dead_letters SET status = ?, note = ?, updated_at = ? WHERE id = ? AND status = 'OPEN'", [
			status,
			note,
			this.now(),
			id
		]);
		return n === 1;
	}
}

/** Writes per group-commit transaction at most: each answers through one bit of the compound statement's INT. */
export const GROUP_COMMIT_MAX = 24;

interface GroupedWrite {
	/** The write's statements, given the bit to add to `n` when it took effect. */
	body: (bit: number) => string;
	args: unknown[];
	resolve(tookEffect: boolean): void;
	reject(err: unknown): void;
}

/**
 * Group commit of the journal (MariaDB). Every step of every saga in flight writes its journal entry and instance
 * cursor before it goes on, each in its own transaction: six commits per checkout, one round trip and one redo-log
 * flush each. Here the writes that arrive while a transaction is on its way to the server wait for it and then go
 * together, as one compound statement in one transaction: a write is still durable before its saga goes on (it is
 * answered only after COMMIT), and its fence and condition are still its own (each sets its own bit of `n` when it
 * took effect, so a saga whose lease was taken over gets `false` while the others in the batch get `true`). Under
 * no load a write goes alone and at once; under load the batches grow with the load.
 * - A deadlock rolls the whole batch back and Sql.compound runs it again (nothing of it was committed).
 * - Any other error of a batch of several (a duplicate key of one create, a value one write got wrong) would fail
 *   the others with it: the batch is then written again one write per transaction, so each gets its own answer.
 * Written here rather than taken from a library: it is the database's own compound statement with per-write bits,
 * a dozen lines on top of lib/db's `Sql.compound`.
 */
class GroupCommit {
	private queue: GroupedWrite[] = [];
	private running = false;
	batches = 0;
	writes = 0;
	largest = 0;

	constructor(
		private readonly sql: Sql,
		private readonly max: number,
		private readonly committed: () => void
	) {
		if (!(max >= 1 && max <= 30)) throw new Error(`group commit size ${max}: 1..30 (one bit each in an INT)`);
	}

	/** Resolves with whether the write took effect (its bit was set), after its transaction committed. */
	write(body: (bit: number) => string, args: unknown[]): Promise<boolean> {
		return new Promise<boolean>((resolve, reject) => {
			this.queue.push({ body, args, resolve, reject });
			if (!this.running) {
				this.running = true;
				// The writes of this turn of the event loop (answers that arrived in one read) go in the first batch.
				setImmediate(() => void this.drain());
			}
		});
	}

	private async drain(): Promise<void> {
		try {
			while (this.queue.length > 0) await this.run(this.queue.splice(0, this.max));
		} finally {
			this.running = false;
		}
	}

	private async run(batch: GroupedWrite[]): Promise<void> {
		try {
			const n = await this.commit(batch);
			batch.forEach((w, k) => w.resolve((n & (1 << k)) !== 0));
		} catch (err) {
			if (batch.length === 1) return batch[0].reject(err);
			for (const w of batch) {
				try {
					w.resolve((await this.commit([w])) !== 0);
				} catch (e) {
					w.reject(e);
				}
			}
		}
	}

	private async commit(batch: GroupedWrite[]): Promise<number> {
		const n = await this.sql.compound(
			batch.map((w, k) => w.body(1 << k)).join("\n"),
			batch.flatMap(w => w.args)
		);
		this.committed();
		this.batches++;
		this.writes += batch.length;
		this.largest = Math.max(this.largest, batch.length);
		return n;
	}
}

/** The SET list of a fenced instance write: always bumps `rev` and renews (or releases) the lease. */
function patchClause(patch: InstancePatch, now: number, leaseMs: number): { sets: string[]; args: unknown[] } {
	const sets = ["rev = rev + 1", "updated_at = ?"];
	const args: unknown[] = [now];
	const set = (column: string, value: unknown) => {
		sets.push(`${column} = ?`);
		args.push(value);
	};
	if (patch.releaseLease) sets.push("lease_owner = NULL", "lease_expires_at = NULL");
	else set("lease_expires_at", now + leaseMs);
	if (patch.status !== undefined) set("status", patch.status);
	if (patch.step !== undefined) set("current_step", patch.step);
	if (patch.stepName !== undefined) set("step_name", patch.stepName);
	if (patch.attempts !== undefined) set("attempts", patch.attempts);
	if (patch.results !== undefined) set("results", JSON.stringify(patch.results));
	if (patch.result !== undefined) set("result", json(patch.result));
	if (patch.error !== undefined) set("error", patch.error === null ? null : JSON.stringify(patch.error));
	return { sets, args };
}

function toState(r: InstanceRow): SagaState {
	const s: SagaState = {
		id: r.id,
		type: r.type,
		key: r.saga_key,
		status: r.status,
		step: Number(r.current_step),
		stepName: r.step_name,
		attempts: Number(r.attempts),
		data: parse(r.data),
		results: parse<StepResults>(r.results) ?? {},
		leaseOwner: r.lease_owner,
		leaseExpiresAt: r.lease_expires_at === null ? null : Number(r.lease_expires_at),
		createdAt: iso(r.created_at)!,
		updatedAt: iso(r.updated_at)!
	};
	const result = parse(r.result);
	if (result !== undefined) s.result = result;
	const error = parse<SagaError>(r.error);
	if (error !== undefined) s.error = error;
	return s;
}

function toDeadLetter(r: DeadLetterRow): DeadLetter {
	return {
		id: r.id,
		sagaId: r.saga_id,
		sagaType: r.saga_type,
		step: r.step,
		phase: r.phase,
		error: parse(r.error),
		status: r.status,
		note: r.note,
		createdAt: iso(r.created_at)!,
		updatedAt: iso(r.updated_at)!
	};
}
