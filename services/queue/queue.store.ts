/**
 * The waiting room's state in the coordination store: per concert a FIFO waiting line, an active set capped at
 * `maxActive`, the token <-> user binding, and an admission log for the rate. Two implementations with the same
 * semantics, checked by one contract suite (test/unit/queue.store.test.ts):
 * - Redis: one Lua script per operation, so every operation is one atomic step on the server whichever node
 *   sends it. Time is the Redis server's clock (TIME), so nodes with skewed clocks still agree on expiry.
 * - Memory: one synchronous block per operation on the MemoryStore's clock (embedded mode and unit tests).
 *
 * Keys of concert C (relative to the install prefix):
 *   queue:C:seq      arrival counter (INCR): the waiting line is ordered by it, not by a clock, so arrival order
 *                    is exact across nodes
 *   queue:C:wait     sorted set tokenId -> arrival sequence
 *   queue:C:active   sorted set tokenId -> expiry (epoch ms)
 *   queue:C:users    hash userId -> tokenId (entering again returns the same token)
 *   queue:C:owners   hash tokenId -> userId (the binding every read checks)
 *   queue:C:admlog   sorted set tokenId -> admission time, trimmed to the last minute (the measured rate)
 *   queue:C:admitted total admissions (admin stats; the multi-node tests check it against exact counts)
 *   queue:concerts   set of concerts with live queue state, for the periodic sweep
 *
 * Admission rule, applied inside every writing operation: first drop active tokens whose expiry has passed, then
 * promote from the head of the line while fewer than `maxActive` are active. Promotion happens only inside these
 * atomic steps, so the cap holds and nobody is admitted twice however many nodes run them at once.
 */
import { redisCall, type CoordinationStore, type MemoryStore, type RedisStore } from "../../lib/store";
import type { QueueEntry, QueueStatus } from "./queue.domain";

export interface QueueLimits {
	maxActive: number;
	activeTtlMs: number;
}

export interface EnterResult extends QueueEntry {
	/** false when the user already held a token for this concert (that token is returned). */
	created: boolean;
}

export interface QueueStats {
	waiting: number;
	/** Active tokens that have not lapsed. */
	active: number;
	/** Slots taken: active tokens including lapsed ones the sweep has not removed yet (never above the cap). */
	slotsTaken: number;
	admittedLastMinute: number;
	admittedTotal: number;
}

export interface SweepResult {
	concerts: number;
	expired: number;
	admitted: number;
}

export interface QueueStore {
	/** Joins the line (or returns the user's existing token), then admits from the head while slots are free. */
	enter(concertId: string, userId: string, newTokenId: string, limits: QueueLimits): Promise<EnterResult>;
	/** The token's state, or null when unknown, left or lapsed. Read-only; never promotes. */
	read(concertId: string, tokenId: string): Promise<QueueEntry | null>;
	/**
	 * Removes the token (only if it belongs to `userId`; `null` = whoever holds it) and promotes into the freed
	 * slot. Returns what the token was, or null when there was nothing to remove (idempotent).
	 */
	leave(concertId: string, tokenId: string, userId: string | null, limits: QueueLimits): Promise<QueueStatus | null>;
	/** Expires lapsed active tokens and promotes, for every concert with queue state. */
	sweep(limits: QueueLimits): Promise<SweepResult>;
	stats(concertId: string): Promise<QueueStats>;
}

const RATE_WINDOW_MS = 60_000;

// ---------------------------------------------------------------------------------------------------------------
// Redis

function keysOf(concertId: string): string[] {
	const base = `queue:${concertId}:`;
	return [
		`${base}seq`,
		`${base}wait`,
		`${base}active`,
		`${base}users`,
		`${base}owners`,
		`${base}admlog`,
		`${base}admitted`,
		"queue:concerts"
	];
}
const NUM_KEYS = 8;

/** Shared by every script; KEYS are always `keysOf(concertId)` in that order. */
const LUA_PRELUDE = `
local K_SEQ, K_WAIT, K_ACT, K_USERS, K_OWNERS, K_ADMLOG, K_ADMITTED, K_CONCERTS =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local RATE_WINDOW = ${RATE_WINDOW_MS}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function forget(tok)
  local user = redis.call('HGET', K_OWNERS, tok)
  redis.call('HDEL', K_OWNERS, tok)
  if user and redis.call('HGET', K_USERS, user) == tok then redis.call('HDEL', K_USERS, user) end
end

local function expire_stale(now)
  local stale = redis.call('ZRANGEBYSCORE', K_ACT, '-inf', now)
  for _, tok in ipairs(stale) do
    redis.call('ZREM', K_ACT, tok)
    forget(tok)
  end
  return #stale
end

local function promote(now, max, ttl)
  local free = max - redis.call('ZCARD', K_ACT)
  if free <= 0 then return 0 end
  local head = redis.call('ZPOPMIN', K_WAIT, free)
  local n = 0
  for i = 1, #head, 2 do
    redis.call('ZADD', K_ACT, now + ttl, head[i])
    redis.call('ZADD', K_ADMLOG, now, head[i])
    n = n + 1
  end
  if n > 0 then
    redis.call('INCRBY', K_ADMITTED, n)
    redis.call('ZREMRANGEBYSCORE', K_ADMLOG, '-inf', now - RATE_WINDOW)
  end
  return n
end

-- {found(0/1), status(1 active, 2 waiting), position, expiresAt, admittedLastMinute, now, userId, tokenId}
local function view(tok, now)
  local user = redis.call('HGET', K_OWNERS, tok)
  if not user then return {0} end
  local rate = redis.call('ZCOUNT', K_ADMLOG, '(' .. (now - RATE_WINDOW), '+inf')
  local exp = redis.call('ZSCORE', K_ACT, tok)
  if exp then
    exp = tonumber(exp)
    if exp <= now then return {0} end
    return {1, 1, 0, exp, rate, now, user, tok}
  end
  local rank = redis.call('ZRANK', K_WAIT, tok)
  if not rank then return {0} end
  return {1, 2, rank + 1, -1, rate, now, user, tok}
end
`;

const SCRIPTS = {
	/** ARGV: userId, newTokenId, maxActive, ttlMs, concertId. Returns view(...) plus `created`. */
	queueEnter: `
local now = now_ms()
local max, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
expire_stale(now)
promote(now, max, ttl)
local tok = redis.call('HGET', K_USERS, ARGV[1])
local created = 0
if not tok then
  tok = ARGV[2]
  if redis.call('HEXISTS', K_OWNERS, tok) == 1 then return redis.error_reply('QUEUE_TOKEN_COLLISION') end
  redis.call('HSET', K_USERS, ARGV[1], tok)
  redis.call('HSET', K_OWNERS, tok, ARGV[1])
  redis.call('ZADD', K_WAIT, redis.call('INCR', K_SEQ), tok)
  redis.call('SADD', K_CONCERTS, ARGV[5])
  created = 1
  promote(now, max, ttl)
end
local v = view(tok, now)
table.insert(v, created)
return v`,

	/** ARGV: tokenId. Read-only. */
	queueRead: `
return view(ARGV[1], now_ms())`,

	/** ARGV: tokenId, userId ('' = any owner), maxActive, ttlMs. Returns {was (0 none, 1 active, 2 waiting), admitted}. */
	queueLeave: `
local now = now_ms()
local tok = ARGV[1]
local user = redis.call('HGET', K_OWNERS, tok)
if not user or (ARGV[2] ~= '' and user ~= ARGV[2]) then return {0, 0} end
local was = 0
if redis.call('ZREM', K_ACT, tok) == 1 then was = 1 elseif redis.call('ZREM', K_WAIT, tok) == 1 then was = 2 end
forget(tok)
expire_stale(now)
return {was, promote(now, tonumber(ARGV[3]), tonumber(ARGV[4]))}`,

	/** ARGV: maxActive, ttlMs, concertId. Drops the concert from the sweep set once it holds nothing. */
	queueSweep: `
local now = now_ms()
local expired = expire_stale(now)
local admitted = promote(now, tonumber(ARGV[1]), tonumber(ARGV[2]))
if redis.call('ZCARD', K_WAIT) == 0 and redis.call('ZCARD', K_ACT) == 0 and redis.call('HLEN', K_OWNERS) == 0 then
  redis.call('SREM', K_CONCERTS, ARGV[3])
end
return {expired, admitted}`,

	/** Read-only. Returns {waiting, active, slotsTaken, admittedLastMinute, admittedTotal}. */
	queueStats: `
local now = now_ms()
return {
  redis.call('ZCARD', K_WAIT),
  redis.call('ZCOUNT', K_ACT, '(' .. now, '+inf'),
  redis.call('ZCARD', K_ACT),
  redis.call('ZCOUNT', K_ADMLOG, '(' .. (now - RATE_WINDOW), '+inf'),
  tonumber(redis.call('GET', K_ADMITTED) or '0')
}`
} as const;

type ScriptName = keyof typeof SCRIPTS;
type Reply = (string | number)[];
type QueueRedis = Record<ScriptName, (...args: (string | number)[]) => Promise<Reply>>;

const registered = new WeakSet<object>();

export class RedisQueueStore implements QueueStore {
	private readonly redis: QueueRedis;

	constructor(private readonly store: RedisStore) {
		const client = store.redis;
		if (!registered.has(client)) {
			for (const [name, body] of Object.entries(SCRIPTS)) {
				client.defineCommand(name, { numberOfKeys: NUM_KEYS, lua: LUA_PRELUDE + body });
			}
			registered.add(client);
		}
		const scripts = client as unknown as QueueRedis;
		this.redis = Object.fromEntries(
			Object.keys(SCRIPTS).map(name => [name, (...args: (string | number)[]) => unavailableOnConnectionError(scripts[name as ScriptName](...args))])
		) as QueueRedis;
	}

	async enter(concertId: string, userId: string, newTokenId: string, limits: QueueLimits): Promise<EnterResult> {
		const r = await this.redis.queueEnter(...keysOf(concertId), userId, newTokenId, limits.maxActive, limits.activeTtlMs, concertId);
		const entry = toEntry(r);
		// The entry always exists right after entering: the script created it or found it in the same step.
		if (!entry) throw new Error("queue enter returned no entry");
		return { ...entry, created: Number(r[r.length - 1]) === 1 };
	}

	async read(concertId: string, tokenId: string): Promise<QueueEntry | null> {
		return toEntry(await this.redis.queueRead(...keysOf(concertId), tokenId));
	}

	async leave(concertId: string, tokenId: string, userId: string | null, limits: QueueLimits): Promise<QueueStatus | null> {
		const [was] = await this.redis.queueLeave(...keysOf(concertId), tokenId, userId ?? "", limits.maxActive, limits.activeTtlMs);
		return Number(was) === 1 ? "ACTIVE" : Number(was) === 2 ? "WAITING" : null;
	}

	async sweep(limits: QueueLimits): Promise<SweepResult> {
		const concerts = await unavailableOnConnectionError(this.store.redis.smembers("queue:concerts"));
		const result: SweepResult = { concerts: concerts.length, expired: 0, admitted: 0 };
		for (const concertId of concerts) {
			const [expired, admitted] = await this.redis.queueSweep(...keysOf(concertId), limits.maxActive, limits.activeTtlMs, concertId);
			result.expired += Number(expired);
			result.admitted += Number(admitted);
		}
		return result;
	}

	async stats(concertId: string): Promise<QueueStats> {
		const [waiting, active, slotsTaken, lastMinute, total] = (await this.redis.queueStats(...keysOf(concertId))).map(Number);
		return { waiting, active, slotsTaken, admittedLastMinute: lastMinute, admittedTotal: total };
	}
}

/** Like RedisStore's own commands: a lost connection becomes a retryable error with no address in it. */
const unavailableOnConnectionError = redisCall;

function toEntry(r: Reply): QueueEntry | null {
	if (Number(r[0]) !== 1) return null;
	const active = Number(r[1]) === 1;
	return {
		status: active ? "ACTIVE" : "WAITING",
		position: Number(r[2]),
		expiresAt: active ? Number(r[3]) : null,
		admittedLastMinute: Number(r[4]),
		now: Number(r[5]),
		userId: String(r[6]),
		tokenId: String(r[7])
	};
}

// ---------------------------------------------------------------------------------------------------------------
// Memory

interface ConcertQueue {
	seq: number;
	/** tokenId -> arrival sequence; a Map keeps insertion order, which is arrival order. */
	wait: Map<string, number>;
	/** tokenId -> expiry (epoch ms). */
	active: Map<string, number>;
	users: Map<string, string>;
	owners: Map<string, string>;
	/** Admission times, oldest first. */
	admlog: number[];
	admitted: number;
}

/** Queue state per MemoryStore instance: brokers sharing one store share one waiting room, as with Redis. */
const memoryStates = new WeakMap<MemoryStore, Map<string, ConcertQueue>>();

export class MemoryQueueStore implements QueueStore {
	private readonly concerts: Map<string, ConcertQueue>;
	private readonly now: () => number;

	constructor(store: MemoryStore) {
		let state = memoryStates.get(store);
		if (!state) {
			state = new Map();
			memoryStates.set(store, state);
		}
		this.concerts = state;
		this.now = store.now;
	}

	async enter(concertId: string, userId: string, newTokenId: string, limits: QueueLimits): Promise<EnterResult> {
		const now = this.now();
		const q = this.queue(concertId, true)!;
		this.expireStale(q, now);
		this.promote(q, now, limits);
		let tokenId = q.users.get(userId);
		let created = false;
		if (tokenId === undefined) {
			if (q.owners.has(newTokenId)) throw new Error("QUEUE_TOKEN_COLLISION");
			tokenId = newTokenId;
			q.users.set(userId, tokenId);
			q.owners.set(tokenId, userId);
			q.wait.set(tokenId, ++q.seq);
			created = true;
			this.promote(q, now, limits);
		}
		return { ...this.view(q, tokenId, now)!, created };
	}

	async read(concertId: string, tokenId: string): Promise<QueueEntry | null> {
		const q = this.queue(concertId, false);
		return q ? this.view(q, tokenId, this.now()) : null;
	}

	async leave(concertId: string, tokenId: string, userId: string | null, limits: QueueLimits): Promise<QueueStatus | null> {
		const q = this.queue(concertId, false);
		if (!q) return null;
		const owner = q.owners.get(tokenId);
		if (owner === undefined || (userId !== null && owner !== userId)) return null;
		const was: QueueStatus | null = q.active.delete(tokenId) ? "ACTIVE" : q.wait.delete(tokenId) ? "WAITING" : null;
		this.forget(q, tokenId);
		const now = this.now();
		this.expireStale(q, now);
		this.promote(q, now, limits);
		return was;
	}

	async sweep(limits: QueueLimits): Promise<SweepResult> {
		const now = this.now();
		const result: SweepResult = { concerts: this.concerts.size, expired: 0, admitted: 0 };
		for (const q of this.concerts.values()) {
			result.expired += this.expireStale(q, now);
			result.admitted += this.promote(q, now, limits);
		}
		return result;
	}

	async stats(concertId: string): Promise<QueueStats> {
		const q = this.queue(concertId, false);
		if (!q) return { waiting: 0, active: 0, slotsTaken: 0, admittedLastMinute: 0, admittedTotal: 0 };
		const now = this.now();
		let active = 0;
		for (const exp of q.active.values()) if (exp > now) active++;
		return {
			waiting: q.wait.size,
			active,
			slotsTaken: q.active.size,
			admittedLastMinute: this.rate(q, now),
			admittedTotal: q.admitted
		};
	}

	private queue(concertId: string, create: boolean): ConcertQueue | undefined {
		let q = this.concerts.get(concertId);
		if (!q && create) {
			q = { seq: 0, wait: new Map(), active: new Map(), users: new Map(), owners: new Map(), admlog: [], admitted: 0 };
			this.concerts.set(concertId, q);
		}
		return q;
	}

	private forget(q: ConcertQueue, tokenId: string): void {
		const user = q.owners.get(tokenId);
		q.owners.delete(tokenId);
		if (user !== undefined && q.users.get(user) === tokenId) q.users.delete(user);
	}

	private expireStale(q: ConcertQueue, now: number): number {
		let n = 0;
		for (const [tokenId, exp] of q.active) {
			if (exp <= now) {
				q.active.delete(tokenId);
				this.forget(q, tokenId);
				n++;
			}
		}
		return n;
	}

	private promote(q: ConcertQueue, now: number, limits: QueueLimits): number {
		let n = 0;
		for (const tokenId of q.wait.keys()) {
			if (q.active.size >= limits.maxActive) break;
			q.wait.delete(tokenId);
			q.active.set(tokenId, now + limits.activeTtlMs);
			q.admlog.push(now);
			n++;
		}
		if (n > 0) {
			q.admitted += n;
			this.trimLog(q, now);
		}
		return n;
	}

	private trimLog(q: ConcertQueue, now: number): void {
		let drop = 0;
		while (drop < q.admlog.length && q.admlog[drop] <= now - RATE_WINDOW_MS) drop++;
		if (drop > 0) q.admlog.splice(0, drop);
	}

	private rate(q: ConcertQueue, now: number): number {
		let n = 0;
		for (let i = q.admlog.length - 1; i >= 0 && q.admlog[i] > now - RATE_WINDOW_MS; i--) n++;
		return n;
	}

	private view(q: ConcertQueue, tokenId: string, now: number): QueueEntry | null {
		const userId = q.owners.get(tokenId);
		if (userId === undefined) return null;
		const admittedLastMinute = this.rate(q, now);
		const exp = q.active.get(tokenId);
		if (exp !== undefined) {
			if (exp <= now) return null;
			return { tokenId, userId, status: "ACTIVE", position: 0, expiresAt: exp, admittedLastMinute, now };
		}
		if (!q.wait.has(tokenId)) return null;
		// O(position): the line is a Map in arrival order. Fine for embedded mode; Redis uses ZRANK.
		let position = 0;
		for (const id of q.wait.keys()) {
			position++;
			if (id === tokenId) break;
		}
		return { tokenId, userId, status: "WAITING", position, expiresAt: null, admittedLastMinute, now };
	}
}

export function createQueueStore(store: CoordinationStore): QueueStore {
	return store.kind === "redis" ? new RedisQueueStore(store as RedisStore) : new MemoryQueueStore(store as MemoryStore);
}
