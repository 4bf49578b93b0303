/**
 * Database mixin: each service owns its own database and schema (docs/DESIGN.md section 3).
 * - Embedded: one SQLite file per service under DATA_DIR (WAL, busy timeout, immediate transactions).
 * - Cluster: one schema per service on MariaDB/MySQL (`<DB_PREFIX><service>`), created if missing, with a small
 *   pool sized for a 2-core box. The server is DATABASE_URL's unless DATABASE_URL_<SERVICE> names another for this
 *   service's database (`sqlFor`): its connection, its migrations and the log lines that say where all follow it.
 * At start it runs the service's versioned migrations (umzug). On MariaDB the run holds a named lock
 * (GET_LOCK), so several replicas starting together migrate once and the others wait, then find nothing to do.
 * moleculer-db's generic CRUD actions are switched off: services expose domain actions, not their tables.
 * A database that is down or refuses us at start is retried with a growing delay (0.5 s doubling to 10 s), one log
 * line per attempt that says where and why; once running, any error of an action that says the database is
 * unavailable reaches the caller as a retryable 503 (`DatabaseUnavailableError`).
 */
import type { Context, ServiceSchema } from "moleculer";
import DbService from "moleculer-db";
import SequelizeAdapter from "moleculer-db-adapter-sequelize";
import type { Model, ModelAttributes, ModelOptions, ModelStatic, Sequelize } from "sequelize";
import {
	CONNECT_RETRY_MS,
	createSequelize,
	databaseLocation,
	dbFaultReason,
	describeDbError,
	migrate,
	physicalDatabaseName,
	Sql,
	type Migration
} from "../lib/db";
import { sqlFor } from "../lib/config";
import { DatabaseUnavailableError, isDatabaseUnavailable } from "../lib/errors";
import { platformOf } from "../lib/platform";

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
	/** The same database through lib/db's `Sql`: what the service's stores and repositories take. */
	sql: Sql;
	/** Physical database name: the schema on MariaDB or the file stem on SQLite. */
	databaseName: string;
	/** The main model (set by moleculer-db's adapter when it connects). */
	model: ModelStatic<Model>;
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
			// DATABASE_URL_<SERVICE> (e.g. DATABASE_URL_PAYMENT) puts this database on a server of its own.
			const sql = sqlFor(config, opts.database);
			const name = physicalDatabaseName(sql, opts.database);
			const sequelize = createSequelize(sql, name);
			this.databaseName = name;
			this.sequelize = sequelize;
			this.sql = new Sql(sequelize);
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
			const where = databaseLocation(sqlFor(config, opts.database));
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
				const sql = sqlFor(platformOf(this.broker).config, opts.database);
				if (sql.dialect === "sqlite") {
					// WAL is a property of the file: readers no longer wait for the writer.
					await this.sequelize.query("PRAGMA journal_mode=WAL");
				}
				await migrate(sql, this.databaseName, this.sequelize, opts.migrations, (m: string) => this.logger.info(m));
				await this.adapter.connect();
			}
		}
	};
}
