/**
 * Quick measurement of seat holds at 64 concurrent callers against the real Redis (and MariaDB, NATS), not a test.
 *
 *   npx ts-node --transpile-only bench/quick-holds.ts          # DURATION_SEC=10 CALLERS=64 by default
 *
 * Two figures:
 * - store: `RedisHoldStore.hold` alone (one Lua script per hold), each caller holding its own seats one at a
 *   time and releasing them (untimed), so every hold succeeds;
 * - action: `concert.hold` called over NATS from a second broker, as the reservation service calls it: the seat
 *   map from the node's cache, the Lua hold, the sold check in MariaDB; the release afterwards is untimed.
 * And one contended figure: every caller asking for the same 4 seats (one winner, the rest 409 SEAT_UNAVAILABLE).
 * Everything runs in an isolated namespace/prefix/database set (the test harness) and is cleaned up afterwards.
 */
import { RedisStore } from "../lib/store";
import { createHoldStore } from "../services/concert/holds.store";
import { testEnv } from "../test/support/harness";
import { REDIS_URL, runId } from "../test/support/isolation";

const DURATION_MS = Number(process.env.DURATION_SEC ?? 10) * 1000;
const CALLERS = Number(process.env.CALLERS ?? 64);

interface Result {
	name: string;
	ok: number;
	rejected: number;
	errors: number;
	seconds: number;
	latencies: number[];
}

/** `op` is timed; `after` (cleanup such as releasing the hold) runs after the clock stops. */
async function run(
	name: string,
	op: (caller: number, i: number) => Promise<"ok" | "rejected">,
	after?: (caller: number, i: number) => Promise<unknown>
): Promise<Result> {
	const latencies: number[] = [];
	let ok = 0;
	let rejected = 0;
	let errors = 0;
	const started = process.hrtime.bigint();
	const until = Date.now() + DURATION_MS;
	await Promise.all(
		Array.from({ length: CALLERS }, async (_, caller) => {
			for (let i = 0; Date.now() < until; i++) {
				const t0 = process.hrtime.bigint();
				try {
					if ((await op(caller, i)) === "ok") ok++;
					else rejected++;
				} catch {
					errors++;
				}
				latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
				await after?.(caller, i).catch(() => undefined);
			}
		})
	);
	return { name, ok, rejected, errors, seconds: Number(process.hrtime.bigint() - started) / 1e9, latencies };
}

function report(r: Result): void {
	const sorted = [...r.latencies].sort((a, b) => a - b);
	const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
	const calls = r.ok + r.rejected + r.errors;
	console.log(
		`${r.name.padEnd(26)} ${String(calls).padStart(7)} calls  ${(calls / r.seconds).toFixed(0).padStart(6)} calls/s  ` +
			`${(r.ok / r.seconds).toFixed(0).padStart(6)} holds/s  p50 ${q(0.5).toFixed(2)} ms  p99 ${q(0.99).toFixed(2)} ms  ` +
			`max ${q(1).toFixed(2)} ms  (ok ${r.ok}, 409 ${r.rejected}, errors ${r.errors})`
	);
}

async function storeLevel(): Promise<void> {
	const store = new RedisStore({ url: REDIS_URL, prefix: `crp-bench:${runId()}:` });
	const holds = createHoldStore(store);
	try {
		// Each caller cycles through its own 4 seats: hold one (measured), then release it (not measured).
		report(
			await run(
				"store hold (Lua)",
				async (caller, i) => {
					const res = await holds.hold({ scheduleId: "bench", seatIds: [`c${caller}-s${i % 4}`], owner: `r${caller}-${i}`, ttlMs: 300_000 });
					return res.ok ? "ok" : "rejected";
				},
				(caller, i) => holds.release({ scheduleId: "bench", seatIds: [`c${caller}-s${i % 4}`], owner: `r${caller}-${i}` })
			)
		);
		report(
			await run("store hold, 4 hot seats", async (caller, i) => {
				const res = await holds.hold({ scheduleId: "hot", seatIds: ["a", "b", "c", "d"], owner: `r${caller}-${i}`, ttlMs: 300_000 });
				return res.ok ? "ok" : "rejected";
			})
		);
	} finally {
		await store.clear();
		await store.close();
	}
}

async function actionLevel(): Promise<void> {
	const env = testEnv({ cluster: true, env: { LOG_LEVEL: "error" } });
	try {
		await env.broker(["concert"]);
		const caller = await env.broker([]);
		await caller.waitForServices(["concert"], 30_000);
		const concert = await caller.call<{ schedules: { id: string }[] }, Record<string, unknown>>("concert.create", {
			title: "Bench",
			artist: "Bench",
			venue: { name: "Bench Hall" },
			schedules: [{ startsAt: "2030-01-01T00:00:00Z" }],
			seats: { rows: 26, perRow: 60, price: 1000 }
		});
		const scheduleId = concert.schedules[0].id;
		const seats = await caller.call<{ id: string }[], { id: string }>("concert.seats", { id: scheduleId });
		const perCaller = Math.floor(seats.length / CALLERS);
		report(
			await run(
				"action concert.hold",
				async (c, i) => {
					await caller.call("concert.hold", { scheduleId, seatIds: [seats[c * perCaller + (i % perCaller)].id], owner: `r${c}-${i}` });
					return "ok";
				},
				(c, i) => caller.call("concert.release", { scheduleId, seatIds: [seats[c * perCaller + (i % perCaller)].id], owner: `r${c}-${i}` })
			)
		);
		const hot = seats.slice(0, 4).map(s => s.id);
		report(
			await run("action hold, 4 hot seats", async (c, i) => {
				try {
					await caller.call("concert.hold", { scheduleId, seatIds: hot, owner: `h${c}-${i}` });
					return "ok";
				} catch (err) {
					if ((err as { type?: string }).type === "SEAT_UNAVAILABLE") return "rejected";
					throw err;
				}
			})
		);
	} finally {
		await env.cleanup();
	}
}

async function main(): Promise<void> {
	console.log(`${CALLERS} concurrent callers, ${DURATION_MS / 1000} s per scenario, node ${process.version}`);
	await storeLevel();
	await actionLevel();
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
