/**
 * A private MariaDB server (mariadbd) for one test or one chaos run: its own port, data directory and socket, so
 * the caller can stop, kill and restart it (a database outage) without touching the shared server on 3306.
 * The first start initializes the data directory (mariadb-install-db, about 2 s): `root` without a password on
 * 127.0.0.1 and localhost, with normal password checks (a wrong password is refused, as in production).
 *
 *   const db = await startMariaDb();
 *   const env = testEnv({ cluster: true, env: { DATABASE_URL: db.url } });
 *   await db.kill();       // a crash (SIGKILL); the data directory stays
 *   await db.restart();    // same port, same data: InnoDB recovers what was committed
 *   await db.stop();       // SIGTERM, a clean shutdown
 *
 * Without `dataDir` it uses a temporary directory, removed when the test process exits. `MARIADBD_BIN` and
 * `MARIADB_INSTALL_DB_BIN` override the binaries.
 */
import { execFile } from "child_process";
import fs from "fs";
import os from "os";
import path from "path";
import { promisify } from "util";
import { freePort, portOpen } from "./nats-server";
import { serverProcess } from "./server-process";

export interface MariaDbOptions {
	port?: number;
	/** Where its data lives; initialized when it holds no database yet. */
	dataDir?: string;
}

export interface PrivateMariaDb {
	port: number;
	/** `mysql://root@127.0.0.1:<port>`: a DATABASE_URL. */
	url: string;
	/** The pid of the running process (changes with `restart`). */
	pid: number;
	dataDir: string;
	/** SIGTERM and wait for the clean shutdown; the data directory stays. */
	stop(): Promise<void>;
	/** A crash: the signal (SIGKILL by default), then wait for the exit. */
	kill(signal?: NodeJS.Signals): Promise<void>;
	/** Starts it again on the same port and data directory (stopping it first if it runs). */
	restart(): Promise<void>;
}

/** Small enough for a shared 2-core test box; durable commits kept (a crash test must lose nothing committed). */
const SERVER_ARGS = ["--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M", "--skip-log-bin", "--skip-name-resolve", "--max-connections=200"];

export async function startMariaDb(opts: MariaDbOptions = {}): Promise<PrivateMariaDb> {
	const port = opts.port ?? (await freePort());
	let dataDir = opts.dataDir;
	if (!dataDir) {
		const own = fs.mkdtempSync(path.join(os.tmpdir(), "crp-mariadb-"));
		process.once("exit", () => fs.rmSync(own, { recursive: true, force: true }));
		dataDir = path.join(own, "data");
	}
	dataDir = path.resolve(dataDir);
	// mariadbd refuses to run as root unless told which user to run as.
	const user = os.userInfo().username;
	if (!fs.existsSync(path.join(dataDir, "mysql"))) {
		fs.mkdirSync(dataDir, { recursive: true });
		await promisify(execFile)(
			process.env.MARIADB_INSTALL_DB_BIN ?? "mariadb-install-db",
			["--no-defaults", `--datadir=${dataDir}`, "--auth-root-authentication-method=normal", "--skip-test-db", `--user=${user}`, ...SERVER_ARGS],
			{ maxBuffer: 4 * 1024 * 1024 }
		);
	}
	// A socket path has to stay under ~100 characters, whatever the data directory's.
	const socket = path.join(os.tmpdir(), `crp-mariadb-${port}.sock`);
	const args = [
		"--no-defaults",
		`--datadir=${dataDir}`,
		`--port=${port}`,
		"--bind-address=127.0.0.1",
		`--socket=${socket}`,
		`--pid-file=${path.join(dataDir, "mariadbd.pid")}`,
		`--user=${user}`,
		...SERVER_ARGS
	];

	const server = serverProcess(process.env.MARIADBD_BIN ?? "mariadbd", args, () => portOpen(port), 60_000, `mariadbd on ${port}`);
	const end = (signal: NodeJS.Signals) => server.end(signal);
	const launch = () => server.start();
	await launch();

	return {
		port,
		url: `mysql://root@127.0.0.1:${port}`,
		get pid() {
			return server.pid;
		},
		dataDir,
		stop: () => end("SIGTERM"),
		kill: (signal = "SIGKILL") => end(signal),
		async restart() {
			await end("SIGTERM");
			await launch();
		}
	};
}
