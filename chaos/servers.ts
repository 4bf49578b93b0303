/**
 * The harness's own MariaDB, Redis and NATS: free ports, data directories under the run's directory, started and
 * killed by the harness alone. The servers a developer or CI already runs are never touched.
 *
 * Redis runs with AOF (`appendfsync everysec`, as docker-compose runs it): a restart keeps its data. The
 * "data gone" fault deletes the files between the kill and the restart, which is a Redis without persistence.
 */
import crypto from "crypto";
import fs from "fs";
import path from "path";
import mysql from "mysql2/promise";
import { startMariaDb } from "../test/support/mariadb-server";
import { startNatsServer, type PrivateNats } from "../test/support/nats-server";
import { startRedisServer, type PrivateRedis } from "../test/support/redis-server";

export interface Servers {
	mariadb: Awaited<ReturnType<typeof startMariaDb>>;
	redis: PrivateRedis & { dataDir: string };
	nats: PrivateNats;
	/** A plain connection to the private MariaDB (for checks and the stall fault). */
	sql(database?: string): Promise<mysql.Connection>;
	stop(): Promise<void>;
}

export async function startServers(dir: string, log: (s: string) => void): Promise<Servers> {
	const redisDir = path.join(dir, "redis");
	fs.mkdirSync(redisDir, { recursive: true });
	log("starting private MariaDB, Redis (AOF) and NATS (JetStream, token)...");
	const [mariadb, redis, nats] = await Promise.all([
		startMariaDb({ dataDir: path.join(dir, "mariadb") }),
		startRedisServer({ dataDir: redisDir, appendonly: true }),
		startNatsServer({ token: crypto.randomBytes(24).toString("hex") })
	]);
	log(`servers up: MariaDB :${mariadb.port}, Redis :${redis.port}, NATS :${nats.port}`);
	// Should the harness die without stopping them, the servers go with it.
	const guard = () => {
		for (const pid of [mariadb.pid, redis.pid, nats.pid]) {
			try {
				process.kill(pid, "SIGKILL");
			} catch {
				/* gone */
			}
		}
	};
	process.once("exit", guard);
	return {
		mariadb,
		redis: Object.assign(redis, { dataDir: redisDir }),
		nats,
		sql: (database?: string) =>
			mysql.createConnection({ host: "127.0.0.1", port: mariadb.port, user: "root", database, supportBigNumbers: true, bigNumberStrings: false }),
		async stop() {
			process.removeListener("exit", guard);
			await Promise.all([mariadb.stop(), redis.stop(), nats.stop()].map(p => p.catch(e => log(`stopping a server: ${(e as Error).message}`))));
		}
	};
}

/** Redis without persistence losing everything: its AOF and RDB files go between the kill and the restart. */
export function wipeRedisData(redis: Servers["redis"]): void {
	for (const f of fs.readdirSync(redis.dataDir)) fs.rmSync(path.join(redis.dataDir, f), { recursive: true, force: true });
}
