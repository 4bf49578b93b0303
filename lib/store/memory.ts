import type { CoordinationStore, SetOptions } from "./types";

interface Entry {
	value: string;
	/** Epoch ms; undefined = no expiry. */
	expiresAt?: number;
}

export interface MemoryStoreOptions {
	prefix?: string;
	/** Injected clock so tests can move time without sleeping. */
	now?: () => number;
	/** How often expired entries are swept so an idle store does not keep them (ms, 0 = never). */
	sweepIntervalMs?: number;
}

/**
 * In-process implementation of the coordination store for embedded mode. Every operation runs synchronously
 * inside one call, so it is atomic with respect to every other operation in the process, which is the same
 * guarantee a Lua script gives on Redis.
 */
export class MemoryStore implements CoordinationStore {
	readonly kind = "memory" as const;
	readonly prefix: string;
	private readonly data = new Map<string, Entry>();
	/** The store's clock; domain operations built on this store must use it too. */
	readonly now: () => number;
	private sweeper?: NodeJS.Timeout;
	private closed = false;

	constructor(opts: MemoryStoreOptions = {}) {
		this.prefix = opts.prefix ?? "";
		this.now = opts.now ?? Date.now;
		const every = opts.sweepIntervalMs ?? 30_000;
		if (every > 0) {
			this.sweeper = setInterval(() => this.sweep(), every);
			this.sweeper.unref();
		}
	}

	async ping(): Promise<void> {
		this.assertOpen();
	}

	async get(key: string): Promise<string | null> {
		return this.live(key)?.value ?? null;
	}

	async set(key: string, value: string, opts: SetOptions = {}): Promise<boolean> {
		this.assertOpen();
		if (opts.ifAbsent && this.live(key)) return false;
		this.data.set(this.k(key), { value, expiresAt: this.expiry(opts.ttlMs) });
		return true;
	}

	async del(...keys: string[]): Promise<number> {
		this.assertOpen();
		let n = 0;
		for (const key of keys) {
			if (this.live(key)) n++;
			this.data.delete(this.k(key));
		}
		return n;
	}

	async incr(key: string, opts: { by?: number; ttlMs?: number } = {}): Promise<number> {
		this.assertOpen();
		const cur = this.live(key);
		const by = opts.by ?? 1;
		if (cur && !/^-?\d+$/.test(cur.value)) throw new Error(`value at ${key} is not an integer`);
		const next = (cur ? Number(cur.value) : 0) + by;
		const expiresAt = cur?.expiresAt ?? this.expiry(opts.ttlMs);
		this.data.set(this.k(key), { value: String(next), expiresAt });
		return next;
	}

	async ttl(key: string): Promise<number | null> {
		const e = this.live(key);
		if (!e) return null;
		return e.expiresAt === undefined ? -1 : e.expiresAt - this.now();
	}

	async acquireLease(key: string, owner: string, ttlMs: number): Promise<boolean> {
		this.assertOpen();
		const cur = this.live(key);
		if (cur && cur.value !== owner) return false;
		this.data.set(this.k(key), { value: owner, expiresAt: this.expiry(ttlMs) });
		return true;
	}

	async releaseLease(key: string, owner: string): Promise<boolean> {
		this.assertOpen();
		const cur = this.live(key);
		if (!cur || cur.value !== owner) return false;
		this.data.delete(this.k(key));
		return true;
	}

	async leaseOwner(key: string): Promise<string | null> {
		return this.get(key);
	}

	async clear(): Promise<number> {
		let n = 0;
		for (const key of [...this.data.keys()]) {
			if (key.startsWith(this.prefix)) {
				this.data.delete(key);
				n++;
			}
		}
		return n;
	}

	async close(): Promise<void> {
		this.closed = true;
		if (this.sweeper) clearInterval(this.sweeper);
	}

	/** Number of entries held, expired ones included until swept (leak checks in tests). */
	get size(): number {
		return this.data.size;
	}

	/** Removes expired entries. */
	sweep(): void {
		const now = this.now();
		for (const [key, e] of this.data) if (e.expiresAt !== undefined && e.expiresAt <= now) this.data.delete(key);
	}

	private k(key: string): string {
		return this.prefix + key;
	}

	private expiry(ttlMs?: number): number | undefined {
		if (ttlMs === undefined) return undefined;
		if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new Error(`ttlMs must be a positive number, got ${ttlMs}`);
		return this.now() + ttlMs;
	}

	/** The entry if present and not expired; an expired one is dropped on the way. */
	private live(key: string): Entry | undefined {
		this.assertOpen();
		const k = this.k(key);
		const e = this.data.get(k);
		if (!e) return undefined;
		if (e.expiresAt !== undefined && e.expiresAt <= this.now()) {
			this.data.delete(k);
			return undefined;
		}
		return e;
	}

	private assertOpen(): void {
		if (this.closed) throw new Error("store is closed");
	}
}
