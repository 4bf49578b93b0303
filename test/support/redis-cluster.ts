/**
 * A private Redis Cluster for one test (or one bench setup): `masters` redis-server processes started with
 * `--cluster-enabled yes` on free ports of 127.0.0.1, each in a temporary directory, optionally one replica per
 * master, joined by `redis-cli --cluster create`, and ready once every node says `cluster_state:ok`. A test that
 * kills a master (a failover) does it here, never on the shared Redis other tests and developers use.
 *
 *   const cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1500 });
 *   const env = testEnv({ cluster: true, env: { REDIS_URL: "", ...cluster.env } });
 *   const dead = await cluster.killMaster(await cluster.ownerOf(slot)); // SIGKILL; its replica takes over
 *   await cluster.waitForFailover();
 *   await cluster.stop();                                                 // every process, every directory
 */
import { execFile } from "child_process";
import fs from "fs";
import os from "os";
import path from "path";
import { promisify } from "util";
import { waitFor } from "./harness";
import { freePort, portOpen } from "./nats-server";
import { serverProcess, type ServerProcess } from "./server-process";

const run = promisify(execFile);
const CLI = process.env.REDIS_CLI_BIN ?? "redis-cli";

export interface RedisClusterOptions {
	/** Masters, 3 at least (what `redis-cli --cluster create` accepts). */
	masters?: number;
	/** 0 (default) or 1: a replica per master, which a failover promotes. */
	replicasPerMaster?: 0 | 1;
	/** `cluster-node-timeout`: how long a master may be unreachable before it is failed over (default 2000 ms). */
	nodeTimeoutMs?: number;
}

export interface ClusterNodeInfo {
	/** host:port */
	addr: string;
	role: "master" | "replica";
	/** Flagged `fail` (or `fail?`) by the node that was asked. */
	failed: boolean;
	/** Slot ranges it serves (masters), as [from, to]. */
	slots: [number, number][];
}

export interface PrivateRedisCluster {
	/** Every node started, `127.0.0.1:<port>`, the masters first. */
	nodes: string[];
	/** What the platform reads: `REDIS_CLUSTER_NODES` (give `REDIS_URL: ""` beside it when a test env sets one). */
	env: { REDIS_CLUSTER_NODES: string };
	/** The cluster as a live node sees it. */
	topology(): Promise<ClusterNodeInfo[]>;
	/** The master serving `slot` now. */
	ownerOf(slot: number): Promise<string>;
	/**
	 * SIGKILL of a master: `which` is its address or its index among the current masters (default 0). Returns the
	 * address killed.
	 */
	killMaster(which?: string | number): Promise<string>;
	/**
	 * Waits until every node still running says `cluster_state:ok` and sees `masters` healthy masters (a replica was
	 * promoted for each dead one). Returns how long it waited (ms).
	 */
	waitForFailover(timeoutMs?: number): Promise<number>;
	/** SIGKILL of every node: the whole cluster unreachable. Their directories (and `nodes.conf`) stay. */
	killAll(): Promise<void>;
	/** Starts every stopped node again on its port and directory, and waits until the cluster is ok. */
	restartAll(): Promise<void>;
	/** Stops every node and removes their directories. */
	stop(): Promise<void>;
}

async function cli(addr: string, ...args: string[]): Promise<string> {
	const [host, port] = splitAddr(addr);
	const { stdout } = await run(CLI, ["-h", host, "-p", String(port), ...args], { timeout: 10_000 });
	return stdout;
}

function splitAddr(addr: string): [string, number] {
	const i = addr.lastIndexOf(":");
	return [addr.slice(0, i), Number(addr.slice(i + 1))];
}

/** Parses `CLUSTER NODES`. */
function parseNodes(text: string): ClusterNodeInfo[] {
	const out: ClusterNodeInfo[] = [];
	for (const line of text.split("\n")) {
		const parts = line.trim().split(" ");
		if (parts.length < 8) continue;
		const addr = parts[1].split("@")[0];
		const flags = parts[2].split(",");
		const slots: [number, number][] = [];
		for (const s of parts.slice(8)) {
			if (s.startsWith("[")) continue; // a slot being migrated
			const [from, to] = s.split("-").map(Number);
			slots.push([from, to ?? from]);
		}
		out.push({ addr, role: flags.includes("master") ? "master" : "replica", failed: flags.some(f => f.startsWith("fail")), slots });
	}
	return out;
}

export async function startRedisCluster(opts: RedisClusterOptions = {}): Promise<PrivateRedisCluster> {
	const masters = opts.masters ?? 3;
	const replicas = opts.replicasPerMaster ?? 0;
	const nodeTimeout = opts.nodeTimeoutMs ?? 2000;
	if (masters < 3) throw new Error("a Redis Cluster needs 3 masters at least");
	const count = masters * (1 + replicas);
	const root = fs.mkdtempSync(path.join(os.tmpdir(), "crp-redis-cluster-"));
	const procs = new Map<string, ServerProcess>();
	const removeDir = () => fs.rmSync(root, { recursive: true, force: true });
	// Never leave servers behind a test process that dies without calling stop().
	const onExit = () => {
		for (const p of procs.values()) if (p.running()) process.kill(p.pid, "SIGKILL");
		removeDir();
	};
	process.once("exit", onExit);

	const stop = async () => {
		await Promise.all([...procs.values()].map(p => p.end("SIGKILL")));
		process.removeListener("exit", onExit);
		removeDir();
	};

	try {
		const ports: number[] = [];
		while (ports.length < count) {
			const p = await freePort();
			if (!ports.includes(p)) ports.push(p);
		}
		await Promise.all(
			ports.map(async port => {
				const dir = path.join(root, String(port));
				fs.mkdirSync(dir);
				// No persistence (a test cluster), so a killed master's data lives only on its replica, as after a
				// crash with an unsynced disk.
				const args = [
					"--bind",
					"127.0.0.1",
					"--port",
					String(port),
					"--dir",
					dir,
					"--daemonize",
					"no",
					"--protected-mode",
					"no",
					"--save",
					"",
					"--appendonly",
					"no",
					"--cluster-enabled",
					"yes",
					"--cluster-config-file",
					path.join(dir, "nodes.conf"),
					"--cluster-node-timeout",
					String(nodeTimeout),
					// A replica syncs at once (the default waits 5 s for more replicas before a diskless transfer), and
					// may always take over however long its link was down: a failover here depends on nothing else.
					"--repl-diskless-sync-delay",
					"0",
					"--cluster-replica-validity-factor",
					"0"
				];
				const proc = serverProcess(
					process.env.REDIS_SERVER_BIN ?? "redis-server",
					args,
					() => portOpen(port),
					15_000,
					`redis-server (cluster) on ${port}`
				);
				procs.set(`127.0.0.1:${port}`, proc);
				await proc.start();
			})
		);
		const nodes = ports.map(p => `127.0.0.1:${p}`);
		// redis-cli makes the first `masters` nodes the masters and gives each of them one of the others.
		await run(CLI, ["--cluster", "create", ...nodes, "--cluster-replicas", String(replicas), "--cluster-yes"], { timeout: 60_000 });

		const live = () => nodes.filter(n => procs.get(n)!.running());
		const topology = async () => {
			for (const n of live()) {
				try {
					return parseNodes(await cli(n, "cluster", "nodes"));
				} catch {
					// that node is going away: ask the next
				}
			}
			throw new Error("no Redis Cluster node answers");
		};
		const healthy = async () => {
			for (const n of live()) {
				const info = await cli(n, "cluster", "info").catch(() => "");
				if (!/cluster_state:ok/.test(info)) return false;
				if (!new RegExp(`cluster_known_nodes:${count}\\b`).test(info)) return false;
			}
			const seen = await topology();
			const up = seen.filter(n => n.role === "master" && !n.failed && n.slots.length > 0 && procs.get(n.addr)?.running());
			if (up.length !== masters) return false;
			// Each live replica replicates (a failover needs a replica whose link to its master was up).
			for (const r of seen.filter(n => n.role === "replica" && !n.failed && procs.get(n.addr)?.running())) {
				const info = await cli(r.addr, "info", "replication").catch(() => "");
				if (!/master_link_status:up/.test(info)) return false;
			}
			return true;
		};
		await waitFor(healthy, 30_000, "the Redis Cluster to be ok on every node", 200);

		const cluster: PrivateRedisCluster = {
			nodes,
			env: { REDIS_CLUSTER_NODES: nodes.join(",") },
			topology,
			async ownerOf(slot) {
				const owner = (await topology()).find(n => n.role === "master" && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b));
				if (!owner) throw new Error(`no master serves slot ${slot}`);
				return owner.addr;
			},
			async killMaster(which = 0) {
				const current = (await topology()).filter(n => n.role === "master" && !n.failed && n.slots.length > 0).map(n => n.addr);
				const addr = typeof which === "number" ? current[which] : which;
				if (!addr || !current.includes(addr)) throw new Error(`${which} is not a live master (${current.join(", ")})`);
				await procs.get(addr)!.end("SIGKILL");
				return addr;
			},
			async killAll() {
				await Promise.all([...procs.values()].map(p => p.end("SIGKILL")));
			},
			async restartAll() {
				// Without persistence the nodes come back empty, with the slots their nodes.conf remembers.
				await Promise.all([...procs.values()].filter(p => !p.running()).map(p => p.start()));
				await waitFor(healthy, 30_000, "the restarted Redis Cluster to be ok", 200);
			},
			async waitForFailover(timeoutMs = 30_000) {
				const t0 = Date.now();
				await waitFor(healthy, timeoutMs, "the Redis Cluster to fail over", 100);
				return Date.now() - t0;
			},
			stop
		};
		return cluster;
	} catch (err) {
		await stop();
		throw err;
	}
}
