/**
 * What a broker node shares with its services: the validated configuration and one coordination-store client.
 * The `Platform` middleware attaches them to the broker when it is created and closes the store after every
 * service has stopped; services reach them through `platformOf(this.broker)` (the config mixin does it for them).
 * With metrics on it also exports the process's CPU time and event-loop lag (lib/process-metrics.ts).
 */
import type { Middleware, ServiceBroker } from "moleculer";
import type { Config } from "./config";
import { startProcessMetrics, type ProcessMetrics } from "./process-metrics";
import { createStore, type CoordinationStore } from "./store";

export class Platform {
	private opened?: CoordinationStore;

	constructor(
		readonly config: Config,
		store?: CoordinationStore
	) {
		this.opened = store;
	}

	/** Created on first use, so a node whose services never touch the store opens no connection. */
	get store(): CoordinationStore {
		this.opened ??= createStore(this.config);
		return this.opened;
	}

	async close(): Promise<void> {
		const store = this.opened;
		this.opened = undefined;
		await store?.close().catch(() => undefined);
	}
}

const platforms = new WeakMap<ServiceBroker, Platform>();
/** Configuration warnings already said by this process (several brokers may share one, as in tests). */
const warned = new Set<string>();

export function platformOf(broker: ServiceBroker): Platform {
	const p = platforms.get(broker);
	if (!p) throw new Error("broker has no platform: add PlatformMiddleware(config) to its middlewares");
	return p;
}

/**
 * Attaches the platform when the broker is created; closes its store after the services have stopped.
 * `store` lets a test hand in a store it controls.
 */
export function PlatformMiddleware(config: Config, store?: CoordinationStore): Middleware {
	let broker: ServiceBroker | undefined;
	let processMetrics: ProcessMetrics | undefined;
	return {
		name: "Platform",
		created(b: ServiceBroker) {
			broker = b;
			platforms.set(b, new Platform(config, store));
			for (const w of config.warnings ?? []) {
				if (warned.has(w)) continue;
				warned.add(w);
				b.logger.warn(w);
			}
		},
		async started() {
			if (broker) processMetrics = startProcessMetrics(broker);
		},
		async stopped() {
			processMetrics?.stop();
			processMetrics = undefined;
			if (!broker) return;
			const p = platforms.get(broker);
			platforms.delete(broker);
			await p?.close();
		}
	} as Middleware;
}
