/**
 * Seat holds: short leases on seats of one schedule, taken all or nothing, owned by a reservation id, and gone by
 * themselves when their time is up. One interface, two implementations that pass the same contract tests
 * (test/unit/holds.store.test.ts):
 * - `MemoryHoldStore` (embedded mode): every operation runs synchronously inside one call, so it is atomic in the
 *   process; time is the `MemoryStore`'s clock, so tests move it without sleeping.
 * - `RedisHoldStore` (cluster): one Lua script per operation, so each is one atomic step on the server; time is
 *   the Redis server's clock (`TIME`), so nodes with skewed clocks agree on what has expired.
 *
 * A hold is a lease that makes contention fast; it is never the guard against selling a seat twice (that is the
 * database's unique key on (schedule_id, seat_id)). Redis here keeps nothing on disk: callers must survive losing
 * every hold at once.
 *
 * Redis layout, relative to the install prefix (the `{scheduleId}` hash tag keeps one schedule's keys in one slot,
 * so on a Redis Cluster every script and MGET below stays in one slot, and different schedules spread over the
 * masters; `clear` scans every master):
 *   concert:h:{<scheduleId>}:<seatId>  -> owner, with PX = the hold's time to live (its expiry frees the seat)
 *   concert:hi:{<scheduleId>}          -> sorted set seatId -> expiry (ms); live holds are those scored after now,
 *                                         so the held count of a schedule is one ZCOUNT, with no decrement to miss
 *   concert:g:{<scheduleId>}:<owner>   -> "1" with PX: the owner was abandoned (its caller gave up); no hold for it
 *                                         lands while this lives
 */
import { MemoryStore, RedisStore, type CoordinationStore, type RedisClient } from "../../lib/store";

export interface HoldKey {
	scheduleId: string;
	seatIds: string[];
}

export interface HoldRequest extends HoldKey {
	/** The reservation id. Only the owner renews (by holding again) or releases its seats. */
	owner: string;
	ttlMs: number;
}

/**
 * `ok`: the owner now holds every seat; `expiresAt` (epoch ms) is the earliest expiry among them (a seat the owner
 * already held keeps its expiry: holding again is idempotent, not a renewal). Otherwise nothing changed and
 * `conflicts` lists the seats another owner holds, or `abandoned` says the owner was given up (see `abandon`).
 */
export type HoldOutcome =
	{ ok: true; expiresAt: number } | { ok: false; conflicts: string[]; abandoned?: false } | { ok: false; conflicts: []; abandoned: true };

export interface HoldStore {
	readonly kind: "memory" | "redis";
	hold(req: HoldRequest): Promise<HoldOutcome>;
	/** Releases the seats `owner` holds among those given; returns how many. Others' holds are untouched. */
	release(req: HoldKey & { owner: string }): Promise<number>;
	/**
	 * `release`, and in the same atomic step a tombstone for the owner that lives `ttlMs`: until it expires, a hold
	 * for this owner on this schedule is refused (`abandoned`), however late it arrives. For a caller that gave up
	 * on a hold whose outcome it does not know: the hold may still be on its way (queued on a slow node).
	 */
	abandon(req: HoldKey & { owner: string; ttlMs: number }): Promise<number>;
	/** The live owner of each seat (null = free), in the order given. */
	owners(req: HoldKey): Promise<(string | null)[]>;
	/** Seats of the schedule held right now. */
	heldSeatIds(scheduleId: string): Promise<string[]>;
	/** How many seats of each schedule are held right now, in the order given. */
	heldCounts(scheduleIds: string[]): Promise<number[]>;
	/** Drops every hold (tests: what Redis losing its keys looks like). */
	clear(): Promise<void>;
}

/** Picks the implementation that matches the node's coordination store. */
export function createHoldStore(store: CoordinationStore): HoldStore {
	if (store instanceof RedisStore) return new RedisHoldStore(store);
	if (store instanceof MemoryStore) return new MemoryHoldStore(store.now);
	throw new Error(`no hold store for a ${store.kind} coordination store`);
}

function checkRequest(req: HoldKey, ttlMs?: number): void {
	if (req.seatIds.length === 0) throw new Error("at least one seat");
	if (new Set(req.seatIds).size !== req.seatIds.length) throw new Error("seat ids must be distinct");
	if (ttlMs !== undefined && (!Number.isInteger(ttlMs) || ttlMs <= 0)) {
		throw new Error(`ttlMs must be a positive integer, got ${ttlMs}`);
	}
}

export interface LateReleaseOptions {
	/** The hold is gone by itself by then (its TTL): no point retrying after it. Epoch ms. */
	until: number;
	/** Asked before each retry: false when something else has taken the hold over meanwhile (e.g. a re-hold). */
	wanted?: () => Promise<boolean>;
}

/**
 * Releases that must not fail their caller: work after a commit (a sale's hold once the sale is written) or after
 * a refusal. One that fails (the store is down) is retried in the background with a growing delay until it
 * succeeds, is no longer wanted, or the hold has expired by itself anyway. Kept in memory per node: if the node
 * dies first, the hold's own TTL frees the seats, which is all a release does earlier.
 */
export class LateReleases {
	private readonly timers = new Map<string, NodeJS.Timeout>();
	private stopped = false;

	constructor(
		private readonly holds: HoldStore,
		private readonly opts: { log: (msg: string) => void; baseMs?: number; maxMs?: number; maxPending?: number; now?: () => number }
	) {}

	/** Releases now if it can (true), otherwise schedules the retries (false). Never throws. */
	async release(req: HoldKey & { owner: string }, opts: LateReleaseOptions): Promise<boolean> {
		try {
			await this.holds.release(req);
			return true;
		} catch (err) {
			this.opts.log(`release of ${req.owner}'s hold on ${req.seatIds.length} seat(s) failed (${(err as Error).message}); retrying in the background`);
			this.retry(req, opts, 1);
			return false;
		}
	}

	/** Releases waiting for a retry (tests, metrics). */
	get pending(): number {
		return this.timers.size;
	}

	stop(): void {
		this.stopped = true;
		for (const t of this.timers.values()) clearTimeout(t);
		this.timers.clear();
	}

	private retry(req: HoldKey & { owner: string }, opts: LateReleaseOptions, attempt: number): void {
		const key = `${req.scheduleId} ${req.owner} ${[...req.seatIds].sort().join(",")}`;
		const now = this.opts.now?.() ?? Date.now();
		if (this.stopped || now >= opts.until || this.timers.has(key)) return;
		if (this.timers.size >= (this.opts.maxPending ?? 10_000)) return; // the TTL frees these seats
		const delay = Math.min(this.opts.maxMs ?? 5000, (this.opts.baseMs ?? 250) * 2 ** Math.min(attempt - 1, 10));
		const timer = setTimeout(() => {
			this.timers.delete(key);
			void (async () => {
				if (opts.wanted && !(await opts.wanted())) return;
				await this.holds.release(req);
				this.opts.log(`released ${req.owner}'s lingering hold after ${attempt} retr${attempt === 1 ? "y" : "ies"}`);
			})().catch(() => this.retry(req, opts, attempt + 1));
		}, delay);
		timer.unref();
		this.timers.set(key, timer);
	}
}

interface Lease {
	owner: string;
	expiresAt: number;
}

export class MemoryHoldStore implements HoldStore {
	readonly kind = "memory" as const;
	/** scheduleId -> seatId -> lease. */
	private readonly schedules = new Map<string, Map<string, Lease>>();
	/** `<scheduleId> <owner>` -> expiry of its tombstone. */
	private readonly abandoned = new Map<string, number>();

	constructor(private readonly now: () => number = Date.now) {}

	async hold(req: HoldRequest): Promise<HoldOutcome> {
		checkRequest(req, req.ttlMs);
		const now = this.now();
		if ((this.abandoned.get(`${req.scheduleId} ${req.owner}`) ?? 0) > now) return { ok: false, conflicts: [], abandoned: true };
		const seats = this.live(req.scheduleId, now, true);
		const conflicts = req.seatIds.filter(id => {
			const l = seats.get(id);
			return l !== undefined && l.owner !== req.owner;
		});
		if (conflicts.length > 0) return { ok: false, conflicts };
		let expiresAt = now + req.ttlMs;
		for (const id of req.seatIds) {
			const l = seats.get(id);
			if (l) expiresAt = Math.min(expiresAt, l.expiresAt);
			else seats.set(id, { owner: req.owner, expiresAt: now + req.ttlMs });
		}
		return { ok: true, expiresAt };
	}

	async release(req: HoldKey & { owner: string }): Promise<number> {
		checkRequest(req);
		const seats = this.live(req.scheduleId, this.now());
		let n = 0;
		for (const id of req.seatIds) {
			if (seats.get(id)?.owner === req.owner) {
				seats.delete(id);
				n++;
			}
		}
		if (seats.size === 0) this.schedules.delete(req.scheduleId);
		return n;
	}

	async abandon(req: HoldKey & { owner: string; ttlMs: number }): Promise<number> {
		checkRequest(req, req.ttlMs);
		const now = this.now();
		// Expired tombstones go when new ones come, so the map stays as small as the live ones.
		for (const [key, until] of this.abandoned) if (until <= now) this.abandoned.delete(key);
		this.abandoned.set(`${req.scheduleId} ${req.owner}`, now + req.ttlMs);
		return this.release(req);
	}

	async owners(req: HoldKey): Promise<(string | null)[]> {
		const seats = this.live(req.scheduleId, this.now());
		return req.seatIds.map(id => seats.get(id)?.owner ?? null);
	}

	async heldSeatIds(scheduleId: string): Promise<string[]> {
		return [...this.live(scheduleId, this.now()).keys()];
	}

	async heldCounts(scheduleIds: string[]): Promise<number[]> {
		const now = this.now();
		return scheduleIds.map(id => this.live(id, now).size);
	}

	async clear(): Promise<void> {
		this.schedules.clear();
		this.abandoned.clear();
	}

	/** Schedules with leases kept in memory, expired ones included until read (leak checks in tests). */
	get scheduleCount(): number {
		return this.schedules.size;
	}

	/**
	 * The schedule's leases with the expired ones dropped: an expired hold is free at once, as a PX key is. Reads
	 * of a schedule without holds leave nothing behind; `hold` asks for a map to write into (`create`).
	 */
	private live(scheduleId: string, now: number, create = false): Map<string, Lease> {
		let seats = this.schedules.get(scheduleId);
		if (!seats) {
			seats = new Map();
			if (create) this.schedules.set(scheduleId, seats);
			return seats;
		}
		for (const [id, l] of seats) if (l.expiresAt <= now) seats.delete(id);
		if (seats.size === 0 && !create) this.schedules.delete(scheduleId);
		return seats;
	}
}

/** Server time in ms; scripts that read TIME are replicated by effects (Redis >= 5 does that by default). */
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

const SCRIPTS = {
	/**
	 * KEYS[1] index, KEYS[2] the owner's tombstone, KEYS[3..] seat keys; ARGV[1] owner, ARGV[2] ttl ms, ARGV[3..]
	 * seat ids (same positions as their keys). Refuses an abandoned owner; then checks every seat first and writes
	 * only if none is held by another owner: all or nothing.
	 */
	concertHold: `${NOW}
local owner = ARGV[1]
local ttl = tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then return {2} end
local conflicts = {}
for i = 3, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur and cur ~= owner then conflicts[#conflicts + 1] = ARGV[i] end
end
if #conflicts > 0 then return {0, conflicts} end
local expiresAt = now + ttl
local earliest = expiresAt
for i = 3, #KEYS do
  local left = redis.call('PTTL', KEYS[i])
  if left > 0 then
    -- Ours already: keep it. Its exact expiry is the index score (PTTL is rounded to the server's ms clock).
    local e = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]) or (now + left))
    if e < earliest then earliest = e end
  else
    redis.call('SET', KEYS[i], owner, 'PX', ttl)
    redis.call('ZADD', KEYS[1], expiresAt, ARGV[i])
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {1, earliest}`,

	/** KEYS[1] index, KEYS[2..] seat keys; ARGV[1] owner, ARGV[2..] seat ids. Compare-and-delete per seat. */
	concertRelease: `
local n = 0
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n`,

	/**
	 * KEYS[1] index, KEYS[2] the owner's tombstone, KEYS[3..] seat keys; ARGV[1] owner, ARGV[2] tombstone ttl ms,
	 * ARGV[3..] seat ids. The tombstone and the owner's releases in one step: a hold for the owner is either already
	 * in place (and released here) or comes later (and is refused).
	 */
	concertAbandon: `
redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[2]))
local n = 0
for i = 3, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n`,

	/** KEYS[1] index. Seat ids whose hold has not expired. */
	concertHeldSeats: `${NOW}
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')`,

	/** KEYS[1] index. How many holds have not expired. */
	concertHeldCount: `${NOW}
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')`
} as const;

type ScriptName = keyof typeof SCRIPTS;
type ScriptedRedis = RedisClient & Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;

export class RedisHoldStore implements HoldStore {
	readonly kind = "redis" as const;
	private readonly redis: ScriptedRedis;

	/** `store` is the node's Redis store: its client (whose keyPrefix applies to KEYS), one server or a cluster. */
	constructor(private readonly store: RedisStore) {
		const redis: RedisClient = store.redis;
		for (const [name, lua] of Object.entries(SCRIPTS)) {
			// No fixed numberOfKeys: each call passes its key count first (a hold has 1..4 seats), and ioredis still
			// prefixes exactly those keys (and, on a cluster, routes by them: they share the `{scheduleId}` slot).
			// Defined once per client: several services may share the node's client.
			if (!(name in redis)) redis.defineCommand(name, { lua });
		}
		this.redis = redis as ScriptedRedis;
	}

	async hold(req: HoldRequest): Promise<HoldOutcome> {
		checkRequest(req, req.ttlMs);
		const keys = [indexKey(req.scheduleId), tombstoneKey(req.scheduleId, req.owner), ...req.seatIds.map(id => seatKey(req.scheduleId, id))];
		const res = (await this.wrap(this.redis.concertHold(keys.length, ...keys, req.owner, req.ttlMs, ...req.seatIds))) as [number, number | string[]];
		if (Number(res[0]) === 1) return { ok: true, expiresAt: Number(res[1]) };
		if (Number(res[0]) === 2) return { ok: false, conflicts: [], abandoned: true };
		return { ok: false, conflicts: res[1] as string[] };
	}

	async abandon(req: HoldKey & { owner: string; ttlMs: number }): Promise<number> {
		checkRequest(req, req.ttlMs);
		const keys = [indexKey(req.scheduleId), tombstoneKey(req.scheduleId, req.owner), ...req.seatIds.map(id => seatKey(req.scheduleId, id))];
		return Number(await this.wrap(this.redis.concertAbandon(keys.length, ...keys, req.owner, req.ttlMs, ...req.seatIds)));
	}

	async release(req: HoldKey & { owner: string }): Promise<number> {
		checkRequest(req);
		const keys = [indexKey(req.scheduleId), ...req.seatIds.map(id => seatKey(req.scheduleId, id))];
		return Number(await this.wrap(this.redis.concertRelease(keys.length, ...keys, req.owner, ...req.seatIds)));
	}

	async owners(req: HoldKey): Promise<(string | null)[]> {
		if (req.seatIds.length === 0) return [];
		return this.wrap(this.redis.mget(...req.seatIds.map(id => seatKey(req.scheduleId, id))));
	}

	async heldSeatIds(scheduleId: string): Promise<string[]> {
		return (await this.wrap(this.redis.concertHeldSeats(1, indexKey(scheduleId)))) as string[];
	}

	async heldCounts(scheduleIds: string[]): Promise<number[]> {
		// Auto-pipelining sends these in one round trip.
		const counts = await Promise.all(scheduleIds.map(id => this.wrap(this.redis.concertHeldCount(1, indexKey(id)))));
		return counts.map(Number);
	}

	async clear(): Promise<void> {
		// Every master on a cluster (a SCAN sees one node), one key at a time there (keys of several slots).
		await this.store.unlinkMatching("concert:[hg]*");
	}

	private wrap<T>(p: Promise<T>): Promise<T> {
		return this.store.call(p);
	}
}

/** The hold of one seat (exported, with the two below, for the slot test and tests that play Redis losing a hold). */
export function seatKey(scheduleId: string, seatId: string): string {
	return `concert:h:{${scheduleId}}:${seatId}`;
}

export function indexKey(scheduleId: string): string {
	return `concert:hi:{${scheduleId}}`;
}

export function tombstoneKey(scheduleId: string, owner: string): string {
	return `concert:g:{${scheduleId}}:${owner}`;
}
