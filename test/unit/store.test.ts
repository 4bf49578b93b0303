/** The coordination-store contract against the memory store; store.redis.test.ts (integration) runs it on Redis. */
import { MemoryStore } from "../../lib/store";
import { storeContract } from "../support/contracts/store";
import { runId } from "../support/isolation";

storeContract("memory", async () => new MemoryStore({ prefix: `${runId()}:` }));

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
