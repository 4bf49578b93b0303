import type { Migration } from "../../../lib/db";

/**
 * Saga instances, their step journal and dead letters (sagas/store.ts reads and writes them). Times are epoch
 * milliseconds (BIGINT): the same precision and comparisons on SQLite and MariaDB. JSON documents are TEXT.
 */
export const createSagaTables: Migration = {
	name: "001_create_saga_tables",
	async up(qi, T) {
		await qi.createTable("saga_instances", {
			id: { type: T.STRING(36), primaryKey: true },
			type: { type: T.STRING(64), allowNull: false },
			// `key` is a reserved word in MariaDB.
			saga_key: { type: T.STRING(191), allowNull: false },
			status: { type: T.STRING(16), allowNull: false },
			data: { type: T.TEXT, allowNull: false },
			results: { type: T.TEXT, allowNull: false },
			current_step: { type: T.INTEGER, allowNull: false, defaultValue: 0 },
			step_name: { type: T.STRING(64), allowNull: true },
			attempts: { type: T.INTEGER, allowNull: false, defaultValue: 0 },
			lease_owner: { type: T.STRING(128), allowNull: true },
			lease_expires_at: { type: T.BIGINT, allowNull: true },
			// Bumped by every fenced write (see sagas/store.ts).
			rev: { type: T.INTEGER, allowNull: false, defaultValue: 0 },
			result: { type: T.TEXT, allowNull: true },
			error: { type: T.TEXT, allowNull: true },
			created_at: { type: T.BIGINT, allowNull: false },
			updated_at: { type: T.BIGINT, allowNull: false }
		});
		// One saga per business key (e.g. per reservation): the index, not a lookup, guards it.
		await qi.addIndex("saga_instances", ["saga_key"], { unique: true, name: "saga_instances_key_unique" });
		// The recovery scan: active sagas by lease expiry.
		await qi.addIndex("saga_instances", ["status", "lease_expires_at"], { name: "saga_instances_status_lease" });
		await qi.addIndex("saga_instances", ["created_at"], { name: "saga_instances_created" });

		await qi.createTable("saga_steps", {
			id: { type: T.BIGINT, autoIncrement: true, primaryKey: true },
			saga_id: { type: T.STRING(36), allowNull: false },
			step: { type: T.STRING(64), allowNull: false },
			step_index: { type: T.INTEGER, allowNull: false },
			phase: { type: T.STRING(16), allowNull: false },
			status: { type: T.STRING(16), allowNull: false },
			attempts: { type: T.INTEGER, allowNull: false },
			result: { type: T.TEXT, allowNull: true },
			error: { type: T.TEXT, allowNull: true },
			owner: { type: T.STRING(128), allowNull: true },
			started_at: { type: T.BIGINT, allowNull: false },
			finished_at: { type: T.BIGINT, allowNull: true }
		});
		await qi.addIndex("saga_steps", ["saga_id", "step", "phase"], { unique: true, name: "saga_steps_saga_step_phase" });

		await qi.createTable("dead_letters", {
			id: { type: T.STRING(36), primaryKey: true },
			saga_id: { type: T.STRING(36), allowNull: false },
			saga_type: { type: T.STRING(64), allowNull: false },
			step: { type: T.STRING(64), allowNull: false },
			phase: { type: T.STRING(16), allowNull: false },
			error: { type: T.TEXT, allowNull: true },
			status: { type: T.STRING(16), allowNull: false },
			note: { type: T.STRING(500), allowNull: true },
			created_at: { type: T.BIGINT, allowNull: false },
			updated_at: { type: T.BIGINT, allowNull: false }
		});
		await qi.addIndex("dead_letters", ["status", "created_at"], { name: "dead_letters_status" });
		await qi.addIndex("dead_letters", ["saga_id"], { name: "dead_letters_saga" });
	},
	async down(qi) {
		await qi.dropTable("dead_letters");
		await qi.dropTable("saga_steps");
		await qi.dropTable("saga_instances");
	}
};
