/**
 * Moleculer broker configuration: the only place the broker is configured (docs/STYLE.md practice 9).
 * moleculer-runner calls the default export; tests call `brokerOptions(config)` with a config of their own.
 * Every value comes from lib/config.ts, which validated the environment first.
 */
import { TracerExporters, type BrokerOptions, type Middleware } from "moleculer";
import { FailoverRoundRobinStrategy, NodeWatchMiddleware } from "./lib/balancer";
import { PacketAuthMiddleware } from "./lib/cluster-auth";
import { loadConfigOrExit, type Config } from "./lib/config";
import { NATS_RECONNECT } from "./lib/events/jetstream-bus";
import { isRetryable, isServerFault } from "./lib/errors";
import { PlatformMiddleware } from "./lib/platform";
import { replOptions } from "./lib/repl-commands";
import { ensureJwtSecret } from "./lib/secrets";
import type { CoordinationStore } from "./lib/store";

export function brokerOptions(input: Config, opts: { store?: CoordinationStore } = {}): BrokerOptions {
	// Embedded mode may start without JWT_SECRET: one is generated per data dir (the user service logs it).
	const jwt = ensureJwtSecret(input);
	const config: Config = { ...input, jwt: { ...input.jwt, secret: jwt.secret, generatedAt: jwt.generatedAt } };

	return {
		// Nodes only see nodes of the same namespace: tests and several installs share one NATS server safely.
		namespace: config.namespace,
		// Unique per process by default (hostname-pid); set NODE_ID to pin it.
		nodeID: config.nodeID,

		// Log level from LOG_LEVEL; the node ID in every line tells the nodes apart in cluster logs. TRACING=console
		// prints its traces through the tracer's logger, which logs at info even when LOG_LEVEL is quieter.
		logger: {
			type: "Console",
			options: { level: logLevels(config), colors: process.stdout.isTTY === true, moduleColors: false, formatter: "short" }
		},

		// No TRANSPORTER: every service in this process talks in-process (embedded). With it: NATS, and the
		// credentials come from the environment, never from the repository. The servers go in without a `url`:
		// given one, moleculer's NATS transporter replaces user and password with the URL's (none), and a node
		// with NATS_USER/NATS_PASSWORD was refused by a server that requires them.
		transporter: config.transporter ? { type: "NATS", options: natsClientOptions(config.transporter) } : null,

		// JSON keeps packets readable in `nats sub` while debugging; payloads are small.
		serializer: "JSON",

		// Never 0: a call to a node that died mid-request must end. Saga steps set their own shorter timeouts.
		requestTimeout: config.requestTimeoutMs,

		// Retry only errors that say they are retryable (timeouts, unreachable nodes, a busy store). The flag is
		// checked, not the class: error classes do not survive the transporter. Every action that can be retried
		// is idempotent (docs/DESIGN.md section 8).
		retryPolicy: {
			enabled: true,
			retries: 3,
			delay: 100,
			maxDelay: 1000,
			factor: 2,
			check: (err: Error) => isRetryable(err)
		},

		// A call from a handler to another handler never goes deeper than this (protects against loops).
		maxCallLevel: 100,

		// Heartbeats: a node missing for 15 s is removed from the registry (Moleculer checks every 15 s, so 15-30 s
		// after its last beat). Failover does not wait for it: a node that stops answering calls is pinged and removed
		// within FAILOVER_SILENCE_MS + FAILOVER_PROBE_TIMEOUT_MS (lib/balancer.ts). The heartbeat only settles nodes
		// nobody calls; a shorter one would also remove nodes whose event loop stalls for a few seconds under load.
		heartbeatInterval: 5,
		heartbeatTimeout: 15,

		// Params are not cloned per call: handlers never mutate their params.
		contextParamsCloning: false,

		// Graceful shutdown waits for in-flight requests (up to 10 s) before the node leaves.
		tracking: { enabled: true, shutdownTimeout: 10_000 },

		// Round-robin between replicas, preferring a local instance when this node has one; a replica that stopped
		// answering is skipped while a ping settles whether it is alive (lib/balancer.ts).
		registry: { strategy: FailoverRoundRobinStrategy, preferLocal: true },

		// Broker-wide circuit breaker: an action that fails half of at least 20 calls in 60 s is opened for 10 s.
		// Only server-side failures count (5xx and timeouts); a client error (4xx) is an answer, not a fault.
		// Actions where tripping would do harm turn it off in their own schema.
		circuitBreaker: {
			enabled: true,
			threshold: 0.5,
			minRequestCount: 20,
			windowTime: 60,
			halfOpenTime: 10_000,
			check: (err: Error) => isServerFault(err)
		},

		// Bulkhead: at most 64 concurrent executions per action on this node, up to 2000 queued behind them; past
		// that the caller gets a 503 instead of the node running out of memory during a flash sale.
		bulkhead: { enabled: true, concurrency: 64, maxQueueSize: 2000 },

		// Params schemas are validated by fastest-validator before every handler.
		validator: true,

		// Prometheus metrics on METRICS_PORT (0 turns them off). Each node of a local cluster gets its own port.
		metrics: {
			enabled: config.metricsPort > 0,
			// Memory, handles and uptime of the process (Moleculer leaves them out when NODE_ENV=test; the
			// dashboard's per-node panels need them wherever metrics are on).
			collectProcessMetrics: true,
			reporter:
				config.metricsPort > 0
					? [
							{
								type: "Prometheus",
								options: {
									// Loopback unless METRICS_HOST says otherwise: metrics are for the operator's scraper.
									host: config.metricsHost,
									port: config.metricsPort,
									path: "/metrics",
									// Every process its own identity: a node id per broker (gateway workers end in -1, -2, ...).
									defaultLabels: (registry: { broker: { nodeID: string } }) => ({
										namespace: config.namespace,
										nodeID: registry.broker.nodeID
									})
								}
							}
						]
					: []
		},

		// Tracing is off unless TRACING selects an exporter (tracingOptions below).
		tracing: tracingOptions(config),

		// Attaches the config and the coordination store to the broker for the services. In a cluster, every
		// packet between nodes is sealed with CLUSTER_SECRET (lib/cluster-auth.ts): holding the NATS credentials
		// is not enough to call, answer or announce a service.
		middlewares: [PlatformMiddleware(config, opts.store), ...clusterMiddlewares(config)],

		// Operator commands of the REPL (`npm run repl`, `npm run dev`): sagas, dlq, queue, seats, consistency.
		replOptions: replOptions(),

		// Services that depend on others wait up to 60 s for them at start.
		dependencyTimeout: 60_000,
		dependencyInterval: 500
	};
}

/** Options for the `nats` client, shared by the transporter and the JetStream event bus. */
export function natsClientOptions(nats: NonNullable<Config["transporter"]>) {
	return {
		servers: nats.servers,
		user: nats.user,
		pass: nats.password,
		token: nats.token,
		tls: nats.tls,
		// Keep reconnecting forever, to the next server of the list first: a node that loses its NATS server (or
		// NATS altogether for a while) comes back by itself. The same settings as the event bus's own client.
		...NATS_RECONNECT
	};
}

function clusterMiddlewares(config: Config): Middleware[] {
	if (!config.transporter) return [];
	// lib/config.ts refuses a cluster node without the secret; this is the last line if a caller built its own config.
	if (!config.cluster) throw new Error("cluster mode without CLUSTER_SECRET");
	// NodeWatch first: for the transporter's send, the first middleware is the innermost wrapper, so its dead check
	// sends the ping exactly as the packet middleware sealed it.
	return [NodeWatchMiddleware(config.failover), PacketAuthMiddleware(config.cluster)];
}

/** LOG_LEVEL for every module; with TRACING=console, at least info for the tracer (its traces are info lines). */
function logLevels(config: Config): string | Record<string, string> {
	const quiet = config.logLevel === "fatal" || config.logLevel === "error" || config.logLevel === "warn";
	return config.tracing.exporter === "console" && quiet ? { TRACER: "info", "**": config.logLevel } : config.logLevel;
}

/**
 * TRACING (lib/config.ts): every request is sampled, which is fine at our volumes.
 * - console: each node prints the spans it ran as a tree (TraceConsoleExporter below), whatever LOG_LEVEL says.
 * - zipkin: Zipkin v2 JSON, POSTed in batches every 5 s to TRACING_ENDPOINT + /api/v2/spans.
 * - jaeger: the same Zipkin exporter, pointed at Jaeger's Zipkin-compatible collector (Jaeger all-in-one with
 *   COLLECTOR_ZIPKIN_HOST_PORT=:9411, TRACING_ENDPOINT=http://jaeger:9411). Moleculer's own Jaeger exporter needs
 *   the jaeger-client package (UDP agent, deprecated upstream); this needs no package and one open port.
 */
function tracingOptions(config: Config): BrokerOptions["tracing"] {
	switch (config.tracing.exporter) {
		case "off":
			return { enabled: false };
		case "console":
			// An exporter instance (moleculer takes one, its typings only names): one per broker, as brokerOptions is.
			return {
				enabled: true,
				tags: { action: redactedTags },
				exporter: new TraceConsoleExporter({ width: 120, gaugeWidth: 30, colors: process.stdout.isTTY === true }) as unknown as "Console"
			};
		case "zipkin":
		case "jaeger":
			return { enabled: true, tags: { action: redactedTags }, exporter: { type: "Zipkin", options: { baseURL: config.tracing.endpoint } } };
	}
}

/** Parameter names whose values never go into a span (a login's password, a token, a secret). */
const SECRET_PARAM = /pass|secret|token|authori[sz]ation|cookie|jwt|key$/i;

/**
 * An action span's tags: its params, with every secret value replaced (two levels deep: a body and its fields).
 * Moleculer's default copies every param into the span, so a traced login sent its password to the collector.
 * No meta: it carries the caller's identity and headers.
 */
export function redactedTags(ctx: { params?: unknown }): { params?: unknown } {
	const redact = (v: unknown, depth: number): unknown => {
		if (v === null || typeof v !== "object" || Array.isArray(v) || depth > 1) return v;
		return Object.fromEntries(
			Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, SECRET_PARAM.test(k) ? "[redacted]" : redact(x, depth + 1)])
		);
	};
	return { params: redact(ctx.params, 0) };
}

/**
 * Moleculer's Console exporter, with what a cluster needs to read its output. Each node prints only the spans it
 * ran, one table per span whose parent is not local (the request at the gateway, an action called from another
 * node): the stock table is headed by that span's id alone, so the tables of one request printed by three nodes
 * could not be put together. Here each table is headed by its trace id and node. And the stock exporter forgets
 * the children of a span once it printed it: the saga's steps, which run after `saga.start` answered, were never
 * printed on the node that ran them. Here a span still running when its parent is printed is printed on its own
 * when it finishes.
 */
class TraceConsoleExporter extends TracerExporters.Console {
	override printRequest(id: string): void {
		const item = (this as unknown as ConsoleSpans).spans[id];
		if (item) this.log(`trace ${item.span.traceID} on ${this.broker.nodeID}:`);
		super.printRequest(id);
	}

	override removeSpanWithChildren(spanID: string): void {
		const spans = (this as unknown as ConsoleSpans).spans;
		const item = spans[spanID];
		if (!item) return;
		for (const child of item.children) {
			// A child still running stays, as a root of its own once its parent is gone.
			if (spans[child]?.span.finishTime) this.removeSpanWithChildren(child);
		}
		delete spans[spanID];
	}
}

/** The Console exporter's bookkeeping (not in moleculer's typings). */
interface ConsoleSpans {
	spans: Record<string, { span: { traceID: string; finishTime?: number | null }; children: string[] }>;
}

/** moleculer-runner entry: read and validate the environment, or exit with the list of problems. */
export default function (): BrokerOptions {
	return brokerOptions(loadConfigOrExit());
}
