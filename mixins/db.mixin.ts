/**
 * Database mixin: each service owns its own database and schema (DESIGN.md section 3).
 * - Embedded: one SQLite file per service under DATA_DIR (WAL, busy timeout, immediate transactions).
 * - Cluster: one schema per service on MariaDB/MySQL (`<DB_PREFIX><service>`), created if missing, with a small
 *   pool sized for a 2-core box.
 * At start it runs the service's versioned migrations (umzug). On MariaDB the run holds a named lock
 * (GET_LOCK), so several replicas starting together migrate once and the others wait, then find nothing to do.
 * moleculer-db's generic CRUD actions are switched off: services expose domain actions, not their tables.
 * A database that is down or refuses us at start is retried with a growing delay (0.5 s doubling to 10 s), one log
 * line per attempt that says where and why; once running, any error of an action that says the database is
 * unavailable reaches the caller as a retryable 503 (`DatabaseUnavailableError`).
 */
import fs from "fs";
import path from "path";
import type { Context, ServiceSchema } from "moleculer";
import DbService from "moleculer-db";
import SequelizeAdapter from "moleculer-db-adapter-sequelize";
import mysql from "mysql2/promise";
import {
	DataTypes,
	QueryInterface,
	Sequelize,
	Transaction,
	type Model,
	type ModelAttributes,
	type ModelOptions,
	type ModelStatic
} from "sequelize";
import { SequelizeStorage, Umzug } from "umzug";
import type { SqlConfig } from "../lib/config";
import { DatabaseUnavailableError, isDatabaseUnavailable } from "../lib/errors";
import { platformOf } from "../lib/platform";
import { dbFaultReason, describeDbError } from "../lib/sql";

export interface Migration {
	/** Sorted by name; never rename one that has shipped. */
	name: string;
	up(qi: QueryInterface, types: typeof DataTypes): Promise<void>;
	down?(qi: QueryInterface, types: typeof DataTypes): Promise<void>;
}

export interface DbMixinOptions {
	/** Logical database name (the service name by default). */
	database: string;
	migrations: Migration[];
	/** The service's main model, for moleculer-db's adapter. */
	model: { name: string; define: ModelAttributes; options?: ModelOptions };
}

export interface DbVars {
	/** The service's own Sequelize instance (available from `started`). */
	sequelize: Sequelize;
	/** Physical database name: the schema on MariaDB or the file stem on SQLite. */
	databaseName: string;
	/** The main model (set by moleculer-db's adapter when it connects). */
	model: ModelStatic<Model>;
}

/** `<DB_PREFIX><name>`, restricted to what MariaDB accepts unquoted. */
export function physicalDatabaseName(sql: SqlConfig, logical: string): string {
	const name = `${sql.prefix}${logical}`.replace(/[^A-Za-z0-9_]/g, "_");
	if (name.length > 64) throw new Error(`database name too long: ${name}`);
	return name;
}

export function createSequelize(sql: SqlConfig, database: string): Sequelize {
	const common = {
		logging: false as const,
		define: { underscored: true, freezeTableName: true },
		benchmark: false
	};
	if (sql.dialect === "sqlite") {
		fs.mkdirSync(sql.dir!, { recursive: true });
		return withBusyTimeout(new Sequelize({
			...common,
			dialect: "sqlite",
			storage: path.join(sql.dir!, `${database}.sqlite`),
			// IMMEDIATE takes the write lock at BEGIN: two transactions never deadlock upgrading a read lock.
			transactionType: Transaction.TYPES.IMMEDIATE,
			retry: { match: [/SQLITE_BUSY/], max: 10 }
		}));
	}
	return new Sequelize(database, sql.user!, sql.password, {
		...common,
		dialect: "mysql",
		host: sql.host,
		port: sql.port,
		timezone: "+00:00",
		pool: { max: sql.poolMax, min: 0, acquire: 10_000, idle: 10_000, evict: 5_000 },
		dialectOptions: { connectTimeout: 5_000, supportBigNumbers: true, bigNumberStrings: false },
		retry: { max: 0 }
	});
}

/**
 * Sequelize's SQLite dialect opens a new connection per transaction and runs no connect hooks, so a PRAGMA issued
 * once applies to one connection only. Every connection gets a busy timeout here: a writer that finds the file
 * locked waits for it (up to 5 s) instead of failing at once with SQLITE_BUSY.
 */
function withBusyTimeout(sequelize: Sequelize): Sequelize {
	type Conn = { configure?(option: "busyTimeout", ms: number): void };
	const cm = sequelize.connectionManager as unknown as { getConnection(o?: unknown): Promise<Conn> };
	const configured = new WeakSet<Conn>();
	const open = cm.getConnection.bind(cm);
	cm.getConnection = async (o?: unknown) => {
		const conn = await open(o);
		if (!configured.has(conn)) {
			conn.configure?.("busyTimeout", 5000);
			configured.add(conn);
		}
		return conn;
	};
	return sequelize;
}

/** Creates the schema if missing (MariaDB), then runs pending migrations under a cross-node lock. */
export async function migrate(
	sql: SqlConfig,
	database: string,
	sequelize: Sequelize,
	migrations: Migration[],
	log: (msg: string) => void
): Promise<string[]> {
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

/** A connection to the MariaDB server without a database selected (schema creation, locks, clean-up). */
function adminConnection(sql: SqlConfig) {
	return mysql.createConnection({ host: sql.host, port: sql.port, user: sql.user, password: sql.password, connectTimeout: 5_000 });
}

/** Where a service's database lives, for log lines: `host:port` on MariaDB, the directory on SQLite. */
export function databaseLocation(sql: SqlConfig): string {
	return sql.dialect === "mysql" ? `${sql.host}:${sql.port}` : sql.dir ?? "";
}

/**
 * One round trip to the MariaDB server itself (no schema), for a health answer that has to say why services are
 * missing: `undefined` when it answers, else the reason without hosts ("connection refused", "access denied").
 */
export async function probeDatabaseServer(sql: SqlConfig, timeoutMs = 2000): Promise<string | undefined> {
	if (sql.dialect !== "mysql") return undefined;
	try {
		const conn = await mysql.createConnection({ host: sql.host, port: sql.port, user: sql.user, password: sql.password, connectTimeout: timeoutMs });
		try {
			await conn.query("SELECT 1");
		} finally {
			conn.destroy();
		}
		return undefined;
	} catch (err) {
		return dbFaultReason(err);
	}
}

/** Start-up connection attempts: first retry after this long, doubling up to the cap. */
export const CONNECT_RETRY_MS = { first: 500, max: 10_000 };

/**
 * Drops every schema whose name starts with `prefix` (a test or benchmark run's DB_PREFIX, ending in "_"): how a
 * run removes what it created. Refuses anything that does not look like such a prefix.
 */
export async function dropDatabasesByPrefix(sql: SqlConfig, prefix: string): Promise<void> {
	if (!/^[A-Za-z0-9_]+_$/.test(prefix)) throw new Error(`refusing to drop databases with prefix "${prefix}"`);
	if (sql.dialect !== "mysql") return;
	const conn = await adminConnection(sql);
	try {
		const [rows] = await conn.query("SHOW DATABASES");
		for (const row of rows as { Database: string }[]) {
			if (row.Database.startsWith(prefix)) await conn.query(`DROP DATABASE \`${row.Database}\``);
		}
	} finally {
		await conn.end();
	}
}

/**
 * moleculer-db without its `started`: that one retried a failed connection every second for ever, logging the whole
 * error with its stack each time (about 100 lines a second between the services of a node); ours is below.
 */
const { started: _moleculerDbStarted, ...DbServiceWithoutStart } = DbService as unknown as Partial<ServiceSchema>;

export function DbMixin(opts: DbMixinOptions): Partial<ServiceSchema> {
	return {
		mixins: [DbServiceWithoutStart],

		// moleculer-db's CRUD actions would publish the tables over the bus; the service defines its own.
		actions: {
			find: false,
			count: false,
			list: false,
			create: false,
			insert: false,
			get: false,
			update: false,
			remove: false,

			/**
			 * Health probe for the gateway: one round trip to this service's database. A failure is a
			 * DatabaseUnavailableError whose `data.reason` says why ("connection refused").
			 */
			health: {
				visibility: "public",
				async handler() {
					const started = Date.now();
					try {
						await this.sequelize.query("SELECT 1");
					} catch (err) {
						throw new DatabaseUnavailableError(dbFaultReason(err));
					}
					return { ok: true, database: this.databaseName, latencyMs: Date.now() - started };
				}
			}
		},

		hooks: {
			error: {
				/**
				 * A database that is down, refusing us or too busy is the server's problem and passes: a retryable
				 * 503 for the caller (the broker's retry policy, a saga step's retries, Retry-After at the gateway),
				 * never a 500 that carries the driver's message with the host in it.
				 */
				"*"(this: { logger: { warn(...a: unknown[]): void }; dbWarnedAt?: number }, ctx: Context, err: Error) {
					if (!isDatabaseUnavailable(err) || (err as { type?: unknown }).type === "SERVICE_UNAVAILABLE") throw err;
					// At most a line every 5 s: an outage under load fails hundreds of calls a second.
					if (Date.now() - (this.dbWarnedAt ?? 0) >= 5000) {
						this.dbWarnedAt = Date.now();
						this.logger.warn(`${ctx.action?.name ?? "action"}: database unavailable (${describeDbError(err)}); answering 503`);
					}
					throw new DatabaseUnavailableError(dbFaultReason(err));
				}
			}
		},

		model: opts.model,

		created() {
			const { config } = platformOf(this.broker);
			const name = physicalDatabaseName(config.sql, opts.database);
			const sequelize = createSequelize(config.sql, name);
			this.databaseName = name;
			this.sequelize = sequelize;
			// Replace moleculer-db's memory adapter with a Sequelize adapter bound to our instance; `noSync`:
			// tables come from migrations, never from model.sync().
			// (Its typings declare one constructor argument; the fourth, `noSync`, is read by the adapter's connect.)
			const Adapter = SequelizeAdapter as unknown as new (...args: unknown[]) => { init(b: unknown, s: unknown): void };
			this.adapter = new Adapter(sequelize, undefined, undefined, { noSync: true });
			this.adapter.init(this.broker, this);
		},

		/**
		 * Connects and migrates, retrying with a growing delay while the database is down or refuses us: one line
		 * per attempt with where, why and when the next try is. Gives up only when the broker stops.
		 */
		async started() {
			const { config } = platformOf(this.broker);
			const where = databaseLocation(config.sql);
			let delay = CONNECT_RETRY_MS.first;
			for (let attempt = 1; ; attempt++) {
				try {
					await this.connect();
					if (attempt > 1) this.logger.info(`database ${where} reached for ${this.databaseName} after ${attempt} attempts`);
					return;
				} catch (err) {
					if (this.dbStopping) throw err;
					this.logger.warn(
						`database ${where} not available for ${this.databaseName} (attempt ${attempt}): ${describeDbError(err)}; retrying in ${delay / 1000} s`
					);
					await new Promise<void>(resolve => {
						const t = setTimeout(resolve, delay);
						this.dbWake = () => {
							clearTimeout(t);
							resolve();
						};
					});
					if (this.dbStopping) throw new Error(`stopped before the database ${where} was reached`);
					delay = Math.min(delay * 2, CONNECT_RETRY_MS.max);
				}
			}
		},

		stopped() {
			this.dbStopping = true;
			this.dbWake?.();
		},

		methods: {
			/** Called by `started` until it succeeds. */
			async connect() {
				const { config } = platformOf(this.broker);
				if (config.sql.dialect === "sqlite") {
					// WAL is a property of the file: readers no longer wait for the writer.
					await this.sequelize.query("PRAGMA journal_mode=WAL");
				}
				await migrate(config.sql, this.databaseName, this.sequelize, opts.migrations, (m: string) => this.logger.info(m));
				await this.adapter.connect();
			}
		}
	};
}
