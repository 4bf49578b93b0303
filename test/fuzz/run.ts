/**
 * The long HTTP fuzz, by command: `npm run fuzz -- --runs 20000 --seed 42 [--rounds 10] [--timeout 15000]`.
 *
 * Starts the embedded platform (every service, SQLite, in-memory store; see ./platform.ts) and sends `--runs`
 * requests generated from /api/openapi.json by ./http-fuzz.ts (fast-check: each failure shrunk to its minimal
 * counterexample). The runs are split in rounds, each with a freshly seeded world (new concert, users, tokens,
 * PENDING and paid reservations), so a long run does not spend itself on a world its first requests used up
 * (a cancelled reservation, a left queue). A round that leaves the gateway dead (a crash) gets a new platform
 * for the next round. Prints requests per operation, the status histogram and every distinct failure; the exit
 * code is 1 when there is any.
 */
import { formatReport, runHttpFuzz, type FuzzFailure, type FuzzReport } from "./http-fuzz";
import { startFuzzPlatform, type FuzzPlatform } from "./platform";

function args(argv: string[]): { runs: number; seed: number; rounds?: number; timeoutMs: number } {
	const get = (name: string) => {
		const i = argv.indexOf(`--${name}`);
		const eq = argv.find(a => a.startsWith(`--${name}=`));
		return eq ? eq.slice(name.length + 3) : i >= 0 ? argv[i + 1] : undefined;
	};
	const num = (name: string, dflt?: number) => {
		const v = get(name);
		if (v === undefined) return dflt;
		const n = Number(v);
		if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
		return n;
	};
	return { runs: num("runs", 2000)!, seed: num("seed", Date.now() % 2 ** 31)!, rounds: num("rounds"), timeoutMs: num("timeout", 15_000)! };
}

/**
 * Seeds a round's world. Seeding logs in and books through the API, so what the previous round left behind
 * can refuse it for a while: a circuit breaker its server faults opened (e.g. on user.login, 10 s half-open
 * time), or login throttling after its wrong passwords. Wait and try again.
 */
async function seedWithRetry(platform: FuzzPlatform): ReturnType<FuzzPlatform["seed"]> {
	for (let attempt = 1; ; attempt++) {
		try {
			return await platform.seed();
		} catch (err) {
			if (attempt >= 4) throw err;
			console.log(`seeding the world failed (${(err as Error).message.slice(0, 200)}); retrying in 11 s`);
			await new Promise(r => setTimeout(r, 11_000));
		}
	}
}

async function main(): Promise<number> {
	const { runs, seed, rounds: roundsArg, timeoutMs } = args(process.argv.slice(2));
	const rounds = Math.max(1, roundsArg ?? Math.ceil(runs / 2000));
	console.log(`HTTP fuzz: ${runs} requests in ${rounds} round(s), seed ${seed}`);
	const total: FuzzReport = { seed, requests: 0, skipped: 0, worldChecks: 0, perOperation: {}, statuses: {}, failures: [], healthy: true, durationMs: 0 };
	let known: FuzzFailure[] = [];
	let platform: FuzzPlatform | null = null;
	const started = Date.now();
	try {
		for (let round = 0; round < rounds; round++) {
			platform ??= await startFuzzPlatform();
			const { world, identities } = await seedWithRetry(platform);
			const numRuns = Math.floor(runs / rounds) + (round < runs % rounds ? 1 : 0);
			const report = await runHttpFuzz({
				baseUrl: platform.api,
				numRuns,
				seed: seed + round * 1000,
				world,
				identities,
				known,
				timeoutMs,
				log: line => console.log(line.startsWith("found") ? `  ${line}` : `\n${line}\n`)
			});
			known = report.failures;
			total.requests += report.requests;
			total.skipped += report.skipped;
			total.worldChecks += report.worldChecks;
			for (const [op, n] of Object.entries(report.perOperation)) total.perOperation[op] = (total.perOperation[op] ?? 0) + n;
			for (const [s, n] of Object.entries(report.statuses)) total.statuses[s] = (total.statuses[s] ?? 0) + n;
			total.healthy = report.healthy;
			console.log(`round ${round + 1}/${rounds}: ${report.requests} requests, ${known.length} distinct failure(s) so far`);
			if (!report.healthy) {
				console.log("the gateway is not healthy after this round: starting a new platform");
				await platform.env.cleanup().catch(() => undefined);
				platform = null;
			}
		}
	} finally {
		await platform?.env.cleanup().catch(() => undefined);
	}
	total.failures = known;
	total.durationMs = Date.now() - started;
	console.log("\n" + formatReport(total));
	return known.length > 0 ? 1 : 0;
}

main().then(
	code => process.exit(code),
	err => {
		console.error(err);
		process.exit(2);
	}
);
