/**
 * The one way services, stores and repositories write SQL by hand (conditional updates, row locks), the same on
 * MariaDB and SQLite. A store takes a `Sql` in its constructor; the db mixin gives every service one (`this.sql`).
 * - `transaction(fn)`: one transaction, retried whole when InnoDB picked it as a deadlock victim (it rolled back
 *   entirely); on SQLite it waits in the file's writer queue (below);
 * - `compound(body)`: several statements as one transaction in one round trip on MariaDB (the saga journal);
 * - `select`, `insert`, `update(...)` (the number of rows an UPDATE changed, which is how a conditional update
 *   tells who won); a write outside a transaction waits in the SQLite writer queue too;
 * - `isDeadlock`, `isLockContention`, `isTransientDbError`: faults told apart by the driver's error code, never by
 *   the message: a deadlock, a lock wait, a busy file, a lost connection say nothing about the request and may be
 *   retried;
 * - `dbFaultReason` / `describeDbError`: why a database is not available, as a short phrase without hosts (for
 *   health answers and errors) and as one log line (the server's own words for a refused login, never a password).
 *
 * On MariaDB the statements go straight to the mysql2 connection (`run`), not through `sequelize.query`: Sequelize
 * still owns the pool, the connections' settings (their typeCast, timezone and affected-rows flag, so rows come
 * back typed as before), transactions (START/COMMIT/ROLLBACK and their afterCommit hooks) and migrations, but its
 * per-statement pipeline (the replacement tokenizer, option spreading, hooks, the retry wrapper, result
 * formatting) was 15% of a booking node's CPU during the checkout benchmark, as much as the driver itself
 * (BENCHMARKS.md). mysql2 fills the `?` placeholders itself (sqlstring: the same escaping of strings, numbers,
 * null, booleans, Dates in the connection's UTC, arrays as lists); an object value, which it would turn into
 * `key = value` pairs, is refused. Driver errors are converted by Sequelize's own mapping (its dialect's
 * `formatError`), so callers still see UniqueConstraintError and the driver's errno under `parent`.
 *
 * The SQLite writer queue: SQLite has one writer per file, and a BEGIN IMMEDIATE or a write that finds the file
 * locked waits only for the busy timeout, then fails with SQLITE_BUSY. Embedded mode is one process, so its writes
 * queue here instead, one at a time per file. The queue belongs to the file, not to a `Sql`: every writer of a file
 * in this process (a repository, the saga store, the outbox relay) waits in the same one.
 */
import path from "path";
import { QueryTypes, Transaction, type Sequelize } from "sequelize";

const MYSQL_DEADLOCK = [1213, "ER_LOCK_DEADLOCK"];
const MYSQL_LOCK_WAIT_TIMEOUT = [1205, "ER_LOCK_WAIT_TIMEOUT"];
const SQLITE_BUSY = "SQLITE_BUSY";
/** Attempts of a transaction InnoDB keeps choosing as a deadlock victim. */
const DEADLOCK_ATTEMPTS = 5;

export function dbErrno(err: unknown): number | string | undefined {
	const e = err as { parent?: { errno?: number; code?: string }; original?: { errno?: number; code?: string } };
	return e?.parent?.errno ?? e?.original?.errno ?? e?.parent?.code ?? e?.original?.code;
}

/** The error the driver raised, under Sequelize's wrapper when there is one. */
function driverError(err: unknown): { code?: unknown; errno?: unknown; message?: unknown; sqlMessage?: unknown } {
	const e = (err ?? {}) as { parent?: object; original?: object };
	return (e.parent ?? e.original ?? err ?? {}) as { code?: unknown; errno?: unknown; message?: unknown };
}

/** Whether the driver's errno or code is one of `codes`. */
function driverSays(err: unknown, codes: unknown[]): boolean {
	const d = driverError(err);
	return codes.includes(d.errno) || codes.includes(d.code);
}

/** InnoDB chose this transaction as a deadlock victim and rolled it back whole: running it again is safe. */
export function isDeadlock(err: unknown): boolean {
	return driverSays(err, MYSQL_DEADLOCK);
}

/** Another writer held what this one needed: a deadlock, a lock wait that timed out, a busy SQLite file. */
export function isLockContention(err: unknown): boolean {
	return driverSays(err, [...MYSQL_DEADLOCK, ...MYSQL_LOCK_WAIT_TIMEOUT, SQLITE_BUSY]);
}

/** Lock contention or a connection fault: nothing about the request, it may be retried. */
export function isTransientDbError(err: unknown): boolean {
	const name = (err as { name?: string })?.name ?? "";
	return isLockContention(err) || /^Sequelize(Connection\w*Error|ConnectionAcquireTimeoutError|TimeoutError|HostNotReachableError)$/.test(name);
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

/** The tail of each SQLite file's writer queue (by absolute path; an in-memory database by its Sequelize). */
const sqliteWriters = new Map<unknown, Promise<unknown>>();

/** Runs `fn` after every earlier call with the same key has settled. */
function serialized<T>(key: unknown, fn: () => Promise<T>): Promise<T> {
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

/** The parts of Sequelize's connection manager and of a mysql2 connection that `Sql.run` uses. */
interface PoolManager {
	getConnection(options: { type: string }): Promise<DriverConnection>;
	releaseConnection(connection: DriverConnection): void;
}
interface DriverConnection {
	query(options: { sql: string; values: unknown[] }, cb: (err: unknown, result: unknown) => void): unknown;
}

export interface TransactionOptions {
	/** MariaDB only: SQLite has one isolation (its IMMEDIATE transactions are serializable). */
	isolationLevel?: Transaction.ISOLATION_LEVELS;
}

export class Sql {
	/** MariaDB/MySQL rather than SQLite: the one dialect check; the few SQL spellings that differ are below. */
	readonly mysql: boolean;
	private readonly writerKey?: unknown;

	constructor(readonly sequelize: Sequelize) {
		this.mysql = sequelize.getDialect() !== "sqlite";
		if (!this.mysql) {
			// Sequelize's typings leave out the instance's `options`; `storage` is the file given to createSequelize.
			const storage = (sequelize as unknown as { options: { storage?: string } }).options.storage;
			this.writerKey = storage && storage !== ":memory:" ? path.resolve(storage) : sequelize;
		}
	}

	/** `SELECT ... FOR UPDATE` on MariaDB; SQLite's IMMEDIATE transaction already holds the only write lock. */
	get forUpdate(): string {
		return this.mysql ? " FOR UPDATE" : "";
	}

	/** An INSERT that skips a row whose key exists. */
	get insertIgnore(): string {
		return this.mysql ? "INSERT IGNORE" : "INSERT OR IGNORE";
	}

	/** The tail of an INSERT that overwrites `columns` of the row whose unique key `conflict` exists. */
	upsertTail(conflict: string[], columns: string[]): string {
		return this.mysql
			? `ON DUPLICATE KEY UPDATE ${columns.map(c => `${c} = VALUES(${c})`).join(", ")}`
			: `ON CONFLICT (${conflict.join(", ")}) DO UPDATE SET ${columns.map(c => `${c} = excluded.${c}`).join(", ")}`;
	}

	async select<T extends object>(sql: string, replacements: unknown[] = [], transaction?: Transaction): Promise<T[]> {
		if (this.mysql) return this.run<T[]>(sql, replacements, transaction);
		return this.sequelize.query<T>(sql, { replacements, type: QueryTypes.SELECT, transaction });
	}

	/** An INSERT; outside a transaction it commits alone, after the SQLite writers queued before it. */
	async insert(sql: string, replacements: unknown[], transaction?: Transaction): Promise<void> {
		if (this.mysql) {
			await this.run(sql, replacements, transaction);
			return;
		}
		await this.write(transaction, () => this.sequelize.query(sql, { replacements, type: QueryTypes.INSERT, transaction }));
	}

	/** Runs an UPDATE or DELETE and returns the number of rows it changed (queued as `insert` is). */
	async update(sql: string, replacements: unknown[], transaction?: Transaction): Promise<number> {
		if (this.mysql) return Number((await this.run<{ affectedRows: number }>(sql, replacements, transaction)).affectedRows);
		const [, affected] = (await this.write(transaction, () =>
			this.sequelize.query(sql, { replacements, type: QueryTypes.UPDATE, transaction })
		)) as unknown as [unknown, number];
		return Number(affected);
	}

	/** `fn` in one transaction: in the SQLite file's writer queue, and run again whole after an InnoDB deadlock. */
	async transaction<T>(fn: (t: Transaction) => Promise<T>, opts: TransactionOptions = {}): Promise<T> {
		const options = this.mysql && opts.isolationLevel ? { isolationLevel: opts.isolationLevel } : {};
		return this.retryDeadlock(() => this.exclusive(() => this.sequelize.transaction(options, fn)));
	}

	/**
	 * MariaDB only: runs `body` (statements that may set the local `n`) as one transaction in one round trip, as an
	 * anonymous compound statement; answers `n`. A Sequelize transaction costs a round trip per statement plus START
	 * and COMMIT: the saga journal's writes were 4 statements each. An error rolls the transaction back and reaches
	 * the caller as it was raised (a duplicate key is still a UniqueConstraintError, a deadlock still has its errno,
	 * and is run again like a transaction's), so the connection never returns to the pool inside a transaction.
	 */
	async compound(body: string, replacements: unknown[]): Promise<number> {
		if (!this.mysql) throw new Error("compound statements are MariaDB's; on SQLite use transaction()");
		return this.retryDeadlock(async () => {
			const out = await this.run<unknown[]>(
				`BEGIN NOT ATOMIC\nDECLARE n INT DEFAULT 0;\nDECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;\nSTART TRANSACTION;\n${body}\nCOMMIT;\nSELECT n AS n;\nEND`,
				replacements
			);
			// mysql2 answers a compound statement with its result sets: [[{n}], OkPacket].
			const first = out[0] as { n?: unknown; 0?: { n?: unknown } } | undefined;
			return Number(first?.[0]?.n ?? first?.n);
		});
	}

	/**
	 * MariaDB: one statement on the mysql2 connection itself, the transaction's or one borrowed from Sequelize's
	 * pool for this statement alone (see the header). Answers what the driver answered: rows for a SELECT, the
	 * result header (affectedRows) for a write, the result sets of a compound statement.
	 */
	private async run<R>(sql: string, values: unknown[], transaction?: Transaction): Promise<R> {
		for (const v of values) {
			if (v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date) && !Buffer.isBuffer(v))
				throw new TypeError(`Sql: an object is not a statement value (${sql.slice(0, 60)})`);
		}
		const manager = (this.sequelize as unknown as { connectionManager: PoolManager }).connectionManager;
		let conn: DriverConnection;
		if (transaction) {
			const t = transaction as unknown as { connection: DriverConnection; finished?: string };
			if (t.finished) throw new Error(`${t.finished} has been called on this transaction, you can no longer use it (${sql.slice(0, 60)})`);
			conn = t.connection;
		} else {
			conn = await manager.getConnection({ type: "SELECT" });
		}
		try {
			return await new Promise<R>((resolve, reject) => {
				conn.query({ sql, values }, (err, result) => (err ? reject(err) : resolve(result as R)));
			});
		} catch (err) {
			throw this.driverErrorOf(conn, err, sql);
		} finally {
			if (!transaction) manager.releaseConnection(conn);
		}
	}

	/** A driver error as Sequelize would have raised it (UniqueConstraintError, DatabaseError with `parent`...). */
	private driverErrorOf(conn: DriverConnection, err: unknown, sql: string): unknown {
		if (!err || typeof err !== "object" || !("errno" in err || "code" in err)) return err;
		(err as { sql?: string }).sql = sql;
		const Query = (
			this.sequelize as unknown as {
				dialect: { Query: new (c: unknown, s: Sequelize, o: object) => { formatError(e: unknown, stack?: string): unknown } };
			}
		).dialect.Query;
		return new Query(conn, this.sequelize, {}).formatError(err, (err as { stack?: string }).stack);
	}

	/** The one deadlock rule: a victim's transaction rolled back whole, so it runs again after a short random pause. */
	private async retryDeadlock<T>(run: () => Promise<T>): Promise<T> {
		for (let attempt = 1; ; attempt++) {
			try {
				return await run();
			} catch (err) {
				if (!isDeadlock(err) || attempt >= DEADLOCK_ATTEMPTS) throw err;
				await new Promise(r => setTimeout(r, 5 + Math.random() * 20 * attempt));
			}
		}
	}

	/** A write inside a transaction already holds its place in the queue; one outside it queues on its own. */
	private write<T>(transaction: Transaction | undefined, fn: () => Promise<T>): Promise<T> {
		return transaction ? fn() : this.exclusive(fn);
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
