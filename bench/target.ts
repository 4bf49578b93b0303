/**
 * The system under test: an instance the bench starts itself (embedded: one moleculer-runner process with every
 * service, SQLite and the memory store; cluster: `scripts/cluster.ts`, i.e. the `npm run cluster` topology with
 * the same node processes, over NATS with MariaDB and Redis), or a URL someone else runs.
 *
 * Every started instance is private to the run: its own PORT, NAMESPACE, DB_PREFIX, STORE_PREFIX and DATA_DIR,
 * metrics off unless asked for, the gateway's rate limit off (RATE_LIMIT_PER_MINUTE=0: one load generator is one
 * client address, and 6000/min would cap every scenario at 100 requests/s). `stop()` stops the processes, drops
 * the run's databases, deletes its Redis keys and JetStream streams, and removes the data dir.
 */
import { ChildProcess, spawn } from "child_process";
import crypto from "crypto";
import fs from "fs";
import os from "os";
import path from "path";
import Redis from "ioredis";
import mysql from "mysql2/promise";
import { JetStreamEventBus } from "../lib/events/jetstream-bus";

const ROOT = path.resolve(__dirname, "..");
export const MARIADB = { host: "127.0.0.1", port: 3306, user: "root" };
export const REDIS_URL = "redis://127.0.0.1:6379";
export const NATS_URL = "nats://127.0.0.1:4222";

export type TargetKind = "embedded" | "cluster" | "url";

export interface TargetOptions {
	kind: TargetKind;
	url?: string;
	port: number;
	/** Extra environment for every node (e.g. QUEUE_MAX_ACTIVE). */
	env: Record<string, string>;
	/** Base port for per-node Prometheus metrics; 0 = off. */
	metricsPort: number;
	/** Extra node flags for every node (e.g. --cpu-prof). */
	nodeArgs: string[];
	logLevel: string;
}

export interface NodeProc {
	name: string;
	pid: number;
}

export interface Target {
	kind: TargetKind;
	/** http://127.0.0.1:PORT/api */
	api: string;
	jwtSecret?: string;
	/** Where the invariants can be read: MariaDB with this schema prefix, or the SQLite files in this dir. */
	sql?: { dialect: "mysql"; prefix: string } | { dialect: "sqlite"; dir: string; prefix: string };
	redisPrefix?: string;
	dataDir?: string;
	nodes(): NodeProc[];
	stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

export async function startTarget(opts: TargetOptions, log: (line: string) => void): Promise<Target> {
	if (opts.kind === "url") {
		if (!opts.url) throw new Error("--target url needs --url http://host:port");
		const secret = process.env.JWT_SECRET;
		const prefix = process.env.BENCH_DB_PREFIX;
		return {
			kind: "url",
			api: `${opts.url.replace(/\/+$/, "")}/api`,
			jwtSecret: secret,
			sql: prefix ? { dialect: "mysql", prefix } : undefined,
			redisPrefix: process.env.STORE_PREFIX,
			nodes: () => [],
			stop: async () => undefined
		};
	}

	const id = `b${Date.now().toString(36)}${crypto.randomBytes(2).toString("hex")}`;
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `crp-bench-${id}-`));
	const jwtSecret = crypto.randomBytes(32).toString("hex");
	const cluster = opts.kind === "cluster";
	const dbPrefix = `${id}_`;
	const storePrefix = `crp-bench:${id}:`;
	const env: Record<string, string> = {
		...(Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== undefined)) as Record<string, string>),
		NODE_ENV: "production",
		PORT: String(opts.port),
		DATA_DIR: dataDir,
		NAMESPACE: id,
		DB_PREFIX: dbPrefix,
		STORE_PREFIX: storePrefix,
		JWT_SECRET: jwtSecret,
		METRICS_PORT: String(opts.metricsPort),
		RATE_LIMIT_PER_MINUTE: "0",
		LOG_LEVEL: opts.logLevel,
		...(cluster ? { TRANSPORTER: NATS_URL, DATABASE_URL: `mysql://root@${MARIADB.host}:${MARIADB.port}`, REDIS_URL } : {}),
		...opts.env
	};
	if (!cluster) {
		delete env.TRANSPORTER;
		delete env.DATABASE_URL;
		delete env.REDIS_URL;
	}
	if (opts.nodeArgs.length > 0) env.NODE_OPTIONS = [env.NODE_OPTIONS ?? "", ...opts.nodeArgs].join(" ").trim();

	const args = cluster
		? ["-r", "ts-node/register/transpile-only", "scripts/cluster.ts"]
		: [
				"-r",
				"ts-node/register/transpile-only",
				"node_modules/moleculer/bin/moleculer-runner.js",
				"--config",
				"moleculer.config.ts",
				"--mask",
				"**/*.service.ts"
			];
	const logFile = path.join(dataDir, "instance.log");
	const out = fs.createWriteStream(logFile);
	const child: ChildProcess = spawn(process.execPath, args, {
		cwd: ROOT,
		env: { ...env, ...(cluster ? {} : { SERVICEDIR: "services", NODE_ID: `${id}-embedded` }) },
		stdio: ["ignore", "pipe", "pipe"],
		// Its own process group: Ctrl-C in the terminal reaches the bench, which stops the instance in order.
		detached: true
	});
	let started = 0;
	let tail: string[] = [];
	for (const stream of [child.stdout!, child.stderr!]) {
		stream.on("data", (d: Buffer) => {
			out.write(d);
			const text = d.toString();
			started += (text.match(/ServiceBroker with \d+ service\(s\) started successfully/g) ?? []).length;
			tail = [...tail, ...text.split("\n")].slice(-30);
		});
	}
	const exited = new Promise<void>(resolve => child.once("exit", () => resolve()));
	log(`starting ${opts.kind} instance ${id} on port ${opts.port} (log: ${logFile})`);

	const nodeList = (): NodeProc[] => {
		if (!child.pid) return [];
		if (!cluster) return [{ name: "embedded", pid: child.pid }];
		return childPids(child.pid).map(pid => ({ name: nodeName(pid, id), pid }));
	};

	let stopped = false;
	const target: Target = {
		kind: opts.kind,
		api: `http://127.0.0.1:${opts.port}/api`,
		jwtSecret,
		sql: cluster ? { dialect: "mysql", prefix: dbPrefix } : { dialect: "sqlite", dir: path.join(dataDir, "db"), prefix: dbPrefix },
		redisPrefix: cluster ? storePrefix : undefined,
		dataDir,
		nodes: nodeList,
		async stop() {
			if (stopped) return;
			stopped = true;
			if (child.exitCode === null && child.signalCode === null) {
				child.kill("SIGTERM");
				const force = setTimeout(() => {
					try {
						process.kill(-child.pid!, "SIGKILL");
					} catch {
						/* gone */
					}
				}, 20_000);
				await exited;
				clearTimeout(force);
			}
			out.end();
			if (cluster) {
				await dropDatabases(dbPrefix).catch(e => log(`drop databases: ${(e as Error).message}`));
				await clearKeys(storePrefix).catch(e => log(`clear keys: ${(e as Error).message}`));
				const bus = new JetStreamEventBus({ url: NATS_URL, namespace: id });
				await bus.destroy().catch(() => undefined);
				await bus.close().catch(() => undefined);
			}
			if (!process.env.BENCH_KEEP_DATA) fs.rmSync(dataDir, { recursive: true, force: true });
		}
	};

	// Ready: every node logged its start and the gateway answers /api/health with 200.
	// (The start line is logged at info: below that level, health plus a short grace period has to do.)
	const expected = /^(info|debug|trace)$/.test(opts.logLevel) ? (cluster ? clusterSize() : 1) : 0;
	const until = Date.now() + 120_000;
	for (;;) {
		if (child.exitCode !== null) {
			await target.stop();
			throw new Error(`instance exited during start:\n${tail.join("\n")}`);
		}
		if (started >= expected) {
			const ok = await fetch(`${target.api}/health`)
				.then(r => r.status === 200)
				.catch(() => false);
			if (ok) break;
		}
		if (Date.now() > until) {
			await target.stop();
			throw new Error(`instance not ready after 120 s (${started}/${expected} nodes started):\n${tail.join("\n")}`);
		}
		await sleep(250);
	}
	if (expected === 0) await sleep(cluster ? 8000 : 1000);
	log(`instance ready: ${nodeList().length} process(es)`);
	return target;
}

/** scripts/cluster.ts's default topology has six nodes; CLUSTER_NODES overrides it. */
function clusterSize(): number {
	const raw = process.env.CLUSTER_NODES;
	return raw ? raw.split(";").length : 6;
}

function childPids(pid: number): number[] {
	try {
		return fs
			.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
			.trim()
			.split(/\s+/)
			.filter(Boolean)
			.map(Number);
	} catch {
		return [];
	}
}

/** The node's name from its NODE_ID (`<hostname>-<name>`), as scripts/cluster.ts sets it. */
function nodeName(pid: number, fallback: string): string {
	try {
		const env = fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
		const nodeId = env.find(e => e.startsWith("NODE_ID="))?.slice("NODE_ID=".length);
		if (nodeId) return nodeId.slice(os.hostname().length + 1);
	} catch {
		/* gone */
	}
	return `${fallback}-${pid}`;
}

/** Resident set size now and its peak (VmHWM) in MiB, from /proc. */
export function memoryOf(pid: number): { rssMb: number; peakMb: number } | null {
	try {
		const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
		const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
		return { rssMb: kb("VmRSS") / 1024, peakMb: kb("VmHWM") / 1024 };
	} catch {
		return null;
	}
}

/** CPU seconds (user + system) the process has used, from /proc/<pid>/stat. */
export function cpuSecondsOf(pid: number): number | null {
	try {
		const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
		const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
		return (Number(fields[11]) + Number(fields[12])) / 100;
	} catch {
		return null;
	}
}

export async function dropDatabases(prefix: string): Promise<void> {
	if (!/^[A-Za-z0-9]+_$/.test(prefix)) throw new Error(`refusing to drop databases with prefix "${prefix}"`);
	const conn = await mysql.createConnection(MARIADB);
	try {
		const [rows] = await conn.query("SHOW DATABASES");
		for (const row of rows as { Database: string }[]) {
			if (row.Database.startsWith(prefix)) await conn.query(`DROP DATABASE \`${row.Database}\``);
		}
	} finally {
		await conn.end();
	}
}

export async function clearKeys(prefix: string): Promise<void> {
	if (!prefix.startsWith("crp-bench:")) throw new Error(`refusing to clear keys with prefix "${prefix}"`);
	const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
	await redis.connect();
	try {
		let cursor = "0";
		do {
			const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
			cursor = next;
			if (keys.length > 0) await redis.del(...keys);
		} while (cursor !== "0");
	} finally {
		redis.disconnect();
	}
}
