/**
 * A gateway run as two worker processes (moleculer-runner --instances, Node's cluster module), as `npm run cluster`
 * runs it (issue 15 item 5): one worker killed with SIGKILL is replaced, and the gateway keeps answering.
 */
import { spawn, type ChildProcess } from "child_process";
import fs from "fs";
import path from "path";
import { RUNNER_ARGS } from "../../lib/runner";
import { http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { freePort } from "../support/nats-server";

const ROOT = path.resolve(__dirname, "../..");
const STARTED = /ServiceBroker with \d+ service\(s\) started successfully/g;

/** Child processes of a process (its cluster workers). */
function childrenOf(pid: number): number[] {
	try {
		return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(/\s+/).filter(Boolean).map(Number);
	} catch {
		return [];
	}
}

const alive = (pid: number) => {
	try {
		process.kill(pid, 0);
		return true;
	} catch {
		return false;
	}
};

describe("gateway workers (cluster)", () => {
	let env: TestEnv;
	let primary: ChildProcess;
	let out = "";
	let port: number;
	const workers = new Set<number>();

	beforeAll(async () => {
		env = testEnv({ cluster: true });
		port = await freePort();
		primary = spawn(process.execPath, [...RUNNER_ARGS, "--instances", "2"], {
			cwd: ROOT,
			env: { ...process.env, ...env.env, LOG_LEVEL: "info", NODE_ID: `${env.id}-gw`, SERVICEDIR: "services", SERVICES: "api", PORT: String(port) },
			stdio: ["ignore", "pipe", "pipe"]
		});
		primary.stdout!.on("data", d => (out += d.toString()));
		primary.stderr!.on("data", d => (out += d.toString()));
		await waitFor(() => (out.match(STARTED) ?? []).length >= 2 || primary.exitCode !== null, 60_000, "two gateway workers");
		if (primary.exitCode !== null) throw new Error(`gateway exited during start:\n${out}`);
		for (const pid of childrenOf(primary.pid!)) workers.add(pid);
	}, 90_000);

	afterAll(async () => {
		if (primary.exitCode === null && primary.signalCode === null) {
			const exited = new Promise(r => primary.once("exit", r));
			primary.kill("SIGTERM");
			await exited;
		}
		// Workers this test started that outlived their primary (the old runner left them behind).
		for (const pid of childrenOf(primary.pid!)) workers.add(pid);
		for (const pid of workers) if (alive(pid)) process.kill(pid, "SIGKILL");
		await env.cleanup();
	}, 60_000);

	it("when one gateway worker is killed with SIGKILL, then the primary stays, forks a new worker, and the gateway keeps answering", async () => {
		const [victim, other] = [...workers];
		expect(workers.size).toBe(2);
		expect((await http("GET", `http://127.0.0.1:${port}/api/openapi.json`)).status).toBe(200);

		process.kill(victim, "SIGKILL");
		await waitFor(() => !alive(victim) || primary.exitCode !== null, 10_000, "the worker to die");

		// A replacement comes up under the same primary, logged, beside the surviving worker.
		await waitFor(() => (out.match(STARTED) ?? []).length >= 3 || primary.exitCode !== null, 30_000, "a replacement worker");
		expect(primary.exitCode).toBeNull();
		expect(primary.signalCode).toBeNull();
		const now = childrenOf(primary.pid!);
		for (const pid of now) workers.add(pid);
		expect(now).toHaveLength(2);
		expect(now).toContain(other);
		expect(out).toMatch(new RegExp(`pid ${victim}\\) was killed by SIGKILL .*starting a new worker`));

		// Every connection is answered (the primary hands them to both workers in turn).
		for (let i = 0; i < 6; i++) {
			expect((await http("GET", `http://127.0.0.1:${port}/api/openapi.json`)).status).toBe(200);
		}
	}, 60_000);
});
