/**
 * Contract of the ranking store (services/ranking/ranking.store.ts), run against the memory implementation and the
 * real Redis: versions per reservation decide, so duplicates and out-of-order events never move a score wrongly.
 */
import { MemoryStore, RedisStore } from "../../lib/store";
import { createRankingStore, type RankingStore } from "../../services/ranking/ranking.store";
import { REDIS_URL, runId } from "../support/isolation";

interface Fixture {
	ranking: RankingStore;
	close(): Promise<void>;
}

function rankingContract(name: string, make: () => Fixture): void {
	describe(`ranking store contract: ${name}`, () => {
		let f: Fixture;
		let r: RankingStore;
		beforeEach(() => {
			f = make();
			r = f.ranking;
		});
		afterEach(() => f.close());

		const state = (reservationId: string, version: number, seats: number, concertId = "c1") => ({ reservationId, concertId, version, seats });

		it("when a reservation is confirmed, then its concert scores its seats", async () => {
			expect(await r.apply(state("r1", 2, 3))).toEqual({ applied: true, delta: 3 });
			expect(await r.score("c1")).toBe(3);
		});

		it("when the same event comes 3 times, then it is applied once", async () => {
			const outcomes = [await r.apply(state("r1", 2, 2)), await r.apply(state("r1", 2, 2)), await r.apply(state("r1", 2, 2))];
			expect(outcomes.map(o => o.applied)).toEqual([true, false, false]);
			expect(await r.score("c1")).toBe(2);
		});

		it("when the cancel (v3) arrives before the confirm (v2), then the score ends at 0, not at the seat count", async () => {
			await r.apply(state("keep", 2, 1));
			expect(await r.apply(state("r1", 3, 0))).toEqual({ applied: true, delta: 0 });
			expect(await r.apply(state("r1", 2, 4))).toEqual({ applied: false, delta: 0 });
			expect(await r.score("c1")).toBe(1);
		});

		it("when confirm then cancel arrive in order, then the seats come back off", async () => {
			await r.apply(state("r1", 2, 4));
			expect(await r.apply(state("r1", 3, 0))).toEqual({ applied: true, delta: -4 });
			expect(await r.score("c1")).toBe(0);
			expect(await r.top(10)).toEqual([]);
		});

		it("when 50 concurrent applies of 10 reservations come in random order, then each counts once", async () => {
			const events = [];
			for (let i = 0; i < 10; i++) for (let k = 0; k < 5; k++) events.push(state(`r${i}`, 2, 2, i % 2 ? "odd" : "even"));
			events.sort(() => Math.random() - 0.5);
			const outcomes = await Promise.all(events.map(e => r.apply(e)));
			expect(outcomes.filter(o => o.applied)).toHaveLength(10);
			expect(await r.top(10)).toEqual([
				{ concertId: "even", score: 10 },
				{ concertId: "odd", score: 10 }
			]);
		});

		it("when scores differ, then top answers highest first and honours the limit", async () => {
			await r.apply(state("a", 2, 1, "small"));
			await r.apply(state("b", 2, 4, "big"));
			await r.apply(state("c", 2, 2, "mid"));
			expect(await r.top(2)).toEqual([
				{ concertId: "big", score: 4 },
				{ concertId: "mid", score: 2 }
			]);
		});

		it("when the scores are replaced, then only the given ones remain", async () => {
			await r.apply(state("a", 2, 1, "stale"));
			await r.replaceAll([
				{ concertId: "x", score: 5 },
				{ concertId: "zero", score: 0 }
			]);
			expect(await r.top(10)).toEqual([{ concertId: "x", score: 5 }]);
		});

		it("when a state is malformed, then it is refused and nothing changes", async () => {
			await expect(r.apply(state("r1", 0, 1))).rejects.toThrow(/version/);
			await expect(r.apply(state("r1", 2, -1))).rejects.toThrow(/seat/);
			expect(await r.top(10)).toEqual([]);
		});
	});
}

rankingContract("memory", () => {
	const store = new MemoryStore({ sweepIntervalMs: 0 });
	return { ranking: createRankingStore(store), close: () => store.close() };
});

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
