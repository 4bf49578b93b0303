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
 * Redis layout, relative to the install prefix (the `{scheduleId}` hash tag keeps one schedule's keys in one slot):
 *   concert:h:{<scheduleId>}:<seatId>  -> owner, with PX = the hold's time to live (its expiry frees the seat)
 *   concert:hi:{<scheduleId>}          -> sorted set seatId -> expiry (ms); live holds are those scored after now,
 *                                         so the held count of a schedule is one ZCOUNT, with no decrement to miss
 */
import type Redis from "ioredis";
import { MemoryStore, redisCall, RedisStore, type CoordinationStore } from "../../lib/store";

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
 * `conflicts` lists the seats another owner holds.
 */
export type HoldOutcome = { ok: true; expiresAt: number } | { ok: false; conflicts: string[] };

export interface HoldStore {
	readonly kind: "memory" | "redis";
	hold(req: HoldRequest): Promise<HoldOutcome>;
	/** Releases the seats `owner` holds among those given; returns how many. Others' holds are untouched. */
	release(req: HoldKey & { owner: string }): Promise<number>;
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
	if (store instanceof RedisStore) return new RedisHoldStore(store.redis, store.prefix);
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

// ---------------------------------------------------------------------------------------------------------------

interface Lease {
	owner: string;
	expiresAt: number;
}

export class MemoryHoldStore implements HoldStore {
	readonly kind = "memory" as const;
	/** scheduleId -> seatId -> lease. */
	private readonly schedules = new Map<string, Map<string, Lease>>();

	constructor(private readonly now: () => number = Date.now) {}

	async hold(req: HoldRequest): Promise<HoldOutcome> {
		checkRequest(req, req.ttlMs);
		const now = this.now();
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

// ---------------------------------------------------------------------------------------------------------------

/** Server time in ms; scripts that read TIME are replicated by effects (Redis >= 5 does that by default). */
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

const SCRIPTS = {
	/**
	 * KEYS[1] index, KEYS[2..] seat keys; ARGV[1] owner, ARGV[2] ttl ms, ARGV[3..] seat ids (same order).
	 * Checks every seat first and writes only if none is held by another owner: all or nothing.
	 */
	concertHold: `${NOW}
local owner = ARGV[1]
local ttl = tonumber(ARGV[2])
local conflicts = {}
for i = 2, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  if cur and cur ~= owner then conflicts[#conflicts + 1] = ARGV[i + 1] end
end
if #conflicts > 0 then return {0, conflicts} end
local expiresAt = now + ttl
local earliest = expiresAt
for i = 2, #KEYS do
  local left = redis.call('PTTL', KEYS[i])
  if left > 0 then
    -- Ours already: keep it. Its exact expiry is the index score (PTTL is rounded to the server's ms clock).
    local e = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i + 1]) or (now + left))
    if e < earliest then earliest = e end
  else
    redis.call('SET', KEYS[i], owner, 'PX', ttl)
    redis.call('ZADD', KEYS[1], expiresAt, ARGV[i + 1])
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

	/** KEYS[1] index. Seat ids whose hold has not expired. */
	concertHeldSeats: `${NOW}
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')`,

	/** KEYS[1] index. How many holds have not expired. */
	concertHeldCount: `${NOW}
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')`
} as const;

type ScriptName = keyof typeof SCRIPTS;
type ScriptedRedis = Redis & Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;

export class RedisHoldStore implements HoldStore {
	readonly kind = "redis" as const;
	private readonly redis: ScriptedRedis;

	/** `redis` is the node's store client (its keyPrefix applies to KEYS); `prefix` is that same prefix. */
	constructor(
		redis: Redis,
		private readonly prefix: string
	) {
		for (const [name, lua] of Object.entries(SCRIPTS)) {
			// No fixed numberOfKeys: each call passes its key count first (a hold has 1..4 seats), and ioredis still
			// prefixes exactly those keys. Defined once per client: several services may share the node's client.
			if (!(name in redis)) redis.defineCommand(name, { lua });
		}
		this.redis = redis as ScriptedRedis;
	}

	async hold(req: HoldRequest): Promise<HoldOutcome> {
		checkRequest(req, req.ttlMs);
		const keys = [indexKey(req.scheduleId), ...req.seatIds.map(id => seatKey(req.scheduleId, id))];
		const res = (await this.wrap(
			this.redis.concertHold(keys.length, ...keys, req.owner, req.ttlMs, ...req.seatIds)
		)) as [number, number | string[]];
		if (Number(res[0]) === 1) return { ok: true, expiresAt: Number(res[1]) };
		return { ok: false, conflicts: res[1] as string[] };
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
		// SCAN does not apply keyPrefix, UNLINK does: match with the prefix, delete without it.
		let cursor = "0";
		do {
			const [next, keys] = await this.wrap(this.redis.scan(cursor, "MATCH", `${this.prefix}concert:h*`, "COUNT", 500));
			cursor = next;
			if (keys.length > 0) await this.wrap(this.redis.unlink(...keys.map(k => k.slice(this.prefix.length))));
		} while (cursor !== "0");
	}

	private wrap<T>(p: Promise<T>): Promise<T> {
		return redisCall(p);
	}}

function seatKey(scheduleId: string, seatId: string): string {
	return `concert:h:{${scheduleId}}:${seatId}`;
}

function indexKey(scheduleId: string): string {
	return `concert:hi:{${scheduleId}}`;
}
