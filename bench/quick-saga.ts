/**
 * Saga engine overhead, over NATS with MariaDB: an empty 4-step saga (steps call a no-op action on another
 * node) run sequentially (latency) and with concurrency (throughput), and the journal writes per saga.
 *
 *   npx ts-node --transpile-only bench/quick-saga.ts [sagas=500] [concurrency=32]
 *
 * Uses the local servers of docs/DESIGN.md section 11 with a run-private namespace and database prefix (dropped at
 * the end), like the tests.
 */
import crypto from "crypto";
import type { ServiceBroker } from "moleculer";
import type { SagaStore } from "../sagas/store";
import { testEnv } from "../test/support/harness";
import { SchemaNodes } from "../test/support/saga";
import FakeService from "../test/support/saga-services/fake/fake.service";
import { testSagaSchema } from "../test/support/saga-services/saga/saga.service";

async function main(): Promise<void> {
	const total = Number(process.argv[2] ?? 500);
	const concurrency = Number(process.argv[3] ?? 32);
	const env = testEnv({ cluster: true, env: { LOG_LEVEL: "error" } });
	const nodes = new SchemaNodes(env);
	try {
		const sagaNode = await nodes.node([testSagaSchema({ leaseMs: 10_000, recoveryIntervalMs: 3_000 })]);
		const caller = await nodes.node([FakeService]);
		await caller.waitForServices(["saga"], 20_000);
		await sagaNode.waitForServices(["fake"], 20_000);
		const store = (sagaNode.getLocalService("saga") as unknown as { sagaStore: SagaStore }).sagaStore;
		const run = (b: ServiceBroker) =>
			b.call("saga.start", { type: "Empty4", key: crypto.randomUUID(), data: {}, waitMs: 30_000 }) as Promise<{ status: string }>;

		for (let i = 0; i < 20; i++) await run(caller); // warm-up: pools, JIT

		const seqN = Math.min(100, total);
		const w0 = store.writes;
		const c0 = store.commits;
		let t = process.hrtime.bigint();
		for (let i = 0; i < seqN; i++) {
			const s = await run(caller);
			if (s.status !== "COMPLETED") throw new Error(`saga ended ${s.status}`);
		}
		const seqMs = Number(process.hrtime.bigint() - t) / 1e6;
		const writesPerSaga = (store.writes - w0) / seqN;
		const commitsPerSaga = (store.commits - c0) / seqN;

		let next = 0;
		let failed = 0;
		t = process.hrtime.bigint();
		await Promise.all(
			Array.from({ length: concurrency }, async () => {
				while (next < total) {
					next++;
					const s = await run(caller);
					if (s.status !== "COMPLETED") failed++;
				}
			})
		);
		const parMs = Number(process.hrtime.bigint() - t) / 1e6;

		const out = {
			sagas: total,
			concurrency,
			sequential: { sagas: seqN, msPerSaga: +(seqMs / seqN).toFixed(2), sagasPerSec: +((seqN * 1000) / seqMs).toFixed(1) },
			concurrent: { sagasPerSec: +((total * 1000) / parMs).toFixed(1), notCompleted: failed },
			journalStatementsPerSaga: writesPerSaga,
			journalCommitsPerSaga: commitsPerSaga
		};
		process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
	} finally {
		await nodes.stop();
		await env.cleanup();
	}
}

main().catch(err => {
	process.stderr.write(`${(err as Error).stack}\n`);
	process.exit(1);
});
