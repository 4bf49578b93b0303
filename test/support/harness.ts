/**
 * Test harness: brokers built exactly as production builds them (moleculer.config.ts), each run isolated by its
 * own namespace, database prefix and store prefix, and cleaned up afterwards.
 *
 *   const env = testEnv({ cluster: true });          // config for a run on the real MariaDB/Redis/NATS
 *   const broker = await env.broker(["api", "user"]); // in-process node loading services/<name>
 *   const node = await env.spawn(["user"]);           // a separate OS process (moleculer-runner)
 *   await env.cleanup();                               // stop everything, drop databases, clear keys
 */
import { ChildProcess, spawn } from "child_process";
import fs from "fs";
import os from "os";
import path from "path";
import { ServiceBroker, type Middleware } from "moleculer";
import { brokerOptions } from "../../moleculer.config";
import { dropDatabasesOnServers } from "../../lib/db";
import { loadConfig, sqlServers, type Config, type SqlConfig } from "../../lib/config";
import { RUNNER_ARGS } from "../../lib/runner";
import { createStore } from "../../lib/store";
import { deleteEventStreams } from "./events";
import { MARIADB_URL, NATS_URL, REDIS_URL, runId } from "./isolation";

const ROOT = path.resolve(__dirname, "../..");
const TEST_JWT_SECRET = "test-secret-not-for-production-0123456789abcdef";
/** Every node of a test run shares it, as a cluster's nodes do (lib/cluster-auth.ts). */
export const TEST_CLUSTER_SECRET = "test-cluster-secret-not-for-production-fedcba9876543210";

export interface TestEnvOptions {
	/** Real NATS + MariaDB + Redis (true) or embedded: in-process transport, SQLite in a temp dir, memory store. */
	cluster: boolean;
	/** Extra environment (e.g. HOLD_TTL_SEC). */
	env?: Record<string, string>;
}

export interface SpawnedNode {
	nodeID: string;
	proc: ChildProcess;
	output: () => string;
	/** SIGTERM and wait for exit. */
	stop(): Promise<void>;
	/** SIGKILL: a crashed node. */
	kill(): Promise<void>;
}

export class TestEnv {
	readonly id = runId();
	readonly env: Record<string, string>;
	readonly config: Config;
	private readonly brokers: ServiceBroker[] = [];
	private readonly nodes: SpawnedNode[] = [];
	/** Nodes started with `spawn`, in start order. */
	get spawned(): readonly SpawnedNode[] {
		return this.nodes;
	}
	private readonly tmpDir: string;

	constructor(readonly opts: TestEnvOptions) {
		this.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), `crp-${this.id}-`));
		this.env = {
			NODE_ENV: "test",
			NAMESPACE: this.id,
			DATA_DIR: this.tmpDir,
			DB_PREFIX: `${this.id}_`,
			STORE_PREFIX: `crp-test:${this.id}:`,
			JWT_SECRET: TEST_JWT_SECRET,
			CLUSTER_SECRET: TEST_CLUSTER_SECRET,
			// Tests sign many users in from one address; the login-throttle tests turn it back on.
			LOGIN_LIMIT_PER_ADDRESS: "0",
			METRICS_PORT: "0",
			PORT: "0",
			LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
			DB_POOL_MAX: "4",
			...(opts.cluster ? { TRANSPORTER: NATS_URL, DATABASE_URL: MARIADB_URL, REDIS_URL } : {}),
			...opts.env
		};
		this.config = loadConfig(this.env);
	}

	/** An in-process broker with the given services (names under services/, or schemas). */
	async broker(services: string[], extra: { nodeID?: string; config?: Partial<Config>; middlewares?: Middleware[] } = {}): Promise<ServiceBroker> {
		const nodeID = extra.nodeID ?? `${this.id}-n${this.brokers.length}`;
		const config = { ...this.config, ...extra.config, nodeID };
		const options = brokerOptions(config);
		// Test middlewares (fault injection) go last: innermost, right around the handlers.
		const broker = new ServiceBroker({ ...options, nodeID, middlewares: [...(options.middlewares ?? []), ...(extra.middlewares ?? [])] });
		for (const name of services) broker.loadService(path.join(ROOT, "services", name, `${name}.service.ts`));
		this.brokers.push(broker);
		await broker.start();
		return broker;
	}

	/** A node in its own OS process, started by moleculer-runner exactly as `npm run cluster` starts one. */
	async spawn(services: string[], extra: { nodeID?: string; env?: Record<string, string>; readyPattern?: RegExp } = {}): Promise<SpawnedNode> {
		if (!this.opts.cluster) throw new Error("spawned nodes need cluster mode (they talk over NATS)");
		const nodeID = extra.nodeID ?? `${this.id}-p${this.nodes.length}`;
		const proc = spawn(process.execPath, [...RUNNER_ARGS], {
			cwd: ROOT,
			env: {
				...process.env,
				...this.env,
				LOG_LEVEL: "info",
				NODE_ID: nodeID,
				SERVICEDIR: "services",
				SERVICES: services.join(","),
				...extra.env
			},
			stdio: ["ignore", "pipe", "pipe"]
		});
		let out = "";
		proc.stdout!.on("data", d => (out += d.toString()));
		proc.stderr!.on("data", d => (out += d.toString()));
		const exited = new Promise<void>(resolve => proc.once("exit", () => resolve()));
		const node: SpawnedNode = {
			nodeID,
			proc,
			output: () => out,
			async stop() {
				if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
				await exited;
			},
			async kill() {
				if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
				await exited;
			}
		};
		this.nodes.push(node);
		const ready = extra.readyPattern ?? /ServiceBroker with \d+ service\(s\) started successfully/;
		await waitFor(() => ready.test(out) || proc.exitCode !== null, 45_000, `node ${nodeID} to start`);
		if (proc.exitCode !== null) throw new Error(`node ${nodeID} exited during start:\n${out}`);
		return node;
	}

	/**
	 * Stops every broker and node, drops this run's databases on every server of its config (DATABASE_URL and any
	 * DATABASE_URL_<SERVICE>) and clears its store keys.
	 */
	async cleanup(): Promise<void> {
		await Promise.all(this.brokers.map(b => b.stop().catch(() => undefined)));
		await Promise.all(this.nodes.map(n => n.stop().catch(() => undefined)));
		if (this.opts.cluster) {
			await dropDatabases(this.env.DB_PREFIX, sqlServers(this.config));
			// This run's JetStream streams (events and their dead letters).
			await deleteEventStreams(this.env.NAMESPACE).catch(() => undefined);
			const store = createStore(this.config);
			await store.clear().catch(() => undefined);
			await store.close();
		}
		fs.rmSync(this.tmpDir, { recursive: true, force: true });
	}
}

export function testEnv(opts: TestEnvOptions): TestEnv {
	return new TestEnv(opts);
}

/**
 * Drops every database whose name starts with the prefix (this run's) on each of `servers` (the test MariaDB by
 * default), passing over a server that cannot be reached or refuses the login (one the test already stopped, a
 * wrong password on purpose).
 */
export function dropDatabases(prefix: string, servers: SqlConfig[] = [loadConfig({ DATABASE_URL: MARIADB_URL }).sql]): Promise<void> {
	return dropDatabasesOnServers(servers, prefix, { skipUnreachable: true });
}

/** Polls `cond` every `everyMs` until it holds; throws after `timeoutMs`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 50): Promise<void> {
	const until = Date.now() + timeoutMs;
	while (!(await cond())) {
		if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
		await new Promise(r => setTimeout(r, everyMs));
	}
}

/** The port an in-process gateway listens on (PORT=0 picks a free one). */
export function gatewayUrl(broker: ServiceBroker): string {
	const api = broker.getLocalService("api") as unknown as { server: { address(): { port: number } } };
	return `http://127.0.0.1:${api.server.address().port}/api`;
}

/** Small JSON HTTP client for tests. */
export async function http(
	method: string,
	url: string,
	opts: { body?: unknown; raw?: string; token?: string; headers?: Record<string, string> } = {}
): Promise<{ status: number; body: any; headers: Headers }> {
	const headers: Record<string, string> = { ...opts.headers };
	if (opts.body !== undefined || opts.raw !== undefined) headers["content-type"] ??= "application/json";
	if (opts.token) headers.authorization = `Bearer ${opts.token}`;
	const res = await fetch(url, {
		method,
		headers,
		body: opts.raw ?? (opts.body !== undefined ? JSON.stringify(opts.body) : undefined)
	});
	const text = await res.text();
	let body: unknown = text;
	try {
		body = text ? JSON.parse(text) : undefined;
	} catch {
		/* not JSON: keep the text */
	}
	return { status: res.status, body, headers: res.headers };
}
