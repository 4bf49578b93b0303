/**
 * One event bus per broker node: JetStream in cluster mode (TRANSPORTER set), in-process otherwise. Services
 * acquire it when they start and release it when they stop; the last release closes it. No broker middleware is
 * needed, so moleculer.config.ts stays as it is.
 */
import type { ServiceBroker } from "moleculer";
import type { Config } from "../config";
import { platformOf } from "../platform";
import { JetStreamEventBus } from "./jetstream-bus";
import { MemoryEventBus } from "./memory-bus";
import type { EventBus } from "./types";

export * from "./types";
export * from "./catalog";
export { JetStreamEventBus, streamNames } from "./jetstream-bus";
export { MemoryEventBus } from "./memory-bus";

export function createEventBus(config: Config, name?: string): EventBus {
	if (config.transporter) {
		return new JetStreamEventBus({
			url: config.transporter.url,
			user: config.transporter.user,
			password: config.transporter.password,
			token: config.transporter.token,
			namespace: config.namespace,
			name
		});
	}
	return new MemoryEventBus();
}

const buses = new WeakMap<ServiceBroker, { bus: EventBus; users: number }>();

/** The node's bus; every acquire needs one release. */
export function acquireEventBus(broker: ServiceBroker): EventBus {
	let entry = buses.get(broker);
	if (!entry) {
		entry = { bus: createEventBus(platformOf(broker).config, broker.nodeID), users: 0 };
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
