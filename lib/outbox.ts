/**
 * Transactional outbox (docs/DESIGN.md section 7; seed 000 section 3.3). A producer adds `outboxMigration` to its
 * migrations and calls `appendOutbox` inside the same transaction as the business change, so the event exists if
 * and only if the change committed. `OutboxRelay` (run by mixins/outbox.mixin.ts) publishes the rows: every poll
 * interval and right after a commit that appended one, in order per aggregate, safely from several nodes at once,
 * marking each row processed once the broker stored it. At least once: a crash between publish and mark publishes
 * the row again, under the same message id.
 */
import crypto from "crypto";
import { EventEmitter } from "events";
import { Transaction, type Sequelize } from "sequelize";
import { Sql, sqlTime, type Migration } from "./db";
import type { CatalogEventType, EventCatalog } from "./events/catalog";
import type { EventMessage } from "./events/types";

/** An event as its producer writes it: a catalog event's payload is typed by its name (lib/events/catalog.ts). */
export interface OutboxEventInput<T extends CatalogEventType = CatalogEventType> {
	aggregateType: string;
	aggregateId: string;
	/** One of docs/DESIGN.md section 7's event names, e.g. "payment.completed". */
	eventType: T;
	payload: EventCatalog[T];
	/**
	 * The aggregate's version when the caller knows it without asking (1 for the event that creates the
	 * aggregate): saves reading the last one. The unique index still rejects a wrong guess.
	 */
	version?: number;
}

export const outboxMigration: Migration = {
	name: "000_outbox_events",
	async up(qi, T) {
		await qi.createTable("outbox_events", {
			// Sequence for relay order; `id` below is the event id consumers dedupe by.
			seq: { type: T.BIGINT, autoIncrement: true, primaryKey: true },
			id: { type: T.STRING(36), allowNull: false },
			aggregate_type: { type: T.STRING(40), allowNull: false },
			aggregate_id: { type: T.STRING(64), allowNull: false },
			event_type: { type: T.STRING(64), allowNull: false },
			payload: { type: T.TEXT, allowNull: false },
			// Per-aggregate version: consumers ignore an event older than the last one they applied.
			version: { type: T.INTEGER, allowNull: false },
			processed: { type: T.BOOLEAN, allowNull: false, defaultValue: false },
			created_at: { type: T.DATE(3), allowNull: false },
			processed_at: { type: T.DATE(3), allowNull: true }
		});
		await qi.addIndex("outbox_events", ["id"], { unique: true, name: "outbox_events_id_unique" });
		await qi.addIndex("outbox_events", ["aggregate_type", "aggregate_id", "version"], {
			unique: true,
			name: "outbox_events_aggregate_version_unique"
		});
		await qi.addIndex("outbox_events", ["processed", "seq"], { name: "outbox_events_pending" });
	},
	async down(qi) {
		await qi.dropTable("outbox_events");
	}
};

/**
 * Appends an event inside `transaction`. The version is the aggregate's next one; callers change the aggregate's
 * row in the same transaction (which serializes writers of one aggregate), and the unique index rejects a
 * duplicate version if they ever do not. (A bare Sequelize is still taken for callers not yet given a `Sql`.)
 */
export async function appendOutbox<T extends CatalogEventType>(
	db: Sql | Sequelize,
	transaction: Transaction,
	event: OutboxEventInput<T>
): Promise<{ id: string; version: number }> {
	return appendAnyOutbox(db, transaction, event as unknown as UncheckedOutboxEvent);
}

/** An event outside the catalog: for the test harness's own event types only (producers use `appendOutbox`). */
export type UncheckedOutboxEvent = Omit<OutboxEventInput, "eventType" | "payload"> & { eventType: string; payload: Record<string, unknown> };

export async function appendAnyOutbox(db: Sql | Sequelize, transaction: Transaction, event: UncheckedOutboxEvent): Promise<{ id: string; version: number }> {
	const sql = db instanceof Sql ? db : new Sql(db);
	const version = event.version ?? (await lastVersion(sql, transaction, event)) + 1;
	const id = crypto.randomUUID();
	await sql.insert(
		"INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload, version, processed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		[id, event.aggregateType, event.aggregateId, event.eventType, JSON.stringify({ ...event.payload, eventId: id, version }), version, false, sqlTime()],
		transaction
	);
	// Wake this database's relay as soon as the row is visible, instead of at its next poll.
	transaction.afterCommit(() => {
		outboxCommits.emit("commit", sql.sequelize);
	});
	return { id, version };
}

async function lastVersion(sql: Sql, transaction: Transaction, event: UncheckedOutboxEvent): Promise<number> {
	const [row] = await sql.select<{ v: number | null }>(
		"SELECT MAX(version) AS v FROM outbox_events WHERE aggregate_type = ? AND aggregate_id = ?",
		[event.aggregateType, event.aggregateId],
		transaction
	);
	return Number(row?.v ?? 0);
}

export interface OutboxStats {
	/** Rows not yet published. */
	pending: number;
	/** Age of the oldest of them (ms), 0 when there is none: the relay's lag. */
	oldestAgeMs: number;
	/** Up to 100 rows older than `staleMs`, oldest first. */
	stale: { id: string; eventType: string; aggregateId: string; ageMs: number }[];
}

/** The backlog of one producer's outbox, for the consistency check and the metrics. */
export async function outboxStats(sql: Sql, staleMs: number, now = Date.now()): Promise<OutboxStats> {
	const [agg] = await sql.select<{ n: number | string; oldest: Date | string | null }>(
		"SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox_events WHERE processed = 0"
	);
	const rows = await sql.select<{ id: string; event_type: string; aggregate_id: string; created_at: Date | string }>(
		"SELECT id, event_type, aggregate_id, created_at FROM outbox_events WHERE processed = 0 AND created_at < ? ORDER BY seq LIMIT 100",
		[sqlTime(now - staleMs)]
	);
	const age = (d: Date | string) => Math.max(0, now - sqlDate(d));
	return {
		pending: Number(agg?.n ?? 0),
		oldestAgeMs: agg?.oldest ? age(agg.oldest) : 0,
		stale: rows.map(r => ({ id: r.id, eventType: r.event_type, aggregateId: r.aggregate_id, ageMs: age(r.created_at) }))
	};
}

/**
 * The latest event of each aggregate among `eventTypes`, by aggregate id after `after`, at most `limit`
 * aggregates: a consumer rebuilds its view from this (the ranking, from the reservations' confirmed, cancelled and
 * expired events). Each row is written in the transaction of the change it describes, so the latest one is the
 * aggregate's committed state, with the version later events are ordered against. Published or not: one still
 * waiting in the outbox arrives later with that same version and changes nothing. `next` is the last aggregate id
 * of a full page (ask again after it), null at the end.
 */
export async function latestOutboxEvents(
	sql: Sql,
	opts: { aggregateType: string; eventTypes: string[]; after?: string; limit: number }
): Promise<{ rows: EventMessage[]; next: string | null }> {
	if (opts.eventTypes.length === 0) return { rows: [], next: null };
	const types = opts.eventTypes.map(() => "?").join(",");
	const rows = await sql.select<ClaimedRow>(
		`SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload, o.version, o.created_at
		 FROM outbox_events o
		 JOIN (SELECT aggregate_id, MAX(version) AS v FROM outbox_events
		       WHERE aggregate_type = ? AND event_type IN (${types}) AND aggregate_id > ?
		       GROUP BY aggregate_id ORDER BY aggregate_id LIMIT ?) latest
		   ON o.aggregate_id = latest.aggregate_id AND o.version = latest.v
		 WHERE o.aggregate_type = ?
		 ORDER BY o.aggregate_id`,
		[opts.aggregateType, ...opts.eventTypes, opts.after ?? "", opts.limit, opts.aggregateType]
	);
	return { rows: rows.map(toEventMessage), next: rows.length >= opts.limit ? rows[rows.length - 1].aggregate_id : null };
}

/** Emits "commit" with the Sequelize instance whose transaction just committed outbox rows. */
export const outboxCommits = new EventEmitter();
outboxCommits.setMaxListeners(100);

export interface OutboxRelayOptions {
	/** The producer's database (its marks wait in the SQLite writer queue like every other write). */
	sql: Sql;
	/** Resolves once the broker stored the event; rejects while it is unreachable. */
	publish: (event: EventMessage) => Promise<void>;
	/** Poll interval while healthy (OUTBOX_POLL_MS). */
	pollMs: number;
	/** Rows claimed per round. */
	batchSize?: number;
	/**
	 * How long a round waits after the commit that kicked it (default 10 ms), so that the commits of that moment
	 * share one round (its claim transaction is 5-6 statements, whatever the batch) instead of one round each.
	 */
	coalesceMs?: number;
	/** Longest wait between attempts while publishing fails. */
	maxBackoffMs?: number;
	log?: (level: "info" | "warn" | "error", msg: string) => void;
	/** The clock of its polls, backoff and coalescing (the real one by default; tests step a manual one). */
	clock?: RelayClock;
}

export interface RelayClock {
	now(): number;
	/** Runs `fn` once after `ms`; answers what cancels it. */
	after(ms: number, fn: () => void): () => void;
}

const realClock: RelayClock = {
	now: () => Date.now(),
	after(ms, fn) {
		const t = setTimeout(fn, ms);
		return () => clearTimeout(t);
	}
};

interface ClaimedRow {
	seq: number | string;
	id: string;
	aggregate_type: string;
	aggregate_id: string;
	event_type: string;
	payload: string;
	version: number;
	created_at: Date | string;
}

/** MariaDB hands back Dates; SQLite hands back text in UTC, with or without a zone. */
function sqlDate(d: Date | string): number {
	if (d instanceof Date) return d.getTime();
	return new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(d) ? d : `${d.replace(" ", "T")}Z`).getTime();
}

export function toEventMessage(row: ClaimedRow): EventMessage {
	return {
		id: row.id,
		type: row.event_type,
		aggregateType: row.aggregate_type,
		aggregateId: row.aggregate_id,
		version: Number(row.version),
		createdAt: new Date(sqlDate(row.created_at)).toISOString(),
		payload: JSON.parse(row.payload) as Record<string, unknown>
	};
}

/**
 * Publishes outbox rows.
 *
 * Claiming on MariaDB: `SELECT ... FOR UPDATE SKIP LOCKED` in a READ COMMITTED transaction held while the batch is
 * published, then `processed = 1` and commit. Another relay skips the locked rows instead of waiting; READ
 * COMMITTED takes no gap locks, so producers keep inserting meanwhile. A relay that dies mid-batch loses its locks
 * with its connection and the rows are claimed again.
 *
 * Order per aggregate: a relay publishes a row only when every unprocessed row of that aggregate before it is in
 * its own batch (another relay holding an earlier row makes it leave the later ones for a later round), and it
 * publishes each aggregate's rows one after the other, stopping that aggregate at its first failure. Within one
 * aggregate seq order is version order: writers of an aggregate are serialized by its row lock.
 *
 * SQLite (embedded mode) is one process with one relay per database: no claim is needed.
 */
export class OutboxRelay {
	/** Cancels the pending round, while one is scheduled. */
	private timer?: () => void;
	/** When the pending timer fires (epoch ms). */
	private due = 0;
	private running?: Promise<void>;
	private again = false;
	private failures = 0;
	private stopped = true;
	private readonly onCommit = (s: Sequelize) => {
		if (s === this.opts.sql.sequelize) this.kick();
	};

	private readonly clock: RelayClock;

	constructor(private readonly opts: OutboxRelayOptions) {
		this.clock = opts.clock ?? realClock;
	}

	start(): void {
		this.stopped = false;
		outboxCommits.on("commit", this.onCommit);
		this.schedule(0);
	}

	async stop(): Promise<void> {
		this.stopped = true;
		outboxCommits.off("commit", this.onCommit);
		this.timer?.();
		await this.running;
	}

	/** Runs a round soon (after a commit). Ignored while backing off from a broker outage. */
	kick(): void {
		if (this.stopped || this.failures > 0) return;
		if (this.running) this.again = true;
		else if (!this.timer || this.due > this.clock.now() + this.coalesceMs) this.schedule(this.coalesceMs);
	}

	private get coalesceMs(): number {
		return this.opts.coalesceMs ?? 10;
	}

	/** True while the last round failed to publish (the broker is unreachable). */
	get backingOff(): boolean {
		return this.failures > 0;
	}

	/** One round: claims up to `batchSize` rows, publishes what order allows, marks it. Answers rows published. */
	async relayOnce(): Promise<number> {
		const { sql } = this.opts;
		const limit = this.opts.batchSize ?? 100;
		if (!sql.mysql) {
			const rows = await sql.select<ClaimedRow>(
				"SELECT seq, id, aggregate_type, aggregate_id, event_type, payload, version, created_at FROM outbox_events WHERE processed = 0 ORDER BY seq LIMIT ?",
				[limit]
			);
			const { done, error } = await this.publishInOrder(rows);
			await this.markProcessed(done);
			if (error) throw error;
			return done.length;
		}
		// The rows published are marked and committed even when a later one failed; the failure is thrown after.
		const { done, error } = await sql.transaction(
			async t => {
				const rows = await sql.select<ClaimedRow>(
					"SELECT seq, id, aggregate_type, aggregate_id, event_type, payload, version, created_at FROM outbox_events WHERE processed = 0 ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED",
					[limit],
					t
				);
				const published = await this.publishInOrder(await this.orderSafe(rows, t));
				await this.markProcessed(published.done, t);
				return published;
			},
			{ isolationLevel: Transaction.ISOLATION_LEVELS.READ_COMMITTED }
		);
		if (error) throw error;
		return done.length;
	}

	/** Drops the rows of an aggregate from the first one that has an unclaimed-by-us unprocessed row before it. */
	private async orderSafe(rows: ClaimedRow[], t: Transaction): Promise<ClaimedRow[]> {
		if (rows.length === 0) return rows;
		const mine = new Set(rows.map(r => Number(r.seq)));
		const keys = [...new Set(rows.map(r => `${r.aggregate_type}\u0000${r.aggregate_id}`))].map(k => k.split("\u0000"));
		const maxSeq = Math.max(...mine);
		const others = await this.opts.sql.select<{ seq: number | string; aggregate_type: string; aggregate_id: string }>(
			`SELECT seq, aggregate_type, aggregate_id FROM outbox_events WHERE processed = 0 AND seq < ? AND (${keys
				.map(() => "(aggregate_type = ? AND aggregate_id = ?)")
				.join(" OR ")})`,
			[maxSeq, ...keys.flat()],
			t
		);
		const firstForeign = new Map<string, number>();
		for (const o of others) {
			const seq = Number(o.seq);
			if (mine.has(seq)) continue;
			const k = `${o.aggregate_type}\u0000${o.aggregate_id}`;
			firstForeign.set(k, Math.min(firstForeign.get(k) ?? Infinity, seq));
		}
		return rows.filter(r => Number(r.seq) < (firstForeign.get(`${r.aggregate_type}\u0000${r.aggregate_id}`) ?? Infinity));
	}

	/** Each aggregate's rows one after the other (stopping at its first failure); aggregates side by side. */
	private async publishInOrder(rows: ClaimedRow[]): Promise<{ done: ClaimedRow[]; error?: unknown }> {
		const chains = new Map<string, ClaimedRow[]>();
		for (const r of [...rows].sort((a, b) => Number(a.seq) - Number(b.seq))) {
			const k = `${r.aggregate_type}\u0000${r.aggregate_id}`;
			chains.set(k, [...(chains.get(k) ?? []), r]);
		}
		const done: ClaimedRow[] = [];
		let error: unknown;
		await Promise.all(
			[...chains.values()].map(async chain => {
				for (const row of chain) {
					try {
						await this.opts.publish(toEventMessage(row));
						done.push(row);
					} catch (err) {
						error ??= err;
						return;
					}
				}
			})
		);
		return { done, error };
	}

	private async markProcessed(rows: ClaimedRow[], t?: Transaction): Promise<void> {
		if (rows.length === 0) return;
		await this.opts.sql.update(
			`UPDATE outbox_events SET processed = 1, processed_at = ? WHERE seq IN (${rows.map(() => "?").join(",")})`,
			[sqlTime(), ...rows.map(r => r.seq)],
			t
		);
	}

	private schedule(ms: number): void {
		if (this.stopped) return;
		this.timer?.();
		this.due = this.clock.now() + ms;
		this.timer = this.clock.after(ms, () => {
			this.timer = undefined;
			// A round sees every row committed before it starts; a commit during the round asks for another one.
			this.again = false;
			this.running = this.round().finally(() => {
				this.running = undefined;
				if (this.again && this.failures === 0) this.schedule(this.coalesceMs);
			});
		});
	}

	private async round(): Promise<void> {
		let next = this.opts.pollMs;
		try {
			// Keep going while full batches come back: a backlog drains without waiting for the poll.
			while (!this.stopped && (await this.relayOnce()) >= (this.opts.batchSize ?? 100));
			if (this.failures > 0) this.opts.log?.("info", `outbox relay: publishing again after ${this.failures} failed round(s)`);
			this.failures = 0;
		} catch (err) {
			this.failures++;
			next = Math.min(this.opts.pollMs * 2 ** Math.min(this.failures, 10), this.opts.maxBackoffMs ?? Math.min(30_000, this.opts.pollMs * 20));
			if (this.failures === 1 || this.failures % 10 === 0) {
				this.opts.log?.("warn", `outbox relay: publish failed (${(err as Error).message}); retrying in ${next} ms`);
			}
		}
		this.schedule(next);
	}
}
