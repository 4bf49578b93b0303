/** The bench's open loop (bench/load.ts): arrivals due on a fixed schedule, each run once, late ones counted. */
import { openLoop } from "../../bench/load";

describe("bench open loop", () => {
	it("when arrivals come at a fixed rate, then each runs once with its due time on the schedule", async () => {
		const due: number[] = [];
		const ran: number[] = [];
		const { late } = await openLoop(500, 20, async (i, dueAt) => {
			ran.push(i);
			due[i] = dueAt;
		});
		expect(ran.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
		for (let i = 1; i < 20; i++) expect(due[i] - due[i - 1]).toBeCloseTo(2, 6);
		expect(late).toBe(0);
	});

	it("when the steps outlast the places in flight, then the arrivals that had to wait are counted late and none is lost", async () => {
		let inFlight = 0;
		let most = 0;
		const { late } = await openLoop(
			1000,
			10,
			async () => {
				inFlight++;
				most = Math.max(most, inFlight);
				await new Promise(r => setTimeout(r, 20));
				inFlight--;
			},
			2
		);
		expect(most).toBe(2);
		expect(late).toBeGreaterThan(0);
		expect(inFlight).toBe(0);
	});
});
