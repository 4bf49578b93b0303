/**
 * A private NATS server (with JetStream) for one test: its own port and store directory, with the authentication
 * or TLS the test asks for. Tests that need a NATS server configured unlike the shared one (which has no
 * authentication) start their own and stop it afterwards; the shared server is never touched.
 */
import { ChildProcess, spawn } from "child_process";
import fs from "fs";
import net from "net";
import os from "os";
import path from "path";
import { waitFor } from "./harness";

export interface NatsServerOptions {
	user?: string;
	password?: string;
	token?: string;
	/** PEM files: the server requires TLS from every client; with `verifyClientsWith`, client certificates too. */
	tls?: { cert: string; key: string; verifyClientsWith?: string };
}

export interface PrivateNats {
	port: number;
	pid: number;
	/** `nats://127.0.0.1:<port>`, without credentials. */
	url: string;
	/** The token it requires, when started with one. */
	token?: string;
	/** Sends a signal (SIGKILL by default) and waits for the process to exit; the store directory stays. */
	kill(signal?: NodeJS.Signals): Promise<void>;
	/** Starts the server again on the same port with the same store (JetStream streams and consumers survive). */
	restart(): Promise<void>;
	stop(): Promise<void>;
}

export function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const srv = net.createServer();
		srv.listen(0, "127.0.0.1", () => {
			const port = (srv.address() as net.AddressInfo).port;
			srv.close(() => resolve(port));
		});
		srv.on("error", reject);
	});
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export const portOpen = (port: number) =>
	new Promise<boolean>(resolve => {
		const s = net.connect(port, "127.0.0.1");
		s.once("connect", () => {
			s.destroy();
			resolve(true);
		});
		s.once("error", () => resolve(false));
	});

export async function startNatsServer(opts: NatsServerOptions = {}): Promise<PrivateNats> {
	const port = await freePort();
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crp-nats-"));
	const args = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir];
	if (opts.user) args.push("--user", opts.user, "--pass", opts.password ?? "");
	if (opts.token) args.push("--auth", opts.token);
	if (opts.tls) {
		args.push("--tls", "--tlscert", opts.tls.cert, "--tlskey", opts.tls.key);
		if (opts.tls.verifyClientsWith) args.push("--tlsverify", "--tlscacert", opts.tls.verifyClientsWith);
	}
	let proc: ChildProcess;
	let exited: Promise<void>;
	const launch = async () => {
		const p = spawn(process.env.NATS_SERVER_BIN ?? "nats-server", args, { stdio: ["ignore", "pipe", "pipe"] });
		let out = "";
		p.stdout!.on("data", d => (out += d));
		p.stderr!.on("data", d => (out += d));
		proc = p;
		exited = new Promise<void>(resolve => p.once("exit", () => resolve()));
		try {
			await waitFor(async () => p.exitCode !== null || (await portOpen(port)), 15_000, `nats-server on ${port}`);
			if (p.exitCode !== null) throw new Error(`nats-server exited:\n${out}`);
		} catch (err) {
			p.kill("SIGKILL");
			throw err;
		}
	};
	try {
		await launch();
	} catch (err) {
		fs.rmSync(dir, { recursive: true, force: true });
		throw err;
	}
	const running = () => proc.exitCode === null && proc.signalCode === null;
	const server: PrivateNats = {
		port,
		pid: proc!.pid!,
		token: opts.token,
		url: `nats://127.0.0.1:${port}`,
		async kill(signal = "SIGKILL") {
			if (running()) proc.kill(signal);
			await exited;
		},
		async restart() {
			if (running()) throw new Error(`nats-server on ${port} is still running`);
			await launch();
			server.pid = proc.pid!;
		},
		async stop() {
			if (running()) proc.kill("SIGTERM");
			await exited;
			fs.rmSync(dir, { recursive: true, force: true });
		}
	};
	return server;
}
