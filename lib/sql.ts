/**
 * Small helpers for services that write SQL by hand (conditional updates, row locks), the same on MariaDB and
 * SQLite:
 * - `transaction(fn)`: one transaction, retried whole when InnoDB picked it as a deadlock victim (it rolled back
 *   entirely); on SQLite, writes of one file queue in this process (one writer per file; a BEGIN IMMEDIATE on a
 *   busy file fails instead of waiting);
 * - `update(...)`: the number of rows an UPDATE changed, which is how a conditional update tells who won;
 * - `isTransientDbError`: lock waits, deadlocks, a busy file, a lost connection: faults that say nothing about
 *   the request and may be retried;
 * - `dbFaultReason` / `describeDbError`: why a database is not available, as a short phrase without hosts (for
 *   health answers and errors) and as one log line (the server's own words for a refused login, never a password).
 */
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";

const MYSQL_DEADLOCK = 1213;
const MYSQL_LOCK_WAIT_TIMEOUT = 1205;

export function dbErrno(err: unknown): number | string | undefined {
	const e = err as { parent?: { errno?: number; code?: string }; original?: { errno?: number; code?: string } };
	return e?.parent?.errno ?? e?.original?.errno ?? e?.parent?.code ?? e?.original?.code;
}

export function isDeadlock(err: unknown): boolean {
	return dbErrno(err) === MYSQL_DEADLOCK;
}

export function isTransientDbError(err: unknown): boolean {
	const name = (err as { name?: string })?.name ?? "";
	const code = dbErrno(err);
	return (
		code === MYSQL_LOCK_WAIT_TIMEOUT ||
		code === MYSQL_DEADLOCK ||
		code === "SQLITE_BUSY" ||
		/^Sequelize(Connection\w*Error|ConnectionAcquireTimeoutError|TimeoutError|HostNotReachableError)$/.test(name)
	);
}

/** The error the driver raised, under Sequelize's wrapper when there is one. */
function driverError(err: unknown): { code?: unknown; errno?: unknown; message?: unknown; sqlMessage?: unknown } {
	const e = (err ?? {}) as { parent?: object; original?: object };
	return (e.parent ?? e.original ?? err ?? {}) as { code?: unknown; errno?: unknown; message?: unknown };
}

const FAULT_REASONS: [RegExp, string][] = [
	[/^(ECONNREFUSED|SequelizeConnectionRefusedError)$/, "connection refused"],
	[/^(ETIMEDOUT|SequelizeConnectionTimedOutError|PROTOCOL_SEQUENCE_TIMEOUT)$/, "connection timed out"],
	[/^(ENOTFOUND|EAI_AGAIN|SequelizeHostNotFoundError)$/, "host not found"],
	[/^(EHOSTUNREACH|ENETUNREACH|SequelizeHostNotReachableError)$/, "host not reachable"],
	[/^(ER_ACCESS_DENIED_ERROR|ER_DBACCESS_DENIED_ERROR|SequelizeAccessDeniedError|1045|1044)$/, "access denied"],
	[/^(ER_CON_COUNT_ERROR|ER_TOO_MANY_USER_CONNECTIONS|1040)$/, "too many connections"],
	[/^(SequelizeConnectionAcquireTimeoutError)$/, "no free connection in the pool"],
	[/^(PROTOCOL_CONNECTION_LOST|ECONNRESET|EPIPE|ER_CONNECTION_KILLED|ER_SERVER_SHUTDOWN|1053|1927)$/, "connection lost"],
	[/^(ER_LOCK_WAIT_TIMEOUT|1205)$/, "lock wait timeout"],
	[/^(ER_LOCK_DEADLOCK|1213)$/, "deadlock"],
	[/^(SQLITE_BUSY|SequelizeTimeoutError)$/, "database busy"]
];

/**
 * Why the database did not answer, as a short phrase that names no host, port or user ("connection refused",
 * "access denied", ...): what a health answer or an error may carry. "unavailable" when the error says nothing known.
 */
export function dbFaultReason(err: unknown): string {
	const d = driverError(err);
	const keys = [d.code, d.errno, (err as { name?: unknown })?.name].filter(k => k !== undefined && k !== null).map(String);
	for (const [pattern, reason] of FAULT_REASONS) if (keys.some(k => pattern.test(k))) return reason;
	return "unavailable";
}

/**
 * One line for the log: the reason, and for a refused login the server's own words ("Access denied for user
 * 'crp'@'10.0.0.5' (using password: YES)": the user, never the password). Any URL's credentials are blanked.
 */
export function describeDbError(err: unknown): string {
	const reason = dbFaultReason(err);
	const d = driverError(err);
	const raw = String(d.sqlMessage ?? d.message ?? (err as { message?: unknown })?.message ?? err ?? "");
	const firstLine = (raw.split("\n")[0] ?? "").replace(/:\/\/[^\s]*@/g, "://***@").slice(0, 200);
	if (reason === "access denied" && firstLine) return firstLine.charAt(0).toLowerCase() + firstLine.slice(1);
	if (reason !== "unavailable") return reason;
	return firstLine || "unknown error";
}

const sqliteWriters = new Map<string, Promise<unknown>>();

/** Runs `fn` after every earlier call with the same key has settled. */
function serialized<T>(key: string, fn: () => Promise<T>): Promise<T> {
	const prev = sqliteWriters.get(key) ?? Promise.resolve();
	const run = prev.then(fn, fn);
	const tail = run.then(
		() => undefined,
		() => undefined
	);
	sqliteWriters.set(key, tail);
	void tail.then(() => {
		if (sqliteWriters.get(key) === tail) sqliteWriters.delete(key);
	});
	return run;
}

export class Sql {
	readonly mysql: boolean;
	private readonly writerKey?: string;

	constructor(readonly sequelize: Sequelize) {
		this.mysql = sequelize.getDialect() !== "sqlite";
		const storage = (sequelize as unknown as { options: { storage?: string } }).options.storage;
		if (!this.mysql) this.writerKey = `sqlite:${storage ?? "memory"}`;
	}

	async select<T extends object>(sql: string, replacements: unknown[] = [], transaction?: Transaction): Promise<T[]> {
		return this.sequelize.query<T>(sql, { replacements, type: QueryTypes.SELECT, transaction });
	}

	async insert(sql: string, replacements: unknown[], transaction?: Transaction): Promise<void> {
		await this.sequelize.query(sql, { replacements, type: QueryTypes.INSERT, transaction });
	}

	/** Runs an UPDATE or DELETE and returns the number of rows it changed. */
	async update(sql: string, replacements: unknown[], transaction?: Transaction): Promise<number> {
		const [, affected] = (await this.sequelize.query(sql, { replacements, type: QueryTypes.UPDATE, transaction })) as unknown as [
			unknown,
			number
		];
		return Number(affected);
	}

	/** `SELECT ... FOR UPDATE` on MariaDB; SQLite's IMMEDIATE transaction already holds the only write lock. */
	get forUpdate(): string {
		return this.mysql ? " FOR UPDATE" : "";
	}

	async transaction<T>(fn: (t: Transaction) => Promise<T>): Promise<T> {
		for (let attempt = 1; ; attempt++) {
			try {
				return await this.exclusive(() => this.sequelize.transaction(fn));
			} catch (err) {
				if (isDeadlock(err) && attempt < 5) {
					await new Promise(r => setTimeout(r, 5 + Math.random() * 20 * attempt));
					continue;
				}
				throw err;
			}
		}
	}

	private exclusive<T>(fn: () => Promise<T>): Promise<T> {
		return this.writerKey === undefined ? fn() : serialized(this.writerKey, fn);
	}
}

/**
 * A UTC timestamp with milliseconds in the one text form both MariaDB (DATETIME(3)) and SQLite (text, compared as
 * strings) order correctly. Pass this, not a Date: Sequelize formats a Date replacement on MariaDB without its
 * milliseconds, which made a 2 s hold expire up to 1 s early in the database.
 */
export function sqlTime(d: Date | number = Date.now()): string {
	return new Date(d).toISOString().replace("T", " ").replace("Z", "");
}
