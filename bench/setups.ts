/**
 * The booking journey on each server setup of issue 21, side by side in one run (the machine is shared and noisy:
 * figures of different runs do not compare):
 *
 *   npm run bench:setups -- [--fans 40] [--concurrency 8] [--rounds 2] [--only single,redis-cluster,...]
 *
 * Setups: `single` (the shared MariaDB, Redis and NATS), `redis-cluster` (three Redis masters started here),
 * `nats-cluster` (three NATS servers, JETSTREAM_REPLICAS=3), `payment-db` (the payment schema on a second
 * mariadbd), and `all` (the three together). Each setup gets three in-process brokers with every service
 * (test/support/ops.ts), its own concert, and `--fans` journeys of test/support/journey.ts (sign-up, top-up,
 * waiting room, then the timed checkout: hold, pay, read back CONFIRMED). Rounds alternate the order of the
 * setups. Private servers run on free ports with temporary directories and are stopped at the end; the run's
 * schemas, keys and streams are removed. It prints a Markdown table and exits non-zero when a journey fails.
 *
 * Written here rather than as a `bench/run.ts` scenario: those drive one instance started by bench/target.ts,
 * while this one starts and compares several server setups, which the test support already knows how to start.
 */
import { adminToken, ownConcert } from "../test/support/booking";
import { testEnv, type TestEnv } from "../test/support/harness";
import { journeyLine, percentiles, runJourney, type JourneyRun } from "../test/support/journey";
import { startMariaDb } from "../test/support/mariadb-server";
import { startNatsCluster } from "../test/support/nats-cluster";
import { OPS_ADMIN, opsCluster } from "../test/support/ops";
import { startRedisCluster } from "../test/support/redis-cluster";

// The brokers' warnings (a ranking rebuilding while the other brokers join) would bury the figures.
process.env.TEST_LOG_LEVEL ??= "error";

interface Servers {
	env: Record<string, string>;
	stop(): Promise<void>;
}

const SETUPS: Record<string, () => Promise<Servers>> = {
	single: async () => ({ env: {}, stop: async () => undefined }),
	"redis-cluster": async () => {
		const redis = await startRedisCluster({ masters: 3 });
		return { env: { REDIS_URL: "", ...redis.env }, stop: () => redis.stop() };
	},
	"nats-cluster": async () => {
		const nats = await startNatsCluster({ servers: 3 });
		return { env: { ...nats.env }, stop: () => nats.stop() };
	},
	"payment-db": async () => {
		const db = await startMariaDb();
		return { env: { DATABASE_URL_PAYMENT: db.url }, stop: () => db.stop() };
	},
	all: async () => {
		const parts = [await SETUPS["redis-cluster"](), await SETUPS["nats-cluster"](), await SETUPS["payment-db"]()];
		return { env: Object.assign({}, ...parts.map(p => p.env)), stop: async () => void (await Promise.all(parts.map(p => p.stop()))) };
	}
};

function arg(name: string, def: string): string {
	const i = process.argv.indexOf(`--${name}`);
	return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : def;
}

async function measure(name: string, fans: number, concurrency: number): Promise<JourneyRun> {
	const servers = await SETUPS[name]();
	let env: TestEnv | undefined;
	try {
		env = testEnv({ cluster: true, env: { ...OPS_ADMIN, ...servers.env } });
		const { api } = await opsCluster(env);
		const admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		const { concertId, scheduleId } = await ownConcert(api, admin, Math.ceil(fans / 10), 10, 1000);
		// One warm-up journey on another concert: the first calls compile validators and open pools.
		const warm = await ownConcert(api, admin, 1, 2, 1000);
		await runJourney(api, { ...warm, fans: 1 });
		return await runJourney(api, { concertId, scheduleId, fans, concurrency });
	} finally {
		await env?.cleanup();
		await servers.stop();
	}
}

async function main(): Promise<void> {
	const fans = Number(arg("fans", "40"));
	const concurrency = Number(arg("concurrency", "8"));
	const rounds = Number(arg("rounds", "2"));
	const names = arg("only", Object.keys(SETUPS).join(",")).split(",");
	for (const n of names) if (!SETUPS[n]) throw new Error(`unknown setup ${n}; one of ${Object.keys(SETUPS).join(", ")}`);
	const rows: { setup: string; round: number; run: JourneyRun }[] = [];
	for (let round = 1; round <= rounds; round++) {
		for (const name of round % 2 === 1 ? names : [...names].reverse()) {
			const run = await measure(name, fans, concurrency);
			console.log(journeyLine(`round ${round} ${name}`, run));
			rows.push({ setup: name, round, run });
		}
	}
	console.log(`\n${fans} fans per setup, ${concurrency} at a time, ${rounds} round(s); checkout = hold + pay + read back CONFIRMED\n`);
	console.log("| setup | round | checkout p50 (ms) | p95 (ms) | max (ms) | journeys/s |");
	console.log("|---|---|---|---|---|---|");
	for (const { setup, round, run } of rows) {
		const c = percentiles(run.checkoutMs);
		console.log(`| ${setup} | ${round} | ${c.p50} | ${c.p95} | ${c.max} | ${(run.checkoutMs.length / (run.wallMs / 1000)).toFixed(1)} |`);
	}
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
