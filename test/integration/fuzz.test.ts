/**
 * A short property-based fuzz of the whole HTTP surface inside `npm test` (test/fuzz/http-fuzz.ts: fast-check
 * generators built from /api/openapi.json, each failure shrunk to its minimal counterexample). EMBEDDED mode:
 * one broker with every service, SQLite in a temp dir, the in-memory store; no servers.
 *
 * A few hundred requests over every operation, as anonymous, a user and an admin, valid and hostile, against a
 * seeded world (a concert of its own, a user with points, ACTIVE queue tokens, a paid and a PENDING
 * reservation). Properties: no 5xx, no crash (uncaught exception or unhandled rejection), no request left
 * unanswered, /api/health still up; and a state-changing request answered 4xx changes no balance, seat or
 * reservation. The long run is `npm run fuzz -- --runs 20000 --seed 42`.
 *
 * FUZZ_RUNS and FUZZ_SEED override the defaults (a fixed seed, so a failure here replays).
 */
import { formatFailure, formatReport, runHttpFuzz, type FuzzFailure, type FuzzReport } from "../fuzz/http-fuzz";
import { startFuzzPlatform, type FuzzPlatform } from "../fuzz/platform";

const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);
const SEED = Number(process.env.FUZZ_SEED ?? 1);

let platform: FuzzPlatform | undefined;
let report: FuzzReport;
/** The operationIds of /api/openapi.json. */
let documented: string[];

/** Fails with every counterexample, readable (jest would print a list of strings with escaped newlines). */
function expectNone(failures: FuzzFailure[]): void {
	if (failures.length === 0) return;
	throw new Error(
		`${failures.length} distinct failure(s), seed ${report.seed}:\n\n${failures.map(formatFailure).join("\n\n")}\n\n${formatReport(report, false)}`
	);
}

beforeAll(async () => {
	platform = await startFuzzPlatform();
	const { world, identities } = await platform.seed();
	const doc = (await (await fetch(`${platform.api}/openapi.json`)).json()) as { paths: Record<string, Record<string, { operationId: string }>> };
	documented = Object.values(doc.paths).flatMap(methods => Object.values(methods).map(op => op.operationId));
	report = await runHttpFuzz({
		baseUrl: platform.api,
		numRuns: RUNS,
		seed: SEED,
		world,
		identities,
		timeoutMs: 12_000,
		maxShrinkSteps: 80,
		timeLimitMs: 35_000
	});
}, 55_000);

afterAll(async () => {
	await platform?.env.cleanup();
}, 30_000);

describe("HTTP fuzz of every operation in /api/openapi.json (embedded)", () => {
	it("when the fuzz runs, then it reached every operation of the document and ran to the end", () => {
		expect(documented.length).toBeGreaterThanOrEqual(40);
		// With the default runs every operation gets several requests; a crash that stops the run shows below.
		if (!report.stoppedEarly && RUNS >= 400) expect(documented.filter(op => !report.perOperation[op])).toEqual([]);
		expect(report.stoppedEarly).toBeUndefined();
	});

	it("when valid and hostile requests are sent as anonymous, a user and an admin, then none answers 5xx, crashes the process or goes unanswered, and /api/health still answers", () => {
		expectNone(report.failures.filter(f => f.kind !== "invariant" && f.kind !== "snapshot"));
		expect(report.healthy).toBe(true);
	});

	it("when a state-changing request is answered 4xx, then the fuzz users' balances and reservations and the seeded seats are unchanged", () => {
		expectNone(report.failures.filter(f => f.kind === "invariant" || f.kind === "snapshot"));
	});
});
