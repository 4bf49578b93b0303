/**
 * The chaos harness, short: its own MariaDB, Redis and NATS, the `npm run cluster` topology, a dozen shoppers,
 * then kill -9 of a booking node and a NATS restart under load, each followed by every invariant (the full matrix
 * runs with `npm run chaos -- all`; its results are in RELIABILITY.md). This proves in CI that the harness works
 * and that the two most common faults lose nothing.
 */
import { runChaos, type ChaosResult } from "../../chaos/run";

jest.setTimeout(600_000);

describe("chaos smoke: a booking node killed and NATS restarted under load", () => {
	let result: ChaosResult;
	const lines: string[] = [];

	beforeAll(async () => {
		result = await runChaos({
			faults: ["kill-booking", "nats-restart"],
			clients: 10,
			warmS: 8,
			// Long enough for a busy CI machine: the recovery targets (first success within 10 s of the server's
			// return) are measured by `npm run chaos`; here the point is that shoppers buy again at all.
			afterS: 20,
			settleS: 150,
			scale: 1,
			keep: false,
			log: s => void lines.push(s)
		});
	});

	afterAll(() => {
		// The harness's own account of the run, for whoever reads a failure (of an invariant or of the recovery).
		const recovered = result?.phases.every(p => p.confirmed > 0 && p.availability.firstSuccessS !== null);
		if (!result?.ok || !recovered) process.stdout.write(`${lines.join("\n")}\n`);
	});

	it.each(["kill-booking", "nats-restart"])("when %s happens under load, then every invariant holds afterwards", fault => {
		const phase = result.phases.find(p => p.fault === fault)!;
		expect(phase).toBeDefined();
		expect(phase.checks.filter(c => !c.ok)).toEqual([]);
		// The check list is the full one (databases, consistency check, notifications, the shoppers' record).
		expect(phase.checks.length).toBeGreaterThanOrEqual(10);
	});

	it("when the phases ran, then shoppers bought seats in each, before and after the fault", () => {
		for (const p of result.phases) {
			expect(p.confirmed).toBeGreaterThan(0);
			expect(p.availability.firstSuccessS).not.toBeNull();
		}
	});
});
