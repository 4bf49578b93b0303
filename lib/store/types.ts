/**
 * The coordination store: short-lived shared state that must be fast and atomic (holds, the waiting room,
 * idempotency keys, ranking, locks). One interface, two implementations that pass the same contract tests
 * (test/unit/store.contract.ts): `MemoryStore` for embedded mode and unit tests, `RedisStore` for a cluster.
 *
 * Style for every operation, including the domain operations later issues add:
 * - each operation is atomic on its own (one Lua script on Redis, one synchronous block in memory), so callers
 *   never read-then-write across two round trips;
 * - keys are given without the install prefix; the store adds it;
 * - time-to-live values are milliseconds; expired entries are invisible at once.
 */
export interface SetOptions {
	/** Expire the key after this many milliseconds. */
	ttlMs?: number;
	/** Only set when the key does not exist (SET NX). */
	ifAbsent?: boolean;
}

export interface CoordinationStore {
	readonly kind: "memory" | "redis";
	/** The per-install prefix every key carries. */
	readonly prefix: string;

	/** Resolves when the store answers; rejects otherwise. Used by the health check. */
	ping(): Promise<void>;

	get(key: string): Promise<string | null>;
	/** Returns false when `ifAbsent` was asked and the key existed. */
	set(key: string, value: string, opts?: SetOptions): Promise<boolean>;
	/** Deletes the keys; returns how many existed. */
	del(...keys: string[]): Promise<number>;
	/** Adds `by` (default 1) and returns the new value; `ttlMs` is applied only when the key had no expiry. */
	incr(key: string, opts?: { by?: number; ttlMs?: number }): Promise<number>;
	/** Milliseconds left, -1 for a key without expiry, null for a missing key. */
	ttl(key: string): Promise<number | null>;

	/**
	 * Takes or renews a lease: succeeds when the key is free or already held by `owner` (and then extends it).
	 * The basis of fencing: a holder that lost its lease cannot renew or release someone else's.
	 */
	acquireLease(key: string, owner: string, ttlMs: number): Promise<boolean>;
	/** Releases the lease only when `owner` holds it. */
	releaseLease(key: string, owner: string): Promise<boolean>;
	/** Who holds the lease, or null. */
	leaseOwner(key: string): Promise<string | null>;

	/** Deletes every key of this install's prefix (tests and resets only). Returns how many were deleted. */
	clear(): Promise<number>;
	close(): Promise<void>;
}

export class StoreUnavailableError extends Error {
	readonly retryable = true;
	constructor(message: string) {
		super(message);
		this.name = "StoreUnavailableError";
	}
}
