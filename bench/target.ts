/**
 * The system under test: an instance the bench starts itself (embedded: one moleculer-runner process with every
 * service, SQLite and the memory store; cluster: `scripts/cluster.ts`, i.e. the `npm run cluster` topology with
 * the same node processes, over NATS with MariaDB and Redis), or a URL someone else runs.
 *
 * Every started instance is private to the run: its own PORT, NAMESPACE, DB_PREFIX, STORE_PREFIX and DATA_DIR,
 * metrics off unless asked for, the gateway's rate limit off (RATE_LIMIT_PER_MINUTE=0: one load generator is one
 * client address, and 6000/min would cap every scenario at 100 requests/s). `stop()` stops the processes, drops
 * the run's databases, deletes its Redis keys and JetStream streams, and removes the data dir.
 *
 * A database per service: DATABASE_URL_<SERVICE> in the bench's environment reaches every node of a cluster
 * instance (BENCH_PAYMENT_DATABASE_URL is a shorthand for DATABASE_URL_PAYMENT), the invariant checks read each
 * database on its own server and `stop()` drops the run's schemas on every server.
 */
import { ChildProcess, spawn } from "child_process";
import crypto from "crypto";
import fs from "fs";
import os from "os";
import path from "path";
import mysql from "mysql2/promise";
import { loadConfig, sqlServers, type Config, type SqlConfig } from "../lib/config";
import { clusterNodeOptions, clusterTopology, instanceArgs, metricsOffsets, RUNNER_ARGS } from "../lib/runner";
import { RedisStore } from "../lib/store";
import { startNatsServer } from "../test/support/nats-server";
import { dropDatabasesOnServers } from "../lib/db";

const ROOT = path.resolve(__dirname, "..");
export const MARIADB = { host: "127.0.0.1", port: 3306, user: "root" };
export const REDIS_URL = "redis://127.0.0.1:6379";
export const NATS_URL = "nats://127.0.0.1:4222";

export type TargetKind = "embedded" | "cluster" | "url";

/** A MariaDB server the checks connect to (one service's database on a server of its own). */
export interface MysqlServer {
	host: string;
	port: number;
	user: string;
	password?: string;
}

export interface TargetOptions {
	kind: TargetKind;
	url?: string;
	port: number;
	/** Extra environment for every node (e.g. QUEUE_MAX_ACTIVE). */
	env: Record<string, string>;
	/** Base port for per-node Prometheus metrics; 0 = off. */
	metricsPort: number;
	/** Extra node flags for every node (NODE_OPTIONS, e.g. the CPU profiler preload). */
	nodeArgs: string[];
	/** Where the preloaded profiler writes each node's .cpuprofile. */
	profDir?: string;
	/** Where the preloaded statement counter writes its snapshots. */
	sqlCountDir?: string;
	logLevel: string;
	/** compiled (as `npm run cluster` and the Docker image run: the default) or ts-node (`npm run cluster:ts`, `npm start`). */
	runtime: "ts-node" | "compiled";
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
	sql?:
		| {
				dialect: "mysql";
				prefix: string;
				port?: number;
				/** By logical database (`payment`): the ones on a server of their own (DATABASE_URL_<SERVICE>). */
				servers?: Record<string, MysqlServer>;
		  }
		| { dialect: "sqlite"; dir: string; prefix: string };
	redisPrefix?: string;
	dataDir?: string;
	/** The NATS server the bench started for this instance (cluster): its CPU is the instance's, not another's. */
	natsPid?: number;
	nodes(): NodeProc[];
	stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

/**
 * Starts the instance and waits until it is ready. `onStop` receives the cleanup as soon as a process exists, so
 * a Ctrl-C during start-up still stops the nodes and removes the run's data.
 */
export async function startTarget(
	opts: TargetOptions,
	log: (line: string) => void,
	onStop: (stop: () => Promise<void>) => void = () => undefined
): Promise<Target> {
	if (opts.kind === "url") {
		if (!opts.url) throw new Error("--target url needs --url http://host:port");
		const secret = process.env.JWT_SECRET;
		const prefix = process.env.BENCH_DB_PREFIX;
		return {
			kind: "url",
			api: `${opts.url.replace(/\/+$/, "")}/api`,
			jwtSecret: secret,
			sql: prefix ? { dialect: "mysql", prefix, servers: ownServers(databaseConfig(process.env as Record<string, string>)) } : undefined,
			redisPrefix: process.env.STORE_PREFIX,
			nodes: () => [],
			stop: async () => undefined
		};
	}

	// Another instance on the port would answer this run's health checks and requests: refuse instead.
	const busy = await fetch(`http://127.0.0.1:${opts.port}/`)
		.then(() => true)
		.catch(() => false);
	if (busy) throw new Error(`port ${opts.port} is in use (another bench run?): pass --port`);

	const id = `b${Date.now().toString(36)}${crypto.randomBytes(2).toString("hex")}`;
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `crp-bench-${id}-`));
	const jwtSecret = crypto.randomBytes(32).toString("hex");
	const cluster = opts.kind === "cluster";
	// A cluster runs as in production (NODE_ENV=production): NATS with credentials, packets sealed with a cluster
	// secret. The shared NATS server has no authentication, so the bench starts a NATS of its own with a token.
	const nats = cluster ? await startNatsServer({ token: crypto.randomBytes(24).toString("hex") }) : undefined;
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
		...(cluster
			? {
					TRANSPORTER: nats!.url,
					NATS_TOKEN: nats!.token!,
					CLUSTER_SECRET: crypto.randomBytes(32).toString("hex"),
					DATABASE_URL: `mysql://root@${MARIADB.host}:${MARIADB.port}`,
					...(process.env.BENCH_PAYMENT_DATABASE_URL ? { DATABASE_URL_PAYMENT: process.env.BENCH_PAYMENT_DATABASE_URL } : {}),
					REDIS_URL
				}
			: {}),
		...opts.env
	};
	if (!cluster) {
		delete env.TRANSPORTER;
		delete env.DATABASE_URL;
		for (const k of Object.keys(env)) if (/^DATABASE_(URL|USER|PASSWORD)_/.test(k)) delete env[k];
		delete env.REDIS_URL;
		delete env.NATS_USER;
		delete env.NATS_PASSWORD;
		delete env.NATS_TOKEN;
	}
	if (opts.profDir) env.BENCH_CPU_PROF_DIR = opts.profDir;
	if (opts.sqlCountDir) env.BENCH_SQL_COUNT_DIR = opts.sqlCountDir;
	if (opts.nodeArgs.length > 0) env.NODE_OPTIONS = [env.NODE_OPTIONS ?? "", ...opts.nodeArgs].join(" ").trim();

	// Where the nodes keep each database (DATABASE_URL and any DATABASE_URL_<SERVICE>): what the checks read and stop() drops.
	const dbConfig = cluster ? databaseConfig(env) : undefined;

	const logFile = path.join(dataDir, "instance.log");
	const out = fs.createWriteStream(logFile);
	let started = 0;
	let tail: string[] = [];
	const children: { name: string; child: ChildProcess; exited: Promise<void>; said: string[] }[] = [];
	const launch = (name: string, args: string[], extra: Record<string, string>) => {
		const child = spawn(process.execPath, args, {
			cwd: ROOT,
			env: { ...env, ...extra },
			stdio: ["ignore", "pipe", "pipe"],
			// Its own process group: Ctrl-C in the terminal reaches the bench, which stops the instance in order.
			detached: true
		});
		const said: string[] = [];
		for (const stream of [child.stdout!, child.stderr!]) {
			stream.on("data", (d: Buffer) => {
				out.write(d);
				const text = d.toString();
				started += (text.match(/ServiceBroker with \d+ service\(s\) started successfully/g) ?? []).length;
				tail = [...tail, ...text.split("\n")].slice(-30);
				said.push(...text.split("\n").filter(l => l.trim() !== ""));
				said.splice(0, Math.max(0, said.length - 40));
			});
		}
		children.push({ name, child, said, exited: new Promise<void>(resolve => child.once("exit", () => resolve())) });
	};

	// ts-node: exactly `npm run cluster:ts` / `npm start`. compiled: the production runtime (`npm run cluster`, the Dockerfile's
	// `npm run build` output run by plain node), same topology, built once into bench/results/build.
	const topology = cluster ? clusterTopology() : [{ name: "embedded", services: [] as string[] }];
	if (opts.runtime === "compiled") {
		const build = await compiled(log);
		const offsets = metricsOffsets(topology);
		topology.forEach((spec, i) =>
			launch(
				spec.name,
				[
					path.join(build, "scripts", "node.js"),
					"--config",
					path.join(build, "moleculer.config.js"),
					"--mask",
					"**/*.service.js",
					...instanceArgs(spec)
				],
				{
					SERVICEDIR: path.join(build, "services"),
					NODE_ID: `${id}-${spec.name}`,
					// The heap limits `npm run cluster` gives every cluster node (lib/runner.ts).
					...(cluster ? { NODE_OPTIONS: clusterNodeOptions(env.NODE_OPTIONS) } : {}),
					...(spec.services.length > 0 ? { SERVICES: spec.services.join(",") } : {}),
					METRICS_PORT: opts.metricsPort > 0 ? String(opts.metricsPort + offsets[i]) : "0"
				}
			)
		);
	} else if (cluster) {
		// `npm run cluster:ts`: the same script from source, every node under ts-node.
		launch("cluster", ["-r", "ts-node/register/transpile-only", "scripts/cluster.ts"], {});
	} else {
		launch("embedded", [...RUNNER_ARGS], { SERVICEDIR: "services", NODE_ID: `${id}-embedded` });
	}
	log(`starting ${opts.kind} instance ${id} (${opts.runtime}) on port ${opts.port} (log: ${logFile})`);

	// A node with worker processes (NodeSpec.instances) is its primary and, below it, one process per worker.
	const withWorkers = (name: string, pid: number): NodeProc[] => {
		const workers = childPids(pid).sort((a, b) => a - b);
		if (workers.length === 0) return [{ name, pid }];
		return [{ name: `${name}-primary`, pid }, ...workers.map((p, k) => ({ name: `${name}-${k + 1}`, pid: p }))];
	};
	const nodeList = (): NodeProc[] => {
		if (opts.runtime === "compiled" || !cluster) {
			return children.filter(c => c.child.pid && c.child.exitCode === null).flatMap(c => withWorkers(c.name, c.child.pid!));
		}
		const pid = children[0].child.pid;
		return pid ? childPids(pid).flatMap(p => withWorkers(nodeName(p, id), p)) : [];
	};

	let stopped = false;
	const target: Target = {
		kind: opts.kind,
		api: `http://127.0.0.1:${opts.port}/api`,
		jwtSecret,
		sql: cluster
			? { dialect: "mysql", prefix: dbPrefix, servers: ownServers(dbConfig!) }
			: { dialect: "sqlite", dir: path.join(dataDir, "db"), prefix: dbPrefix },
		redisPrefix: cluster ? storePrefix : undefined,
		dataDir,
		natsPid: nats?.pid,
		nodes: nodeList,
		async stop() {
			if (stopped) return;
			stopped = true;
			await Promise.all(
				children.map(async ({ child, exited }) => {
					if (child.exitCode !== null || child.signalCode !== null) return;
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
				})
			);
			out.end();
			if (cluster) {
				await dropDatabases(dbPrefix, sqlServers(dbConfig!)).catch(e => log(`drop databases: ${(e as Error).message}`));
				await clearKeys(storePrefix).catch(e => log(`clear keys: ${(e as Error).message}`));
				// The run's streams go with its NATS server.
				await nats?.stop().catch(e => log(`stop nats: ${(e as Error).message}`));
			}
			if (!process.env.BENCH_KEEP_DATA) fs.rmSync(dataDir, { recursive: true, force: true });
		}
	};

	onStop(() => target.stop());

	// Ready: every node logged its start and the gateway answers /api/health with 200.
	// (The start line is logged at info: below that level, health plus a short grace period has to do.)
	const expected = /^(info|debug|trace)$/.test(opts.logLevel) ? topology.reduce((n, spec) => n + ((spec as { instances?: number }).instances ?? 1), 0) : 0;
	const until = Date.now() + 120_000;
	for (;;) {
		const dead = children.find(c => c.child.exitCode !== null);
		if (dead) {
			// Its own last lines, before stopping the rest adds the others' shutdown lines.
			const before = dead.said.join("\n");
			await target.stop();
			throw new Error(`instance exited during start: ${dead.name} exited with code ${dead.child.exitCode}:\n${before}`);
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

/** Compiles the platform as `npm run build` does (tsconfig.build.json), into bench/results/build, once per run. */
let built: Promise<string> | undefined;
function compiled(log: (line: string) => void): Promise<string> {
	built ??= new Promise<string>((resolve, reject) => {
		const outDir = path.join(ROOT, "bench", "results", "build");
		log(`compiling the platform into ${path.relative(ROOT, outDir)} (tsc -p tsconfig.build.json)...`);
		fs.rmSync(outDir, { recursive: true, force: true });
		const tsc = spawn(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json", "--outDir", outDir, "--noEmitOnError", "false"], {
			cwd: ROOT,
			stdio: ["ignore", "pipe", "pipe"]
		});
		let errors = "";
		tsc.stdout!.on("data", (d: Buffer) => (errors += d.toString()));
		tsc.stderr!.on("data", (d: Buffer) => (errors += d.toString()));
		tsc.once("exit", () => {
			// Type errors in work in progress elsewhere in the tree do not stop the emit; a missing config does.
			if (fs.existsSync(path.join(outDir, "moleculer.config.js"))) resolve(outDir);
			else reject(new Error(`build failed:\n${errors.slice(0, 2000)}`));
		});
	});
	return built;
}

/** The pids of `pid`'s child processes (from /proc). */
export function childPids(pid: number): number[] {
	try {
		return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
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

/** Drops the run's schemas on each server (the shared MariaDB by default), all of them tried before a failure is thrown. */
export function dropDatabases(prefix: string, servers: SqlConfig[] = [databaseConfig({}).sql]): Promise<void> {
	return dropDatabasesOnServers(servers, prefix);
}

/**
 * The database part of a node environment as the nodes read it (DATABASE_URL, default the shared MariaDB, and any
 * DATABASE_URL_<SERVICE> with its DATABASE_USER_/DATABASE_PASSWORD_<SERVICE>); a bad one throws the nodes' own
 * ConfigError before anything starts.
 */
export function databaseConfig(env: Record<string, string | undefined>): Pick<Config, "sql" | "sqlByService"> {
	const picked: Record<string, string> = { DATABASE_URL: env.DATABASE_URL ?? `mysql://${MARIADB.user}@${MARIADB.host}:${MARIADB.port}` };
	for (const [k, v] of Object.entries(env)) {
		if (v !== undefined && /^(DATABASE_(URL|USER|PASSWORD)_[A-Z0-9_]+|DATABASE_USER|DATABASE_PASSWORD|DB_PREFIX)$/.test(k)) picked[k] = v;
	}
	const { sql, sqlByService } = loadConfig(picked);
	return { sql, sqlByService };
}

/** The servers of the databases that have one of their own, as the checks connect to them. */
function ownServers(config: Pick<Config, "sqlByService">): Record<string, MysqlServer> {
	return Object.fromEntries(
		Object.entries(config.sqlByService).map(([db, sql]) => [db, { host: sql.host!, port: sql.port!, user: sql.user!, password: sql.password }])
	);
}

/** Deletes the run's keys (RedisStore.clear does the prefix scan). */
export async function clearKeys(prefix: string): Promise<void> {
	if (!prefix.startsWith("crp-bench:")) throw new Error(`refusing to clear keys with prefix "${prefix}"`);
	const store = new RedisStore({ url: REDIS_URL, prefix });
	try {
		await store.clear();
	} finally {
		await store.close();
	}
}

/**
 * Server-wide MariaDB counters (statements, commits, redo-log fsyncs). Server-wide: other clients of the same
 * server count too, so these are upper bounds for the run's own work when the machine is shared.
 */
export async function mariadbStatus(): Promise<Record<string, number>> {
	const names = ["Questions", "Com_commit", "Com_insert", "Com_update", "Com_select", "Innodb_os_log_fsyncs", "Innodb_data_fsyncs"];
	try {
		const conn = await mysql.createConnection(MARIADB);
		try {
			const [rows] = await conn.query("SHOW GLOBAL STATUS WHERE Variable_name IN (?)", [names]);
			return Object.fromEntries((rows as { Variable_name: string; Value: string }[]).map(r => [r.Variable_name, Number(r.Value)]));
		} finally {
			await conn.end();
		}
	} catch {
		return {};
	}
}

/** Busy and total jiffies of all CPUs (/proc/stat), for the machine's load during a timed phase. */
export function machineJiffies(): { busy: number; total: number } {
	const cpu = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
	const total = cpu.reduce((a, b) => a + b, 0);
	const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
	return { busy: total - idle, total };
}

/** The local MariaDB, Redis and NATS servers' pids (their CPU is part of what limits each figure). */
/** MariaDB, Redis and NATS processes on the machine; with `natsPid`, only that NATS server (the run's own). */
export function serverPids(natsPid?: number): { name: string; pid: number }[] {
	const want: Record<string, string> = { mariadbd: "mariadb", mysqld: "mariadb", "redis-server": "redis", "nats-server": "nats" };
	const found: { name: string; pid: number }[] = [];
	for (const d of fs.readdirSync("/proc")) {
		if (!/^\d+$/.test(d)) continue;
		try {
			const comm = fs.readFileSync(`/proc/${d}/comm`, "utf8").trim();
			if (want[comm] && !(want[comm] === "nats" && natsPid !== undefined && Number(d) !== natsPid)) found.push({ name: want[comm], pid: Number(d) });
		} catch {
			/* gone */
		}
	}
	return found;
}
