/**
 * The seat-hold contract (test/support/contracts/holds.ts) against the real Redis (time passes by sleeping), and
 * what only the Redis implementation has: keys under the install prefix with the hold's ttl, fast failure.
 */
import { RedisStore } from "../../lib/store";
import { createHoldStore } from "../../services/concert/holds.store";
import { holdContract } from "../support/contracts/holds";
import { REDIS_URL, runId } from "../support/isolation";

const sleep = (ms: number) => new Promise<void>(r => setTimeout(r, ms));

holdContract("redis", () => {
	const store = new RedisStore({ url: REDIS_URL, prefix: `crp-test:${runId()}:` });
	return {
		holds: createHoldStore(store),
		advance: sleep,
		now: Date.now,
		slackMs: 1000,
		async close() {
			await store.clear();
			await store.close();
		}
	};
});

describe("redis hold store specifics", () => {
	it("when holds are written, then they live under the install prefix with the hold's ttl", async () => {
		const prefix = `crp-test:${runId()}:`;
		const store = new RedisStore({ url: REDIS_URL, prefix });
		const holds = createHoldStore(store);
		await holds.hold({ scheduleId: "s1", seatIds: ["a"], owner: "r1", ttlMs: 5_000 });
		const raw = new RedisStore({ url: REDIS_URL, prefix: "" });
		expect(await raw.get(`${prefix}concert:h:{s1}:a`)).toBe("r1");
		const ttl = await raw.ttl(`${prefix}concert:h:{s1}:a`);
		expect(ttl).toBeGreaterThan(4_000);
		expect(ttl).toBeLessThanOrEqual(5_000);
		await holds.clear();
		expect(await raw.get(`${prefix}concert:h:{s1}:a`)).toBeNull();
		await store.clear();
		await Promise.all([store.close(), raw.close()]);
	});

	it("when Redis is unreachable, then a hold fails fast with a retryable error", async () => {
		const store = new RedisStore({ url: "redis://127.0.0.1:1", prefix: "x:", commandTimeoutMs: 300 });
		const err = await createHoldStore(store)
			.hold({ scheduleId: "s", seatIds: ["a"], owner: "r", ttlMs: 1000 })
			.catch(e => e);
		expect(err).toBeInstanceOf(Error);
		expect(err.retryable).toBe(true);
		expect(String(err.message)).not.toContain("127.0.0.1");
		await store.close();
	});
});
