/**
 * Helpers for the ops tests: a cluster of several brokers with every context the consistency check reads, and
 * direct access to this run's own databases and Redis keys to inject drift behind the services' backs.
 */
import crypto from "crypto";
import type { ServiceBroker } from "moleculer";
import mysql from "mysql2/promise";
import { sqlFor } from "../../lib/config";
import { adminConnection } from "../../lib/db";
import { createStore, RedisStore, type CoordinationStore } from "../../lib/store";
import { gatewayUrl, type TestEnv } from "./harness";
import { MARIADB_URL } from "./isolation";

export const OPS_ADMIN = { ADMIN_EMAIL: "ops-admin@example.com", ADMIN_PASSWORD: "ops-admin-password" };

/**
 * Three brokers over NATS: gateway (api, user, queue, ops), booking (reservation, saga, concert) and money and
 * projections (payment, ranking, notification). Answers the gateway broker and its URL.
 */
export async function opsCluster(
	env: TestEnv,
	extra: { gateway?: Parameters<TestEnv["broker"]>[1] } = {}
): Promise<{ gateway: ServiceBroker; api: string; brokers: ServiceBroker[] }> {
	const brokers = await Promise.all([
		env.broker(["api", "user", "queue", "ops"], extra.gateway),
		env.broker(["reservation", "saga", "concert"]),
		env.broker(["payment", "ranking", "notification"])
	]);
	const gateway = brokers[0];
	await gateway.waitForServices(["reservation", "saga", "concert", "payment", "ranking", "notification"], 45_000);
	return { gateway, api: gatewayUrl(gateway), brokers };
}

/**
 * A connection to the test MariaDB server; `schema(env, name)` names this run's schemas (`<prefix>concert`,
 * `<prefix>payment`, ...). With `env` and a service's database name: the server that database lives on
 * (DATABASE_URL_<SERVICE>, else the run's DATABASE_URL), so drift injected into the payment schema reaches the
 * payment server when it has one of its own. With `env` alone: the run's DATABASE_URL server.
 */
export async function sqlOf(env?: TestEnv, service?: string): Promise<mysql.Connection> {
	if (env) {
		const sql = service ? sqlFor(env.config, service) : env.config.sql;
		if (sql.dialect !== "mysql") throw new Error("sqlOf needs a cluster-mode run (MariaDB)");
		return adminConnection(sql);
	}
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
	status?: "ok" | "drift" | "unavailable";
	details: Record<string, any>;
}

export function checkOf(report: { checks: Check[] }, name: string): Check {
	const c = report.checks.find(x => x.name === name);
	if (!c) throw new Error(`no check named ${name} in ${JSON.stringify(report.checks.map(x => x.name))}`);
	return c;
}

/** `sqlTime` for inserts: the services compare these columns as UTC text with milliseconds. */
const at = (ms: number) => new Date(ms).toISOString().replace("T", " ").replace("Z", "");

async function insertRows(sql: mysql.Connection, table: string, columns: string[], rows: unknown[][]): Promise<void> {
	for (let i = 0; i < rows.length; i += 1000) {
		const chunk = rows.slice(i, i + 1000);
		await sql.query(
			`INSERT INTO ${table} (${columns.join(", ")}) VALUES ${chunk.map(() => `(${columns.map(() => "?").join(", ")})`).join(", ")}`,
			chunk.flat()
		);
	}
}

/**
 * A sale as big as a flash sale leaves it, written straight into this run's own schemas (the services would take
 * minutes to make it): `reservations` CONFIRMED reservations of `seatsEach` seats on new schedules of `concertId`
 * (2,000 seats each), each with its seats sold, its reservation.confirmed event published, its COMPLETED payment,
 * and a buyer whose wallet was charged exactly the price and paid it. Every invariant the consistency check knows holds for these rows.
 */
export async function bulkSale(
	env: TestEnv,
	sql: mysql.Connection,
	concertId: string,
	reservations: number,
	seatsEach: number,
	/** The payment schema's server when it has its own (`sqlOf(env, "payment")`). */
	paymentSql: mysql.Connection = sql
): Promise<{ reservationIds: string[] }> {
	const now = Date.now();
	const perSchedule = 2000;
	const price = 1000;
	const seatCount = reservations * seatsEach;
	const schedules = Array.from({ length: Math.ceil(seatCount / perSchedule) }, () => crypto.randomUUID());
	const seats = Array.from({ length: seatCount }, (_, i) => ({
		id: crypto.randomUUID(),
		scheduleId: schedules[Math.floor(i / perSchedule)],
		n: i % perSchedule
	}));
	const c = schema(env, "concert");
	await insertRows(
		sql,
		`${c}.schedules`,
		["id", "concert_id", "starts_at", "total_seats", "created_at"],
		schedules.map(id => [id, concertId, at(now + 30 * 86400_000), perSchedule, at(now)])
	);
	await insertRows(
		sql,
		`${c}.seat_availability`,
		["schedule_id", "total_seats", "sold_seats", "updated_at"],
		schedules.map((id, i) => [id, perSchedule, Math.min(perSchedule, seatCount - i * perSchedule), at(now)])
	);
	const label = (n: number) => `R${Math.floor(n / 50)}-${n % 50}`;
	await insertRows(
		sql,
		`${c}.seats`,
		["id", "schedule_id", "label", "grade", "price", "row_no", "col_no"],
		seats.map(s => [s.id, s.scheduleId, label(s.n), "R", price, Math.floor(s.n / 50), s.n % 50])
	);

	const rows = Array.from({ length: reservations }, (_, i) => ({
		id: crypto.randomUUID(),
		userId: `bulk-${crypto.randomUUID()}`,
		sagaId: crypto.randomUUID(),
		paymentId: crypto.randomUUID(),
		seats: seats.slice(i * seatsEach, (i + 1) * seatsEach)
	}));
	const amount = seatsEach * price;
	await insertRows(
		sql,
		`${c}.seat_sales`,
		["schedule_id", "seat_id", "reservation_id", "sold_at"],
		rows.flatMap(r => r.seats.map(s => [s.scheduleId, s.id, r.id, at(now)]))
	);

	const rs = schema(env, "reservation");
	await insertRows(
		sql,
		`${rs}.reservations`,
		["id", "user_id", "concert_id", "schedule_id", "status", "amount", "expires_at", "saga_id", "paid_saga_id", "payment_id", "created_at", "updated_at"],
		rows.map(r => [
			r.id,
			r.userId,
			concertId,
			r.seats[0].scheduleId,
			"CONFIRMED",
			amount,
			at(now + 300_000),
			r.sagaId,
			r.sagaId,
			r.paymentId,
			at(now),
			at(now)
		])
	);
	await insertRows(
		sql,
		`${rs}.reservation_seats`,
		["reservation_id", "seat_id", "label", "grade", "price"],
		rows.flatMap(r => r.seats.map(s => [r.id, s.id, label(s.n), "R", price]))
	);
	// Each confirmation's event, as the relay leaves it once published (the ranking rebuilds from these).
	await insertRows(
		sql,
		`${rs}.outbox_events`,
		["id", "aggregate_type", "aggregate_id", "event_type", "payload", "version", "processed", "created_at", "processed_at"],
		rows.map(r => [
			crypto.randomUUID(),
			"reservation",
			r.id,
			"reservation.confirmed",
			JSON.stringify({ reservationId: r.id, concertId, userId: r.userId, scheduleId: r.seats[0].scheduleId, seatIds: r.seats.map(s => s.id), amount }),
			1,
			1,
			at(now),
			at(now)
		])
	);

	const p = schema(env, "payment");
	await insertRows(
		paymentSql,
		`${p}.wallets`,
		["user_id", "balance", "version", "created_at", "updated_at"],
		rows.map(r => [r.userId, 0, 2, at(now), at(now)])
	);
	await insertRows(
		paymentSql,
		`${p}.point_transactions`,
		["id", "user_id", "type", "amount", "balance_after", "ref", "payment_id", "created_at"],
		rows.flatMap(r => [
			[crypto.randomUUID(), r.userId, "CHARGE", amount, amount, `charge-${r.id}`, null, at(now)],
			[crypto.randomUUID(), r.userId, "PAYMENT", amount, 0, r.paymentId, r.paymentId, at(now)]
		])
	);
	await insertRows(
		paymentSql,
		`${p}.payments`,
		["id", "saga_id", "reservation_id", "user_id", "amount", "status", "created_at", "updated_at"],
		rows.map(r => [r.paymentId, r.sagaId, r.id, r.userId, amount, "COMPLETED", at(now), at(now)])
	);
	return { reservationIds: rows.map(r => r.id) };
}
