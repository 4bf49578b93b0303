/**
 * Quick benchmark: debits per second at 64 concurrent callers against the real MariaDB, over NATS.
 *
 *   npx ts-node --transpile-only bench/quick-debits.ts
 *   BENCH_SECONDS=10 BENCH_CALLERS=64 BENCH_PAYMENT_NODES=2 DB_POOL_MAX=5 npx ts-node --transpile-only bench/quick-debits.ts
 *   BENCH_SPAWN=1 ...   payment nodes as separate OS processes (moleculer-runner), as in a real cluster
 *
 * It builds an isolated run exactly as the integration tests do (own namespace, schema prefix, store prefix),
 * starts the payment service on BENCH_PAYMENT_NODES in-process nodes and a caller node, and runs two scenarios:
 * - spread: each caller debits its own wallet (throughput of independent payments);
 * - hot: every caller debits one wallet (all debits serialize on that wallet's row lock).
 * Every call is `payment.pay` with a fresh saga id, as the ConfirmReservation saga calls it. At the end the
 * ledger's `verify` must pass and the balances must match the count of successful debits.
 */
import type { ServiceBroker } from "moleculer";
import { testEnv, waitFor } from "../test/support/harness";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CALLERS = Number(process.env.BENCH_CALLERS ?? 64);
const NODES = Number(process.env.BENCH_PAYMENT_NODES ?? 1);
const POOL = process.env.DB_POOL_MAX ?? "5";
/** Separate processes use the other cores; in-process nodes share this process's one event loop. */
const SPAWN = process.env.BENCH_SPAWN === "1";

interface Result {
	scenario: string;
	ok: number;
	failed: number;
	seconds: number;
	perSecond: number;
	p50: number;
	p99: number;
}

async function run(caller: ServiceBroker, scenario: string, walletOf: (i: number) => string): Promise<Result> {
	const latencies: number[] = [];
	let failed = 0;
	let seq = 0;
	const started = Date.now();
	const until = started + SECONDS * 1000;
	await Promise.all(
		Array.from({ length: CALLERS }, async (_, i) => {
			while (Date.now() < until) {
				const t0 = process.hrtime.bigint();
				try {
					await caller.call("payment.pay", {
						sagaId: `${scenario}-${i}-${seq++}`,
						reservationId: `r-${i}`,
						userId: walletOf(i),
						amount: 1
					});
					latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
				} catch {
					failed++;
				}
			}
		})
	);
	const seconds = (Date.now() - started) / 1000;
	latencies.sort((a, b) => a - b);
	const pct = (p: number) => Math.round((latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0) * 10) / 10;
	return { scenario, ok: latencies.length, failed, seconds, perSecond: Math.round(latencies.length / seconds), p50: pct(0.5), p99: pct(0.99) };
}

async function main(): Promise<void> {
	const env = testEnv({ cluster: true, env: { DB_POOL_MAX: POOL, LOG_LEVEL: "error" } });
	try {
		for (let i = 0; i < NODES; i++) {
			const nodeID = `${env.id}-pay-${i}`;
			if (SPAWN) await env.spawn(["payment"], { nodeID });
			else await env.broker(["payment"], { nodeID });
		}
		const caller = await env.broker([], { nodeID: `${env.id}-caller` });
		await waitFor(
			() => caller.registry.getServiceList({ onlyAvailable: true }).filter(s => s.name === "payment").length === NODES,
			20_000,
			"payment nodes"
		);
		const charge = (userId: string, amount: number) =>
			caller.call("payment.charge", { amount }, { meta: { user: { id: userId, email: "b@example.com", role: "user" }, idempotencyKey: "bench" } });
		for (let i = 0; i < CALLERS; i++) await charge(`spread-${i}`, 10_000_000);
		await charge("hot", 10_000_000);

		const results = [await run(caller, "spread", i => `spread-${i}`), await run(caller, "hot", () => "hot")];

		const verify = await caller.call<{ ok: boolean }>("payment.verify");
		const hot = await caller.call<{ balance: number }, object>(
			"payment.balance",
			{},
			{ meta: { user: { id: "hot", email: "b@example.com", role: "user" } } }
		);
		const hotOk = hot.balance === 10_000_000 - results[1].ok;
		console.log(
			`payment nodes: ${NODES} (${SPAWN ? "separate processes" : "in this process"}), callers: ${CALLERS}, DB pool per node: ${POOL}, ${SECONDS} s per scenario`
		);
		console.table(results);
		console.log(`verify ok: ${verify.ok}; hot wallet balance matches successful debits: ${hotOk}`);
		if (!verify.ok || !hotOk) process.exitCode = 1;
	} finally {
		await env.cleanup();
	}
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
