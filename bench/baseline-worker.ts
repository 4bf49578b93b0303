/**
 * One process of the baseline: the bare primitives of a confirmation, with no Moleculer, no Sequelize, no saga
 * journal, served over plain NATS request/reply (queue group, so several processes share the work):
 *
 *   <subject>.confirm   the orchestrator: calls the four steps below in order, each one NATS round trip away
 *   <subject>.debit     MariaDB transaction: payment row, conditional wallet debit, balance read, ledger row
 *   <subject>.reserve   MariaDB transaction: reservation PAYING -> CONFIRMED and its outbox row
 *   <subject>.release   Redis: the seat hold deleted (only by its owner: one Lua script)
 *   <subject>.expire    Redis: the waiting-room token out of the active set and its bindings (one MULTI)
 *
 *   node -r ts-node/register/transpile-only bench/baseline-worker.ts   (started by bench/baseline.ts)
 * Environment: BASE_DB, BASE_PREFIX (Redis), BASE_SUBJECT, BASE_POOL.
 */
import crypto from "crypto";
import Redis from "ioredis";
import mysql from "mysql2/promise";
import { connect, JSONCodec, type NatsConnection } from "nats";
import { MARIADB, NATS_URL, REDIS_URL } from "./target";

interface ConfirmReq {
	reservationId: string;
	userId: string;
	amount: number;
	scheduleId: string;
	seatId: string;
	token: string;
	concertId: string;
}

const codec = JSONCodec<Record<string, unknown>>();
const DB = process.env.BASE_DB!;
const PREFIX = process.env.BASE_PREFIX!;
const SUBJECT = process.env.BASE_SUBJECT!;
const POOL = Number(process.env.BASE_POOL ?? 5);

const RELEASE_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

async function main(): Promise<void> {
	const pool = mysql.createPool({ ...MARIADB, database: DB, connectionLimit: POOL });
	const redis = new Redis(REDIS_URL);
	const nc: NatsConnection = await connect({ servers: new URL(NATS_URL).host });
	const now = () => new Date();

	const tx = async <T>(fn: (c: mysql.PoolConnection) => Promise<T>): Promise<T> => {
		const c = await pool.getConnection();
		try {
			await c.beginTransaction();
			const r = await fn(c);
			await c.commit();
			return r;
		} catch (err) {
			await c.rollback().catch(() => undefined);
			throw err;
		} finally {
			c.release();
		}
	};

	const handlers: Record<string, (req: ConfirmReq) => Promise<Record<string, unknown>>> = {
		async debit(req) {
			return tx(async c => {
				const id = crypto.randomUUID();
				const t = now();
				await c.execute(
					"INSERT INTO payments (id, saga_id, reservation_id, user_id, amount, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'COMPLETED', ?, ?)",
					[id, req.reservationId, req.reservationId, req.userId, req.amount, t, t]
				);
				const [res] = await c.execute(
					"UPDATE wallets SET balance = balance - ?, version = version + 1, updated_at = ? WHERE user_id = ? AND balance >= ?",
					[req.amount, t, req.userId, req.amount]
				);
				if ((res as mysql.ResultSetHeader).affectedRows !== 1) throw new Error("insufficient points");
				const [rows] = await c.execute("SELECT balance FROM wallets WHERE user_id = ?", [req.userId]);
				const balance = Number((rows as { balance: number }[])[0].balance);
				await c.execute(
					"INSERT INTO point_transactions (id, user_id, type, amount, balance_after, ref, payment_id, created_at) VALUES (?, ?, 'PAYMENT', ?, ?, ?, ?, ?)",
					[crypto.randomUUID(), req.userId, req.amount, balance, id, id, t]
				);
				return { paymentId: id, balance };
			});
		},
		async reserve(req) {
			return tx(async c => {
				const t = now();
				const [res] = await c.execute("UPDATE reservations SET status = 'CONFIRMED', updated_at = ? WHERE id = ? AND status = 'PAYING'", [
					t,
					req.reservationId
				]);
				if ((res as mysql.ResultSetHeader).affectedRows !== 1) throw new Error("not payable");
				await c.execute(
					"INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, payload, version, processed, created_at) VALUES (?, 'reservation', ?, 'reservation.confirmed', ?, 2, 0, ?)",
					[crypto.randomUUID(), req.reservationId, JSON.stringify(req), t]
				);
				return { status: "CONFIRMED" };
			});
		},
		async release(req) {
			const n = await redis.eval(RELEASE_LUA, 1, `${PREFIX}hold:${req.scheduleId}:${req.seatId}`, req.reservationId);
			return { released: n };
		},
		async expire(req) {
			const base = `${PREFIX}queue:${req.concertId}:`;
			const r = await redis.multi().zrem(`${base}active`, req.token).hdel(`${base}owners`, req.token).hdel(`${base}users`, req.userId).exec();
			return { expired: Number(r?.[0]?.[1] ?? 0) };
		}
	};

	const call = async (step: string, req: ConfirmReq) => {
		const m = await nc.request(`${SUBJECT}.${step}`, codec.encode(req as unknown as Record<string, unknown>), { timeout: 10_000 });
		const reply = codec.decode(m.data);
		if (reply.error) throw new Error(String(reply.error));
		return reply;
	};

	handlers.confirm = async req => {
		const debit = await call("debit", req);
		await call("reserve", req);
		await call("release", req);
		await call("expire", req);
		return { paymentId: debit.paymentId };
	};

	for (const step of Object.keys(handlers)) {
		const sub = nc.subscribe(`${SUBJECT}.${step}`, { queue: "baseline" });
		void (async () => {
			for await (const m of sub) {
				const req = codec.decode(m.data) as unknown as ConfirmReq;
				handlers[step](req).then(
					r => m.respond(codec.encode(r)),
					(err: Error) => m.respond(codec.encode({ error: err.message }))
				);
			}
		})();
	}
	await nc.flush();
	process.stdout.write("ready\n");

	const stop = async () => {
		await nc.drain().catch(() => undefined);
		redis.disconnect();
		await pool.end().catch(() => undefined);
		process.exit(0);
	};
	process.on("SIGTERM", () => void stop());
	process.on("SIGINT", () => void stop());
}

main().catch(err => {
	process.stderr.write(`${(err as Error).stack}\n`);
	process.exit(1);
});
