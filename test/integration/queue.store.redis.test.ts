/** The waiting-room store contract (test/support/contracts/queue.ts) against the real Redis. */
import { RedisStore } from "../../lib/store";
import { createQueueStore, queueKey } from "../../services/queue/queue.store";
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

describe("waiting-room sweep on Redis", () => {
	it("when a sweep that listed a concert runs after its line closed, then it writes nothing and the freed line stays freed", async () => {
		const store = new RedisStore({ url: REDIS_URL, prefix: `crp-test:${runId()}:` });
		try {
			const queue = createQueueStore(store);
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
		} finally {
			await store.clear();
			await store.close();
		}
	});
});
