/**
 * One event bus per broker node: JetStream in cluster mode (TRANSPORTER set), in-process otherwise. Services
 * acquire it when they start and release it when they stop; the last release closes it. No broker middleware is
 * needed, so moleculer.config.ts stays as it is.
 */
import type { ServiceBroker } from "moleculer";
import { EventSigner } from "../cluster-auth";
import type { Config } from "../config";
import { platformOf } from "../platform";
import { JetStreamEventBus } from "./jetstream-bus";
import { MemoryEventBus } from "./memory-bus";
import { DEFAULT_RETRY, type RedrivePolicy, type RetryPolicy } from "./retry";
import type { EventBus } from "./types";

export * from "./types";
export * from "./retry";
export * from "./catalog";
export { JetStreamEventBus, NATS_RECONNECT, streamNames } from "./jetstream-bus";
export { MemoryEventBus } from "./memory-bus";

/**
 * In cluster mode every event is signed with CLUSTER_SECRET and consumers drop what fails the check
 * (`onForged` hears of each one).
 */
export function createEventBus(config: Config, name?: string, onForged?: (subject: string) => void, warn?: (message: string) => void): EventBus {
	const retry = retryPolicyOf(config);
	if (config.transporter) {
		return new JetStreamEventBus({
			servers: config.transporter.servers,
			user: config.transporter.user,
			password: config.transporter.password,
			token: config.transporter.token,
			tls: config.transporter.tls,
			signer: config.cluster ? new EventSigner(config.cluster) : undefined,
			onForged,
			namespace: config.namespace,
			name,
			retry,
			dlqMaxAgeSec: config.events.dlqMaxAgeDays * 86400,
			dlqMaxMessages: config.events.dlqMaxMessages,
			replicas: config.events.replicas,
			warn
		});
	}
	return new MemoryEventBus({ retry });
}

/** EVENT_RETRY_FOR_SEC and EVENT_RETRY_MAX_DELAY_SEC as a retry schedule (lib/events/retry.ts). */
export function retryPolicyOf(config: Config): RetryPolicy {
	return { ...DEFAULT_RETRY, retryForMs: config.events.retryForSec * 1000, maxDelayMs: config.events.retryMaxDelaySec * 1000 };
}

/** DLQ_REDRIVE_SEC and DLQ_REDRIVE_MAX as a redrive policy. */
export function redrivePolicyOf(config: Config): RedrivePolicy {
	return { afterMs: config.events.dlqRedriveSec * 1000, maxRedrives: config.events.dlqRedriveMax };
}

/** Counts dropped events in `events_rejected_total` and says so in the log once per subject. */
function forgedEventReporter(broker: ServiceBroker): (subject: string) => void {
	const said = new Set<string>();
	if (broker.isMetricsEnabled() && !broker.metrics.getMetric("events_rejected_total")) {
		broker.metrics.register({ name: "events_rejected_total", type: "counter", description: "JetStream events dropped: no valid cluster signature" });
	}
	return subject => {
		if (broker.isMetricsEnabled()) broker.metrics.increment("events_rejected_total");
		if (said.has(subject) || said.size >= 100) return;
		said.add(subject);
		broker.logger.warn(
			`Dropped an event on ${subject}: it does not carry a valid signature of the cluster secret. Further ones are counted in events_rejected_total.`
		);
	};
}

const buses = new WeakMap<ServiceBroker, { bus: EventBus; users: number }>();

/** The node's bus; every acquire needs one release. */
export function acquireEventBus(broker: ServiceBroker): EventBus {
	let entry = buses.get(broker);
	if (!entry) {
		entry = {
			bus: createEventBus(platformOf(broker).config, broker.nodeID, forgedEventReporter(broker), m => broker.logger.warn(m)),
			users: 0
		};
		buses.set(broker, entry);
	}
	entry.users++;
	return entry.bus;
}

export async function releaseEventBus(broker: ServiceBroker): Promise<void> {
	const entry = buses.get(broker);
	if (!entry) return;
	entry.users--;
	if (entry.users <= 0) {
		buses.delete(broker);
		await entry.bus.close();
	}
}
