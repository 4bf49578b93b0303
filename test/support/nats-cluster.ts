/**
 * A private NATS cluster with JetStream for one test (issue 21): `servers` nats-server processes on free ports of
 * 127.0.0.1, each with its own store directory, a cluster (route) port, the same `--cluster_name`, routes to every
 * other server and a distinct `--server_name` (JetStream clustering needs the names), plus a monitoring port for
 * `/jsz` and `/connz`. `startNatsCluster` returns once the JetStream meta group has a leader that every server
 * follows, so a stream with 3 replicas can be created at once. A test can SIGKILL one server and start it again on
 * the same ports and store (it rejoins and catches up). The shared NATS server is never touched.
 */
import fs from "fs";
import os from "os";
import path from "path";
import { connect } from "nats";
import { waitFor } from "./harness";
import { freePort, portOpen } from "./nats-server";
import { serverProcess, type ServerProcess } from "./server-process";

export interface NatsClusterServer {
	/** `n1`, `n2`, ...: the `--server_name`, which JetStream reports as a stream's leader or replica. */
	name: string;
	port: number;
	/** `nats://127.0.0.1:<port>` */
	url: string;
	/** HTTP monitoring port (`/jsz`, `/connz`, `/routez`). */
	monitorPort: number;
	running(): boolean;
	readonly pid: number;
}

export interface PrivateNatsCluster {
	servers: NatsClusterServer[];
	urls: string[];
	/** What a node of the platform needs: TRANSPORTER with every server, and JETSTREAM_REPLICAS. */
	env: { TRANSPORTER: string; JETSTREAM_REPLICAS: string };
	/** The same TRANSPORTER with the servers rotated so that server `i` comes first. */
	transporterFrom(i: number): string;
	/** Sends `signal` (SIGKILL by default) to server `i` and waits for its exit; its store stays. */
	kill(i: number, signal?: NodeJS.Signals): Promise<void>;
	/** Starts server `i` again on its ports and store, and waits until it serves JetStream again. */
	restart(i: number): Promise<void>;
	/** The `/jsz` answer of a running server (`meta_cluster`, stream counts...). */
	jsz(i: number): Promise<JszInfo>;
	/** Names of the clients connected to server `i` (`/connz`). */
	clientNames(i: number): Promise<string[]>;
	/** Stops every server and removes the store directories. */
	stop(): Promise<void>;
}

export interface JszInfo {
	server_id: string;
	meta_cluster?: { name?: string; leader?: string; cluster_size?: number; replicas?: { name: string; current: boolean; offline?: boolean }[] };
}

async function monitor<T>(port: number, what: string): Promise<T> {
	const res = await fetch(`http://127.0.0.1:${port}/${what}`);
	if (!res.ok) throw new Error(`/${what} on ${port}: ${res.status}`);
	return (await res.json()) as T;
}

/**
 * Whether every running server names the same JetStream meta leader, and that leader reports every other running
 * server as a current peer (only the leader lists the peers in `/jsz`).
 */
async function metaReady(running: NatsClusterServer[]): Promise<boolean> {
	try {
		const all = await Promise.all(running.map(s => monitor<JszInfo>(s.monitorPort, "jsz")));
		const leader = all[0].meta_cluster?.leader;
		if (!leader || all.some(j => j.meta_cluster?.leader !== leader)) return false;
		const at = running.findIndex(s => s.name === leader);
		if (at < 0) return false;
		return (all[at].meta_cluster?.replicas ?? []).filter(r => r.current && !r.offline).length >= running.length - 1;
	} catch {
		return false;
	}
}

/** Whether a client on `url` gets an answer from the JetStream API ($JS.API.INFO). */
async function jetStreamAnswers(url: string): Promise<boolean> {
	try {
		const nc = await connect({ servers: new URL(url).host, reconnect: false, timeout: 2000 });
		try {
			const jsm = await nc.jetstreamManager({ timeout: 2000 });
			await jsm.getAccountInfo();
			return true;
		} finally {
			await nc.close();
		}
	} catch {
		return false;
	}
}

export async function startNatsCluster(opts: { servers?: number; clusterName?: string } = {}): Promise<PrivateNatsCluster> {
	const n = opts.servers ?? 3;
	const clusterName = opts.clusterName ?? "crp-test";
	const ports = await Promise.all(Array.from({ length: n }, async () => ({ client: await freePort(), route: await freePort(), monitor: await freePort() })));
	const dirs: string[] = [];
	const procs: ServerProcess[] = [];
	for (let i = 0; i < n; i++) {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), `crp-natsc${i + 1}-`));
		dirs.push(dir);
		const routes = ports.filter((_, j) => j !== i).map(p => `nats://127.0.0.1:${p.route}`);
		const args = [
			"-a",
			"127.0.0.1",
			"-p",
			String(ports[i].client),
			"-m",
			String(ports[i].monitor),
			"-js",
			"-sd",
			dir,
			"--server_name",
			`n${i + 1}`,
			"--cluster_name",
			clusterName,
			"--cluster",
			`nats://127.0.0.1:${ports[i].route}`,
			"--routes",
			routes.join(",")
		];
		const port = ports[i].client;
		procs.push(serverProcess(process.env.NATS_SERVER_BIN ?? "nats-server", args, () => portOpen(port), 15_000, `nats-server n${i + 1} on ${port}`));
	}
	const servers: NatsClusterServer[] = ports.map((p, i) => ({
		name: `n${i + 1}`,
		port: p.client,
		url: `nats://127.0.0.1:${p.client}`,
		monitorPort: p.monitor,
		running: () => procs[i].running(),
		get pid() {
			return procs[i].pid;
		}
	}));
	const urls = servers.map(s => s.url);
	const removeDirs = () => dirs.forEach(d => fs.rmSync(d, { recursive: true, force: true }));
	/** Every running server follows one meta leader with every other running server current, and answers the JS API. */
	const settled = async (what: string) => {
		const running = servers.filter(s => s.running());
		await waitFor(
			async () => {
				if (!(await metaReady(running))) return false;
				for (const s of running) if (!(await jetStreamAnswers(s.url))) return false;
				return true;
			},
			30_000,
			what,
			200
		);
	};

	try {
		await Promise.all(procs.map(p => p.start()));
		await settled("the NATS cluster's JetStream meta leader");
	} catch (err) {
		await Promise.all(procs.map(p => p.end("SIGKILL")));
		removeDirs();
		throw err;
	}

	const transporterFrom = (i: number) => [...urls.slice(i), ...urls.slice(0, i)].join(",");
	return {
		servers,
		urls,
		env: { TRANSPORTER: urls.join(","), JETSTREAM_REPLICAS: String(Math.min(n, 5)) },
		transporterFrom,
		kill: (i, signal = "SIGKILL") => procs[i].end(signal),
		async restart(i) {
			if (procs[i].running()) throw new Error(`nats-server ${servers[i].name} is still running`);
			await procs[i].start();
			await settled(`${servers[i].name} to rejoin the cluster`);
		},
		jsz: i => monitor<JszInfo>(servers[i].monitorPort, "jsz"),
		async clientNames(i) {
			const connz = await monitor<{ connections?: { name?: string }[] }>(servers[i].monitorPort, "connz?limit=1024");
			return (connz.connections ?? []).map(c => c.name ?? "");
		},
		async stop() {
			await Promise.all(procs.map(p => p.end("SIGTERM")));
			removeDirs();
		}
	};
}
