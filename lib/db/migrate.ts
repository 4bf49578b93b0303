/**
 * Versioned migrations (umzug), listed per service as TypeScript objects named `NNN_what`. On MariaDB a run holds a
 * named lock (GET_LOCK), so several replicas starting together migrate once and the others wait, then find nothing
 * to do.
 */
import { DataTypes, QueryInterface, type Sequelize } from "sequelize";
import { SequelizeStorage, Umzug } from "umzug";
import type { SqlConfig } from "../config";
import { adminConnection } from "./connect";

export interface Migration {
	/** Sorted by name; never rename one that has shipped. */
	name: string;
	up(qi: QueryInterface, types: typeof DataTypes): Promise<void>;
	down?(qi: QueryInterface, types: typeof DataTypes): Promise<void>;
}

/** Creates the schema if missing (MariaDB), then runs pending migrations under a cross-node lock. */
export async function migrate(sql: SqlConfig, database: string, sequelize: Sequelize, migrations: Migration[], log: (msg: string) => void): Promise<string[]> {
	const umzug = new Umzug({
		migrations: [...migrations]
			.sort((a, b) => a.name.localeCompare(b.name))
			.map(m => ({
				name: m.name,
				up: ({ context }: { context: QueryInterface }) => m.up(context, DataTypes),
				down: ({ context }: { context: QueryInterface }) => (m.down ? m.down(context, DataTypes) : Promise.resolve())
			})),
		context: sequelize.getQueryInterface(),
		storage: new SequelizeStorage({ sequelize, tableName: "schema_migrations" }),
		logger: undefined
	});

	if (sql.dialect === "sqlite") {
		const done = await umzug.up();
		return done.map(m => m.name);
	}

	// A separate connection holds the lock for the whole run; the migrations use the pool.
	const admin = await adminConnection(sql);
	try {
		await admin.query(`CREATE DATABASE IF NOT EXISTS \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
		const lockName = `migrate:${database}`.slice(0, 64);
		const [rows] = await admin.query("SELECT GET_LOCK(?, 120) AS got", [lockName]);
		if ((rows as { got: number }[])[0]?.got !== 1) throw new Error(`timed out waiting for the migration lock of ${database}`);
		try {
			const done = await umzug.up();
			if (done.length > 0) log(`migrated ${database}: ${done.map(m => m.name).join(", ")}`);
			return done.map(m => m.name);
		} finally {
			await admin.query("SELECT RELEASE_LOCK(?)", [lockName]);
		}
	} finally {
		await admin.end();
	}
}
