/**
 * Prometheus against a local cluster (issue 19): a real Prometheus (Debian's `prometheus` package) scrapes a gateway
 * run as two worker processes (as docker-compose and `npm run cluster` run it) and two more nodes, each in its own
 * OS process. Every target must be up, and the series must tell the processes apart: four targets, four node ids,
 * four pids. Before each process had its own metrics port, the two workers shared one and alternate scrapes reached
 * different processes (one target, its pid and counters jumping back and forth).
 * The scrape configuration is written by the test with the ports it picked; the shipped docker/prometheus files are
 * checked by promtool in test/unit/observability.config.test.ts.
 */
import { spawn, type ChildProcess } from "child_process";
import fs from "fs";
import os from "os";
import path from "path";
import { RUNNER_ARGS } from "../../lib/runner";
import { testEnv, waitFor, type TestEnv } from "../support/harness";
import { freePort } from "../support/nats-server";
import { endProcess } from "../support/server-process";

const ROOT = path.resolve(__dirname, "../..");
const STARTED = /ServiceBroker with \d+ service\(s\) started successfully/g;

/** Two consecutive free ports: worker k of the gateway listens on METRICS_PORT + k - 1. */
async function freePair(): Promise<number> {
	for (let i = 0; i < 20; i++) {
		const p = await freePort();
		const net = await import("net");
		const ok = await new Promise<boolean>(resolve => {
			const srv = net.createServer();
			srv.once("error", () => resolve(false));
			srv.listen(p + 1, "127.0.0.1", () => srv.close(() => resolve(true)));
		});
		if (ok) return p;
	}
	throw new Error("no two consecutive free ports");
}

interface Target {
	labels: { job: string; instance: string };
	health: "up" | "down" | "unknown";
	lastError: string;
}

describe("Prometheus scraping a local cluster (real Prometheus, real processes)", () => {
	let env: TestEnv;
	let gateway: ChildProcess;
	let prometheus: ChildProcess;
	let promOut = "";
	let gwOut = "";
	let dir: string;
	let promUrl: string;
	const ports = { gateway: 0, booking: 0, money: 0 };

	beforeAll(async () => {
		env = testEnv({ cluster: true });
		dir = fs.mkdtempSync(path.join(os.tmpdir(), "crp-prom-"));
		ports.gateway = await freePair();
		ports.booking = await freePort();
		ports.money = await freePort();
		const metricsEnv = { METRICS_PORT: "", METRICS_HOST: "127.0.0.1" };
		gateway = spawn(process.execPath, [...RUNNER_ARGS, "--instances", "2"], {
			cwd: ROOT,
			env: {
				...process.env,
				...env.env,
				...metricsEnv,
				METRICS_PORT: String(ports.gateway),
				LOG_LEVEL: "info",
				NODE_ID: `${env.id}-gw`,
				SERVICEDIR: "services",
				SERVICES: "api,user,queue",
				PORT: String(await freePort())
			},
			stdio: ["ignore", "pipe", "pipe"]
		});
		gateway.stdout!.on("data", d => (gwOut += d.toString()));
		gateway.stderr!.on("data", d => (gwOut += d.toString()));
		await Promise.all([
			waitFor(() => (gwOut.match(STARTED) ?? []).length >= 2 || gateway.exitCode !== null, 90_000, "two gateway workers"),
			env.spawn(["reservation", "saga", "concert"], { nodeID: `${env.id}-booking`, env: { ...metricsEnv, METRICS_PORT: String(ports.booking) } }),
			env.spawn(["payment", "ranking", "notification", "ops"], { nodeID: `${env.id}-money`, env: { ...metricsEnv, METRICS_PORT: String(ports.money) } })
		]);
		if (gateway.exitCode !== null) throw new Error(`gateway exited during start:\n${gwOut}`);

		const promPort = await freePort();
		promUrl = `http://127.0.0.1:${promPort}`;
		const t = (p: number) => `127.0.0.1:${p}`;
		fs.writeFileSync(
			path.join(dir, "prometheus.yml"),
			[
				"global:",
				"  scrape_interval: 1s",
				"  scrape_timeout: 1s",
				"scrape_configs:",
				"  - job_name: gateway",
				`    static_configs: [{ targets: ["${t(ports.gateway)}", "${t(ports.gateway + 1)}"] }]`,
				"  - job_name: booking",
				`    static_configs: [{ targets: ["${t(ports.booking)}"] }]`,
				"  - job_name: money",
				`    static_configs: [{ targets: ["${t(ports.money)}"] }]`,
				""
			].join("\n")
		);
		prometheus = spawn(
			"prometheus",
			[
				`--config.file=${path.join(dir, "prometheus.yml")}`,
				`--storage.tsdb.path=${path.join(dir, "data")}`,
				`--web.listen-address=127.0.0.1:${promPort}`
			],
			{ stdio: ["ignore", "pipe", "pipe"] }
		);
		prometheus.on("error", err => (promOut += `spawn failed: ${err.message} (install Debian's prometheus package)\n`));
		prometheus.stdout!.on("data", d => (promOut += d.toString()));
		prometheus.stderr!.on("data", d => (promOut += d.toString()));
		await waitFor(
			async () =>
				prometheus.exitCode !== null ||
				promOut.startsWith("spawn failed") ||
				(await fetch(`${promUrl}/-/ready`)
					.then(r => r.ok)
					.catch(() => false)),
			30_000,
			"Prometheus ready"
		);
		if (prometheus.exitCode !== null || promOut.startsWith("spawn failed")) throw new Error(`Prometheus did not start:\n${promOut}`);
	}, 180_000);

	afterAll(async () => {
		await endProcess(prometheus);
		await endProcess(gateway);
		await env.cleanup();
		if (dir) fs.rmSync(dir, { recursive: true, force: true });
	}, 60_000);

	const query = async (q: string) => {
		const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`);
		const body = (await res.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
		return body.data.result;
	};

	it("when Prometheus scrapes every node and both gateway workers, then every target is up and each is its own process", async () => {
		let targets: Target[] = [];
		await waitFor(
			async () => {
				const res = await fetch(`${promUrl}/api/v1/targets`);
				targets = ((await res.json()) as { data: { activeTargets: Target[] } }).data.activeTargets;
				return targets.length === 4 && targets.every(x => x.health === "up");
			},
			30_000,
			"every target up"
		).catch(err => {
			throw new Error(`${(err as Error).message}: ${JSON.stringify(targets.map(x => [x.labels.instance, x.health, x.lastError]))}`);
		});
		expect(targets.map(x => x.labels.job).sort()).toEqual(["booking", "gateway", "gateway", "money"]);

		// Four targets, four node ids, four pids: no two targets are one process, no target is two.
		let pids: { metric: Record<string, string>; value: [number, string] }[] = [];
		await waitFor(async () => (pids = await query("process_pid")).length === 4, 15_000, "process_pid of every target");
		expect(new Set(pids.map(r => r.metric.instance)).size).toBe(4);
		expect(new Set(pids.map(r => r.metric.nodeID)).size).toBe(4);
		// (Moleculer exports the pid as an info metric: the pid is the `value` label.)
		expect(new Set(pids.map(r => r.metric.value)).size).toBe(4);
		const gatewayIds = pids.filter(r => r.metric.job === "gateway").map(r => r.metric.nodeID);
		for (const id of gatewayIds) expect(id.startsWith(`${env.id}-gw`)).toBe(true);
		// The same target answers as the same process scrape after scrape: over the last seconds each target had one
		// pid series (two workers on one port gave a target two, alternating).
		await new Promise(r => setTimeout(r, 3000));
		const series = await query("count by (instance) (last_over_time(process_pid[10s]))");
		expect(series).toHaveLength(4);
		for (const r of series) expect(r.value[1]).toBe("1");
		// CPU time and event-loop lag per node, as the dashboard's per-node panels read them.
		expect((await query("process_cpu_seconds_total")).length).toBe(4);
		expect((await query('process_eventloop_lag_seconds{stat="p99"}')).length).toBe(4);
	}, 90_000);
});
