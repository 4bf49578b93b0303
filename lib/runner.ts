/**
 * How a platform node is started from source: Node with ts-node (transpile only) running moleculer-runner with our
 * config and service mask. `npm run cluster`, the test harness and the benchmark start nodes the same way, so a
 * node in a test is a node as users run it.
 */
export const RUNNER_ARGS: readonly string[] = [
	"-r",
	"ts-node/register/transpile-only",
	"node_modules/moleculer/bin/moleculer-runner.js",
	"--config",
	"moleculer.config.ts",
	"--mask",
	"**/*.service.ts"
];

export interface NodeSpec {
	name: string;
	services: string[];
}

/**
 * The gateway with a replica of the waiting room; the catalog group (accounts, concerts and seat holds, the
 * waiting room) and the booking group (reservations, the saga orchestrator, the wallet) with two replicas each;
 * the event consumers and the ops service (consistency checks, operations gauges) once.
 * Six processes is what two cores carry comfortably; CLUSTER_NODES picks another split.
 * The queue sits beside the gateway because a flash-sale crowd mostly polls its token: served in-process
 * (preferLocal) a status read skips the NATS round trip, which was most of its cost (bench queue scenario:
 * 3,361 -> 7,394 reads/s, p99 43 -> 25 ms; BENCHMARKS.md).
 */
export const DEFAULT_TOPOLOGY: NodeSpec[] = [
	{ name: "gateway", services: ["api", "queue"] },
	{ name: "catalog-1", services: ["user", "concert", "queue"] },
	{ name: "catalog-2", services: ["user", "concert", "queue"] },
	{ name: "booking-1", services: ["reservation", "saga", "payment"] },
	{ name: "booking-2", services: ["reservation", "saga", "payment"] },
	{ name: "events", services: ["ranking", "notification", "review", "ops"] }
];

/** The topology `npm run cluster` (and the benchmark) starts: CLUSTER_NODES="name=svc,svc;name=svc" or the default. */
export function clusterTopology(raw = process.env.CLUSTER_NODES): NodeSpec[] {
	if (!raw) return DEFAULT_TOPOLOGY;
	const counts = new Map<string, number>();
	return raw.split(";").map(part => {
		const [name, services] = part.split("=");
		const n = (counts.get(name) ?? 0) + 1;
		counts.set(name, n);
		return { name: `${name}-${n}`, services: services.split(",").map(s => s.trim()) };
	});
}
