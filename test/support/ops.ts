/**
 * Helpers for the ops tests: a cluster of several brokers with every context the consistency check reads, and
 * direct access to this run's own databases and Redis keys to inject drift behind the services' backs.
 */
import type { ServiceBroker } from "moleculer";
import mysql from "mysql2/promise";
import { createStore, RedisStore, type CoordinationStore } from "../../lib/store";
import { gatewayUrl, type TestEnv } from "./harness";
import { MARIADB_URL } from "./isolation";

export const OPS_ADMIN = { ADMIN_EMAIL: "ops-admin@example.com", ADMIN_PASSWORD: "ops-admin-password" };

/**
 * Three brokers over NATS: gateway (api, user, queue, ops), booking (reservation, saga, concert) and money and
 * projections (payment, ranking, notification). Answers the gateway broker and its URL.
 */
export async function opsCluster(env: TestEnv, extra: { gateway?: Parameters<TestEnv["broker"]>[1] } = {}): Promise<{ gateway: ServiceBroker; api: string; brokers: ServiceBroker[] }> {
	const brokers = await Promise.all([
		env.broker(["api", "user", "queue", "ops"], extra.gateway),
		env.broker(["reservation", "saga", "concert"]),
		env.broker(["payment", "ranking", "notification"])
	]);
	const gateway = brokers[0];
	await gateway.waitForServices(["reservation", "saga", "concert", "payment", "ranking", "notification"], 45_000);
	return { gateway, api: gatewayUrl(gateway), brokers };
}

/** A connection to the test MariaDB server; `schema(env, name)` names this run's schemas (`<prefix>concert`, `<prefix>payment`, ...). */
export async function sqlOf(): Promise<mysql.Connection> {
	const url = new URL(MARIADB_URL);
	return mysql.createConnection({
		host: url.hostname,
		port: Number(url.port || 3306),
		user: decodeURIComponent(url.username || "root"),
		password: url.password ? decodeURIComponent(url.password) : undefined,
		multipleStatements: false
	});
}

export const schema = (env: TestEnv, service: string) => `\`${env.env.DB_PREFIX}${service}\``;

/** This run's Redis, with its key prefix (close it after use). */
export function redisOf(env: TestEnv): { store: CoordinationStore; redis: RedisStore["redis"] } {
	const store = createStore(env.config);
	if (!(store instanceof RedisStore)) throw new Error("ops tests need the Redis store (cluster mode)");
	return { store, redis: store.redis };
}

export interface Check {
	name: string;
	ok: boolean;
	details: Record<string, any>;
}

export function checkOf(report: { checks: Check[] }, name: string): Check {
	const c = report.checks.find(x => x.name === name);
	if (!c) throw new Error(`no check named ${name} in ${JSON.stringify(report.checks.map(x => x.name))}`);
	return c;
}
