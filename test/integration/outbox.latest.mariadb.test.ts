/** The latest-events contract (test/support/contracts/outbox-latest.ts) on the real MariaDB (a database of this run). */
import type { SqlConfig } from "../../lib/config";
import { outboxMigration } from "../../lib/outbox";
import { createSequelize, dropDatabasesByPrefix, migrate } from "../../lib/db";
import { latestContract } from "../support/contracts/outbox-latest";
import { mariadbSqlConfig, runId } from "../support/isolation";

latestContract("MariaDB", async () => {
	const prefix = `${runId("ol")}_`;
	const sql: SqlConfig = { ...mariadbSqlConfig(prefix), poolMax: 2 };
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
