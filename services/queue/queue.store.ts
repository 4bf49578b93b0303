/**
 * The waiting room's state in the coordination store: per concert a FIFO waiting line, an active set capped at
 * `maxActive`, the token <-> user binding, and an admission log for the rate. Two implementations with the same
 * semantics, checked by one contract suite (test/unit/queue.store.test.ts):
 * - Redis: one Lua script per operation, so every operation is one atomic step on the server whichever node
 *   sends it. Time is the Redis server's clock (TIME), so nodes with skewed clocks still agree on expiry.
 * - Memory: one synchronous block per operation on the MemoryStore's clock (embedded mode and unit tests).
 *
 * Keys of concert C (relative to the install prefix). Every key of a concert carries the hash tag `{C}`, so on a
 * Redis Cluster they all live in one slot (each script below reads and writes several of them in one atomic step,
 * which a cluster only runs when all of its keys share a slot) and different concerts spread over the slots:
 *   queue:{C}:seq      arrival counter (INCR): the waiting line is ordered by it, not by a clock, so arrival order
 *                    is exact across nodes
 *   queue:{C}:wait     sorted set tokenId -> arrival sequence
 *   queue:{C}:active   sorted set tokenId -> expiry (epoch ms)
 *   queue:{C}:users    hash userId -> tokenId (entering again returns the same token)
 *   queue:{C}:owners   hash tokenId -> userId (the binding every read checks)
 *   queue:{C}:admlog   sorted set tokenId -> admission time, trimmed to the last minute (the measured rate)
 *   queue:{C}:admitted total admissions (admin stats; the multi-node tests check it against exact counts)
 *   queue:{C}:seen     sorted set tokenId -> last poll of a waiting token: unpolled for `waitingTtlMs`, it leaves
 *   queue:{C}:grace    hash tokenId -> full expiry of a token promoted from the line and not used yet: until its
 *                    owner polls or presents it, its slot lapses after `graceMs` only
 *   queue:{C}:gone     sorted set tokenId -> when it left, and queue:{C}:goneinfo hash tokenId -> "REASON|userId": a
 *                    token that left answers why (EXPIRED, LEFT, COMPLETED) for an hour (both keys expire)
 *   queue:{C}:cfg      hash: `opens` (epoch ms the sale opens: before it entries join the pre-queue and nobody is
 *                    admitted), `reopened` (when a sold-out line reopened)
 *   queue:{C}:state    SOLD_OUT or CLOSED: the line is closed and its memory freed (expires; refreshed while true)
 *
 * Two registries across concerts, outside any concert's slot, so no script touches them (a script that did would
 * fail CROSSSLOT on a cluster): the scripts say what changed and the code below updates the registries with a
 * command of its own, after the script.
 *   queue:concerts   set of concerts with live queue state, for the periodic sweep
 *   queue:soldout    set of concerts whose line is closed SOLD_OUT, watched for seats coming back
 * Why a registry update that is lost (the node died between the script and it) does no lasting harm:
 * - `queue:concerts` is added to after every entry (a failed add does not fail the entry), and only removed from by a sweep that
 *   found the line empty and then checks again after removing it (re-adding a line that filled meanwhile). A lost
 *   add is repaired by the line's next entry; until then promotions still happen on every entry and leave, only the
 *   periodic sweep (lapsed tokens, unpolled waiters) skips the line. A lost remove leaves an empty or closed line
 *   listed: the next sweep finds it so and removes it.
 * - `queue:soldout` is added to before and after the SOLD_OUT close runs (so it can only list too much), and
 *   removed from after a reopen or a CLOSED close, which then look at the line again and put it back when another
 *   node closed it SOLD_OUT meanwhile. A concert listed that is not closed SOLD_OUT is checked by the sale check
 *   like any other: closed again if still sold out, else "reopened", which on an open line only lets unknown tokens
 *   rejoin. A lost remove after a reopen is done again by the next sale check (reopen is idempotent).
 *
 * Upgrading a single-server install from the untagged names (`queue:C:wait`, ...): lines in flight at the upgrade
 * are lost (their tokens answer unknown and their users enter again, at the back); closed markers too, which the
 * next sale check writes again. Roll the upgrade outside a sale.
 *
 * The pre-queue: an entry before the opening joins the line with a random score in [0, 1); entries after it get
 * the arrival counter (>= 1). At the opening the line is admitted from the lowest score, so the pre-queue goes first
 * in a random order (arriving a second early is no advantage) and later arrivals follow in arrival order.
 *
 * Admission rule, applied inside every writing operation: first drop active tokens whose expiry has passed, then
 * promote from the head of the line while fewer than `maxActive` are active. Promotion happens only inside these
 * atomic steps, so the cap holds and nobody is admitted twice however many nodes run them at once.
 */
import crypto from "crypto";
import { type CoordinationStore, type MemoryStore, type RedisStore } from "../../lib/store";
import { QueueLineClosedError } from "./errors";
import type { GoneReason, LineState, QueueEntry, QueueStatus } from "./queue.domain";

export interface QueueLimits {
	maxActive: number;
	activeTtlMs: number;
	/** A token promoted from the line that is not used within this long gives its slot back (default: no grace). */
	graceMs?: number;
	/** A waiting token not polled for this long leaves the line (default: never). */
	waitingTtlMs?: number;
	/** Epoch ms the sale opens: before it, entries join the pre-queue and nobody is admitted (default: open). */
	opensAt?: number;
}

export interface EnterResult extends QueueEntry {
	/** false when the user already held a token for this concert (that token is returned). */
	created: boolean;
}

/** What a token lookup finds. */
export type QueueLookup =
	| { kind: "live"; entry: QueueEntry }
	| { kind: "gone"; reason: GoneReason; userId: string }
	| { kind: "closed"; state: LineState }
	/** Unknown here, but the concert's sold-out line reopened: its former members may join again. */
	| { kind: "rejoin" }
	| { kind: "unknown" };

export interface QueueStats {
	waiting: number;
	/** Active tokens that have not lapsed. */
	active: number;
	/** Slots taken: active tokens including lapsed ones the sweep has not removed yet (never above the cap). */
	slotsTaken: number;
	admittedLastMinute: number;
	admittedTotal: number;
	/** SOLD_OUT or CLOSED when the line is closed, else null. */
	state: LineState | null;
}

export interface SweepResult {
	concerts: number;
	expired: number;
	admitted: number;
}

export interface QueueStore {
	/**
	 * Joins the line (or returns the user's existing token), then admits from the head while slots are free. A
	 * closed line (SOLD_OUT, CLOSED) refuses with QueueLineClosedError.
	 */
	enter(concertId: string, userId: string, newTokenId: string, limits: QueueLimits): Promise<EnterResult>;
	/** The token's live state, or null when unknown, left or lapsed. Read-only; never promotes. */
	read(concertId: string, tokenId: string): Promise<QueueEntry | null>;
	/**
	 * What became of a token. With `touchUserId` (its owner polling or presenting it) the poll counts: a waiting
	 * token stays in line, a promoted one keeps its slot for the full time.
	 */
	lookup(concertId: string, tokenId: string, touchUserId?: string): Promise<QueueLookup>;
	/**
	 * Removes the token (only if it belongs to `userId`; `null` = whoever holds it) and promotes into the freed
	 * slot. Returns what the token was, or null when there was nothing to remove (idempotent). `reason` is what a
	 * later lookup answers (LEFT by default; COMPLETED when the purchase is done).
	 */
	leave(concertId: string, tokenId: string, userId: string | null, limits: QueueLimits, reason?: GoneReason): Promise<QueueStatus | null>;
	/** Expires lapsed active tokens and unpolled waiting ones, and promotes, for every concert with queue state. */
	sweep(limits: QueueLimits, opensAt?: (concertId: string) => number | undefined): Promise<SweepResult>;
	stats(concertId: string): Promise<QueueStats>;
	/** Closes the line (SOLD_OUT or CLOSED): every read answers that, entries are refused, its memory is freed. */
	close(concertId: string, state: LineState, stateTtlMs: number): Promise<void>;
	/** Reopens a SOLD_OUT line (seats came back); its former members may join again when they poll. */
	reopen(concertId: string): Promise<void>;
	/**
	 * Everything of a concert's line (the line, its counters, its opening time, its closed marker, its tombstones),
	 * for a concert whose last show is over (the retention job): nothing of it is read again.
	 */
	forgetConcert(concertId: string): Promise<void>;
	/** Concerts with a live line, and those whose line is closed SOLD_OUT (watched for seats coming back). */
	concerts(): Promise<{ live: string[]; soldOut: string[] }>;
}

const RATE_WINDOW_MS = 60_000;
/** How long a token that left answers why. */
const GONE_KEEP_MS = 3_600_000;
/** How long after a sold-out line reopened its former members may rejoin by polling. */
const REJOIN_MS = 600_000;

/** A pre-queue score: uniform in [0, 1), below every arrival counter. */
function preQueueScore(): number {
	return crypto.randomInt(0, 2 ** 47) / 2 ** 47;
}

// Redis

/** The registries across concerts (see the header): never passed to a script. */
export const LIVE_CONCERTS_KEY = "queue:concerts";
export const SOLD_OUT_KEY = "queue:soldout";

const KEY_NAMES = ["seq", "wait", "active", "users", "owners", "admlog", "admitted", "seen", "grace", "gone", "goneinfo", "cfg", "state"] as const;

/** One key of a concert's line: `queue:{<concertId>}:<name>`, in the concert's hash slot. */
export function queueKey(concertId: string, name: (typeof KEY_NAMES)[number]): string {
	return `queue:{${concertId}}:${name}`;
}

/** Every key of a concert's line, in the order the scripts take them; all in one hash slot. */
export function keysOf(concertId: string): string[] {
	return KEY_NAMES.map(name => queueKey(concertId, name));
}
/** Every script takes the same keys, in this order. */
const NUM_KEYS = KEY_NAMES.length;

/** Shared by every script; KEYS are always `keysOf(concertId)` in that order. */
const LUA_PRELUDE = `
local K_SEQ, K_WAIT, K_ACT, K_USERS, K_OWNERS, K_ADMLOG, K_ADMITTED =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local K_SEEN, K_GRACE, K_GONE, K_GONEINFO, K_CFG, K_STATE =
  KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local RATE_WINDOW = ${RATE_WINDOW_MS}
local GONE_KEEP = ${GONE_KEEP_MS}
local REJOIN = ${REJOIN_MS}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function opens()
  return tonumber(redis.call('HGET', K_CFG, 'opens') or '0')
end

local function forget(tok, reason, now)
  local user = redis.call('HGET', K_OWNERS, tok)
  if user and reason ~= '' then
    redis.call('ZADD', K_GONE, now, tok)
    redis.call('HSET', K_GONEINFO, tok, reason .. '|' .. user)
    redis.call('PEXPIRE', K_GONE, GONE_KEEP)
    redis.call('PEXPIRE', K_GONEINFO, GONE_KEEP)
  end
  redis.call('HDEL', K_OWNERS, tok)
  redis.call('ZREM', K_SEEN, tok)
  redis.call('HDEL', K_GRACE, tok)
  if user and redis.call('HGET', K_USERS, user) == tok then redis.call('HDEL', K_USERS, user) end
end

local function expire_stale(now)
  local stale = redis.call('ZRANGEBYSCORE', K_ACT, '-inf', now)
  for _, tok in ipairs(stale) do
    redis.call('ZREM', K_ACT, tok)
    forget(tok, 'EXPIRED', now)
  end
  return #stale
end

local function expire_unpolled(now, wttl)
  if wttl <= 0 then return 0 end
  local stale = redis.call('ZRANGEBYSCORE', K_SEEN, '-inf', now - wttl)
  local n = 0
  for _, tok in ipairs(stale) do
    if redis.call('ZREM', K_WAIT, tok) == 1 then
      forget(tok, 'EXPIRED', now)
      n = n + 1
    else
      redis.call('ZREM', K_SEEN, tok)
    end
  end
  return n
end

local function promote(now, max, ttl, grace)
  if now < opens() then return 0 end
  local free = max - redis.call('ZCARD', K_ACT)
  if free <= 0 then return 0 end
  local head = redis.call('ZPOPMIN', K_WAIT, free)
  local n = 0
  for i = 1, #head, 2 do
    local tok = head[i]
    redis.call('ZREM', K_SEEN, tok)
    if grace > 0 and grace < ttl then
      redis.call('ZADD', K_ACT, now + grace, tok)
      redis.call('HSET', K_GRACE, tok, now + ttl)
    else
      redis.call('ZADD', K_ACT, now + ttl, tok)
    end
    redis.call('ZADD', K_ADMLOG, now, tok)
    n = n + 1
  end
  if n > 0 then
    redis.call('INCRBY', K_ADMITTED, n)
    redis.call('ZREMRANGEBYSCORE', K_ADMLOG, '-inf', now - RATE_WINDOW)
  end
  return n
end

-- The owner used the token: a waiting one stays in line, a promoted one keeps its slot for the full time.
local function touch(tok, now)
  if redis.call('ZSCORE', K_WAIT, tok) then redis.call('ZADD', K_SEEN, now, tok) end
  local full = redis.call('HGET', K_GRACE, tok)
  if full then
    local exp = redis.call('ZSCORE', K_ACT, tok)
    if exp and tonumber(exp) > now then redis.call('ZADD', K_ACT, full, tok) end
    redis.call('HDEL', K_GRACE, tok)
  end
end

-- {1, status(1 active, 2 waiting, 3 pre-queue), position, expiresAt, admittedLastMinute, now, userId, tokenId, opens}
-- {2, reason, userId}: gone; {3, state}: line closed; {4}: rejoin allowed; {0}: unknown
local function view(tok, now)
  local state = redis.call('GET', K_STATE)
  if state then return {3, state} end
  local user = redis.call('HGET', K_OWNERS, tok)
  if not user then
    local info = redis.call('HGET', K_GONEINFO, tok)
    local left = tonumber(redis.call('ZSCORE', K_GONE, tok) or '0')
    if info and left > now - GONE_KEEP then
      local bar = string.find(info, '|', 1, true)
      return {2, string.sub(info, 1, bar - 1), string.sub(info, bar + 1)}
    end
    local reopened = tonumber(redis.call('HGET', K_CFG, 'reopened') or '0')
    if reopened > 0 and now - reopened < REJOIN then return {4} end
    return {0}
  end
  local rate = redis.call('ZCOUNT', K_ADMLOG, '(' .. (now - RATE_WINDOW), '+inf')
  local exp = redis.call('ZSCORE', K_ACT, tok)
  if exp then
    exp = tonumber(exp)
    if exp <= now then return {2, 'EXPIRED', user} end
    return {1, 1, 0, exp, rate, now, user, tok, opens()}
  end
  local rank = redis.call('ZRANK', K_WAIT, tok)
  if not rank then return {0} end
  local o = opens()
  if now < o then return {1, 3, 0, -1, rate, now, user, tok, o} end
  return {1, 2, rank + 1, -1, rate, now, user, tok, o}
end
`;

const SCRIPTS = {
	/** ARGV: userId, newTokenId, maxActive, ttlMs, concertId, graceMs, opensAt, preQueueScore, waitingTtlMs. */
	queueEnter: `
local now = now_ms()
local state = redis.call('GET', K_STATE)
if state then return {3, state} end
local max, ttl, grace, wttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[9])
redis.call('HSET', K_CFG, 'opens', ARGV[7])
expire_stale(now)
expire_unpolled(now, wttl)
promote(now, max, ttl, grace)
local tok = redis.call('HGET', K_USERS, ARGV[1])
local created = 0
if not tok then
  tok = ARGV[2]
  if redis.call('HEXISTS', K_OWNERS, tok) == 1 then return redis.error_reply('QUEUE_TOKEN_COLLISION') end
  redis.call('HSET', K_USERS, ARGV[1], tok)
  redis.call('HSET', K_OWNERS, tok, ARGV[1])
  local score
  if now < opens() then score = ARGV[8] else score = redis.call('INCR', K_SEQ) end
  redis.call('ZADD', K_WAIT, score, tok)
  created = 1
  promote(now, max, ttl, grace)
end
touch(tok, now)
local v = view(tok, now)
table.insert(v, created)
return v`,

	/** ARGV: tokenId, userId to touch for ('' = a plain read). */
	queueLookup: `
local now = now_ms()
local tok = ARGV[1]
if ARGV[2] ~= '' and redis.call('HGET', K_OWNERS, tok) == ARGV[2] then touch(tok, now) end
return view(tok, now)`,

	/** ARGV: tokenId, userId ('' = any owner), maxActive, ttlMs, graceMs, reason. Returns {was (0 none, 1 active, 2 waiting), admitted}. */
	queueLeave: `
local now = now_ms()
local tok = ARGV[1]
local user = redis.call('HGET', K_OWNERS, tok)
if not user or (ARGV[2] ~= '' and user ~= ARGV[2]) then return {0, 0} end
local was = 0
if redis.call('ZREM', K_ACT, tok) == 1 then was = 1 elseif redis.call('ZREM', K_WAIT, tok) == 1 then was = 2 end
forget(tok, ARGV[6], now)
expire_stale(now)
return {was, promote(now, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))}`,

	/**
	 * ARGV: maxActive, ttlMs, concertId, graceMs, waitingTtlMs, opensAt ('' = keep). Returns {expired, admitted,
	 * empty}: empty = 1 when the line holds nothing (or is closed), so the caller drops it from the sweep set.
	 */
	queueSweep: `
local now = now_ms()
-- A line closed (SOLD_OUT or CLOSED) after this sweep listed its concert: its memory is freed, nothing to sweep,
-- and writing its opening time would leave a key of a freed line behind.
if redis.call('EXISTS', K_STATE) == 1 then
  return {0, 0, 1}
end
if ARGV[6] ~= '' then redis.call('HSET', K_CFG, 'opens', ARGV[6]) end
local expired = expire_stale(now) + expire_unpolled(now, tonumber(ARGV[5]))
-- Tokens that left more than GONE_KEEP ago are forgotten one by one (the keys' own expiry is only the backstop).
local old = redis.call('ZRANGEBYSCORE', K_GONE, '-inf', now - GONE_KEEP)
for _, tok in ipairs(old) do redis.call('HDEL', K_GONEINFO, tok) end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', K_GONE, '-inf', now - GONE_KEEP) end
local admitted = promote(now, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4]))
local empty = 0
if redis.call('ZCARD', K_WAIT) == 0 and redis.call('ZCARD', K_ACT) == 0 and redis.call('HLEN', K_OWNERS) == 0 then
  empty = 1
end
return {expired, admitted, empty}`,

	/** Read-only. 1 when the line holds tokens and is not closed: the sweep's second look after dropping it. */
	queueLive: `
if redis.call('EXISTS', K_STATE) == 1 then return 0 end
if redis.call('ZCARD', K_WAIT) > 0 or redis.call('ZCARD', K_ACT) > 0 or redis.call('HLEN', K_OWNERS) > 0 then return 1 end
return 0`,

	/** Read-only. Returns {waiting, active, slotsTaken, admittedLastMinute, admittedTotal, state}. */
	queueStats: `
local now = now_ms()
return {
  redis.call('ZCARD', K_WAIT),
  redis.call('ZCOUNT', K_ACT, '(' .. now, '+inf'),
  redis.call('ZCARD', K_ACT),
  redis.call('ZCOUNT', K_ADMLOG, '(' .. (now - RATE_WINDOW), '+inf'),
  tonumber(redis.call('GET', K_ADMITTED) or '0'),
  redis.call('GET', K_STATE) or ''
}`,

	/** ARGV: state (SOLD_OUT or CLOSED), concertId, stateTtlMs. Frees the line's memory (the registries: the caller). */
	queueClose: `
redis.call('DEL', K_SEQ, K_WAIT, K_ACT, K_USERS, K_OWNERS, K_ADMLOG, K_ADMITTED, K_SEEN, K_GRACE, K_GONE, K_GONEINFO, K_CFG)
redis.call('SET', K_STATE, ARGV[1], 'PX', ARGV[3])
return 1`,

	/** ARGV: concertId. (The sold-out registry: the caller.) */
	queueReopen: `
local now = now_ms()
redis.call('DEL', K_STATE)
redis.call('HSET', K_CFG, 'reopened', now)
redis.call('PEXPIRE', K_CFG, REJOIN)
return 1`
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
			Object.keys(SCRIPTS).map(name => [name, (...args: (string | number)[]) => store.call(scripts[name as ScriptName](...args))])
		) as QueueRedis;
	}

	async enter(concertId: string, userId: string, newTokenId: string, limits: QueueLimits): Promise<EnterResult> {
		const r = await this.redis.queueEnter(
			...keysOf(concertId),
			userId,
			newTokenId,
			limits.maxActive,
			limits.activeTtlMs,
			concertId,
			limits.graceMs ?? 0,
			limits.opensAt ?? 0,
			preQueueScore(),
			limits.waitingTtlMs ?? 0
		);
		const found = toLookup(r);
		if (found.kind === "closed") throw new QueueLineClosedError(concertId, found.state);
		// The entry always exists right after entering: the script created it or found it in the same step.
		if (found.kind !== "live") throw new Error("queue enter returned no entry");
		const created = Number(r[r.length - 1]) === 1;
		// After the script, never before: a sweep that found the line empty and dropped it in between would
		// otherwise leave this new token's line out of the registry (see the header). On every entry, not only a
		// new token's: a retry of an entry whose SADD was lost then adds it. And it never fails the entry: the
		// registry lives in another slot (on a cluster, maybe a master that is failing over), the token exists
		// already, and a line missing from the registry only misses the periodic sweep until its next entry.
		await this.store.call(this.store.redis.sadd(LIVE_CONCERTS_KEY, concertId)).catch(() => undefined);
		return { ...found.entry, created };
	}

	async read(concertId: string, tokenId: string): Promise<QueueEntry | null> {
		const found = await this.lookup(concertId, tokenId);
		return found.kind === "live" ? found.entry : null;
	}

	async lookup(concertId: string, tokenId: string, touchUserId?: string): Promise<QueueLookup> {
		return toLookup(await this.redis.queueLookup(...keysOf(concertId), tokenId, touchUserId ?? ""));
	}

	async leave(concertId: string, tokenId: string, userId: string | null, limits: QueueLimits, reason: GoneReason = "LEFT"): Promise<QueueStatus | null> {
		const [was] = await this.redis.queueLeave(
			...keysOf(concertId),
			tokenId,
			userId ?? "",
			limits.maxActive,
			limits.activeTtlMs,
			limits.graceMs ?? 0,
			reason
		);
		return Number(was) === 1 ? "ACTIVE" : Number(was) === 2 ? "WAITING" : null;
	}

	async sweep(limits: QueueLimits, opensAt?: (concertId: string) => number | undefined): Promise<SweepResult> {
		const concerts = await this.store.call(this.store.redis.smembers(LIVE_CONCERTS_KEY));
		const result: SweepResult = { concerts: concerts.length, expired: 0, admitted: 0 };
		// One line that fails (its master failing over) does not stop the others; the first error is thrown at the end.
		let failed: unknown;
		for (const concertId of concerts) {
			try {
				await this.sweepOne(concertId, limits, result, opensAt?.(concertId));
			} catch (err) {
				failed ??= err;
			}
		}
		if (failed !== undefined) throw failed;
		return result;
	}

	private async sweepOne(concertId: string, limits: QueueLimits, result: SweepResult, opens: number | undefined): Promise<void> {
		const [expired, admitted, empty] = await this.redis.queueSweep(
			...keysOf(concertId),
			limits.maxActive,
			limits.activeTtlMs,
			concertId,
			limits.graceMs ?? 0,
			limits.waitingTtlMs ?? 0,
			opens === undefined ? "" : opens
		);
		result.expired += Number(expired);
		result.admitted += Number(admitted);
		if (Number(empty) === 1) {
			// Drop it, then look again: an entry that filled the line between the script and the SREM has added it
			// before the SREM (then the second look sees its token and puts it back) or adds it after (its SADD
			// follows its script). Either way a live line stays listed.
			await this.store.call(this.store.redis.srem(LIVE_CONCERTS_KEY, concertId));
			const live = await this.redis.queueLive(...keysOf(concertId));
			if (Number(live) === 1) await this.store.call(this.store.redis.sadd(LIVE_CONCERTS_KEY, concertId));
		}
	}

	async stats(concertId: string): Promise<QueueStats> {
		const r = await this.redis.queueStats(...keysOf(concertId));
		const [waiting, active, slotsTaken, lastMinute, total] = r.slice(0, 5).map(Number);
		const state = String(r[5] ?? "");
		return { waiting, active, slotsTaken, admittedLastMinute: lastMinute, admittedTotal: total, state: state === "" ? null : (state as LineState) };
	}

	async close(concertId: string, state: LineState, stateTtlMs: number): Promise<void> {
		const redis = this.store.redis;
		// The sold-out registry may list too much, never too little (see the header): added to before the close
		// (a node dying after the script leaves it listed) and again after it (a reopen or CLOSED close on another
		// node that dropped it between the two is then undone; theirs check the state after dropping, see below).
		if (state === "SOLD_OUT") await this.store.call(redis.sadd(SOLD_OUT_KEY, concertId));
		await this.redis.queueClose(...keysOf(concertId), state, concertId, stateTtlMs);
		await this.store.call(redis.srem(LIVE_CONCERTS_KEY, concertId));
		if (state === "SOLD_OUT") await this.store.call(redis.sadd(SOLD_OUT_KEY, concertId));
		else await this.dropSoldOut(concertId);
	}

	async reopen(concertId: string): Promise<void> {
		await this.redis.queueReopen(...keysOf(concertId), concertId);
		await this.dropSoldOut(concertId);
	}

	/**
	 * Drops the concert from the sold-out registry, then looks at its line: closed SOLD_OUT by a close that ran
	 * meanwhile (on another node), it is listed again. So whatever the interleaving, a line closed SOLD_OUT stays
	 * listed: either that close's last SADD follows this SREM, or this look follows that close's script.
	 */
	private async dropSoldOut(concertId: string): Promise<void> {
		const redis = this.store.redis;
		await this.store.call(redis.srem(SOLD_OUT_KEY, concertId));
		if ((await this.store.call(redis.get(queueKey(concertId, "state")))) === "SOLD_OUT") await this.store.call(redis.sadd(SOLD_OUT_KEY, concertId));
	}

	async forgetConcert(concertId: string): Promise<void> {
		// The line's keys in one DEL (one slot), then the registries, each on its own (other slots). A registry
		// entry left behind by a failure in between names a line with nothing in it: the next sweep drops it from
		// the live set, and the sale check closes a forgotten (ended) concert again and drops it from the sold-out one.
		await this.store.call(this.store.redis.del(...keysOf(concertId)));
		await Promise.all([
			this.store.call(this.store.redis.srem(LIVE_CONCERTS_KEY, concertId)),
			this.store.call(this.store.redis.srem(SOLD_OUT_KEY, concertId))
		]);
	}

	async concerts(): Promise<{ live: string[]; soldOut: string[] }> {
		const [live, soldOut] = await Promise.all([
			this.store.call(this.store.redis.smembers(LIVE_CONCERTS_KEY)),
			this.store.call(this.store.redis.smembers(SOLD_OUT_KEY))
		]);
		return { live, soldOut };
	}
}

const STATUS_CODES: Record<number, QueueStatus> = { 1: "ACTIVE", 2: "WAITING", 3: "PRE_QUEUE" };

function toLookup(r: Reply): QueueLookup {
	switch (Number(r[0])) {
		case 1: {
			const status = STATUS_CODES[Number(r[1])];
			return {
				kind: "live",
				entry: {
					status,
					position: Number(r[2]),
					expiresAt: status === "ACTIVE" ? Number(r[3]) : null,
					admittedLastMinute: Number(r[4]),
					now: Number(r[5]),
					userId: String(r[6]),
					tokenId: String(r[7]),
					opensAt: Number(r[8]) || null
				}
			};
		}
		case 2:
			return { kind: "gone", reason: String(r[1]) as GoneReason, userId: String(r[2]) };
		case 3:
			return { kind: "closed", state: String(r[1]) as LineState };
		case 4:
			return { kind: "rejoin" };
		default:
			return { kind: "unknown" };
	}
}

// Memory

interface ConcertQueue {
	seq: number;
	/** tokenId -> arrival counter; a Map keeps insertion order, which is the line's order. */
	wait: Map<string, number>;
	/** The pre-queue: tokenId -> random score; merged in front of the line, in score order, at the opening. */
	pre: Map<string, number>;
	/** tokenId -> expiry (epoch ms). */
	active: Map<string, number>;
	users: Map<string, string>;
	owners: Map<string, string>;
	/** Admission times, oldest first. */
	admlog: number[];
	admitted: number;
	/** tokenId -> last poll, for waiting tokens. */
	seen: Map<string, number>;
	/** tokenId -> full expiry, for promoted tokens not used yet. */
	grace: Map<string, number>;
	/** When the sale opens (epoch ms; 0: open). */
	opens: number;
}

interface MemoryState {
	lines: Map<string, ConcertQueue>;
	/** tokenId (qualified by concert) -> why it left, when, and whose it was. */
	gone: Map<string, { reason: GoneReason; userId: string; at: number }>;
	closed: Map<string, { state: LineState; until: number }>;
	reopened: Map<string, number>;
}

/** Queue state per MemoryStore instance: brokers sharing one store share one waiting room, as with Redis. */
const memoryStates = new WeakMap<MemoryStore, MemoryState>();

export class MemoryQueueStore implements QueueStore {
	private readonly state: MemoryState;
	private readonly concertsMap: Map<string, ConcertQueue>;
	private readonly now: () => number;

	constructor(store: MemoryStore) {
		let state = memoryStates.get(store);
		if (!state) {
			state = { lines: new Map(), gone: new Map(), closed: new Map(), reopened: new Map() };
			memoryStates.set(store, state);
		}
		this.state = state;
		this.concertsMap = state.lines;
		this.now = store.now;
	}

	async enter(concertId: string, userId: string, newTokenId: string, limits: QueueLimits): Promise<EnterResult> {
		const now = this.now();
		const closed = this.closedState(concertId, now);
		if (closed) throw new QueueLineClosedError(concertId, closed);
		const q = this.queue(concertId, true)!;
		q.opens = limits.opensAt ?? 0;
		this.expireStale(concertId, q, now);
		this.expireUnpolled(concertId, q, now, limits.waitingTtlMs ?? 0);
		this.promote(q, now, limits);
		let tokenId = q.users.get(userId);
		let created = false;
		if (tokenId === undefined) {
			if (q.owners.has(newTokenId)) throw new Error("QUEUE_TOKEN_COLLISION");
			tokenId = newTokenId;
			q.users.set(userId, tokenId);
			q.owners.set(tokenId, userId);
			if (now < q.opens) q.pre.set(tokenId, preQueueScore());
			else q.wait.set(tokenId, ++q.seq);
			created = true;
			this.promote(q, now, limits);
		}
		this.touch(q, tokenId, now);
		const found = this.view(concertId, q, tokenId, now);
		if (found.kind !== "live") throw new Error("queue enter returned no entry");
		return { ...found.entry, created };
	}

	async read(concertId: string, tokenId: string): Promise<QueueEntry | null> {
		const found = await this.lookup(concertId, tokenId);
		return found.kind === "live" ? found.entry : null;
	}

	async lookup(concertId: string, tokenId: string, touchUserId?: string): Promise<QueueLookup> {
		const now = this.now();
		const q = this.queue(concertId, false);
		if (q && touchUserId !== undefined && q.owners.get(tokenId) === touchUserId) this.touch(q, tokenId, now);
		return this.view(concertId, q, tokenId, now);
	}

	async leave(concertId: string, tokenId: string, userId: string | null, limits: QueueLimits, reason: GoneReason = "LEFT"): Promise<QueueStatus | null> {
		const q = this.queue(concertId, false);
		if (!q) return null;
		const owner = q.owners.get(tokenId);
		if (owner === undefined || (userId !== null && owner !== userId)) return null;
		const was: QueueStatus | null = q.active.delete(tokenId) ? "ACTIVE" : q.wait.delete(tokenId) || q.pre.delete(tokenId) ? "WAITING" : null;
		const now = this.now();
		this.forget(concertId, q, tokenId, reason, now);
		this.expireStale(concertId, q, now);
		this.promote(q, now, limits);
		return was;
	}

	async sweep(limits: QueueLimits, opensAt?: (concertId: string) => number | undefined): Promise<SweepResult> {
		const now = this.now();
		const result: SweepResult = { concerts: this.concertsMap.size, expired: 0, admitted: 0 };
		for (const [concertId, q] of this.concertsMap) {
			const opens = opensAt?.(concertId);
			if (opens !== undefined) q.opens = opens;
			result.expired += this.expireStale(concertId, q, now) + this.expireUnpolled(concertId, q, now, limits.waitingTtlMs ?? 0);
			result.admitted += this.promote(q, now, limits);
			if (q.wait.size === 0 && q.pre.size === 0 && q.active.size === 0 && q.owners.size === 0) this.concertsMap.delete(concertId);
		}
		for (const [key, g] of this.state.gone) if (g.at <= now - GONE_KEEP_MS) this.state.gone.delete(key);
		for (const [concertId, at] of this.state.reopened) if (at <= now - REJOIN_MS) this.state.reopened.delete(concertId);
		return result;
	}

	async stats(concertId: string): Promise<QueueStats> {
		const now = this.now();
		const state = this.closedState(concertId, now);
		const q = this.queue(concertId, false);
		if (!q) return { waiting: 0, active: 0, slotsTaken: 0, admittedLastMinute: 0, admittedTotal: 0, state };
		let active = 0;
		for (const exp of q.active.values()) if (exp > now) active++;
		return {
			waiting: q.wait.size + q.pre.size,
			active,
			slotsTaken: q.active.size,
			admittedLastMinute: this.rate(q, now),
			admittedTotal: q.admitted,
			state
		};
	}

	async close(concertId: string, state: LineState, stateTtlMs: number): Promise<void> {
		this.concertsMap.delete(concertId);
		const prefix = `${concertId}.`;
		for (const key of this.state.gone.keys()) if (key.startsWith(prefix)) this.state.gone.delete(key);
		this.state.reopened.delete(concertId);
		this.state.closed.set(concertId, { state, until: this.now() + stateTtlMs });
	}

	async reopen(concertId: string): Promise<void> {
		this.state.closed.delete(concertId);
		this.state.reopened.set(concertId, this.now());
	}

	async forgetConcert(concertId: string): Promise<void> {
		await this.close(concertId, "CLOSED", 0);
		this.state.closed.delete(concertId);
	}

	async concerts(): Promise<{ live: string[]; soldOut: string[] }> {
		const now = this.now();
		const soldOut: string[] = [];
		for (const concertId of this.state.closed.keys()) if (this.closedState(concertId, now) === "SOLD_OUT") soldOut.push(concertId);
		return { live: [...this.concertsMap.keys()], soldOut };
	}

	/** Memory held by the waiting room (lines, tombstones, closed markers): what a closed line must give back. */
	footprint(): { lines: number; tokens: number; gone: number } {
		let tokens = 0;
		for (const q of this.concertsMap.values()) tokens += q.owners.size;
		return { lines: this.concertsMap.size, tokens, gone: this.state.gone.size };
	}

	private closedState(concertId: string, now: number): LineState | null {
		const c = this.state.closed.get(concertId);
		if (!c) return null;
		if (c.until <= now) {
			this.state.closed.delete(concertId);
			return null;
		}
		return c.state;
	}

	private queue(concertId: string, create: boolean): ConcertQueue | undefined {
		let q = this.concertsMap.get(concertId);
		if (!q && create) {
			q = {
				seq: 0,
				wait: new Map(),
				pre: new Map(),
				active: new Map(),
				users: new Map(),
				owners: new Map(),
				admlog: [],
				admitted: 0,
				seen: new Map(),
				grace: new Map(),
				opens: 0
			};
			this.concertsMap.set(concertId, q);
		}
		return q;
	}

	private forget(concertId: string, q: ConcertQueue, tokenId: string, reason: GoneReason | "", now: number): void {
		const user = q.owners.get(tokenId);
		if (user !== undefined && reason !== "") this.state.gone.set(`${concertId}.${tokenId}`, { reason, userId: user, at: now });
		q.owners.delete(tokenId);
		q.seen.delete(tokenId);
		q.grace.delete(tokenId);
		if (user !== undefined && q.users.get(user) === tokenId) q.users.delete(user);
	}

	private expireStale(concertId: string, q: ConcertQueue, now: number): number {
		let n = 0;
		for (const [tokenId, exp] of q.active) {
			if (exp <= now) {
				q.active.delete(tokenId);
				this.forget(concertId, q, tokenId, "EXPIRED", now);
				n++;
			}
		}
		return n;
	}

	private expireUnpolled(concertId: string, q: ConcertQueue, now: number, waitingTtlMs: number): number {
		if (waitingTtlMs <= 0) return 0;
		let n = 0;
		for (const [tokenId, seen] of q.seen) {
			if (seen > now - waitingTtlMs) continue;
			if (q.wait.delete(tokenId) || q.pre.delete(tokenId)) {
				this.forget(concertId, q, tokenId, "EXPIRED", now);
				n++;
			} else q.seen.delete(tokenId);
		}
		return n;
	}

	/** At the opening the pre-queue goes in front of the line, in its random order (once). */
	private mergePreQueue(q: ConcertQueue, now: number): void {
		if (now < q.opens || q.pre.size === 0) return;
		const merged = [...q.pre.entries()].sort((a, b) => a[1] - b[1]).map(([t], i) => [t, i - q.pre.size] as [string, number]);
		q.wait = new Map([...merged, ...q.wait]);
		q.pre.clear();
	}

	private promote(q: ConcertQueue, now: number, limits: QueueLimits): number {
		if (now < q.opens) return 0;
		this.mergePreQueue(q, now);
		const free = limits.maxActive - q.active.size;
		if (free <= 0 || q.wait.size === 0) return 0;
		const head: [string, number][] = [];
		for (const entry of q.wait) {
			if (head.length >= free) break;
			head.push(entry);
		}
		const grace = limits.graceMs ?? 0;
		for (const [tokenId] of head) {
			q.wait.delete(tokenId);
			q.seen.delete(tokenId);
			if (grace > 0 && grace < limits.activeTtlMs) {
				q.active.set(tokenId, now + grace);
				q.grace.set(tokenId, now + limits.activeTtlMs);
			} else q.active.set(tokenId, now + limits.activeTtlMs);
			q.admlog.push(now);
		}
		q.admitted += head.length;
		this.trimLog(q, now);
		return head.length;
	}

	private touch(q: ConcertQueue, tokenId: string, now: number): void {
		if (q.wait.has(tokenId) || q.pre.has(tokenId)) q.seen.set(tokenId, now);
		const full = q.grace.get(tokenId);
		if (full !== undefined) {
			const exp = q.active.get(tokenId);
			if (exp !== undefined && exp > now) q.active.set(tokenId, full);
			q.grace.delete(tokenId);
		}
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

	private view(concertId: string, q: ConcertQueue | undefined, tokenId: string, now: number): QueueLookup {
		const closed = this.closedState(concertId, now);
		if (closed) return { kind: "closed", state: closed };
		const userId = q?.owners.get(tokenId);
		if (!q || userId === undefined) {
			const g = this.state.gone.get(`${concertId}.${tokenId}`);
			if (g && g.at > now - GONE_KEEP_MS) return { kind: "gone", reason: g.reason, userId: g.userId };
			const reopened = this.state.reopened.get(concertId);
			if (reopened !== undefined && now - reopened < REJOIN_MS) return { kind: "rejoin" };
			return { kind: "unknown" };
		}
		const admittedLastMinute = this.rate(q, now);
		const opensAt = q.opens || null;
		const exp = q.active.get(tokenId);
		if (exp !== undefined) {
			if (exp <= now) return { kind: "gone", reason: "EXPIRED", userId };
			return { kind: "live", entry: { tokenId, userId, status: "ACTIVE", position: 0, expiresAt: exp, admittedLastMinute, now, opensAt } };
		}
		if (q.pre.has(tokenId)) {
			if (now < q.opens)
				return { kind: "live", entry: { tokenId, userId, status: "PRE_QUEUE", position: 0, expiresAt: null, admittedLastMinute, now, opensAt } };
			this.mergePreQueue(q, now);
		}
		if (!q.wait.has(tokenId)) return { kind: "unknown" };
		// O(position): the line is a Map in its order. Fine for embedded mode; Redis uses ZRANK.
		let position = 0;
		for (const id of q.wait.keys()) {
			position++;
			if (id === tokenId) break;
		}
		return { kind: "live", entry: { tokenId, userId, status: "WAITING", position, expiresAt: null, admittedLastMinute, now, opensAt } };
	}
}

export function createQueueStore(store: CoordinationStore): QueueStore {
	return store.kind === "redis" ? new RedisQueueStore(store as RedisStore) : new MemoryQueueStore(store as MemoryStore);
}
