import type { Config } from "../config";
import { MemoryStore } from "./memory";
import { RedisStore } from "./redis";
import type { CoordinationStore } from "./types";

export * from "./types";
export { MemoryStore } from "./memory";
export { RedisStore, redisCall, type RedisClient } from "./redis";

/**
 * Builds the store the configuration asks for: Redis when REDIS_URL is set (a Redis Cluster when it names several
 * nodes, or REDIS_CLUSTER_NODES does), memory otherwise.
 */
export function createStore(config: Pick<Config, "redis" | "storePrefix">): CoordinationStore {
	if (config.redis) {
		const { url, clusterNodes, failoverBudgetMs } = config.redis;
		return new RedisStore({ url, prefix: config.storePrefix, clusterNodes, failoverBudgetMs });
	}
	return new MemoryStore({ prefix: config.storePrefix });
}
