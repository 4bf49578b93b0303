/** The coordination-store contract against the real Redis, and what only the Redis store has. */
import { RedisStore } from "../../lib/store";
import { storeContract } from "../support/contracts/store";
import { REDIS_URL, runId } from "../support/isolation";

storeContract("redis", async () => new RedisStore({ url: REDIS_URL, prefix: `${runId()}:` }));

describe("redis store specifics", () => {
	it("when keys are written, then they carry the install prefix on the server", async () => {
		const prefix = `${runId()}:`;
		const store = new RedisStore({ url: REDIS_URL, prefix });
		await store.set("visible", "1");
		const raw = new RedisStore({ url: REDIS_URL, prefix: "" });
		expect(await raw.get(`${prefix}visible`)).toBe("1");
		await store.clear();
		await Promise.all([store.close(), raw.close()]);
	});

	it("when Redis is unreachable, then commands fail fast with a retryable error", async () => {
		const store = new RedisStore({ url: "redis://127.0.0.1:1", prefix: "x:", commandTimeoutMs: 300 });
		const err = await store.ping().catch(e => e);
		expect(err).toBeInstanceOf(Error);
		expect(err.retryable).toBe(true);
		await store.close();
	});
});
