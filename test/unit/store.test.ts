import { MemoryStore, RedisStore } from "../../lib/store";
import { REDIS_URL, runId } from "../support/isolation";
import { storeContract } from "./store.contract";

storeContract("memory", async () => new MemoryStore({ prefix: `${runId()}:` }));
storeContract("redis", async () => new RedisStore({ url: REDIS_URL, prefix: `${runId()}:` }));

describe("memory store specifics", () => {
	it("when the injected clock moves past a ttl, then the key expires without sleeping", async () => {
		let now = 1_000;
		const store = new MemoryStore({ now: () => now, sweepIntervalMs: 0 });
		await store.set("k", "v", { ttlMs: 500 });
		now += 499;
		expect(await store.get("k")).toBe("v");
		now += 1;
		expect(await store.get("k")).toBeNull();
		await store.close();
	});

	it("when swept, then expired entries no longer take memory", async () => {
		let now = 0;
		const store = new MemoryStore({ now: () => now, sweepIntervalMs: 0 });
		for (let i = 0; i < 100; i++) await store.set(`k${i}`, "v", { ttlMs: 10 });
		expect(store.size).toBe(100);
		now = 11;
		store.sweep();
		expect(store.size).toBe(0);
		await store.close();
	});
});

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
