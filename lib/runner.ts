/**
 * How a platform node is started from source: Node with ts-node (transpile only) running our runner
 * (scripts/node.ts: moleculer-runner without its environment overrides) with our config and service mask.
 * `npm start`, `npm run cluster`, the test harness and the benchmark start nodes the same way, so a node in a
 * test is a node as users run it.
 */
export const RUNNER_ARGS: readonly string[] = [
	"-r",
	"ts-node/register/transpile-only",
	"scripts/node.ts",
	"--config",
	"moleculer.config.ts",
	"--mask",
	"**/*.service.ts"
];

/** The same for the compiled platform (`npm run build` output), as `npm run cluster` and the image run it. */
export const COMPILED_RUNNER_ARGS: readonly string[] = ["dist/scripts/node.js", "--config", "dist/moleculer.config.js", "--mask", "**/*.service.js"];

/**
 * V8 heap limits of a cluster node (compiled runtime). V8 sizes its heap to the limit it is given, and the
 * default limit is a share of the machine's memory: on this 24 GiB box a node let garbage pile up to 200 MB before
 * collecting it, though what it keeps alive is a fraction of that. With these limits the same flash sale peaked
 * at 98-116 MB per node instead of 127-202 MB, in the same time (BENCHMARKS.md). They go into NODE_OPTIONS
 * ahead of the caller's own, so a limit set there wins.
 */
export const CLUSTER_NODE_HEAP_ARGS: readonly string[] = ["--max-old-space-size=128", "--max-semi-space-size=4"];

/** NODE_OPTIONS for a cluster node: the heap limits above, then whatever the caller set. */
export function clusterNodeOptions(existing = process.env.NODE_OPTIONS): string {
	return [...CLUSTER_NODE_HEAP_ARGS, existing ?? ""].join(" ").trim();
}

export interface NodeSpec {
	name: string;
	services: string[];
	/**
	 * Worker processes of this node (moleculer-runner --instances: Node's cluster module, one broker per worker,
	 * node ids suffixed -1, -2, ...). Workers of the gateway share its HTTP port; the primary hands connections
	 * out to them.
	 */
	instances?: number;
}

/** moleculer-runner's flag for a node's worker count (none for a single process). */
export function instanceArgs(spec: NodeSpec): string[] {
	return spec.instances && spec.instances > 1 ? ["--instances", String(spec.instances)] : [];
}

/**
 * Where each node's metrics ports start, as offsets from METRICS_PORT: a node takes one port per worker process
 * (worker k of a node listens on its first port + k - 1), so the default topology listens on METRICS_PORT + 0..6
 * (the gateway's two workers on + 0 and + 1). docker/prometheus/ and README, Operations, list the same ports.
 */
export function metricsOffsets(nodes: NodeSpec[]): number[] {
	let next = 0;
	return nodes.map(n => {
		const first = next;
		next += Math.max(1, n.instances ?? 1);
		return first;
	});
}

/**
 * The gateway (two worker processes on one port) with a replica of the waiting room each; the catalog group (accounts, concerts and seat holds, the
 * waiting room) and the booking group (reservations, the saga orchestrator, the wallet) with two replicas each;
 * the event consumers and the ops service (consistency checks, operations gauges) once.
 * Six processes is what two cores carry comfortably; CLUSTER_NODES picks another split.
 * The queue sits beside the gateway because a flash-sale crowd mostly polls its token: served in-process
 * (preferLocal) a status read skips the NATS round trip, which was most of its cost (bench queue scenario:
 * 3,361 -> 7,394 reads/s, p99 43 -> 25 ms; BENCHMARKS.md).
 * The booking nodes also run `concert` and `queue` (both stateless over the shared database and store): a checkout
 * then makes its hold, token checks, seat sale and token expiry in-process (preferLocal) instead of as five calls
 * over NATS, each of which cost both nodes a packet in, a packet out, a context and a serializer pass (bench
 * checkout: 43 -> 36 ms of CPU per checkout, 44 -> 52/s, side by side; BENCHMARKS.md). The catalog nodes keep
 * serving the seat maps, concert pages and accounts.
 */
export const DEFAULT_TOPOLOGY: NodeSpec[] = [
	{ name: "gateway", services: ["api", "queue"], instances: 2 },
	{ name: "catalog-1", services: ["user", "concert", "queue"] },
	{ name: "catalog-2", services: ["user", "concert", "queue"] },
	{ name: "booking-1", services: ["reservation", "saga", "payment", "concert", "queue"] },
	{ name: "booking-2", services: ["reservation", "saga", "payment", "concert", "queue"] },
	{ name: "events", services: ["ranking", "notification", "review", "ops"] }
];

/**
 * The topology `npm run cluster` (and the benchmark) starts: CLUSTER_NODES="name=svc,svc;name*2=svc" (`*2`: two
 * worker processes) or the default.
 */
export function clusterTopology(raw = process.env.CLUSTER_NODES): NodeSpec[] {
	if (!raw) return DEFAULT_TOPOLOGY;
	const counts = new Map<string, number>();
	return raw.split(";").map(part => {
		const [head, services] = part.split("=");
		const [name, workers] = head.split("*");
		const n = (counts.get(name) ?? 0) + 1;
		counts.set(name, n);
		const spec: NodeSpec = { name: `${name}-${n}`, services: services.split(",").map(s => s.trim()) };
		if (workers !== undefined) {
			const k = Number(workers);
			if (!Number.isInteger(k) || k < 1 || k > 16) throw new Error(`CLUSTER_NODES: "${head}" asks for ${workers} workers (1 to 16)`);
			spec.instances = k;
		}
		return spec;
	});
}
