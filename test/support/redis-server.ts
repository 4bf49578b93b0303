/**
 * A private redis-server for one test: its own port and data directory, so a test can stop, kill and restart it
 * (a Redis outage) without touching the shared server other tests and developers use.
 *
 *   const redis = await startRedisServer({ appendonly: true });
 *   await env.broker(["concert"], { config: { redis: { url: redis.url } } });
 *   await redis.stop();      // the outage; the data directory stays
 *   await redis.restart();   // same port, same data (with appendonly or its shutdown save)
 */
import fs from "fs";
import os from "os";
import path from "path";
import { freePort, portOpen } from "./nats-server";
import { serverProcess } from "./server-process";

export interface RedisServerOptions {
	port?: number;
	/** Where it keeps its RDB/AOF files; a temporary directory (removed when the test process exits) otherwise. */
	dataDir?: string;
	/** AOF with `appendfsync everysec` (what docker-compose runs); otherwise only the RDB save at shutdown. */
	appendonly?: boolean;
}

export interface PrivateRedis {
	port: number;
	/** `redis://127.0.0.1:<port>` */
	url: string;
	/** The pid of the running process (changes with `restart`). */
	pid: number;
	/** SIGTERM and wait for the exit (Redis saves its data on the way out); the data directory stays. */
	stop(): Promise<void>;
	/** A crash: the signal (SIGKILL by default), then wait for the exit. */
	kill(signal?: NodeJS.Signals): Promise<void>;
	/** Starts it again on the same port and data directory (stopping it first if it runs). */
	restart(): Promise<void>;
}

export async function startRedisServer(opts: RedisServerOptions = {}): Promise<PrivateRedis> {
	const port = opts.port ?? (await freePort());
	let dir = opts.dataDir;
	if (!dir) {
		const own = fs.mkdtempSync(path.join(os.tmpdir(), "crp-redis-"));
		process.once("exit", () => fs.rmSync(own, { recursive: true, force: true }));
		dir = own;
	}
	const args = ["--bind", "127.0.0.1", "--port", String(port), "--dir", dir, "--daemonize", "no", "--protected-mode", "no"];
	if (opts.appendonly) args.push("--appendonly", "yes", "--appendfsync", "everysec");

	const proc = serverProcess(process.env.REDIS_SERVER_BIN ?? "redis-server", args, () => portOpen(port), 15_000, `redis-server on ${port}`);
	const end = (signal: NodeJS.Signals) => proc.end(signal);
	const launch = () => proc.start();
	await launch();

	const server: PrivateRedis = {
		port,
		url: `redis://127.0.0.1:${port}`,
		get pid() {
			return proc.pid;
		},
		stop: () => end("SIGTERM"),
		kill: (signal = "SIGKILL") => end(signal),
		async restart() {
			await end("SIGTERM");
			await launch();
		}
	};
	return server;
}
