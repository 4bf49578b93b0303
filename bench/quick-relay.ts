/**
 * Quick benchmark: relay lag, from a producer's commit to a consumer's handler, under a steady stream of
 * reservation.confirmed events, on the real MariaDB and NATS JetStream.
 *
 *   npx ts-node --transpile-only bench/quick-relay.ts
 *   BENCH_SECONDS=10 BENCH_RATE=200 BENCH_RELAYS=2 OUTBOX_POLL_MS=1000 npx ts-node --transpile-only bench/quick-relay.ts
 *
 * An isolated run as in the integration tests: BENCH_RELAYS in-process producer nodes (the test producer of
 * test/support/event-services: its own database, outbox and relay mixin), one consumer node with the ranking
 * service and a lag probe group. A caller commits BENCH_RATE confirmations per second, spread over 50
 * reservations' versions and over the producer nodes; the lag of an event is the probe's receive time minus the
 * time the commit returned to the caller (one process, one clock). Every event must arrive; the ranking must
 * count each confirmed reservation once. Results go to stdout and bench/results/quick-relay.json.
 */
import fs from "fs";
import path from "path";
import type { ServiceBroker, ServiceSchema } from "moleculer";
import { EventConsumerMixin } from "../mixins/event-consumer.mixin";
import type { EventMessage } from "../lib/events/types";
import { ProducerService } from "../test/support/event-services/producer.service";
import { deleteEventStreams, EventNodes } from "../test/support/events";
import { testEnv, waitFor } from "../test/support/harness";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const RATE = Number(process.env.BENCH_RATE ?? 100);
const RELAYS = Number(process.env.BENCH_RELAYS ?? 2);
const POLL = process.env.OUTBOX_POLL_MS ?? "1000";

const received = new Map<string, number>();
const LagProbe: ServiceSchema = {
	name: "lagprobe",
	mixins: [EventConsumerMixin({ handlers: { "reservation.confirmed": "onEvent" } })],
	methods: {
		async onEvent(event: EventMessage) {
			if (!received.has(event.id)) received.set(event.id, Date.now());
		}
	}
};

function pct(sorted: number[], p: number): number {
	return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : 0;
}

async function main(): Promise<void> {
	const env = testEnv({ cluster: true, env: { OUTBOX_POLL_MS: POLL, LOG_LEVEL: "error" } });
	const nodes = new EventNodes(env);
	try {
		const consumer = await nodes.node(["ranking", LagProbe]);
		const relays: ServiceBroker[] = await Promise.all(Array.from({ length: RELAYS }, () => nodes.node([ProducerService])));
		await consumer.waitForServices(["evproducer"], 20_000);

		const committed = new Map<string, number>();
		const interval = 1000 / RATE;
		const started = Date.now();
		let i = 0;
		const inflight: Promise<void>[] = [];
		while (Date.now() - started < SECONDS * 1000) {
			const k = i++;
			const reservationId = `bench-r${k}`;
			const relay = relays[k % relays.length];
			inflight.push(
				relay
					.call<{ id: string }, unknown>("evproducer.append", {
						aggregateId: reservationId,
						eventType: "reservation.confirmed",
						payload: { reservationId, userId: `u${k % 50}`, concertId: `c-bench-${k % 5}`, scheduleId: "s", seatIds: ["a", "b"], amount: 2 }
					})
					.then(res => void committed.set(res.id, Date.now()))
			);
			const next = started + i * interval;
			const wait = next - Date.now();
			if (wait > 0) await new Promise(r => setTimeout(r, wait));
		}
		await Promise.all(inflight);
		const sent = committed.size;
		await waitFor(() => [...committed.keys()].every(id => received.has(id)), 30_000, "every event at the consumer");

		const lags = [...committed].map(([id, t]) => Math.max(0, received.get(id)! - t)).sort((a, b) => a - b);
		const rankingSeats = async () =>
			(await consumer.call<{ score: number }[], { limit: number }>("ranking.concerts", { limit: 100 })).reduce((n, r) => n + r.score, 0);
		await waitFor(async () => (await rankingSeats()) === sent * 2, 10_000, "ranking to count every seat");
		const result = {
			relays: RELAYS,
			ratePerSecond: RATE,
			seconds: SECONDS,
			outboxPollMs: Number(POLL),
			events: sent,
			delivered: lags.length,
			lagMs: { p50: pct(lags, 0.5), p90: pct(lags, 0.9), p99: pct(lags, 0.99), max: lags[lags.length - 1] ?? 0 },
			rankingSeats: await rankingSeats(),
			at: new Date().toISOString()
		};
		console.log(JSON.stringify(result, null, 2));
		const file = path.resolve(__dirname, "results/quick-relay.json");
		const prior = fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as unknown[]) : [];
		fs.writeFileSync(file, JSON.stringify([...prior, result], null, 2) + "\n");
	} finally {
		await nodes.stop();
		await deleteEventStreams(env.config.namespace).catch(() => undefined);
		await env.cleanup();
	}
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
