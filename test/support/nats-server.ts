/**
 * A private NATS server (with JetStream) for one test: its own port and store directory, with the authentication
 * or TLS the test asks for. Tests that need a NATS server configured unlike the shared one (which has no
 * authentication) start their own and stop it afterwards; the shared server is never touched.
 */
import fs from "fs";
import net from "net";
import os from "os";
import path from "path";
import { serverProcess } from "./server-process";

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
	const proc = serverProcess(process.env.NATS_SERVER_BIN ?? "nats-server", args, () => portOpen(port), 15_000, `nats-server on ${port}`);
	try {
		await proc.start();
	} catch (err) {
		fs.rmSync(dir, { recursive: true, force: true });
		throw err;
	}
	const server: PrivateNats = {
		port,
		get pid() {
			return proc.pid;
		},
		token: opts.token,
		url: `nats://127.0.0.1:${port}`,
		kill: (signal = "SIGKILL") => proc.end(signal),
		async restart() {
			if (proc.running()) throw new Error(`nats-server on ${port} is still running`);
			await proc.start();
		},
		async stop() {
			await proc.end("SIGTERM");
			fs.rmSync(dir, { recursive: true, force: true });
		}
	};
	return server;
}
