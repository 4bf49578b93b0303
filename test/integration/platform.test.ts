/**
 * Platform behaviour that only shows with real processes: replicas that migrate at the same moment, a node
 * that refuses nonsense configuration, and a node that fails over when a replica dies.
 */
import { spawnSync } from "child_process";
import path from "path";
import mysql from "mysql2/promise";
import { MARIADB_URL } from "../support/isolation";
import { gatewayUrl, http, testEnv, type TestEnv } from "../support/harness";

const ROOT = path.resolve(__dirname, "../..");

async function query<T>(sql: string): Promise<T[]> {
	const url = new URL(MARIADB_URL);
	const conn = await mysql.createConnection({ host: url.hostname, port: Number(url.port || 3306), user: url.username || "root" });
	try {
		const [rows] = await conn.query(sql);
		return rows as T[];
	} finally {
		await conn.end();
	}
}

describe("cluster nodes as separate processes", () => {
	let env: TestEnv;

	beforeAll(() => {
		env = testEnv({ cluster: true });
	});
	afterAll(async () => {
		await env.cleanup();
	}, 60_000);

	it("when three replicas of a service start at once on an empty server, then its schema is migrated exactly once", async () => {
		const nodes = await Promise.all([env.spawn(["user"]), env.spawn(["user"]), env.spawn(["user"])]);
		const db = `${env.env.DB_PREFIX}user`;
		const dbs = await query<{ Database: string }>(`SHOW DATABASES LIKE '${db}'`);
		expect(dbs).toHaveLength(1);
		const migrations = await query<{ name: string }>(`SELECT name FROM \`${db}\`.schema_migrations`);
		expect(migrations.map(m => m.name)).toEqual(["001_create_users"]);
		// Every replica reports it is serving.
		for (const n of nodes) expect(n.output()).toMatch(/Service 'user' started/);
	}, 120_000);

	it("when a replica is killed, then reads fail over to the others and writes never answer a wrong error", async () => {
		const gateway = await env.broker(["api"]);
		await gateway.waitForServices(["user"], 20_000);
		const api = gatewayUrl(gateway);
		const reg = await http("POST", `${api}/auth/register`, { body: { email: "failover@example.com", password: "password-1", name: "F" } });
		expect(reg.status).toBe(201);
		const token = (await http("POST", `${api}/auth/login`, { body: { email: "failover@example.com", password: "password-1" } })).body.accessToken;

		// Kill one of the three replicas hard. Until the heartbeat timeout removes it, calls routed to it time out.
		await env.spawned[0].kill();
		const [reads, writes] = await Promise.all([
			Promise.all(Array.from({ length: 30 }, () => http("GET", `${api}/users/me`, { token }))),
			Promise.all(Array.from({ length: 6 }, () => http("POST", `${api}/auth/login`, { body: { email: "failover@example.com", password: "password-1" } })))
		]);
		// Reads are retried on another replica after their timeout: every one succeeds.
		expect(reads.map(r => r.status)).toEqual(Array(30).fill(200));
		// Writes are not retried by the gateway: each either succeeds, says it timed out, or (in flight on the node
		// when the failover removed it: lib/balancer.ts) says to retry, never anything else.
		for (const w of writes) expect([200, 503, 504]).toContain(w.status);
		expect(writes.filter(w => w.status === 504).every(w => w.body.type === "TIMEOUT")).toBe(true);
		expect(writes.filter(w => w.status === 503).every(w => w.body.type === "SERVICE_UNAVAILABLE" && w.headers.get("retry-after") !== null)).toBe(true);
	}, 120_000);
});

describe("start-up validation", () => {
	it("when a node is given a transporter but SQLite and the memory store, then it exits non-zero saying why", () => {
		const res = spawnSync(
			process.execPath,
			["-r", "ts-node/register/transpile-only", "node_modules/moleculer/bin/moleculer-runner.js", "--config", "moleculer.config.ts"],
			{
				cwd: ROOT,
				env: { PATH: process.env.PATH, TRANSPORTER: "nats://127.0.0.1:4222", JWT_SECRET: "x".repeat(40), SERVICES: "user", SERVICEDIR: "services" },
				encoding: "utf8",
				timeout: 30_000
			}
		);
		expect(res.status).toBe(1);
		expect(res.stderr).toMatch(/Invalid configuration/);
		expect(res.stderr).toMatch(/SQLite files cannot be shared/);
		expect(res.stderr).toMatch(/in-memory store cannot be shared/);
	}, 40_000);
});
