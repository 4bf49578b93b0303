/**
 * The coordination-store contract: one suite, run by the unit tier against the memory store and by the integration tier against Redis (store.test.ts, store.redis.test.ts). Later issues
 * add their domain operations here so the memory and Redis stores cannot drift apart.
 */
import type { CoordinationStore } from "../../../lib/store";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

export function storeContract(name: string, make: () => Promise<CoordinationStore>): void {
	describe(`coordination store contract: ${name}`, () => {
		let store: CoordinationStore;

		beforeEach(async () => {
			store = await make();
		});
		afterEach(async () => {
			await store.clear();
			await store.close();
		});

		it("when pinged, then it answers", async () => {
			await expect(store.ping()).resolves.toBeUndefined();
		});

		it("when a key is set, then get returns it and del removes it", async () => {
			expect(await store.get("a")).toBeNull();
			expect(await store.set("a", "1")).toBe(true);
			expect(await store.get("a")).toBe("1");
			expect(await store.del("a", "missing")).toBe(1);
			expect(await store.get("a")).toBeNull();
		});

		it("when set ifAbsent on an existing key, then it refuses and keeps the first value", async () => {
			expect(await store.set("k", "first", { ifAbsent: true })).toBe(true);
			expect(await store.set("k", "second", { ifAbsent: true })).toBe(false);
			expect(await store.get("k")).toBe("first");
		});

		it("when 50 callers race set ifAbsent, then exactly one wins", async () => {
			const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.set("race", String(i), { ifAbsent: true })));
			expect(results.filter(Boolean)).toHaveLength(1);
		});

		it("when a ttl passes, then the key is gone", async () => {
			await store.set("short", "x", { ttlMs: 60 });
			const left = await store.ttl("short");
			expect(left).not.toBeNull();
			expect(left!).toBeGreaterThan(0);
			expect(left!).toBeLessThanOrEqual(60);
			await sleep(120);
			expect(await store.get("short")).toBeNull();
			expect(await store.ttl("short")).toBeNull();
		});

		it("when a key has no expiry, then ttl is -1", async () => {
			await store.set("forever", "x");
			expect(await store.ttl("forever")).toBe(-1);
		});

		it("when a ttl is not positive, then set rejects", async () => {
			await expect(store.set("bad", "x", { ttlMs: 0 })).rejects.toThrow(/ttlMs/);
		});

		it("when 200 increments run concurrently, then the counter is exactly 200", async () => {
			await Promise.all(Array.from({ length: 200 }, () => store.incr("counter")));
			expect(await store.get("counter")).toBe("200");
			expect(await store.incr("counter", { by: -5 })).toBe(195);
		});

		it("when incr has a ttl, then it applies on creation and is not pushed back later", async () => {
			expect(await store.incr("window", { ttlMs: 150 })).toBe(1);
			await sleep(80);
			expect(await store.incr("window", { ttlMs: 150 })).toBe(2);
			const left = await store.ttl("window");
			expect(left!).toBeLessThanOrEqual(75);
			await sleep(100);
			expect(await store.incr("window", { ttlMs: 150 })).toBe(1);
		});

		it("when a lease is held, then only its owner renews or releases it", async () => {
			expect(await store.acquireLease("lease", "node-a", 1000)).toBe(true);
			expect(await store.acquireLease("lease", "node-b", 1000)).toBe(false);
			expect(await store.acquireLease("lease", "node-a", 1000)).toBe(true);
			expect(await store.releaseLease("lease", "node-b")).toBe(false);
			expect(await store.leaseOwner("lease")).toBe("node-a");
			expect(await store.releaseLease("lease", "node-a")).toBe(true);
			expect(await store.leaseOwner("lease")).toBeNull();
			expect(await store.acquireLease("lease", "node-b", 1000)).toBe(true);
		});

		it("when a lease expires, then another owner can take it and the old owner cannot release it", async () => {
			expect(await store.acquireLease("lease2", "node-a", 60)).toBe(true);
			await sleep(120);
			expect(await store.acquireLease("lease2", "node-b", 1000)).toBe(true);
			expect(await store.releaseLease("lease2", "node-a")).toBe(false);
			expect(await store.leaseOwner("lease2")).toBe("node-b");
		});

		it("when 30 nodes race for one lease, then exactly one gets it", async () => {
			const wins = await Promise.all(Array.from({ length: 30 }, (_, i) => store.acquireLease("contended", `node-${i}`, 5000)));
			expect(wins.filter(Boolean)).toHaveLength(1);
		});

		it("when cleared, then every key of the prefix is gone", async () => {
			await store.set("x1", "1");
			await store.set("x2", "2");
			expect(await store.clear()).toBeGreaterThanOrEqual(2);
			expect(await store.get("x1")).toBeNull();
		});
	});
}
