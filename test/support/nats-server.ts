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

const portOpen = (port: number) =>
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
	const proc: ChildProcess = spawn(process.env.NATS_SERVER_BIN ?? "nats-server", args, { stdio: ["ignore", "pipe", "pipe"] });
	let out = "";
	proc.stdout!.on("data", d => (out += d));
	proc.stderr!.on("data", d => (out += d));
	const exited = new Promise<void>(resolve => proc.once("exit", () => resolve()));
	try {
		await waitFor(async () => proc.exitCode !== null || (await portOpen(port)), 15_000, `nats-server on ${port}`);
		if (proc.exitCode !== null) throw new Error(`nats-server exited:\n${out}`);
	} catch (err) {
		proc.kill("SIGKILL");
		fs.rmSync(dir, { recursive: true, force: true });
		throw err;
	}
	return {
		port,
		pid: proc.pid!,
		token: opts.token,
		url: `nats://127.0.0.1:${port}`,
		async stop() {
			if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
			await exited;
			fs.rmSync(dir, { recursive: true, force: true });
		}
	};
}
