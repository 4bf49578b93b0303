/** The gateway's cache of who a token's subject is now: expiry, sharing of lookups in flight, and its bound. */
import { CurrentUsers } from "../../services/api/current-user";

function users(now: { t: number }, max = 50_000, opts: { deleted?: string[]; batchMax?: number; fail?: boolean } = {}) {
	const lookups: string[] = [];
	const calls: string[][] = [];
	const cache = new CurrentUsers(
		async ids => {
			calls.push(ids);
			lookups.push(...ids);
			if (opts.fail) throw new Error("user service unavailable");
			return ids.filter(id => !opts.deleted?.includes(id)).map(id => ({ id, email: `${id}@example.com`, role: "user" as const }));
		},
		1000,
		max,
		() => now.t,
		opts.batchMax
	);
	return { cache, lookups, calls };
}

const claims = (id: string) => ({ id, email: `${id}@example.com`, role: "user" as const });

describe("CurrentUsers", () => {
	it("when the same user is resolved within the period, then the user service is asked once; after it, again", async () => {
		const now = { t: 0 };
		const { cache, lookups } = users(now);
		await cache.resolve(claims("a"));
		await cache.resolve(claims("a"));
		expect(lookups).toEqual(["a"]);
		now.t = 1001;
		await cache.resolve(claims("a"));
		expect(lookups).toEqual(["a", "a"]);
	});

	it("when many requests of one user arrive together, then they share one lookup", async () => {
		const { cache, lookups } = users({ t: 0 });
		await Promise.all(Array.from({ length: 20 }, () => cache.resolve(claims("a"))));
		expect(lookups).toEqual(["a"]);
	});

	it("when the cache is full, then the least recently used user goes first", async () => {
		const { cache, lookups } = users({ t: 0 }, 2);
		await cache.resolve(claims("a"));
		await cache.resolve(claims("b"));
		await cache.resolve(claims("a")); // a is now more recent than b
		await cache.resolve(claims("c")); // b goes
		lookups.length = 0;
		await cache.resolve(claims("a"));
		await cache.resolve(claims("b"));
		expect(lookups).toEqual(["b"]);
	});

	it("when many users are missed together, then they are asked for in one call, at most batchMax at a time", async () => {
		const { cache, calls } = users({ t: 0 }, 50_000, { batchMax: 50 });
		const ids = Array.from({ length: 120 }, (_, i) => `u${i}`);
		const answers = await Promise.all(ids.map(id => cache.resolve(claims(id))));
		expect(answers.map(a => a?.id)).toEqual(ids);
		expect(calls.map(c => c.length)).toEqual([50, 50, 20]);
		expect(calls.flat().sort()).toEqual([...ids].sort());
	});

	it("when a batch leaves a user out, then that user is gone (null) and the others are answered", async () => {
		const { cache } = users({ t: 0 }, 50_000, { deleted: ["b"] });
		const [a, b] = await Promise.all([cache.resolve(claims("a")), cache.resolve(claims("b"))]);
		expect(a).toEqual({ id: "a", email: "a@example.com", role: "user" });
		expect(b).toBeNull();
	});

	it("when the user service fails, then every request of the batch fails and nothing is cached", async () => {
		const now = { t: 0 };
		const { cache, calls } = users(now, 50_000, { fail: true });
		const results = await Promise.allSettled([cache.resolve(claims("a")), cache.resolve(claims("b"))]);
		expect(results.map(r => r.status)).toEqual(["rejected", "rejected"]);
		await expect(cache.resolve(claims("a"))).rejects.toThrow("unavailable");
		expect(calls).toEqual([["a", "b"], ["a"]]);
	});
});
