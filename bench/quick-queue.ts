/**
 * Quick measurement of the waiting room's two hot paths through the gateway, at 64 concurrent callers:
 * entries (POST /api/queue/tokens) and status reads (GET /api/queue/tokens/:token). Not the benchmark issue's
 * harness: one machine, a short run, numbers to sanity-check the design (one store round trip per call).
 *
 *   node -r ts-node/register/transpile-only bench/quick-queue.ts [embedded|cluster|both] [entries] [readSeconds]
 *
 * embedded: gateway, queue and the client in this one process (memory store), so the client's own CPU counts.
 * cluster:  gateway and queue each in their own moleculer-runner process over the real NATS, state in the real
 *           Redis; this process is the HTTP client plus a tiny stand-in for `concert.get` (cached by the queue).
 * Everything runs in its own namespace, database prefix and store prefix, and is removed afterwards.
 */
import fs from "fs";
import path from "path";
import { gatewayUrl, testEnv, waitFor, type TestEnv } from "../test/support/harness";
import { concertId, fakeConcertService, testUser, type TestUser } from "../test/support/queue";

const CONCURRENCY = 64;

interface Sample {
	ms: number;
	ok: boolean;
}

interface Figures {
	requests: number;
	errors: number;
	seconds: number;
	perSecond: number;
	p50: number;
	p95: number;
	p99: number;
	max: number;
}

function figures(samples: Sample[], seconds: number): Figures {
	const ms = samples.map(s => s.ms).sort((a, b) => a - b);
	const at = (q: number) => Number((ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? 0).toFixed(2));
	return {
		requests: samples.length,
		errors: samples.filter(s => !s.ok).length,
		seconds: Number(seconds.toFixed(2)),
		perSecond: Math.round(samples.length / seconds),
		p50: at(0.5),
		p95: at(0.95),
		p99: at(0.99),
		max: Number((ms[ms.length - 1] ?? 0).toFixed(2))
	};
}

async function timed(fn: () => Promise<Response>, expect: number[]): Promise<Sample & { body?: unknown }> {
	const t0 = performance.now();
	try {
		const res = await fn();
		const body = await res.json().catch(() => undefined);
		return { ms: performance.now() - t0, ok: expect.includes(res.status), body };
	} catch {
		return { ms: performance.now() - t0, ok: false };
	}
}

async function run(mode: "embedded" | "cluster", entries: number, readSeconds: number): Promise<Record<string, unknown>> {
	const cluster = mode === "cluster";
	const env: TestEnv = testEnv({ cluster, env: { RATE_LIMIT_PER_MINUTE: "0", LOG_LEVEL: "error" } });
	try {
		const concert = concertId("bench");
		const fake = fakeConcertService([concert]);
		let api: string;
		if (cluster) {
			const port = String(31000 + Math.floor(Math.random() * 900));
			const local = await env.broker([]);
			await local.createService(fake.schema);
			// (Spawned nodes log at info: the harness waits for the broker's "started" line.)
			await Promise.all([env.spawn(["api"], { env: { PORT: port } }), env.spawn(["queue"])]);
			await waitFor(() => local.registry.getActionEndpoints("queue.enter")?.count() === 1, 20_000, "the queue node");
			api = `http://127.0.0.1:${port}/api`;
		} else {
			const broker = await env.broker(["api", "queue"]);
			await broker.createService(fake.schema);
			api = gatewayUrl(broker);
		}

		const secret = env.config.jwt.secret!;
		const users: TestUser[] = Array.from({ length: entries }, () => testUser(secret));
		const tokens: string[] = new Array(entries);

		// Every entry is a new user: POST /queue/tokens, 201 expected; `onto` collects the tokens for the reads.
		const enterAll = async (batch: TestUser[], onto: string[]): Promise<{ samples: Sample[]; seconds: number }> => {
			const samples: Sample[] = [];
			let next = 0;
			const t0 = performance.now();
			await Promise.all(
				Array.from({ length: CONCURRENCY }, async () => {
					for (let i = next++; i < batch.length; i = next++) {
						const u = batch[i];
						const s = await timed(
							() =>
								fetch(`${api}/queue/tokens`, {
									method: "POST",
									headers: { "content-type": "application/json", authorization: `Bearer ${u.token}` },
									body: JSON.stringify({ concertId: concert })
								}),
							[201]
						);
						onto[i] = (s.body as { token?: string } | undefined)?.token ?? "";
						samples.push({ ms: s.ms, ok: s.ok });
					}
				})
			);
			return { samples, seconds: (performance.now() - t0) / 1000 };
		};

		// Warm-up, not measured: JIT, lazily loaded modules, connections, the Lua scripts loaded, the concert id in
		// the queue's cache. These users stay in the line, as they would in a sale.
		await enterAll(
			Array.from({ length: Math.min(1000, entries) }, () => testUser(secret)),
			[]
		);

		const measured = await enterAll(users, tokens);
		let t0 = performance.now();
		const enter = figures(measured.samples, measured.seconds);

		const readSamples: Sample[] = [];
		const until = performance.now() + readSeconds * 1000;
		t0 = performance.now();
		await Promise.all(
			Array.from({ length: CONCURRENCY }, async () => {
				while (performance.now() < until) {
					const i = Math.floor(Math.random() * entries);
					const s = await timed(
						() =>
							fetch(`${api}/queue/tokens/${encodeURIComponent(tokens[i])}`, {
								headers: { authorization: `Bearer ${users[i].token}` }
							}),
						[200]
					);
					readSamples.push({ ms: s.ms, ok: s.ok });
				}
			})
		);
		const read = figures(readSamples, (performance.now() - t0) / 1000);
		return { mode, concurrency: CONCURRENCY, entries, enter, statusRead: read, at: new Date().toISOString() };
	} finally {
		await env.cleanup();
	}
}

async function main(): Promise<void> {
	const arg = process.argv[2];
	const modes: ("embedded" | "cluster")[] = arg === "embedded" || arg === "cluster" ? [arg] : ["embedded", "cluster"];
	const entries = Number(process.argv[3] ?? 5000);
	const readSeconds = Number(process.argv[4] ?? 10);
	const results = [];
	for (const mode of modes) {
		const r = await run(mode, entries, readSeconds);
		results.push(r);
		process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
	}
	const dir = path.join(__dirname, "results");
	fs.mkdirSync(dir, { recursive: true });
	fs.writeFileSync(path.join(dir, "quick-queue.json"), JSON.stringify(results, null, 2));
}

main().then(
	() => process.exit(0),
	err => {
		process.stderr.write(`${(err as Error).stack ?? err}\n`);
		process.exit(1);
	}
);
