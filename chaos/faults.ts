/**
 * The faults, one per phase. Each injects itself at the moment the harness says and returns when the fault is
 * over from the outside: the killed node is left to the supervisor (`npm run cluster` restarts it), a stopped
 * node is resumed, a killed server is started again on its port and data, a stall is lifted.
 */
import { wipeRedisData, type Servers } from "./servers";
import type { ChaosCluster } from "./cluster";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

export interface Fault {
	name: string;
	what: string;
	/** Where recovery is measured from: the fault itself (losing a replica) or the server's return. */
	from: "fault" | "back";
	/** Runs the fault; resolves when it is over (the server back, the node resumed). */
	inject(ctx: { servers: Servers; cluster: ChaosCluster; log: (s: string) => void; scale: number }): Promise<void>;
}

function killNode(name: string, what: string): Fault {
	return {
		name: `kill-${name.replace(/[/]/g, "-").replace(/-1$/, "")}`,
		what,
		from: "fault",
		async inject({ cluster, log }) {
			const pid = cluster.pidOf(name);
			if (!pid) throw new Error(`no process for node ${name}: ${JSON.stringify(cluster.nodes())}`);
			log(`kill -9 ${name} (pid ${pid})`);
			process.kill(pid, "SIGKILL");
		}
	};
}

/** A server killed with SIGKILL, down for `downMs` (times the scale), started again on its port and data. */
function serverRestart<S extends { kill(signal?: NodeJS.Signals): Promise<void>; restart(): Promise<void> }>(
	name: string,
	what: string,
	label: string,
	pick: (servers: Servers) => S,
	downMs: number,
	whileDown?: (server: S) => void
): Fault {
	return {
		name,
		what,
		from: "back",
		async inject({ servers, log, scale }) {
			const server = pick(servers);
			log(`kill -9 ${label}`);
			await server.kill("SIGKILL");
			whileDown?.(server);
			await sleep(downMs * scale);
			await server.restart();
			log(`${label} back`);
		}
	};
}

export const FAULTS: Fault[] = [
	killNode("gateway/worker-1", "kill -9 of one of the two gateway worker processes"),
	killNode("catalog-1", "kill -9 of one of the two catalog nodes (user, concert, queue)"),
	killNode("booking-1", "kill -9 of one of the two booking nodes (reservation, saga, payment, concert, queue)"),
	killNode("events", "kill -9 of the event-consumer node (ranking, notification, review, ops)"),
	{
		name: "stop-booking",
		what: "SIGSTOP of a booking node for 25 s, then SIGCONT",
		// Losing a replica (for 25 s): the others must take its share as fast as after a kill.
		from: "fault",
		async inject({ cluster, log, scale }) {
			const pid = cluster.pidOf("booking-1");
			if (!pid) throw new Error("no process for booking-1");
			log(`SIGSTOP booking-1 (pid ${pid}) for ${25 * scale} s`);
			process.kill(pid, "SIGSTOP");
			await sleep(25_000 * scale);
			process.kill(pid, "SIGCONT");
			log("SIGCONT booking-1");
		}
	},
	serverRestart("nats-restart", "NATS killed (kill -9), started again after 8 s (same port, same JetStream store)", "nats-server", s => s.nats, 8000),
	serverRestart("redis-restart-empty", "Redis killed (kill -9), its data gone, started again after 6 s", "redis-server", s => s.redis, 6000, wipeRedisData),
	serverRestart(
		"redis-restart-aof",
		"Redis killed (kill -9) with AOF (appendfsync everysec), started again after 6 s from its AOF",
		"redis-server",
		s => s.redis,
		6000
	),
	serverRestart("mariadb-restart", "MariaDB killed (kill -9), started again after 6 s (InnoDB recovery)", "mariadbd", s => s.mariadb, 6000),
	{
		name: "mariadb-stall",
		what: "MariaDB stalled for 10 s: FLUSH TABLES WITH READ LOCK held by another session (every write waits)",
		from: "back",
		async inject({ servers, log, scale }) {
			const conn = await servers.sql();
			try {
				log("FLUSH TABLES WITH READ LOCK");
				await conn.query("FLUSH TABLES WITH READ LOCK");
				await sleep(10_000 * scale);
				await conn.query("UNLOCK TABLES");
				log("UNLOCK TABLES");
			} finally {
				await conn.end().catch(() => undefined);
			}
		}
	}
];

export function faultsNamed(names: string[]): Fault[] {
	if (names.length === 1 && names[0] === "all") return FAULTS;
	return names.map(n => {
		const f = FAULTS.find(x => x.name === n);
		if (!f) throw new Error(`unknown fault "${n}": one of ${FAULTS.map(x => x.name).join(", ")}, or all`);
		return f;
	});
}
