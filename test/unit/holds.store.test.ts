/**
 * The seat-hold contract (test/support/contracts/holds.ts) against the memory implementation with an injected
 * clock; test/integration/holds.store.redis.test.ts runs it against the real Redis.
 */
import { MemoryStore } from "../../lib/store";
import { createHoldStore, MemoryHoldStore } from "../../services/concert/holds.store";
import { holdContract } from "../support/contracts/holds";

holdContract("memory", () => {
	let now = 1_700_000_000_000;
	const store = new MemoryStore({ now: () => now, sweepIntervalMs: 0 });
	return {
		holds: createHoldStore(store),
		async advance(ms) {
			now += ms;
		},
		now: () => now,
		slackMs: 0,
		close: () => store.close()
	};
});

describe("memory hold store specifics", () => {
	it("when schedules without holds are read, or their holds expire or are released, then nothing stays in memory", async () => {
		let now = 0;
		const holds = new MemoryHoldStore(() => now);
		await holds.heldCounts(Array.from({ length: 100 }, (_, i) => `s${i}`));
		await holds.heldSeatIds("s-x");
		await holds.owners({ scheduleId: "s-y", seatIds: ["a"] });
		expect(holds.scheduleCount).toBe(0);
		await holds.hold({ scheduleId: "s1", seatIds: ["a"], owner: "r", ttlMs: 10 });
		await holds.hold({ scheduleId: "s2", seatIds: ["a"], owner: "r", ttlMs: 10 });
		expect(holds.scheduleCount).toBe(2);
		await holds.release({ scheduleId: "s1", seatIds: ["a"], owner: "r" });
		now = 11;
		expect(await holds.heldCounts(["s2"])).toEqual([0]);
		expect(holds.scheduleCount).toBe(0);
	});
});
