/** The ranking-store contract (test/support/contracts/ranking.ts) against the real Redis. */
import { RedisStore } from "../../lib/store";
import { createRankingStore } from "../../services/ranking/ranking.store";
import { rankingContract } from "../support/contracts/ranking";
import { REDIS_URL, runId } from "../support/isolation";

rankingContract("redis", () => {
	const store = new RedisStore({ url: REDIS_URL, prefix: `crp-test:${runId("rk")}:` });
	return {
		ranking: createRankingStore(store),
		close: async () => {
			await store.clear();
			await store.close();
		}
	};
});
