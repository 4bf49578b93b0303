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

/**
 * The client's address: the socket's, or with `trustedHops` proxies of ours in front (TRUST_PROXY), the address
 * that many entries from the right of X-Forwarded-For. Each proxy appends the address it got the request from, so
 * the entries on the left are whatever the client wrote: taking the first one let a client pick its own address
 * (and its own rate-limit and login-throttle buckets). An entry that is not an IP address is not used.
 */
export function clientAddress(req: IncomingMessage, trustedHops: number): string {
	const socket = req.socket.remoteAddress ?? "unknown";
	if (trustedHops <= 0) return socket;
	const raw = req.headers["x-forwarded-for"];
	const hops = (Array.isArray(raw) ? raw.join(",") : (raw ?? ""))
		.split(",")
		.map(h => h.trim())
		.filter(Boolean);
	if (hops.length === 0) return socket;
	const client = hops[Math.max(0, hops.length - trustedHops)];
	return /^[0-9A-Fa-f:.]{2,45}$/.test(client) ? client : socket;
}
