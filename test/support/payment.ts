/**
 * Helpers for the payment tests: a ledger on its own SQLite file (unit tier) and direct SQL on a run's payment
 * schema on MariaDB (integration tier), to count rows and to hold a wallet's row lock from outside the service.
 */
import fs from "fs";
import os from "os";
import path from "path";
import mysql from "mysql2/promise";
import { QueryTypes, type Sequelize } from "sequelize";
import type { SqlConfig } from "../../lib/config";
import { adminConnection, createSequelize, migrate, Sql } from "../../lib/db";
import { outboxMigration } from "../../lib/outbox";
import { PaymentLedger } from "../../services/payment/ledger";
import { PAYMENT_MIGRATIONS } from "../../services/payment/migrations";
import { MARIADB_URL } from "./isolation";

export interface SqliteLedger {
	ledger: PaymentLedger;
	sequelize: Sequelize;
	count(sql: string, replacements?: unknown[]): Promise<number>;
	close(): Promise<void>;
}

/** A migrated payment database in a temp SQLite file, set up as the db mixin sets up embedded mode. */
export async function sqliteLedger(opts: { balanceLimit?: number } = {}): Promise<SqliteLedger> {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crp-payment-"));
	const sql = { dialect: "sqlite" as const, dir, prefix: "", poolMax: 1 };
	const sequelize = createSequelize(sql, "payment");
	await sequelize.query("PRAGMA journal_mode=WAL");
	await sequelize.query("PRAGMA busy_timeout=5000");
	await migrate(sql, "payment", sequelize, [outboxMigration, ...PAYMENT_MIGRATIONS], () => undefined);
	return {
		ledger: new PaymentLedger({ sql: new Sql(sequelize), balanceLimit: opts.balanceLimit }),
		sequelize,
		async count(q: string, replacements: unknown[] = []) {
			const [row] = await sequelize.query<{ n: number }>(q, { replacements, type: QueryTypes.SELECT });
			return Number(row.n);
		},
		async close() {
			await sequelize.close();
			fs.rmSync(dir, { recursive: true, force: true });
		}
	};
}

/**
 * A plain connection to one schema of the test MariaDB server, or of `server` when given: the payment schema's
 * own server in a run with DATABASE_URL_PAYMENT (`sqlFor(env.config, "payment")`).
 */
export async function mariadb(database: string, server?: SqlConfig): Promise<mysql.Connection> {
	if (server) {
		if (server.dialect !== "mysql") throw new Error("mariadb() needs a MariaDB server config");
		return adminConnection(server, database);
	}
	const url = new URL(MARIADB_URL);
	return mysql.createConnection({
		host: url.hostname,
		port: Number(url.port || 3306),
		user: decodeURIComponent(url.username || "root"),
		password: url.password ? decodeURIComponent(url.password) : undefined,
		database
	});
}

/** First column of the first row of a query, as a number. */
export async function scalar(conn: mysql.Connection, sql: string, params: unknown[] = []): Promise<number> {
	const [rows] = await conn.query(sql, params);
	const first = (rows as Record<string, unknown>[])[0];
	return Number(first ? Object.values(first)[0] : 0);
}
