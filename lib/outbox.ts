/**
 * Transactional outbox, the writing half (DESIGN.md section 7; seed 000 section 3.3). A producer adds
 * `outboxMigration` to its migrations and calls `appendOutbox` inside the same transaction as the business
 * change, so the event exists if and only if the change committed. The relay that publishes the rows is the
 * events issue's (it reads `processed = false` rows in id order per aggregate).
 */
import crypto from "crypto";
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import type { Migration } from "../mixins/db.mixin";

export interface OutboxEventInput {
	aggregateType: string;
	aggregateId: string;
	/** One of DESIGN.md section 7's event names, e.g. "payment.completed". */
	eventType: string;
	payload: Record<string, unknown>;
}

export interface OutboxRow {
	id: string;
	aggregate_type: string;
	aggregate_id: string;
	event_type: string;
	payload: string;
	version: number;
	processed: boolean | number;
	created_at: Date | string;
	processed_at: Date | string | null;
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
 * duplicate version if they ever do not.
 */
export async function appendOutbox(
	sequelize: Sequelize,
	transaction: Transaction,
	event: OutboxEventInput
): Promise<{ id: string; version: number }> {
	const [row] = await sequelize.query<{ v: number | null }>(
		"SELECT MAX(version) AS v FROM outbox_events WHERE aggregate_type = ? AND aggregate_id = ?",
		{ replacements: [event.aggregateType, event.aggregateId], type: QueryTypes.SELECT, transaction }
	);
	const version = Number(row?.v ?? 0) + 1;
	const id = crypto.randomUUID();
	await sequelize.query(
		"INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload, version, processed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		{
			replacements: [
				id,
				event.aggregateType,
				event.aggregateId,
				event.eventType,
				JSON.stringify({ ...event.payload, eventId: id, version }),
				version,
				false,
				new Date()
			],
			transaction
		}
	);
	return { id, version };
}
