/**
 * The system under chaos: `npm run cluster:ts` (scripts/cluster.ts, the supervisor that restarts a node that
 * exits) with the default topology, on the harness's private servers. The harness finds each node's process by
 * walking the supervisor's children in /proc and reading the NODE_ID the supervisor gave them, so it always kills
 * the node's current process, including one the supervisor has just restarted.
 */
import { ChildProcess, spawn } from "child_process";
import crypto from "crypto";
import fs from "fs";
import os from "os";
import path from "path";
import { childPids } from "../bench/target";
import type { Servers } from "./servers";

const ROOT = path.resolve(__dirname, "..");
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

/** Every database of the run is `<DB_PREFIX><service>` on the private MariaDB. */
export const CHAOS_DB_PREFIX = "chaos_";

export const CHAOS_ADMIN = { email: "chaos-admin@example.com", password: "chaos-admin-password" };

export interface NodeProcess {
	/** Topology name (gateway, catalog-1, booking-1, events...); a gateway worker is `gateway/worker-<k>`. */
	name: string;
	pid: number;
}

export interface ChaosCluster {
	api: string;
	jwtSecret: string;
	logFile: string;
	/** Every node process now, gateway workers included. */
	nodes(): NodeProcess[];
	/** The current process of a node (a gateway worker: `gateway/worker`). */
	pidOf(name: string): number | undefined;
	/** Lines the supervisor and the nodes printed since the start (last 400). */
	tail(): string[];
	stop(): Promise<void>;
}

export async function startCluster(
	servers: Servers,
	opts: { port: number; logLevel?: string; env?: Record<string, string>; dataDir: string; log: (s: string) => void }
): Promise<ChaosCluster> {
	const id = `chaos${Date.now().toString(36)}`;
	const jwtSecret = crypto.randomBytes(32).toString("hex");
	const base = Object.fromEntries(
		Object.entries(process.env).filter(
			([k, v]) => v !== undefined && !/^(TRANSPORTER|NATS_|DATABASE_|REDIS_|CLUSTER_NODES|SERVICES|NODE_ID|PORT|JEST|TEST_)/.test(k)
		)
	) as Record<string, string>;
	const env: Record<string, string> = {
		...base,
		// As in production: NATS with a token, packets sealed, compiled-in defaults for every timeout and retry.
		NODE_ENV: "production",
		PORT: String(opts.port),
		DATA_DIR: opts.dataDir,
		NAMESPACE: id,
		JWT_SECRET: jwtSecret,
		CLUSTER_SECRET: crypto.randomBytes(32).toString("hex"),
		TRANSPORTER: servers.nats.url,
		NATS_TOKEN: servers.nats.token!,
		DATABASE_URL: servers.mariadb.url,
		DB_PREFIX: CHAOS_DB_PREFIX,
		REDIS_URL: servers.redis.url,
		METRICS_PORT: "0",
		// One load generator is one client address: the gateway's per-address limits would cap the run.
		RATE_LIMIT_PER_MINUTE: "0",
		LOGIN_LIMIT_PER_ADDRESS: "0",
		LOGIN_LIMIT_PER_ACCOUNT: "0",
		// Every shopper is admitted at once: the harness measures faults, not the waiting room's pace.
		QUEUE_MAX_ACTIVE: "100000",
		// Each shopper buys again and again through a phase: the per-buyer limit would end its run.
		MAX_SEATS_PER_BUYER: "1000000",
		// The scheduled consistency check (which also releases orphan holds) every 30 s instead of 5 min, so a phase
		// settles within the harness's wait.
		CONSISTENCY_INTERVAL_SEC: "30",
		ADMIN_EMAIL: CHAOS_ADMIN.email,
		ADMIN_PASSWORD: CHAOS_ADMIN.password,
		LOG_LEVEL: opts.logLevel ?? "warn",
		...opts.env
	};
	fs.mkdirSync(opts.dataDir, { recursive: true });
	const logFile = path.join(opts.dataDir, "cluster.log");
	const out = fs.createWriteStream(logFile);
	out.on("error", err => opts.log(`cluster log: ${err.message}`));
	let tail: string[] = [];
	const child: ChildProcess = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "scripts/cluster.ts"], {
		cwd: ROOT,
		env,
		stdio: ["ignore", "pipe", "pipe"],
		// Its own process group: a Ctrl-C in the harness's terminal reaches the harness, which stops the cluster in order.
		detached: true
	});
	const exited = new Promise<void>(resolve => child.once("exit", () => resolve()));
	// Should the harness itself die, the cluster must not outlive it.
	const orphanGuard = () => signal(-child.pid!, "SIGKILL");
	process.once("exit", orphanGuard);
	for (const stream of [child.stdout!, child.stderr!]) {
		stream.on("data", (d: Buffer) => {
			out.write(d);
			tail = [
				...tail,
				...d
					.toString()
					.split("\n")
					.filter(l => l.trim() !== "")
			].slice(-400);
		});
	}

	const hostPrefix = `${os.hostname()}-`;
	const nodes = (): NodeProcess[] => {
		if (!child.pid) return [];
		const list: NodeProcess[] = [];
		for (const pid of childPids(child.pid)) {
			const nodeId = envOf(pid, "NODE_ID");
			const name = nodeId?.startsWith(hostPrefix) ? nodeId.slice(hostPrefix.length) : `pid-${pid}`;
			list.push({ name, pid });
			childPids(pid).forEach((w, k) => list.push({ name: `${name}/worker-${k + 1}`, pid: w }));
		}
		return list;
	};

	let stopped = false;
	const cluster: ChaosCluster = {
		api: `http://127.0.0.1:${opts.port}/api`,
		jwtSecret,
		logFile,
		nodes,
		pidOf(name) {
			const all = nodes();
			const exact = all.find(n => n.name === name);
			if (exact) return exact.pid;
			return all.find(n => n.name.startsWith(`${name}-`))?.pid;
		},
		tail: () => tail,
		async stop() {
			if (stopped) return;
			stopped = true;
			const before = nodes();
			// A SIGSTOPped node cannot hear the supervisor's SIGTERM.
			for (const n of before) signal(n.pid, "SIGCONT");
			if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
			const force = setTimeout(() => {
				try {
					process.kill(-child.pid!, "SIGKILL");
				} catch {
					/* gone */
				}
			}, 25_000);
			await exited;
			clearTimeout(force);
			process.removeListener("exit", orphanGuard);
			// A node the supervisor could not stop goes with the group, or by its pid if it runs in a group of its own.
			signal(-child.pid!, "SIGKILL");
			for (const n of before) signal(n.pid, "SIGKILL");
			out.end();
		}
	};

	opts.log(`starting the cluster (namespace ${id}, port ${opts.port}, log ${logFile})`);
	const until = Date.now() + 180_000;
	for (;;) {
		if (child.exitCode !== null) throw new Error(`the cluster exited during start:\n${tail.slice(-40).join("\n")}`);
		const ok = await fetch(`${cluster.api}/health`)
			.then(r => r.status === 200)
			.catch(() => false);
		if (ok) break;
		if (Date.now() > until) {
			await cluster.stop();
			throw new Error(`cluster not healthy after 180 s:\n${tail.slice(-40).join("\n")}`);
		}
		await sleep(500);
	}
	// Both gateway workers and every replica registered: health answers as soon as one of each is there.
	await sleep(5000);
	opts.log(`cluster ready: ${nodes().length} processes`);
	return cluster;
}

function signal(pid: number, sig: NodeJS.Signals): void {
	try {
		process.kill(pid, sig);
	} catch {
		/* gone */
	}
}

function envOf(pid: number, key: string): string | undefined {
	try {
		const entry = fs
			.readFileSync(`/proc/${pid}/environ`, "utf8")
			.split("\0")
			.find(e => e.startsWith(`${key}=`));
		return entry?.slice(key.length + 1);
	} catch {
		return undefined;
	}
}
