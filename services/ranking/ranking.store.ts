/**
 * Concert popularity (seats sold) in a sorted set, fed by reservation events that may arrive late, twice or out
 * of order (seed 000 section 3.4, scenario 4). One interface, two implementations under one contract suite
 * (test/unit/ranking.store.test.ts): memory (embedded mode, synchronous, so atomic in-process) and Redis (one Lua
 * script per operation).
 *
 * The rule that makes order irrelevant: each reservation contributes `seats` to its concert's score according to
 * its latest known state (CONFIRMED: its seat count; anything else: 0), and a state is applied only when its
 * aggregate version is newer than the last one applied for that reservation. The score moves by the difference.
 * So a duplicate (same version) changes nothing, and a cancel (v3) that arrives before its confirm (v2) sets the
 * contribution to 0 and makes the late confirm a no-op.
 *
 * The rebuild (issue 15 item 6) uses the same rule. It used to replace the scores and keep the per-reservation
 * versions, so an event in flight during a rebuild counted twice or not at all, and after a Redis loss a cancel of
 * a booking confirmed before the loss found no version and changed nothing. Now the rebuild builds a complete
 * second copy, versions and scores together, beside the live one: every reservation's latest state from the
 * producer's outbox (the truth, with its version) goes into the copy through the same max-version rule, and every
 * event applied while the copy is being built goes into both. Whatever the order of the truth's pages and the
 * events, the copy ends with, per reservation, the newest state either of them knew, and scores that are exactly
 * the sum of those states. Then one step swaps the copy in. So an event in flight during a rebuild counts once,
 * and every event after it is applied against the versions the rebuild wrote.
 *
 * One node builds at a time: the build is a lease (`ranking:{rk}:build:lease`), renewed by each page, that a dead
 * builder loses; the next build throws its half-built copy away.
 *
 * `ranking:{rk}:ready` is written with the scores by each rebuild. When Redis comes back without its data, the marker is
 * gone with everything else: `apply` then refuses (the event is retried later), `ready()` says false, and the
 * ranking service rebuilds itself from the database (ranking.service.ts). A fresh install starts the same way.
 *
 * Redis layout, relative to the install prefix. Every key carries the hash tag `{rk}`, so on a Redis Cluster they
 * all live in one slot: the scripts read and write several of them in one atomic step (apply touches both copies,
 * commit renames the copy over the live one), which a cluster only runs when all of its keys share a slot. The
 * ranking is one small structure written once per confirmed or cancelled booking, so one slot is enough.
 *   ranking:{rk}:concerts        -> sorted set concertId -> seats sold (the live copy)
 *   ranking:{rk}:states          -> hash reservationId -> "<version>:<seats>:<concertId>" (the live copy)
 *   ranking:{rk}:ready           -> present once the live copy is complete (the time of the rebuild that made it)
 *   ranking:{rk}:build:lease     -> the builder (PX lease) while a rebuild runs
 *   ranking:{rk}:build:concerts, ranking:{rk}:build:states -> the copy being built
 * Upgrading from the untagged names (`ranking:concerts`, ...): the new `ranking:{rk}:ready` does not exist yet, so
 * the ranking service sees a ranking that is not ready and rebuilds it from the reservations, as after a Redis
 * loss; the old keys are left behind unread (delete them with `DEL` at leisure).
 */
import { MemoryStore, RedisStore, type CoordinationStore, type RedisClient } from "../../lib/store";

export interface ReservationState {
	reservationId: string;
	concertId: string;
	/** The event's aggregate version. */
	version: number;
	/** Seats this reservation counts for now: its seat count when confirmed, 0 otherwise. */
	seats: number;
}

export interface ApplyOutcome {
	applied: boolean;
	/** How much the concert's score moved. */
	delta: number;
	/** True when the store has no ranking at all (lost with Redis, never built): nothing was applied. */
	lost?: boolean;
}

export interface ConcertScore {
	concertId: string;
	score: number;
}

export interface RankingStore {
	readonly kind: "memory" | "redis";
	/** Applies a reservation's state if its version is newer than the last applied; atomic. */
	apply(state: ReservationState): Promise<ApplyOutcome>;
	/** Highest scores first (ties by concert id); only concerts with seats sold. */
	top(limit: number): Promise<ConcertScore[]>;
	score(concertId: string): Promise<number>;
	/** False when there is no complete ranking (lost with its store, or never built): it needs a rebuild. */
	ready(): Promise<boolean>;
	/** Starts a rebuild as `owner`; false when another one holds the build lease. Throws away an abandoned copy. */
	beginRebuild(owner: string, leaseMs: number): Promise<boolean>;
	/** Adds truth states to the copy being built and renews the lease; false when `owner` lost it. */
	seed(owner: string, states: ReservationState[], leaseMs: number): Promise<boolean>;
	/** Swaps the copy in and marks the ranking ready; false when `owner` lost the lease (nothing changed). */
	commitRebuild(owner: string): Promise<boolean>;
	/** Gives up a rebuild of `owner`: the copy is dropped, the live ranking stays. */
	abortRebuild(owner: string): Promise<void>;
	/** Drops everything (tests). */
	clear(): Promise<void>;
}

export class RankingRebuildLostError extends Error {
	constructor() {
		super("the ranking rebuild lost its lease (another node took over, or the store lost it)");
		this.name = "RankingRebuildLostError";
	}
}

/**
 * A whole rebuild: begin, the truth's pages, commit. Answers false (and changes nothing) when another node is
 * rebuilding; throws, with the copy dropped, when the truth cannot be read or the lease was lost.
 */
export async function rebuildRanking(store: RankingStore, owner: string, pages: AsyncIterable<ReservationState[]>, leaseMs = 30_000): Promise<boolean> {
	if (!(await store.beginRebuild(owner, leaseMs))) return false;
	try {
		for await (const states of pages) {
			if (!(await store.seed(owner, states, leaseMs))) throw new RankingRebuildLostError();
		}
		if (!(await store.commitRebuild(owner))) throw new RankingRebuildLostError();
		return true;
	} catch (err) {
		await store.abortRebuild(owner).catch(() => undefined);
		throw err;
	}
}

export function createRankingStore(store: CoordinationStore): RankingStore {
	if (store instanceof RedisStore) return new RedisRankingStore(store);
	if (store instanceof MemoryStore) return new MemoryRankingStore(store.now);
	throw new Error(`no ranking store for a ${store.kind} coordination store`);
}

function check(state: ReservationState): void {
	if (!state.reservationId || !state.concertId) throw new Error("reservationId and concertId are required");
	if (!Number.isInteger(state.version) || state.version < 1) throw new Error(`bad version ${state.version}`);
	if (!Number.isInteger(state.seats) || state.seats < 0) throw new Error(`bad seat count ${state.seats}`);
}

const byScore = (a: ConcertScore, b: ConcertScore) => b.score - a.score || a.concertId.localeCompare(b.concertId);

/** One copy of the ranking: the per-reservation states and the scores that are their sums. */
class MemoryCopy {
	readonly scores = new Map<string, number>();
	readonly states = new Map<string, { v: number; n: number }>();

	apply(state: ReservationState): ApplyOutcome {
		const cur = this.states.get(state.reservationId) ?? { v: 0, n: 0 };
		if (state.version <= cur.v) return { applied: false, delta: 0 };
		this.states.set(state.reservationId, { v: state.version, n: state.seats });
		const delta = state.seats - cur.n;
		if (delta !== 0) {
			const next = (this.scores.get(state.concertId) ?? 0) + delta;
			if (next <= 0) this.scores.delete(state.concertId);
			else this.scores.set(state.concertId, next);
		}
		return { applied: true, delta };
	}
}

export class MemoryRankingStore implements RankingStore {
	readonly kind = "memory" as const;
	/** null until the first rebuild: an embedded node that starts has lost whatever it counted before. */
	private live: MemoryCopy | null = null;
	private build: { owner: string; until: number; copy: MemoryCopy } | null = null;

	constructor(private readonly now: () => number = Date.now) {}

	private building(): MemoryCopy | null {
		if (this.build && this.build.until <= this.now()) this.build = null;
		return this.build?.copy ?? null;
	}

	async apply(state: ReservationState): Promise<ApplyOutcome> {
		check(state);
		const building = this.building();
		if (!this.live && !building) return { applied: false, delta: 0, lost: true };
		const outcome = this.live?.apply(state);
		const built = building?.apply(state);
		return (outcome ?? built)!;
	}

	async top(limit: number): Promise<ConcertScore[]> {
		return [...(this.live?.scores ?? [])]
			.map(([concertId, score]) => ({ concertId, score }))
			.sort(byScore)
			.slice(0, limit);
	}

	async score(concertId: string): Promise<number> {
		return this.live?.scores.get(concertId) ?? 0;
	}

	async ready(): Promise<boolean> {
		return this.live !== null;
	}

	async beginRebuild(owner: string, leaseMs: number): Promise<boolean> {
		if (this.building()) return false;
		this.build = { owner, until: this.now() + leaseMs, copy: new MemoryCopy() };
		return true;
	}

	async seed(owner: string, states: ReservationState[], leaseMs: number): Promise<boolean> {
		states.forEach(check);
		const copy = this.building();
		if (!copy || this.build!.owner !== owner) return false;
		this.build!.until = this.now() + leaseMs;
		for (const s of states) copy.apply(s);
		return true;
	}

	async commitRebuild(owner: string): Promise<boolean> {
		const copy = this.building();
		if (!copy || this.build!.owner !== owner) return false;
		this.live = copy;
		this.build = null;
		return true;
	}

	async abortRebuild(owner: string): Promise<void> {
		if (this.build?.owner === owner) this.build = null;
	}

	async clear(): Promise<void> {
		this.live = null;
		this.build = null;
	}
}

/** The ranking's keys, all in the `{rk}` hash slot (see the layout above). Exported for tests and tools. */
export const RANKING_KEYS = {
	ready: "ranking:{rk}:ready",
	lease: "ranking:{rk}:build:lease",
	scores: "ranking:{rk}:concerts",
	states: "ranking:{rk}:states",
	buildScores: "ranking:{rk}:build:concerts",
	buildStates: "ranking:{rk}:build:states"
} as const;
const KEYS = RANKING_KEYS;

/** The max-version rule on one copy (states hash, scores set); shared by the scripts below. */
const APPLY_LUA = `
local function applyTo(sk, zk, rid, cid, version, seats)
  local v, old = 0, 0
  local cur = redis.call('HGET', sk, rid)
  if cur then
    local a, b = string.match(cur, '^(%d+):(%d+):')
    v, old = tonumber(a), tonumber(b)
  end
  if tonumber(version) <= v then return {0, 0} end
  local n = tonumber(seats)
  redis.call('HSET', sk, rid, version .. ':' .. n .. ':' .. cid)
  local delta = n - old
  if delta ~= 0 then
    local s = tonumber(redis.call('ZINCRBY', zk, delta, cid))
    if s <= 0 then redis.call('ZREM', zk, cid) end
  end
  return {1, delta}
end
`;

const SCRIPTS = {
	/**
	 * KEYS: ready, lease, states, scores, build states, build scores; ARGV: reservationId, concertId, version, seats.
	 * Applies to the live copy and to the one being built; {-1, 0} when there is neither (the store was lost).
	 */
	rankingApply: {
		keys: 6,
		lua: `${APPLY_LUA}
local ready = redis.call('EXISTS', KEYS[1]) == 1
local building = redis.call('EXISTS', KEYS[2]) == 1
if not ready and not building then return {-1, 0} end
local out = nil
if ready then out = applyTo(KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) end
if building then
  local b = applyTo(KEYS[5], KEYS[6], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
  if not ready then out = b end
end
return out`
	},
	/** KEYS: lease, build states, build scores; ARGV: owner, lease ms. 0 when a build is running. */
	rankingBegin: {
		keys: 3,
		lua: `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`
	},
	/** KEYS: lease, build states, build scores; ARGV: owner, lease ms, then reservationId, concertId, version, seats... */
	rankingSeed: {
		keys: 3,
		lua: `${APPLY_LUA}
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for i = 3, #ARGV, 4 do applyTo(KEYS[2], KEYS[3], ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]) end
return 1`
	},
	/** KEYS: lease, build states, build scores, states, scores, ready; ARGV: owner, time. The swap, in one step. */
	rankingCommit: {
		keys: 6,
		lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[4]) else redis.call('DEL', KEYS[4]) end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('RENAME', KEYS[3], KEYS[5]) else redis.call('DEL', KEYS[5]) end
redis.call('SET', KEYS[6], ARGV[2])
redis.call('DEL', KEYS[1])
return 1`
	},
	/** KEYS: lease, build states, build scores; ARGV: owner. */
	rankingAbort: {
		keys: 3,
		lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1`
	}
} as const;

type ScriptedRedis = RedisClient & Record<keyof typeof SCRIPTS, (...args: (string | number)[]) => Promise<unknown>>;

export class RedisRankingStore implements RankingStore {
	readonly kind = "redis" as const;
	private readonly redis: ScriptedRedis;

	/** `store` is the node's Redis store (one server or a cluster); its client's keyPrefix applies to KEYS. */
	constructor(private readonly store: RedisStore) {
		const redis: RedisClient = store.redis;
		for (const [name, def] of Object.entries(SCRIPTS)) {
			if (!(name in redis)) redis.defineCommand(name, { lua: def.lua, numberOfKeys: def.keys });
		}
		this.redis = redis as ScriptedRedis;
	}

	async apply(state: ReservationState): Promise<ApplyOutcome> {
		check(state);
		const [applied, delta] = (await this.wrap(
			this.redis.rankingApply(
				KEYS.ready,
				KEYS.lease,
				KEYS.states,
				KEYS.scores,
				KEYS.buildStates,
				KEYS.buildScores,
				state.reservationId,
				state.concertId,
				state.version,
				state.seats
			)
		)) as [number, number];
		if (Number(applied) === -1) return { applied: false, delta: 0, lost: true };
		return { applied: Number(applied) === 1, delta: Number(delta) };
	}

	async top(limit: number): Promise<ConcertScore[]> {
		const flat = await this.wrap(this.redis.zrevrange(KEYS.scores, 0, Math.max(0, limit - 1), "WITHSCORES"));
		const out: ConcertScore[] = [];
		for (let i = 0; i < flat.length; i += 2) out.push({ concertId: flat[i], score: Number(flat[i + 1]) });
		return out.sort(byScore);
	}

	async score(concertId: string): Promise<number> {
		return Number((await this.wrap(this.redis.zscore(KEYS.scores, concertId))) ?? 0);
	}

	async ready(): Promise<boolean> {
		return (await this.wrap(this.redis.exists(KEYS.ready))) === 1;
	}

	async beginRebuild(owner: string, leaseMs: number): Promise<boolean> {
		return Number(await this.wrap(this.redis.rankingBegin(KEYS.lease, KEYS.buildStates, KEYS.buildScores, owner, Math.ceil(leaseMs)))) === 1;
	}

	async seed(owner: string, states: ReservationState[], leaseMs: number): Promise<boolean> {
		states.forEach(check);
		const args = states.flatMap(s => [s.reservationId, s.concertId, s.version, s.seats]);
		return Number(await this.wrap(this.redis.rankingSeed(KEYS.lease, KEYS.buildStates, KEYS.buildScores, owner, Math.ceil(leaseMs), ...args))) === 1;
	}

	async commitRebuild(owner: string): Promise<boolean> {
		const ok = await this.wrap(
			this.redis.rankingCommit(KEYS.lease, KEYS.buildStates, KEYS.buildScores, KEYS.states, KEYS.scores, KEYS.ready, owner, new Date().toISOString())
		);
		return Number(ok) === 1;
	}

	async abortRebuild(owner: string): Promise<void> {
		await this.wrap(this.redis.rankingAbort(KEYS.lease, KEYS.buildStates, KEYS.buildScores, owner));
	}

	async clear(): Promise<void> {
		// Only used by tests; the coordination store's clear() removes every key of the prefix.
		await this.wrap(this.redis.del(...Object.values(KEYS)));
	}

	/** Connection-level failures become the store's retryable error (a 503 over HTTP, a retry for an event). */
	private wrap<T>(p: Promise<T>): Promise<T> {
		return this.store.call(p);
	}
}
