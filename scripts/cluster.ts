/**
 * `npm run cluster`: the platform as several broker processes on this machine, talking over NATS, with MariaDB
 * and Redis (the local servers by default). Each node is a runner process (scripts/node.ts) with its own SERVICES=, its
 * output prefixed with its name. Ctrl-C or SIGTERM stops them all (gracefully, then by force after 15 s).
 *
 * `npm run cluster` builds first and runs this file from dist/: every node then runs the compiled platform with
 * plain node (as the Docker image does) and the heap limits of lib/runner.ts; under ts-node each node also
 * carried the TypeScript compiler (+65-80 MB). `npm run cluster:ts` runs it from source, without a build.
 *
 *   CLUSTER_NODES="gateway=api;accounts=user;accounts=user"  overrides the topology below.
 */
import { ChildProcess, spawn } from "child_process";
import os from "os";
import path from "path";
import readline from "readline";
import { ConfigError, loadConfig } from "../lib/config";
import { clusterNodeOptions, clusterTopology, COMPILED_RUNNER_ARGS, instanceArgs, RUNNER_ARGS } from "../lib/runner";
import { localClusterEnv } from "./local-env";

/** Running from dist/scripts (the `npm run build` output) rather than from source. */
const COMPILED = path.extname(__filename) === ".js";
const ROOT = path.resolve(__dirname, COMPILED ? "../.." : "..");
const NODE_ARGS = COMPILED ? [...COMPILED_RUNNER_ARGS] : [...RUNNER_ARGS];
const COLORS = [36, 33, 35, 32, 34, 91, 92, 93, 94, 95];

function main(): void {
	let env: Record<string, string>;
	try {
		env = localClusterEnv();
		loadConfig(env);
	} catch (err) {
		if (err instanceof ConfigError) {
			process.stderr.write(`${err.message}\n`);
			process.exit(1);
		}
		throw err;
	}

	const nodes = clusterTopology();
	const width = Math.max(...nodes.map(n => n.name.length));
	const metricsBase = Number(env.METRICS_PORT ?? 3030);
	const children: ChildProcess[] = [];
	const started = Date.now();
	let stopping = false;

	nodes.forEach((spec, i) => {
		const child = spawn(
			process.execPath,
			[...NODE_ARGS, ...instanceArgs(spec)],
			{
				cwd: ROOT,
				env: {
					...env,
					SERVICEDIR: COMPILED ? "dist/services" : "services",
					...(COMPILED ? { NODE_OPTIONS: clusterNodeOptions(env.NODE_OPTIONS) } : {}),
					SERVICES: spec.services.join(","),
					NODE_ID: `${os.hostname()}-${spec.name}`,
					// Every node gets its own metrics port; only the gateway listens on PORT.
					METRICS_PORT: metricsBase > 0 ? String(metricsBase + i) : "0"
				},
				stdio: ["ignore", "pipe", "pipe"]
			}
		);
		const color = process.stdout.isTTY ? COLORS[i % COLORS.length] : 0;
		const prefix = color ? `\x1b[${color}m${spec.name.padEnd(width)} |\x1b[0m ` : `${spec.name.padEnd(width)} | `;
		for (const stream of [child.stdout!, child.stderr!]) {
			readline.createInterface({ input: stream }).on("line", line => process.stdout.write(`${prefix}${line}\n`));
		}
		child.on("exit", (code, signal) => {
			process.stdout.write(`${prefix}exited (${signal ?? code})\n`);
			if (!stopping && children.every(c => c.exitCode !== null || c.signalCode !== null)) process.exit(1);
		});
		children.push(child);
	});

	const stop = (signal: string) => {
		if (stopping) return;
		stopping = true;
		process.stdout.write(`\n${signal}: stopping ${children.length} nodes...\n`);
		for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
		const force = setTimeout(() => {
			for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
		}, 15_000);
		force.unref();
		Promise.all(children.map(c => (c.exitCode !== null || c.signalCode !== null ? null : new Promise(r => c.once("exit", r))))).then(() =>
			process.exit(0)
		);
	};
	process.on("SIGINT", () => stop("SIGINT"));
	process.on("SIGTERM", () => stop("SIGTERM"));

	// Tell the user when the API answers healthy, and how long the cluster took to get there.
	const port = env.PORT ?? "3000";
	const poll = setInterval(async () => {
		try {
			const res = await fetch(`http://127.0.0.1:${port}/api/health`);
			if (res.status === 200) {
				clearInterval(poll);
				process.stdout.write(`cluster ready: ${nodes.length} nodes, http://127.0.0.1:${port}/api healthy after ${Date.now() - started} ms\n`);
			}
		} catch {
			/* not up yet */
		}
	}, 250);
	poll.unref();
}

main();
