/**
 * One server binary run as a child process that a test can kill and start again on the same port and data: the
 * common part of the private MariaDB, Redis and NATS helpers (mariadb-server.ts, redis-server.ts, nats-server.ts).
 */
import { ChildProcess, spawn } from "child_process";
import { waitFor } from "./harness";

export interface ServerProcess {
	/** The pid of the running process (changes with each `start`). */
	readonly pid: number;
	/** Spawns it and waits until it accepts connections on its port (or throws with its last output). */
	start(): Promise<void>;
	/** Sends `signal` if it runs, and waits for the exit. */
	end(signal: NodeJS.Signals): Promise<void>;
	running(): boolean;
}

export function serverProcess(bin: string, args: string[], ready: () => Promise<boolean>, timeoutMs: number, what: string): ServerProcess {
	let proc: ChildProcess | undefined;
	let exited: Promise<void> = Promise.resolve();
	const running = () => proc !== undefined && proc.exitCode === null && proc.signalCode === null;
	return {
		get pid() {
			return proc?.pid ?? 0;
		},
		running,
		async start() {
			const p = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
			let out = "";
			p.stdout!.on("data", d => (out += d));
			p.stderr!.on("data", d => (out += d));
			exited = new Promise<void>(resolve => p.once("exit", () => resolve()));
			proc = p;
			try {
				await waitFor(async () => p.exitCode !== null || (await ready()), timeoutMs, what);
				if (p.exitCode !== null) throw new Error(`${what} exited:\n${out.slice(-4000)}`);
			} catch (err) {
				p.kill("SIGKILL");
				throw err;
			}
		},
		async end(signal) {
			if (running()) proc!.kill(signal);
			await exited;
		}
	};
}

/** Sends `signal` to a child process that still runs, and waits for its exit (nothing when it is gone already). */
export async function endProcess(p: ChildProcess | undefined, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
	if (!p || p.exitCode !== null || p.signalCode !== null) return;
	const exited = new Promise(r => p.once("exit", r));
	p.kill(signal);
	await exited;
}
