/** The gateway's cache of who a token's subject is now: expiry, sharing of lookups in flight, and its bound. */
import { CurrentUsers } from "../../services/api/current-user";

function users(now: { t: number }, max = 50_000) {
	const lookups: string[] = [];
	const cache = new CurrentUsers(
		async id => {
			lookups.push(id);
			return { id, email: `${id}@example.com`, role: "user" };
		},
		1000,
		max,
		() => now.t
	);
	return { cache, lookups };
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
});
