/**
 * Contract of the ranking store (services/ranking/ranking.store.ts), run by the unit tier against the memory
 * implementation and by the integration tier against the real Redis: versions per reservation decide, so
 * duplicates and out-of-order events never move a score wrongly; a rebuild writes the versions with the scores, so
 * events in flight and after it apply once (issue 15 item 6).
 */
import { rebuildRanking, RankingRebuildLostError, type RankingStore, type ReservationState } from "../../../services/ranking/ranking.store";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
async function* pages(...list: ReservationState[][]): AsyncIterable<ReservationState[]> {
	for (const p of list) yield p;
}

export interface Fixture {
	ranking: RankingStore;
	close(): Promise<void>;
}

export function rankingContract(name: string, make: () => Fixture): void {
	describe(`ranking store contract: ${name}`, () => {
		let f: Fixture;
		let r: RankingStore;
		beforeEach(async () => {
			f = make();
			r = f.ranking;
			// A fresh store holds no ranking until its first rebuild (an empty truth here).
			expect(await rebuildRanking(r, "setup", pages())).toBe(true);
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

		it("when a rebuild runs, then the scores are the truth's: drift and reservations the truth does not know are gone", async () => {
			await r.apply(state("a", 2, 1, "stale"));
			expect(
				await rebuildRanking(r, "n1", pages([state("x1", 2, 3, "x"), state("x2", 4, 0, "x")], [state("x3", 2, 2, "x"), state("z", 3, 0, "zero")]))
			).toBe(true);
			expect(await r.top(10)).toEqual([{ concertId: "x", score: 5 }]);
		});

		it("when the store has lost its ranking, then apply refuses and ready says so, until a rebuild", async () => {
			await r.apply(state("r1", 2, 3));
			await r.clear();
			expect(await r.ready()).toBe(false);
			expect(await r.apply(state("r2", 2, 1))).toEqual({ applied: false, delta: 0, lost: true });
			expect(await r.top(10)).toEqual([]);
			await rebuildRanking(r, "n1", pages([state("r1", 2, 3)]));
			expect(await r.ready()).toBe(true);
			expect(await r.score("c1")).toBe(3);
		});

		it("when an event the truth already counted arrives after the rebuild, then it counts once (truth 2, not 4)", async () => {
			await rebuildRanking(r, "n1", pages([state("r1", 2, 2)]));
			expect(await r.apply(state("r1", 2, 2))).toEqual({ applied: false, delta: 0 });
			expect(await r.score("c1")).toBe(2);
		});

		it("when an event is applied while a rebuild runs and the truth missed it, then it is kept (truth 1, not 0)", async () => {
			expect(await r.beginRebuild("n1", 10_000)).toBe(true);
			expect(await r.seed("n1", [state("r1", 2, 2)], 10_000)).toBe(true);
			// Committed after the truth's page was read, applied before the swap.
			expect(await r.apply(state("r2", 2, 1))).toEqual({ applied: true, delta: 1 });
			// And one the truth saw, delivered during the build: once.
			expect(await r.apply(state("r1", 2, 2))).toMatchObject({ applied: true });
			expect(await r.commitRebuild("n1")).toBe(true);
			expect(await r.score("c1")).toBe(3);
			expect(await r.apply(state("r1", 2, 2))).toEqual({ applied: false, delta: 0 });
			expect(await r.score("c1")).toBe(3);
		});

		it("when a booking confirmed before a store loss is cancelled after the rebuild, then its seats come off", async () => {
			await r.apply(state("r1", 2, 3));
			await r.apply(state("r2", 2, 1));
			await r.clear();
			await rebuildRanking(r, "n1", pages([state("r1", 2, 3), state("r2", 2, 1)]));
			expect(await r.score("c1")).toBe(4);
			expect(await r.apply(state("r1", 3, 0))).toEqual({ applied: true, delta: -3 });
			expect(await r.score("c1")).toBe(1);
		});

		it("when the store is lost and events arrive during the rebuild, then they go into the copy and count once", async () => {
			await r.clear();
			expect(await r.beginRebuild("n1", 10_000)).toBe(true);
			expect(await r.apply(state("r9", 2, 2))).toEqual({ applied: true, delta: 2 });
			expect(await r.ready()).toBe(false);
			await r.seed("n1", [state("r9", 2, 2), state("r8", 3, 0)], 10_000);
			expect(await r.apply(state("r8", 2, 4))).toEqual({ applied: false, delta: 0 });
			await r.commitRebuild("n1");
			expect(await r.top(10)).toEqual([{ concertId: "c1", score: 2 }]);
		});

		it("when two nodes rebuild at once, then one builds; a builder that lost its lease cannot commit; its copy is dropped", async () => {
			await r.apply(state("live", 2, 1));
			expect(await r.beginRebuild("n1", 100)).toBe(true);
			expect(await r.beginRebuild("n2", 10_000)).toBe(false);
			expect(await rebuildRanking(r, "n2", pages([state("x", 2, 9)]))).toBe(false);
			await r.seed("n1", [state("half", 2, 7)], 100);
			await sleep(250);
			// n1 stalled past its lease: n2 takes over, without n1's half-built copy.
			expect(await r.beginRebuild("n2", 10_000)).toBe(true);
			expect(await r.seed("n1", [state("late", 2, 1)], 100)).toBe(false);
			expect(await r.commitRebuild("n1")).toBe(false);
			await r.seed("n2", [state("live", 2, 1)], 10_000);
			expect(await r.commitRebuild("n2")).toBe(true);
			expect(await r.top(10)).toEqual([{ concertId: "c1", score: 1 }]);
			await expect(
				rebuildRanking(
					r,
					"n3",
					(async function* () {
						yield [state("live", 3, 0)];
						await r.abortRebuild("n3");
						yield [state("other", 2, 5)];
					})()
				)
			).rejects.toBeInstanceOf(RankingRebuildLostError);
			expect(await r.top(10)).toEqual([{ concertId: "c1", score: 1 }]);
		});

		it("when the truth cannot be read halfway, then the rebuild is dropped and the live ranking stays", async () => {
			await r.apply(state("live", 2, 2));
			const failing = (async function* () {
				yield [state("live", 3, 0)];
				throw new Error("reservation service unavailable");
			})();
			await expect(rebuildRanking(r, "n1", failing)).rejects.toThrow(/unavailable/);
			expect(await r.score("c1")).toBe(2);
			// The lease went with it: the next rebuild starts at once.
			expect(await rebuildRanking(r, "n2", pages([state("live", 3, 0)]))).toBe(true);
			expect(await r.score("c1")).toBe(0);
		});

		it("when a state is malformed, then it is refused and nothing changes", async () => {
			await expect(r.apply(state("r1", 0, 1))).rejects.toThrow(/version/);
			await expect(r.apply(state("r1", 2, -1))).rejects.toThrow(/seat/);
			expect(await r.top(10)).toEqual([]);
		});
	});
}
