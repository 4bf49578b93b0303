/** The waiting-room store contract (test/support/contracts/queue.ts) against the real Redis. */
import { RedisStore } from "../../lib/store";
import { createQueueStore } from "../../services/queue/queue.store";
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
		activeSize: async concertId => store.redis.zcard(`queue:${concertId}:active`),
		now: () => Date.now(),
		lineSize: async concertId => {
			const keys = await store.redis.keys(`*queue:${concertId}:*`);
			return keys.filter(k => !k.endsWith(":state")).length;
		}
	};
});
