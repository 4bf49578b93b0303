/** The ranking-store contract (test/support/contracts/ranking.ts) against the memory implementation. */
import { MemoryStore } from "../../lib/store";
import { createRankingStore } from "../../services/ranking/ranking.store";
import { rankingContract } from "../support/contracts/ranking";

rankingContract("memory", () => {
	const store = new MemoryStore({ sweepIntervalMs: 0 });
	return { ranking: createRankingStore(store), close: () => store.close() };
});
