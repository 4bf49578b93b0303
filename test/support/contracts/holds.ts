/**
 * Contract of the seat-hold operations (services/concert/holds.store.ts), run by the unit tier against the memory
 * implementation (injected clock) and by the integration tier against the real Redis (time passes by sleeping).
 */
import type { HoldStore } from "../../../services/concert/holds.store";
import { runId } from "../isolation";

export interface Fixture {
	holds: HoldStore;
	/** Lets `ms` of hold time pass. */
	advance(ms: number): Promise<void>;
	/** The store's clock (ms) and how far its expiries may be off from it (Redis uses its own clock). */
	now(): number;
	slackMs: number;
	close(): Promise<void>;
}

export function holdContract(name: string, make: () => Fixture): void {
	describe(`seat hold contract: ${name}`, () => {
		let f: Fixture;
		let holds: HoldStore;
		let sched: string;

		beforeEach(() => {
			f = make();
			holds = f.holds;
			sched = runId("s");
		});
		afterEach(async () => {
			await holds.clear();
			await f.close();
		});

		const hold = (owner: string, seatIds: string[], ttlMs = 60_000, scheduleId = sched) => holds.hold({ scheduleId, seatIds, owner, ttlMs });

		it("when free seats are held, then the owner holds all of them until now + ttl", async () => {
			const before = f.now();
			const res = await hold("r1", ["a", "b", "c"], 60_000);
			expect(res.ok).toBe(true);
			expect(res.ok && res.expiresAt).toBeGreaterThanOrEqual(before + 60_000 - f.slackMs);
			expect(res.ok && res.expiresAt).toBeLessThanOrEqual(f.now() + 60_000 + f.slackMs);
			expect(await holds.owners({ scheduleId: sched, seatIds: ["a", "b", "c", "d"] })).toEqual(["r1", "r1", "r1", null]);
			expect((await holds.heldSeatIds(sched)).sort()).toEqual(["a", "b", "c"]);
			expect(await holds.heldCounts([sched])).toEqual([3]);
		});

		it("when one seat of a request is held by another owner, then nothing is held and the conflict names that seat", async () => {
			expect((await hold("r1", ["b"])).ok).toBe(true);
			const res = await hold("r2", ["a", "b", "c"]);
			expect(res).toEqual({ ok: false, conflicts: ["b"] });
			expect(await holds.owners({ scheduleId: sched, seatIds: ["a", "b", "c"] })).toEqual([null, "r1", null]);
			expect(await holds.heldCounts([sched])).toEqual([1]);
		});

		it("when the same owner holds the same seats again, then it succeeds and the expiry does not move", async () => {
			const first = await hold("r1", ["a", "b"], 5_000);
			await f.advance(20);
			const again = await hold("r1", ["a", "b"], 5_000);
			expect(first.ok && again.ok).toBe(true);
			if (first.ok && again.ok) expect(again.expiresAt).toBe(first.expiresAt);
			// Adding a seat to an owned set is also fine; the answer is the earliest expiry of the set.
			const more = await hold("r1", ["a", "b", "c"], 5_000);
			expect(more.ok && more.expiresAt === (first.ok && first.expiresAt)).toBe(true);
			expect(await holds.heldCounts([sched])).toEqual([3]);
		});

		it("when someone other than the owner releases, then nothing is freed; the owner's release frees them once", async () => {
			await hold("r1", ["a", "b"]);
			expect(await holds.release({ scheduleId: sched, seatIds: ["a", "b"], owner: "r2" })).toBe(0);
			expect(await holds.owners({ scheduleId: sched, seatIds: ["a", "b"] })).toEqual(["r1", "r1"]);
			expect(await holds.release({ scheduleId: sched, seatIds: ["a", "b", "z"], owner: "r1" })).toBe(2);
			expect(await holds.release({ scheduleId: sched, seatIds: ["a", "b"], owner: "r1" })).toBe(0);
			expect(await holds.heldCounts([sched])).toEqual([0]);
			expect((await hold("r2", ["a", "b"])).ok).toBe(true);
		});

		it("when a hold's time passes, then the seat is free without anyone releasing it", async () => {
			await hold("r1", ["a"], 100);
			await hold("r1", ["b"], 60_000);
			expect(await holds.heldCounts([sched])).toEqual([2]);
			await f.advance(160);
			expect(await holds.owners({ scheduleId: sched, seatIds: ["a", "b"] })).toEqual([null, "r1"]);
			expect(await holds.heldSeatIds(sched)).toEqual(["b"]);
			expect(await holds.heldCounts([sched])).toEqual([1]);
			expect(await hold("r2", ["a"])).toMatchObject({ ok: true });
			// The old owner's release can no longer touch the seat.
			expect(await holds.release({ scheduleId: sched, seatIds: ["a"], owner: "r1" })).toBe(0);
			expect(await holds.owners({ scheduleId: sched, seatIds: ["a"] })).toEqual(["r2"]);
		});

		it("when 200 owners race for one seat, then exactly one holds it", async () => {
			const results = await Promise.all(Array.from({ length: 200 }, (_, i) => hold(`r${i}`, ["hot"])));
			const winners = results.flatMap((r, i) => (r.ok ? [`r${i}`] : []));
			expect(winners).toHaveLength(1);
			expect(results.filter(r => !r.ok && r.conflicts.join() === "hot")).toHaveLength(199);
			expect(await holds.owners({ scheduleId: sched, seatIds: ["hot"] })).toEqual(winners);
		});

		it("when overlapping multi-seat requests race in opposite order, then one wins whole and the other gets nothing", async () => {
			for (let round = 0; round < 25; round++) {
				const s = `${sched}-${round}`;
				const [x, y] = await Promise.all([hold("x", ["a", "b", "c"], 60_000, s), hold("y", ["c", "b", "a"], 60_000, s)]);
				expect([x.ok, y.ok].filter(Boolean)).toHaveLength(1);
				const winner = x.ok ? "x" : "y";
				expect(await holds.owners({ scheduleId: s, seatIds: ["a", "b", "c"] })).toEqual([winner, winner, winner]);
			}
		});

		it("when schedules differ, then their holds and counts are independent", async () => {
			const other = runId("s");
			await hold("r1", ["a", "b"]);
			expect((await hold("r2", ["a"], 60_000, other)).ok).toBe(true);
			expect(await holds.heldCounts([sched, other, runId("none")])).toEqual([2, 1, 0]);
		});

		it("when the holds are cleared (the store lost its keys), then every seat reads free", async () => {
			await hold("r1", ["a", "b"]);
			await holds.clear();
			expect(await holds.owners({ scheduleId: sched, seatIds: ["a", "b"] })).toEqual([null, null]);
			expect(await holds.heldCounts([sched])).toEqual([0]);
		});

		it("when an owner is abandoned, then its hold is gone, a later hold for it is refused, and other owners are untouched", async () => {
			expect((await hold("r1", ["a", "b"])).ok).toBe(true);
			expect((await hold("r2", ["c"])).ok).toBe(true);
			expect(await holds.abandon({ scheduleId: sched, seatIds: ["a", "b"], owner: "r1", ttlMs: 60_000 })).toBe(2);
			expect(await hold("r1", ["a", "b"])).toEqual({ ok: false, conflicts: [], abandoned: true });
			// A hold that never landed before the give-up is refused just the same when it arrives.
			await holds.abandon({ scheduleId: sched, seatIds: ["d"], owner: "r3", ttlMs: 60_000 });
			expect(await hold("r3", ["d"])).toEqual({ ok: false, conflicts: [], abandoned: true });
			expect(await holds.owners({ scheduleId: sched, seatIds: ["a", "b", "c", "d"] })).toEqual([null, null, "r2", null]);
			expect(await holds.heldCounts([sched])).toEqual([1]);
			// Only this schedule: the owner id is the tombstone's, per schedule.
			expect((await hold("r1", ["a"], 60_000, runId("s"))).ok).toBe(true);
			expect((await hold("r4", ["a", "b", "d"])).ok).toBe(true);
		});

		it("when an abandoned owner's tombstone expires, then it can hold again", async () => {
			await holds.abandon({ scheduleId: sched, seatIds: ["a"], owner: "r1", ttlMs: 200 });
			expect((await hold("r1", ["a"])).ok).toBe(false);
			await f.advance(400);
			expect((await hold("r1", ["a"])).ok).toBe(true);
		});

		it("when a request repeats a seat or has a bad ttl, then it is refused and nothing is held", async () => {
			await expect(hold("r1", ["a", "a"])).rejects.toThrow(/distinct/);
			await expect(hold("r1", ["a"], 0)).rejects.toThrow(/ttlMs/);
			await expect(hold("r1", [])).rejects.toThrow(/at least one/);
			expect(await holds.heldCounts([sched])).toEqual([0]);
		});
	});
}
