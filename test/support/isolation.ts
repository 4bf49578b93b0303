/**
 * Every test run gets its own names: database prefix, store key prefix and NATS namespace, so runs never see
 * each other's data and can run beside a developer's cluster on the same servers.
 */
import crypto from "crypto";
import type { SqlConfig } from "../../lib/config";

export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
export const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
export const MARIADB_URL = process.env.TEST_DATABASE_URL ?? "mysql://root@127.0.0.1:3306";

/** A short unique token usable in database names, key prefixes and namespaces. */
export function runId(label = "t"): string {
	return `${label}${Date.now().toString(36)}${crypto.randomBytes(3).toString("hex")}`;
}

/** The test MariaDB (TEST_DATABASE_URL) as a SqlConfig whose databases carry `prefix` (drop them afterwards). */
export function mariadbSqlConfig(prefix: string): SqlConfig {
	const maria = new URL(MARIADB_URL);
	return {
		dialect: "mysql",
		host: maria.hostname,
		port: Number(maria.port || 3306),
		user: decodeURIComponent(maria.username || "root"),
		password: maria.password ? decodeURIComponent(maria.password) : undefined,
		prefix,
		poolMax: 8
	};
}
