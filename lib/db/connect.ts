/**
 * Connections: each service owns its own database (docs/DESIGN.md section 3).
 * - Embedded: one SQLite file per service under DATA_DIR (WAL, busy timeout, immediate transactions).
 * - Cluster: one schema per service on MariaDB/MySQL (`<DB_PREFIX><service>`), with a small pool sized for a
 *   2-core box.
 * Also the server-level round trips that need no service database: the health probe of the server itself and the
 * clean-up of a test or benchmark run's schemas.
 */
import fs from "fs";
import path from "path";
import mysql from "mysql2/promise";
import { Sequelize, Transaction } from "sequelize";
import type { SqlConfig } from "../config";
import { dbFaultReason } from "./sql";

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
		return withBusyTimeout(
			new Sequelize({
				...common,
				dialect: "sqlite",
				storage: path.join(sql.dir!, `${database}.sqlite`),
				// IMMEDIATE takes the write lock at BEGIN: two transactions never deadlock upgrading a read lock.
				transactionType: Transaction.TYPES.IMMEDIATE,
				retry: { match: [/SQLITE_BUSY/], max: 10 }
			})
		);
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

/**
 * A connection to the MariaDB server without a database selected (schema creation, locks, clean-up), or with
 * `database` selected (tools and tests that read one service's schema on whichever server it lives).
 */
export function adminConnection(sql: SqlConfig, database?: string) {
	return mysql.createConnection({ host: sql.host, port: sql.port, user: sql.user, password: sql.password, database, connectTimeout: 5_000 });
}

/** Where a service's database lives, for log lines: `host:port` on MariaDB, the directory on SQLite. */
export function databaseLocation(sql: SqlConfig): string {
	return sql.dialect === "mysql" ? `${sql.host}:${sql.port}` : (sql.dir ?? "");
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
 * `dropDatabasesByPrefix` on every server of a run (DATABASE_URL and any DATABASE_URL_<SERVICE>): each is tried
 * before the first failure is thrown. With `skipUnreachable`, a server that cannot be reached or refuses the login
 * (a private server a test already stopped, a wrong password on purpose) is passed over: nothing left there can be
 * reached anyway.
 */
export async function dropDatabasesOnServers(servers: SqlConfig[], prefix: string, opts: { skipUnreachable?: boolean } = {}): Promise<void> {
	const failures: unknown[] = [];
	for (const sql of servers) {
		if (sql.dialect !== "mysql") continue;
		if (opts.skipUnreachable && (await probeDatabaseServer(sql)) !== undefined) continue;
		await dropDatabasesByPrefix(sql, prefix).catch(err => failures.push(err));
	}
	if (failures.length > 0) throw failures[0];
}
