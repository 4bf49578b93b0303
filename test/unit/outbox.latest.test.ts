/** The latest-events contract (test/support/contracts/outbox-latest.ts) on SQLite, as embedded mode runs it. */
import fs from "fs";
import os from "os";
import path from "path";
import type { SqlConfig } from "../../lib/config";
import { outboxMigration } from "../../lib/outbox";
import { createSequelize, migrate } from "../../lib/db";
import { latestContract } from "../support/contracts/outbox-latest";

latestContract("SQLite", async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "latest-"));
	const sql: SqlConfig = { dialect: "sqlite", dir, prefix: "", poolMax: 1 };
	const db = createSequelize(sql, "latest");
	await migrate(sql, "latest", db, [outboxMigration], () => undefined);
	return {
		db,
		close: async () => {
			await db.close();
			fs.rmSync(dir, { recursive: true, force: true });
		}
	};
});
