/**
 * One platform node: Moleculer's own runner (SERVICES=, `--instances` workers, `--repl`, `--hot`, a graceful stop
 * on SIGTERM), with two changes.
 *
 * It does not copy environment variables over the configuration. moleculer-runner overwrites every broker option
 * whose name matches a variable (TRANSPORTER, TRACING, NAMESPACE, ...) with the raw string. The transporter we
 * build from TRANSPORTER, NATS_USER/NATS_PASSWORD/NATS_TOKEN and NATS_TLS_* lost its credentials that way (a NATS
 * server with authentication refused every node), and TRACING=console became the string "console" (nothing was
 * traced). lib/config.ts is the one reader of the environment; what moleculer.config.ts builds from it stands.
 *
 * With `--instances`, the primary keeps its workers running. moleculer-runner's primary exited as soon as one
 * worker died (unless NODE_ENV=production and the exit code was not 0, and a SIGKILL has no code): killing one
 * gateway worker took the whole gateway down, and the API refused every connection until restarted by hand. Here
 * a worker that dies after the node came up is replaced, after a delay that doubles while replacements keep dying
 * young (0.5 s up to 30 s), each time with a log line. A worker that dies before any worker ever came up (bad
 * configuration, a busy port) still ends the node, with its exit code: there is nothing to repair.
 *
 *   node -r ts-node/register/transpile-only scripts/node.ts --config moleculer.config.ts --mask "**\/*.service.ts"
 *   node dist/scripts/node.js --config dist/moleculer.config.js        (compiled: npm run cluster, the image)
 */
import cluster, { type Worker } from "cluster";
import os from "os";
import { Runner, type ServiceBroker } from "moleculer";

/** Signals on which the primary stops its workers and exits (moleculer-runner's list). */
const STOP_SIGNALS: NodeJS.Signals[] = [
	"SIGHUP",
	"SIGINT",
	"SIGQUIT",
	"SIGILL",
	"SIGTRAP",
	"SIGABRT",
	"SIGBUS",
	"SIGFPE",
	"SIGUSR1",
	"SIGSEGV",
	"SIGUSR2",
	"SIGTERM"
];

/** The first replacement waits this long; each further one that follows a young death waits twice as long. */
const RESTART_DELAY_MS = 500;
const RESTART_DELAY_MAX_MS = 30_000;
/** A worker that ran this long counts as healthy: the next death starts the backoff over. */
const HEALTHY_AFTER_MS = 60_000;

/** What a worker tells the primary once its broker has started. */
const READY = "platform:worker-ready";

function log(level: "log" | "warn" | "error", message: string): void {
	console[level](`[Runner] ${new Date().toISOString()} ${message}`);
}

class PlatformRunner extends Runner {
	override overwriteFromEnv(obj: unknown): unknown {
		return obj;
	}

	override startBroker(): Promise<ServiceBroker> {
		return super.startBroker().then(broker => {
			if (cluster.isWorker && process.send) process.send(READY);
			return broker;
		});
	}

	override startWorkers(instances: number): void {
		let stopping = false;
		let anyReady = false;
		let youngDeaths = 0;
		const startedAt = new Map<number, number>();
		const ready = new Set<number>();

		// Each worker has a slot (1..count) that its replacement takes over: the worker's metrics port is
		// METRICS_PORT + slot - 1 (lib/config.ts), so a scraper finds every worker at a port that never changes.
		const slots = new Map<number, number>();
		const fork = (slot: number): Worker => {
			const worker = cluster.fork({ WORKER_SLOT: String(slot) });
			slots.set(worker.id, slot);
			startedAt.set(worker.id, Date.now());
			worker.on("message", (msg: unknown) => {
				if (msg !== READY) return;
				ready.add(worker.id);
				anyReady = true;
			});
			return worker;
		};

		cluster.on("exit", (worker, code, signal) => {
			const lived = Date.now() - (startedAt.get(worker.id) ?? Date.now());
			const wasReady = ready.delete(worker.id);
			const slot = slots.get(worker.id) ?? 1;
			slots.delete(worker.id);
			startedAt.delete(worker.id);
			if (stopping) {
				if (!Object.values(cluster.workers ?? {}).some(w => w && !w.isDead())) {
					log("log", "All workers stopped, exiting.");
					process.exit(0);
				}
				return;
			}
			const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
			if (!anyReady && !wasReady) {
				log("error", `Worker #${worker.id} (pid ${worker.process.pid}) ${how} before the node came up; stopping the node.`);
				stopping = true;
				for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGTERM");
				process.exit(typeof code === "number" && code !== 0 ? code : 1);
			}
			youngDeaths = lived >= HEALTHY_AFTER_MS ? 0 : youngDeaths + 1;
			const delay = Math.min(RESTART_DELAY_MAX_MS, RESTART_DELAY_MS * 2 ** Math.max(0, youngDeaths - 1));
			log("warn", `Worker #${worker.id} (pid ${worker.process.pid}) ${how} after ${Math.round(lived / 1000)} s; starting a new worker in ${delay} ms.`);
			setTimeout(() => {
				if (stopping) return;
				const next = fork(slot);
				log("log", `Worker #${next.id} (pid ${next.process.pid}) started in place of worker #${worker.id}.`);
			}, delay);
		});

		const count = Number.isInteger(instances) && instances > 0 ? instances : os.cpus().length;
		log("log", `Starting ${count} workers...`);
		for (let i = 1; i <= count; i++) fork(i);

		for (const signal of STOP_SIGNALS) {
			process.on(signal, () => {
				// Once: a second signal would stop each worker's broker a second time.
				if (stopping) return;
				log("log", `Got ${signal}, stopping workers...`);
				stopping = true;
				// Forward the signal so each worker stops gracefully (in-flight requests finish, the node says goodbye),
				// and exit when the last one has (the exit handler above). No cluster.disconnect(): it closed the
				// servers a worker shares with the primary (its metrics port) while the worker was still stopping,
				// and the worker's Prometheus reporter failed with ERR_SERVER_NOT_RUNNING.
				const alive = Object.values(cluster.workers ?? {}).filter(w => w && !w.isDead());
				if (alive.length === 0) process.exit(0);
				for (const w of alive) w?.process.kill(signal);
			});
		}
	}
}

new PlatformRunner().start(process.argv);
