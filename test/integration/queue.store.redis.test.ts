/** The waiting-room store contract (test/support/contracts/queue.ts) against the real Redis. */
import { RedisStore } from "../../lib/store";
import { createQueueStore, LIVE_CONCERTS_KEY, queueKey } from "../../services/queue/queue.store";
import { queueContract } from "../support/contracts/queue";
import { REDIS_URL, runId } from "../support/isolation";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

queueContract("redis", async () => {
	const store = new RedisStore({ url: REDIS_URL, prefix: `crp-test:${runId()}:` });
	return {
		queue: createQueueStore(store),
		advance: async ms => {
			await sleep(ms);
		},
		close: async () => {
			await store.clear();
			await store.close();
		},
		activeSize: async concertId => store.redis.zcard(queueKey(concertId, "active")),
		now: () => Date.now(),
		lineSize: async concertId => {
			const keys = await store.scanKeys(`queue:{${concertId}}:*`);
			return keys.filter(k => !k.endsWith(":state")).length;
		}
	};
});

/** A queue store on this run's own prefix, its keys removed afterwards. */
async function withQueue(run: (queue: ReturnType<typeof createQueueStore>, store: RedisStore) => Promise<void>): Promise<void> {
	const store = new RedisStore({ url: REDIS_URL, prefix: `crp-test:${runId()}:` });
	try {
		await run(createQueueStore(store), store);
	} finally {
		await store.clear();
		await store.close();
	}
}

describe("waiting-room sweep on Redis", () => {
	it("when a sweep that listed a concert runs after its line closed, then it writes nothing and the freed line stays freed", async () => {
		await withQueue(async (queue, store) => {
			const c = `c-${runId()}`;
			const limits = { maxActive: 1, activeTtlMs: 60_000 };
			await queue.enter(c, "u1", "t1", limits);
			await queue.enter(c, "u2", "t2", limits);
			await queue.close(c, "SOLD_OUT", 60_000);
			// The sweep read the concert set before the close removed the concert from it (the race of a periodic
			// sweep on another node): put it back as that sweep saw it.
			await store.redis.sadd("queue:concerts", c);
			await queue.sweep(limits, () => 1234);
			expect((await store.scanKeys(`queue:{${c}}:*`)).map(k => k.slice(k.lastIndexOf(":") + 1))).toEqual(["state"]);
			expect(await store.redis.sismember("queue:concerts", c)).toBe(0);
		});
	});

	it("when one line's sweep fails, then the other lines are still swept and the failure is thrown after", async () => {
		await withQueue(async (queue, store) => {
			const limits = { maxActive: 1, activeTtlMs: 60_000 };
			// Four good lines and four broken ones (a key of the wrong type: every sweep of them fails). The registry is
			// a set, with no order to rely on: a sweep that stopped at its first failure would leave some good line
			// unswept in all but 1 of 70 orders.
			const fine = Array.from({ length: 4 }, () => `c-${runId()}`);
			const broken = Array.from({ length: 4 }, () => `c-${runId()}`);
			for (const c of fine) {
				await queue.enter(c, "u1", "t1", limits);
				await queue.enter(c, "u2", "t2", limits);
				await store.redis.zadd(queueKey(c, "active"), 1, "t1"); // t1's slot lapsed long ago
			}
			for (const c of broken) {
				await store.redis.set(queueKey(c, "wait"), "not a sorted set");
				await store.redis.sadd(LIVE_CONCERTS_KEY, c);
			}
			await expect(queue.sweep(limits)).rejects.toThrow(/WRONGTYPE/);
			for (const c of fine) expect((await queue.read(c, "t2"))?.status).toBe("ACTIVE");
		});
	});

	it("when the concert registry cannot be written, then the entry still succeeds and a later entry lists the line", async () => {
		await withQueue(async (queue, store) => {
			const c = `c-${runId()}`;
			const limits = { maxActive: 1, activeTtlMs: 60_000 };
			await store.redis.set(LIVE_CONCERTS_KEY, "not a set");
			expect(await queue.enter(c, "u1", "t1", limits)).toMatchObject({ status: "ACTIVE", created: true });
			await store.redis.del(LIVE_CONCERTS_KEY);
			// The same user's retry creates nothing, and lists the line all the same.
			expect(await queue.enter(c, "u1", "t-retry", limits)).toMatchObject({ created: false });
			expect(await store.redis.sismember(LIVE_CONCERTS_KEY, c)).toBe(1);
		});
	});
});
