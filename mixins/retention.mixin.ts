/**
 * Retention: each service deletes its own rows past their age (issue 19), because nothing else may touch its
 * tables. A service lists its rules; this mixin gives it a `purge` action that applies them in batches, each batch
 * one short transaction, with a pause between batches so a purge never holds locks or the pool for long. The ops
 * service's retention job calls every `<service>.purge` on one node at a time (a lease), off the hot path; an
 * operator can run it at once (POST /api/admin/retention/run). An age of 0 keeps that kind of row for ever.
 *
 * A rule is a SELECT of the keys of at most `limit` rows past the cutoff (its two parameters: cutoff, limit) and the
 * tables to delete them from, children first, by those keys. Written here rather than with a library: what to keep
 * differs per table (an outbox keeps each aggregate's latest event, a saga with an open dead letter stays), so the
 * rules are SQL, and the loop around them is twenty lines.
 */
import type { Context, ServiceSchema } from "moleculer";
import type { Config } from "../lib/config";
import type { Sql } from "../lib/db";

export interface RetentionRule {
	/** What the rule deletes, for the answer and the logs ("outbox_events", "saga_instances"). */
	name: string;
	/** Age in days past which a row goes; 0 keeps them. */
	days(config: Config): number;
	/** The cutoff as the rule's SELECT compares it: a Date for DATE columns, epoch ms for BIGINT ones. */
	cutoff?: "date" | "epochMs";
	/**
	 * SELECT of the key columns of rows older than the cutoff: every `?` is the cutoff but the last (the limit) and,
	 * with `cursor`, the one before it (the cursor's value after the previous batch; 0 at first).
	 */
	select: string;
	/**
	 * A key column the SELECT orders by and starts after: for a rule that keeps some old rows (an outbox keeps each
	 * aggregate's latest), so each batch starts where the last ended instead of walking the kept rows again.
	 */
	cursor?: string;
	/** Tables to delete the selected rows from, children first: each with the columns matching the key, in order. */
	delete: { table: string; columns: string[] }[];
}

/** The pause between two batches (RETENTION_BATCH rows each unless the call says otherwise). */
const PAUSE_MS = 20;
/** A purge stops after this long and leaves the rest for the next run. */
const BUDGET_MS = 30_000;

/**
 * The outbox of a producer: published rows past the age, except the latest of each aggregate, which stays (the
 * ranking's rebuild and the consistency check read an aggregate's latest event: lib/outbox.ts latestOutboxEvents).
 */
export const outboxRetention: RetentionRule = {
	name: "outbox_events",
	days: c => c.retention.outboxDays,
	select: `SELECT o.seq FROM outbox_events o
		WHERE o.processed = 1 AND o.processed_at < ?
		  AND EXISTS (SELECT 1 FROM outbox_events n WHERE n.aggregate_type = o.aggregate_type AND n.aggregate_id = o.aggregate_id AND n.version > o.version)
		  AND o.seq > ?
		ORDER BY o.seq LIMIT ?`,
	cursor: "seq",
	delete: [{ table: "outbox_events", columns: ["seq"] }]
};

interface Vars {
	sql: Sql;
	config: Config;
}

/** Deletes, by rule, what is past its age; answers the rows deleted per rule. */
export async function purge(sql: Sql, config: Config, rules: RetentionRule[], opts: { batch?: number } = {}): Promise<Record<string, number>> {
	const batch = opts.batch ?? config.retention.batch;
	const now = Date.now();
	const deadline = Date.now() + BUDGET_MS;
	const deleted: Record<string, number> = {};
	for (const rule of rules) {
		const days = rule.days(config);
		deleted[rule.name] = 0;
		if (days <= 0) continue;
		const cut = now - days * 86_400_000;
		const cutoff = rule.cutoff === "epochMs" ? cut : new Date(cut);
		let after: unknown = 0;
		const placeholders = (rule.select.match(/\?/g) ?? []).length;
		const cutoffs = Array.from({ length: placeholders - (rule.cursor ? 2 : 1) }, () => cutoff);
		while (Date.now() < deadline) {
			const keys = await sql.select<Record<string, unknown>>(rule.select, [...cutoffs, ...(rule.cursor ? [after] : []), batch]);
			if (keys.length === 0) break;
			const n = await sql.transaction(async t => {
				// The rows of the rule's own table (the last, after its children).
				let main = 0;
				for (const [i, d] of rule.delete.entries()) {
					const where = keys.map(() => `(${d.columns.map(c => `${c} = ?`).join(" AND ")})`).join(" OR ");
					const values = keys.flatMap(k => Object.values(k).slice(0, d.columns.length));
					const changed = await sql.update(`DELETE FROM ${d.table} WHERE ${where}`, values, t);
					if (i === rule.delete.length - 1) main = changed;
				}
				return main;
			});
			deleted[rule.name] += n;
			if (rule.cursor) after = keys[keys.length - 1][rule.cursor];
			if (keys.length < batch) break;
			await new Promise(r => setTimeout(r, PAUSE_MS));
		}
	}
	return deleted;
}

/** The `purge` action over `rules` (each service's own). */
export function RetentionMixin(rules: RetentionRule[]): Partial<ServiceSchema> {
	return {
		actions: {
			purge: {
				visibility: "public",
				params: { batch: { type: "number", integer: true, min: 1, max: 10_000, optional: true }, $$strict: "remove" },
				async handler(ctx: Context<{ batch?: number }>) {
					const self = this as unknown as Vars;
					return purge(self.sql, self.config, rules, { batch: ctx.params.batch });
				}
			}
		}
	};
}
