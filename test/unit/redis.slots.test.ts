/**
 * The key layout a Redis Cluster needs, checked without a server: every key one script (or one MULTI, MGET or
 * multi-key DEL) touches hashes to one slot, with the install prefix in front as the store sends it, and the keys
 * of different concerts and schedules spread over the slots (so over the masters). Slots are computed with
 * `cluster-key-slot`, the function ioredis itself routes by. Also: a store given cluster nodes uses the cluster
 * client, and a cluster that cannot be reached fails a command with the retryable error within its bound.
 */
import crypto from "crypto";
import { Cluster } from "ioredis";
import { RedisStore, StoreUnavailableError, createStore } from "../../lib/store";
import { indexKey, seatKey, tombstoneKey } from "../../services/concert/holds.store";
import { keysOf, LIVE_CONCERTS_KEY, queueKey, SOLD_OUT_KEY } from "../../services/queue/queue.store";
import { RANKING_KEYS } from "../../services/ranking/ranking.store";

// ioredis' own slot function (a dependency of ioredis, without type declarations).
const keySlot: (key: string) => number = require("cluster-key-slot");

const PREFIXES = ["crp:default:", "crp-test:t1abc:", ""];
const slotsOf = (prefix: string, keys: string[]) => new Set(keys.map(k => keySlot(prefix + k)));
/** Which third of the slot range (what three masters get from `redis-cli --cluster create`). */
const third = (slot: number) => Math.min(2, Math.floor(slot / 5462));

describe("redis cluster key layout", () => {
	it.each(PREFIXES)("when a waiting-room script runs (prefix %j), then all of its keys are in the concert's slot", prefix => {
		const concertId = crypto.randomUUID();
		const keys = keysOf(concertId);
		expect(keys.length).toBeGreaterThan(10);
		expect(slotsOf(prefix, keys)).toEqual(new Set([keySlot(concertId)]));
		// The registries across concerts are never a script's key.
		expect(keys).not.toContain(LIVE_CONCERTS_KEY);
		expect(keys).not.toContain(SOLD_OUT_KEY);
		expect(queueKey(concertId, "active")).toBe(`queue:{${concertId}}:active`);
	});

	it.each(PREFIXES)("when a ranking script runs (prefix %j), then all of its keys are in one slot", prefix => {
		expect(slotsOf(prefix, Object.values(RANKING_KEYS)).size).toBe(1);
	});

	it.each(PREFIXES)("when a hold, abandon or owners read runs (prefix %j), then the index, tombstone and seat keys share the schedule's slot", prefix => {
		const scheduleId = crypto.randomUUID();
		const keys = [indexKey(scheduleId), tombstoneKey(scheduleId, crypto.randomUUID()), ...["A-1", "A-2", "B-10", "C-4"].map(s => seatKey(scheduleId, s))];
		expect(slotsOf(prefix, keys)).toEqual(new Set([keySlot(scheduleId)]));
	});

	it("when there are many concerts and schedules, then their slots spread over the three masters' ranges", () => {
		for (const keyOf of [(id: string) => keysOf(id)[0], (id: string) => indexKey(id)]) {
			const perThird = [0, 0, 0];
			for (let i = 0; i < 300; i++) perThird[third(keySlot(`crp:default:${keyOf(crypto.randomUUID())}`))]++;
			// 100 expected each; below 60 is more than five standard deviations off.
			for (const n of perThird) expect(n).toBeGreaterThan(60);
		}
	});
});

describe("redis store on a cluster", () => {
	it("when the configuration names cluster nodes, then the store uses the cluster client with the install prefix", async () => {
		const store = createStore({ redis: { url: "redis://127.0.0.1:1", clusterNodes: ["127.0.0.1:1", "127.0.0.1:2"] }, storePrefix: "crp:x:" });
		try {
			expect(store).toBeInstanceOf(RedisStore);
			const redis = (store as RedisStore).redis;
			expect(redis).toBeInstanceOf(Cluster);
			expect((redis as Cluster).options.keyPrefix).toBe("crp:x:");
			expect((redis as Cluster).options.scaleReads).toBe("master");
			// The nodes' own clients carry no prefix (clear() and scanKeys() rely on it).
			expect((redis as Cluster).options.redisOptions?.keyPrefix).toBeUndefined();
		} finally {
			await store.close();
		}
	});

	it("when no node of the cluster answers, then a command fails with the retryable error within its bound", async () => {
		const store = new RedisStore({ url: "redis://127.0.0.1:1", prefix: "x:", clusterNodes: ["127.0.0.1:1"], commandTimeoutMs: 200, failoverBudgetMs: 300 });
		try {
			const t0 = Date.now();
			const err = await store.get("k").catch((e: unknown) => e);
			expect(err).toBeInstanceOf(StoreUnavailableError);
			expect(String((err as Error).message)).not.toContain("127.0.0.1");
			expect(Date.now() - t0).toBeLessThan(3000);
		} finally {
			await store.close();
		}
	});

	it("when a single server is configured, then the store stays on the plain client", async () => {
		const store = new RedisStore({ url: "redis://127.0.0.1:1", prefix: "x:", commandTimeoutMs: 200 });
		try {
			expect(store.clustered).toBe(false);
			expect(store.redis).not.toBeInstanceOf(Cluster);
		} finally {
			await store.close();
		}
	});
});
