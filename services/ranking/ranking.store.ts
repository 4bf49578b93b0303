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
 * Redis layout, relative to the install prefix:
 *   ranking:concerts           -> sorted set concertId -> seats sold
 *   ranking:r:<reservationId>  -> hash {v: last applied version, n: seats counted, c: concertId}
 */
import type Redis from "ioredis";
import { MemoryStore, redisCall, RedisStore, type CoordinationStore } from "../../lib/store";

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
	/** Replaces every score at once (the rebuild from the reservation service's truth). */
	replaceAll(scores: ConcertScore[]): Promise<void>;
	/** Drops everything (tests). */
	clear(): Promise<void>;
}

export function createRankingStore(store: CoordinationStore): RankingStore {
	if (store instanceof RedisStore) return new RedisRankingStore(store.redis);
	if (store instanceof MemoryStore) return new MemoryRankingStore();
	throw new Error(`no ranking store for a ${store.kind} coordination store`);
}

function check(state: ReservationState): void {
	if (!state.reservationId || !state.concertId) throw new Error("reservationId and concertId are required");
	if (!Number.isInteger(state.version) || state.version < 1) throw new Error(`bad version ${state.version}`);
	if (!Number.isInteger(state.seats) || state.seats < 0) throw new Error(`bad seat count ${state.seats}`);
}

const byScore = (a: ConcertScore, b: ConcertScore) => b.score - a.score || a.concertId.localeCompare(b.concertId);

export class MemoryRankingStore implements RankingStore {
	readonly kind = "memory" as const;
	private readonly scores = new Map<string, number>();
	private readonly states = new Map<string, { v: number; n: number }>();

	async apply(state: ReservationState): Promise<ApplyOutcome> {
		check(state);
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

	async top(limit: number): Promise<ConcertScore[]> {
		return [...this.scores].map(([concertId, score]) => ({ concertId, score })).sort(byScore).slice(0, limit);
	}

	async score(concertId: string): Promise<number> {
		return this.scores.get(concertId) ?? 0;
	}

	async replaceAll(scores: ConcertScore[]): Promise<void> {
		this.scores.clear();
		for (const s of scores) if (s.score > 0) this.scores.set(s.concertId, s.score);
	}

	async clear(): Promise<void> {
		this.scores.clear();
		this.states.clear();
	}
}

const SCORES = "ranking:concerts";
const stateKey = (reservationId: string) => `ranking:r:${reservationId}`;

const SCRIPTS = {
	/** KEYS: state hash, scores; ARGV: concertId, version, seats. Returns {applied, delta}. */
	rankingApply: `
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if tonumber(ARGV[2]) <= v then return {0, 0} end
local old = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local n = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'n', n, 'c', ARGV[1])
local delta = n - old
if delta ~= 0 then
  local s = tonumber(redis.call('ZINCRBY', KEYS[2], delta, ARGV[1]))
  if s <= 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
end
return {1, delta}`,
	/** KEYS: scores; ARGV: concertId, score, concertId, score... Replaces the whole set in one step. */
	rankingReplace: `
redis.call('DEL', KEYS[1])
for i = 1, #ARGV, 2 do
  if tonumber(ARGV[i + 1]) > 0 then redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i]) end
end
return 1`
} as const;

type ScriptedRedis = Redis & Record<keyof typeof SCRIPTS, (...args: (string | number)[]) => Promise<unknown>>;

export class RedisRankingStore implements RankingStore {
	readonly kind = "redis" as const;
	private readonly redis: ScriptedRedis;

	/** `redis` is the node's store client; its keyPrefix applies to KEYS. */
	constructor(redis: Redis) {
		for (const [name, lua] of Object.entries(SCRIPTS)) {
			if (!(name in redis)) redis.defineCommand(name, { lua });
		}
		this.redis = redis as ScriptedRedis;
	}

	async apply(state: ReservationState): Promise<ApplyOutcome> {
		check(state);
		const [applied, delta] = (await this.wrap(
			this.redis.rankingApply(2, stateKey(state.reservationId), SCORES, state.concertId, state.version, state.seats)
		)) as [number, number];
		return { applied: Number(applied) === 1, delta: Number(delta) };
	}

	async top(limit: number): Promise<ConcertScore[]> {
		const flat = await this.wrap(this.redis.zrevrange(SCORES, 0, Math.max(0, limit - 1), "WITHSCORES"));
		const out: ConcertScore[] = [];
		for (let i = 0; i < flat.length; i += 2) out.push({ concertId: flat[i], score: Number(flat[i + 1]) });
		return out.sort(byScore);
	}

	async score(concertId: string): Promise<number> {
		return Number((await this.wrap(this.redis.zscore(SCORES, concertId))) ?? 0);
	}

	async replaceAll(scores: ConcertScore[]): Promise<void> {
		await this.wrap(this.redis.rankingReplace(1, SCORES, ...scores.flatMap(s => [s.concertId, s.score])));
	}

	async clear(): Promise<void> {
		// Only used by tests; the coordination store's clear() removes the per-reservation hashes with the prefix.
		await this.redis.del(SCORES);
	}

	/** Connection-level failures become the store's retryable error (a 503 over HTTP, a retry for an event). */
	private wrap<T>(p: Promise<T>): Promise<T> {
		return redisCall(p);
	}

}
