/** The latest-events contract (test/support/contracts/outbox-latest.ts) on the real MariaDB (a database of this run). */
import type { SqlConfig } from "../../lib/config";
import { outboxMigration } from "../../lib/outbox";
import { createSequelize, dropDatabasesByPrefix, migrate } from "../../lib/db";
import { latestContract } from "../support/contracts/outbox-latest";
import { MARIADB_URL, runId } from "../support/isolation";

latestContract("MariaDB", async () => {
	const url = new URL(MARIADB_URL);
	const prefix = `${runId("ol")}_`;
	const sql: SqlConfig = {
		dialect: "mysql",
		host: url.hostname,
		port: Number(url.port || 3306),
		user: decodeURIComponent(url.username || "root"),
		password: decodeURIComponent(url.password) || undefined,
		prefix,
		poolMax: 2
	};
	const db = createSequelize(sql, `${prefix}latest`);
	await migrate(sql, `${prefix}latest`, db, [outboxMigration], () => undefined);
	return {
		db,
		close: async () => {
			await db.close();
			await dropDatabasesByPrefix(sql, prefix);
		}
	};
});
