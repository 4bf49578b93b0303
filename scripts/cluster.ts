/**
 * `npm run cluster`: the platform as several broker processes on this machine, talking over NATS, with MariaDB
 * and Redis (the local servers by default). Each node is a runner process (scripts/node.ts) with its own SERVICES=, its
 * output prefixed with its name.
 *
 * It supervises them:
 * - before anything starts, the gateway's PORT and each node's metrics port must be free, or it says which one is
 *   taken and exits 1 (a second cluster used to report "ready" by polling the first one);
 * - a node that exits while the cluster runs is started again after a delay (0.5 s doubling to 15 s; back to
 *   0.5 s once a node has stayed up for 30 s), so one that crashes at start is retried, never in a hot loop.
 *   Every (re)start prints `<name> | started pid <pid>` (a chaos harness reads these lines), every exit one line;
 * - "cluster ready" is printed once its own gateway answers /api/health with 200 (the answer names the node);
 * - Ctrl-C or SIGTERM stops every node with ONE SIGTERM each (a node runs in a process group of its own, so the
 *   terminal's SIGINT reaches only this supervisor: twice-signalled nodes stopped twice and printed
 *   ERR_SERVER_NOT_RUNNING), waits until every process of a node, workers included, has closed its output
 *   (a gateway worker that outlived its primary died on EPIPE), and forces what is left after 15 s. A second
 *   Ctrl-C forces at once.
 *
 * `npm run cluster` builds first and runs this file from dist/: every node then runs the compiled platform with
 * plain node (as the Docker image does) and the heap limits of lib/runner.ts; under ts-node each node also
 * carried the TypeScript compiler (+65-80 MB). `npm run cluster:ts` runs it from source, without a build.
 *
 *   CLUSTER_NODES="gateway=api;accounts=user;accounts=user"  overrides the topology below.
 */
import { ChildProcess, spawn } from "child_process";
import net from "net";
import os from "os";
import path from "path";
import readline from "readline";
import { ConfigError, loadConfig, type Config } from "../lib/config";
import { clusterNodeOptions, clusterTopology, COMPILED_RUNNER_ARGS, instanceArgs, metricsOffsets, RUNNER_ARGS, type NodeSpec } from "../lib/runner";
import { localClusterEnv } from "./local-env";

/** Running from dist/scripts (the `npm run build` output) rather than from source. */
const COMPILED = path.extname(__filename) === ".js";
const ROOT = path.resolve(__dirname, COMPILED ? "../.." : "..");
const NODE_ARGS = COMPILED ? [...COMPILED_RUNNER_ARGS] : [...RUNNER_ARGS];
const COLORS = [36, 33, 35, 32, 34, 91, 92, 93, 94, 95];

/** Restart delays: the first, the cap, and how long a node must stay up for the next failure to start over. */
export const RESTART_BACKOFF = { firstMs: 500, maxMs: 15_000, stableMs: 30_000 };
/** How long a stop waits for the nodes before SIGKILL. */
const STOP_GRACE_MS = 15_000;
/** After a node's process exits, how long a restart waits for the rest of its group (gateway workers) to go. */
const GROUP_EXIT_WAIT_MS = 5_000;

interface Supervised {
	spec: NodeSpec;
	index: number;
	/** Its first metrics port is METRICS_PORT + this (lib/runner.ts metricsOffsets). */
	metricsOffset: number;
	nodeID: string;
	prefix: string;
	child?: ChildProcess;
	/** Resolves when the current process and everything that shares its output (its workers) are gone. */
	closed?: Promise<void>;
	startedAt: number;
	delayMs: number;
	restartTimer?: NodeJS.Timeout;
}

const say = (line: string) => process.stdout.write(`${line}\n`);

/** Whether a TCP port can be bound on `host` right now (the way the node will bind it). */
export function portFree(port: number, host: string): Promise<boolean> {
	return new Promise(resolve => {
		const srv = net.createServer();
		srv.once("error", () => resolve(false));
		srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
	});
}

/** The ports this topology will listen on, with what each is for. */
function portsToCheck(nodes: NodeSpec[], config: Config): { port: number; host: string; what: string }[] {
	const ports: { port: number; host: string; what: string }[] = [];
	if (config.port > 0 && nodes.some(n => n.services.includes("api"))) ports.push({ port: config.port, host: "0.0.0.0", what: "PORT, the API gateway" });
	if (config.metricsPort > 0) {
		const first = metricsOffsets(nodes);
		nodes.forEach((n, i) => {
			for (let w = 0; w < (n.instances ?? 1); w++) {
				const offset = first[i] + w;
				const worker = (n.instances ?? 1) > 1 ? ` worker ${w + 1}` : "";
				ports.push({ port: config.metricsPort + offset, host: config.metricsHost, what: `metrics of ${n.name}${worker} (METRICS_PORT + ${offset})` });
			}
		});
	}
	return ports;
}

async function main(): Promise<void> {
	// Nobody reading our output any more (a closed pipe) must not crash the supervisor and orphan the nodes.
	for (const s of [process.stdout, process.stderr]) s.on("error", () => undefined);

	let env: Record<string, string>;
	let config: Config;
	let nodes: NodeSpec[];
	try {
		env = localClusterEnv();
		config = loadConfig(env);
		nodes = clusterTopology(env.CLUSTER_NODES);
	} catch (err) {
		if (err instanceof ConfigError || (err instanceof Error && err.message.startsWith("CLUSTER_NODES"))) {
			process.stderr.write(`${err.message}\n`);
			process.exit(1);
		}
		throw err;
	}

	for (const p of portsToCheck(nodes, config)) {
		if (!(await portFree(p.port, p.host))) {
			process.stderr.write(
				`cluster not started: port ${p.port} (${p.what}) is already in use; stop what holds it (another cluster?) or choose another port\n`
			);
			process.exit(1);
		}
	}

	const width = Math.max(...nodes.map(n => n.name.length));
	const started = Date.now();
	let stopping = false;

	const offsets = metricsOffsets(nodes);
	const supervised: Supervised[] = nodes.map((spec, i) => {
		const color = process.stdout.isTTY ? COLORS[i % COLORS.length] : 0;
		return {
			spec,
			index: i,
			metricsOffset: offsets[i],
			nodeID: `${os.hostname()}-${spec.name}`,
			prefix: color ? `\x1b[${color}m${spec.name.padEnd(width)} |\x1b[0m ` : `${spec.name.padEnd(width)} | `,
			startedAt: 0,
			delayMs: RESTART_BACKOFF.firstMs
		};
	});
	const running = (n: Supervised) => !!n.child && n.child.exitCode === null && n.child.signalCode === null;

	const start = (n: Supervised) => {
		n.restartTimer = undefined;
		const child = spawn(process.execPath, [...NODE_ARGS, ...instanceArgs(n.spec)], {
			cwd: ROOT,
			env: {
				...env,
				SERVICEDIR: COMPILED ? "dist/services" : "services",
				...(COMPILED ? { NODE_OPTIONS: clusterNodeOptions(env.NODE_OPTIONS) } : {}),
				SERVICES: n.spec.services.join(","),
				NODE_ID: n.nodeID,
				// Every node gets its own metrics port; only the gateway listens on PORT.
				METRICS_PORT: config.metricsPort > 0 ? String(config.metricsPort + n.metricsOffset) : "0"
			},
			stdio: ["ignore", "pipe", "pipe"],
			// A process group of its own: the terminal's Ctrl-C reaches the supervisor only, which sends one SIGTERM.
			detached: true
		});
		n.child = child;
		n.startedAt = Date.now();
		n.closed = new Promise<void>(resolve => child.once("close", () => resolve()));
		// Exactly this shape, unpadded and uncoloured: external tools parse it.
		if (child.pid) say(`${n.spec.name} | started pid ${child.pid}`);
		for (const stream of [child.stdout!, child.stderr!]) {
			readline.createInterface({ input: stream }).on("line", line => say(`${n.prefix}${line}`));
		}
		child.once("error", err => say(`${n.prefix}could not start: ${err.message}`));
		child.once("exit", (code, signal) => {
			const upMs = Date.now() - n.startedAt;
			if (stopping) {
				say(`${n.prefix}exited (${signal ?? code})`);
				return;
			}
			if (upMs >= RESTART_BACKOFF.stableMs) n.delayMs = RESTART_BACKOFF.firstMs;
			const delay = n.delayMs;
			n.delayMs = Math.min(n.delayMs * 2, RESTART_BACKOFF.maxMs);
			say(`${n.prefix}exited (${signal ?? code}) after ${(upMs / 1000).toFixed(1)} s; restarting in ${delay / 1000} s`);
			// Its workers may still be going (they hold the gateway's port): wait for them, within reason.
			const groupGone = Promise.race([n.closed, new Promise(r => setTimeout(r, GROUP_EXIT_WAIT_MS))]);
			n.restartTimer = setTimeout(() => {
				void groupGone.then(() => {
					if (!stopping) start(n);
				});
			}, delay);
		});
	};
	supervised.forEach(start);

	const forceAll = () => {
		for (const n of supervised) {
			if (!n.child?.pid) continue;
			try {
				process.kill(-n.child.pid, "SIGKILL");
			} catch {
				/* the group is gone */
			}
		}
	};
	const stop = (signal: string) => {
		if (stopping) {
			say(`${signal} again: killing every node now`);
			forceAll();
			return;
		}
		stopping = true;
		say(`\n${signal}: stopping ${supervised.length} nodes...`);
		for (const n of supervised) {
			if (n.restartTimer) clearTimeout(n.restartTimer);
			// The node's own process only: the gateway's primary forwards it to its workers, once.
			if (running(n)) n.child!.kill("SIGTERM");
		}
		const force = setTimeout(forceAll, STOP_GRACE_MS);
		force.unref();
		void Promise.all(supervised.map(n => n.closed)).then(() => process.exit(0));
	};
	process.on("SIGINT", () => stop("SIGINT"));
	process.on("SIGTERM", () => stop("SIGTERM"));
	// A supervisor that dies anyway (a bug) does not leave its nodes behind.
	process.on("exit", () => {
		for (const n of supervised) if (running(n)) n.child!.kill("SIGTERM");
	});

	// Tell the user when our own gateway answers healthy, and how long the cluster took to get there.
	const gateways = supervised.filter(n => n.spec.services.includes("api"));
	if (gateways.length === 0) return;
	const ours = (node: unknown) =>
		typeof node === "string" && gateways.some(g => running(g) && (node === g.nodeID || new RegExp(`^${escapeRegExp(g.nodeID)}-\\d+$`).test(node)));
	const poll = setInterval(async () => {
		try {
			const res = await fetch(`http://127.0.0.1:${config.port}/api/health`);
			const body = (await res.json()) as { node?: unknown };
			if (res.status === 200 && ours(body.node) && !stopping) {
				clearInterval(poll);
				say(`cluster ready: ${nodes.length} nodes, http://127.0.0.1:${config.port}/api healthy after ${Date.now() - started} ms`);
			}
		} catch {
			/* not up yet */
		}
	}, 250);
	poll.unref();
}

function escapeRegExp(s: string): string {
	return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

void main();
