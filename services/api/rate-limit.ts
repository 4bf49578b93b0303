/**
 * Rate-limit counters for moleculer-web kept in the coordination store: fixed windows shared by every gateway
 * node (Redis in a cluster), so adding gateway replicas does not multiply a client's allowance.
 */
import type { ServiceBroker } from "moleculer";
import type { IncomingMessage } from "http";
import { platformOf } from "../../lib/platform";
import type { CoordinationStore } from "../../lib/store";

export class StoreRateLimit {
	resetTime: number;
	private readonly store: CoordinationStore;

	constructor(
		private readonly windowMs: number,
		_opts: unknown,
		broker: ServiceBroker
	) {
		this.store = platformOf(broker).store;
		this.resetTime = this.windowEnd(Date.now());
	}

	async inc(key: string): Promise<number> {
		const now = Date.now();
		const window = Math.floor(now / this.windowMs);
		this.resetTime = this.windowEnd(now);
		try {
			return await this.store.incr(`ratelimit:${key}:${window}`, { ttlMs: this.windowMs });
		} catch {
			// Fail open: an unavailable store must not take the whole API down with it (the health check shows it).
			return 0;
		}
	}

	private windowEnd(now: number): number {
		return (Math.floor(now / this.windowMs) + 1) * this.windowMs;
	}
}

/** The client's address: the socket's, or the first X-Forwarded-For hop when TRUST_PROXY says a proxy sets it. */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
	if (trustProxy) {
		const fwd = req.headers["x-forwarded-for"];
		const first = (Array.isArray(fwd) ? fwd[0] : fwd)?.split(",")[0]?.trim();
		if (first) return first;
	}
	return req.socket.remoteAddress ?? "unknown";
}
