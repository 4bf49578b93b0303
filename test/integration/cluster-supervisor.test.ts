/**
 * `npm run cluster` (scripts/cluster.ts, run from source as `npm run cluster:ts` does) as a supervisor: it refuses a
 * busy port, restarts nodes that exit (with growing delays), prints `<name> | started pid <pid>` for each start,
 * and stops quietly on a terminal's Ctrl-C (SIGINT to its whole process group). Small topologies on the shared
 * NATS/Redis, each run under its own namespace and prefixes.
 */
import { ChildProcess, spawn } from "child_process";
import fs from "fs";
import http from "http";
import os from "os";
import path from "path";
import { dropDatabases, TEST_CLUSTER_SECRET, waitFor } from "../support/harness";
import { deleteEventStreams } from "../support/events";
import { MARIADB_URL, NATS_URL, REDIS_URL, runId } from "../support/isolation";
import { freePort } from "../support/nats-server";

const ROOT = path.resolve(__dirname, "../..");

interface Supervisor {
	proc: ChildProcess;
	out(): string;
	exited: Promise<number | null>;
	/** What a terminal's Ctrl-C does: SIGINT to every process of the foreground group. */
	ctrlC(): void;
	/** Kills whatever is left of it and its nodes. */
	destroy(): Promise<void>;
}

function runCluster(env: Record<string, string>): Supervisor {
	const inherited = Object.fromEntries(
		Object.entries(process.env).filter(
			([k, v]) => v !== undefined && !/^(CLUSTER_NODES|SERVICES|NODE_ID|PORT|METRICS_PORT|NAMESPACE|DB_PREFIX|STORE_PREFIX)$/.test(k)
		)
	) as Record<string, string>;
	const proc = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "scripts/cluster.ts"], {
		cwd: ROOT,
		env: { ...inherited, ...env },
		stdio: ["ignore", "pipe", "pipe"],
		// Its own process group, as a shell gives a foreground job.
		detached: true
	});
	let out = "";
	proc.stdout!.on("data", d => (out += d));
	proc.stderr!.on("data", d => (out += d));
	const exited = new Promise<number | null>(resolve => proc.once("exit", code => resolve(code)));
	const pids = () => [...out.matchAll(/^\S+ \| started pid (\d+)$/gm)].map(m => Number(m[1]));
	return {
		proc,
		out: () => out,
		exited,
		ctrlC: () => process.kill(-proc.pid!, "SIGINT"),
		async destroy() {
			for (const pid of [-proc.pid!, ...pids().map(p => -p)]) {
				try {
					process.kill(pid, "SIGKILL");
				} catch {
					/* gone */
				}
			}
			await Promise.race([exited, new Promise(r => setTimeout(r, 5000))]);
		}
	};
}

function clusterEnv(id: string, extra: Record<string, string>): Record<string, string> {
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `crp-${id}-`));
	return {
		NODE_ENV: "test",
		NAMESPACE: id,
		DATA_DIR: dataDir,
		DB_PREFIX: `${id}_`,
		STORE_PREFIX: `crp-test:${id}:`,
		JWT_SECRET: "test-secret-not-for-production-0123456789abcdef",
		CLUSTER_SECRET: TEST_CLUSTER_SECRET,
		TRANSPORTER: NATS_URL,
		DATABASE_URL: MARIADB_URL,
		REDIS_URL,
		LOG_LEVEL: "info",
		...extra
	};
}

describe("npm run cluster", () => {
	it("when the gateway's port is taken (another cluster answering healthy), then it exits 1 with one line naming the port and starts nothing", async () => {
		const other = http.createServer((_req, res) => {
			res.writeHead(200, { "content-type": "application/json" });
			res.end(JSON.stringify({ status: "ok", checks: {} }));
		});
		await new Promise<void>(r => other.listen(0, "0.0.0.0", () => r()));
		const port = (other.address() as { port: number }).port;
		const id = runId("cl");
		const sup = runCluster(clusterEnv(id, { PORT: String(port), METRICS_PORT: "0", CLUSTER_NODES: "gw=api" }));
		try {
			const code = await Promise.race([sup.exited, new Promise<string>(r => setTimeout(() => r("still running"), 30_000))]);
			expect(code).toBe(1);
			expect(sup.out().trim().split("\n")).toEqual([
				expect.stringMatching(new RegExp(`^cluster not started: port ${port} \\(PORT, the API gateway\\) is already in use`))
			]);
		} finally {
			await sup.destroy();
			other.close();
		}
	}, 60_000);

	describe("supervising nodes", () => {
		const id = runId("cl");
		let sup: Supervisor;
		const started = (name: string) => [...sup.out().matchAll(new RegExp(`^${name} \\| started pid (\\d+)$`, "gm"))].map(m => Number(m[1]));

		beforeAll(async () => {
			const metrics = await freePort();
			sup = runCluster(
				clusterEnv(id, {
					PORT: String(await freePort()),
					METRICS_PORT: String(metrics),
					// A gateway with two workers, and a node that cannot start (its service is a module that is not there).
					CLUSTER_NODES: "gw*2=api;bad=npm:crp-no-such-module"
				})
			);
			await waitFor(
				() => (sup.out().match(/ServiceBroker with \d+ service\(s\) started successfully/g) ?? []).length >= 2,
				90_000,
				"both gateway workers"
			);
		}, 120_000);

		afterAll(async () => {
			await sup?.destroy();
			await dropDatabases(`${id}_`);
			await deleteEventStreams(id).catch(() => undefined);
		}, 60_000);

		it("when a node exits, then it is started again, logged in one line, and one that keeps failing is retried with growing delays", async () => {
			const [first] = started("gw-1");
			expect(first).toBeGreaterThan(0);
			process.kill(first, "SIGKILL");
			await waitFor(() => started("gw-1").length >= 2, 30_000, "the gateway to be started again");
			expect(started("gw-1")[1]).not.toBe(first);
			expect(sup.out()).toMatch(/^gw-1\s+\| exited \(SIGKILL\) after \d+\.\d s; restarting in 0\.5 s$/m);

			await waitFor(() => started("bad-1").length >= 4, 30_000, "the failing node's fourth start");
			const delays = [...sup.out().matchAll(/^bad-1\s+\| exited \(1\) after [\d.]+ s; restarting in ([\d.]+) s$/gm)].map(m => Number(m[1]));
			expect(delays.slice(0, 3)).toEqual([0.5, 1, 2]);
		}, 60_000);

		it("when Ctrl-C reaches the whole process group, then every node stops once, quietly, and it exits 0", async () => {
			await waitFor(
				() => (sup.out().match(/ServiceBroker with \d+ service\(s\) started successfully/g) ?? []).length >= 4,
				60_000,
				"the restarted gateway's workers"
			);
			const before = sup.out().length;
			sup.ctrlC();
			const code = await Promise.race([sup.exited, new Promise<string>(r => setTimeout(() => r("still running"), 40_000))]);
			const shutdown = sup.out().slice(before);
			expect(code).toBe(0);
			expect(shutdown).toMatch(/SIGINT: stopping 2 nodes/);
			expect(shutdown).not.toMatch(/ERR_SERVER_NOT_RUNNING|EPIPE|Server is not running|ERROR/);
			// One stop per worker: a worker signalled twice stopped its broker twice.
			expect(shutdown.match(/^gw-1\s+\|.*ServiceBroker is stopped/gm)).toHaveLength(2);
		}, 60_000);
	});
});
