/**
 * The Prometheus endpoints after a real journey (cluster: three nodes, each with its own METRICS_PORT, as
 * Prometheus scrapes every node): sagas by outcome and step latency (saga node), holds and conflicts (concert
 * node), waiting room, admissions, outbox backlog and lag, dead letters and consistency (ops gauges on the
 * gateway node), and request metrics per action, which is per route (routes.ts maps each route to one action).
 */
import net from "net";
import type { ServiceBroker } from "moleculer";
import { adminToken, ownConcert, pay, reserve, seats, shopper } from "../support/booking";
import { gatewayUrl, http, testEnv, type TestEnv } from "../support/harness";
import { EXPORTED, PROMETHEUS_ONLY } from "../support/metric-names";
import { OPS_ADMIN } from "../support/ops";

async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const srv = net.createServer();
		srv.once("error", reject);
		srv.listen(0, "127.0.0.1", () => {
			const { port } = srv.address() as net.AddressInfo;
			srv.close(() => resolve(port));
		});
	});
}

const scrape = async (port: number) => {
	const res = await fetch(`http://127.0.0.1:${port}/metrics`);
	expect(res.status).toBe(200);
	return res.text();
};

/** The value of a sample line `name{labels...} value` whose labels include all of `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
	for (const line of text.split("\n")) {
		const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)/.exec(line);
		if (!m || m[1] !== name) continue;
		const have = Object.fromEntries([...(m[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(x => [x[1], x[2]]));
		if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
	}
	return undefined;
}

describe("business metrics on the Prometheus endpoints (cluster)", () => {
	let env: TestEnv;
	let gateway: ServiceBroker;
	let brokers: ServiceBroker[];
	const ports = { gateway: 0, booking: 0, money: 0 };
	let concertId: string;

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: OPS_ADMIN });
		ports.gateway = await freePort();
		ports.booking = await freePort();
		ports.money = await freePort();
		brokers = await Promise.all([
			env.broker(["api", "user", "queue", "ops"], { config: { metricsPort: ports.gateway } }),
			env.broker(["reservation", "saga", "concert"], { config: { metricsPort: ports.booking } }),
			env.broker(["payment", "ranking", "notification"], { config: { metricsPort: ports.money } })
		]);
		[gateway] = brokers;
		await gateway.waitForServices(["reservation", "saga", "concert", "payment", "ranking", "notification"], 45_000);
		const api = gatewayUrl(gateway);
		const admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		let scheduleId: string;
		({ concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 700));

		// One paid reservation, one conflict on its seats, one payment short of points (compensated).
		const buyer = await shopper(api, concertId, 5000);
		const [a, b, c] = await seats(api, scheduleId);
		const held = await reserve(api, buyer, scheduleId, [a.id]);
		const rival = await shopper(api, concertId, 100);
		expect((await reserve(api, rival, scheduleId, [a.id])).status).toBe(409);
		expect((await pay(api, buyer, held.body.id)).status).toBe(201);
		const short = await reserve(api, rival, scheduleId, [b.id, c.id]);
		expect((await pay(api, rival, short.body.id)).status).toBe(402);

		await gateway.call("ops.collectMetrics", {});
		await http("GET", `${api}/admin/consistency`, { token: admin });
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when a journey ran, then the saga node exposes sagas by outcome and step latency", async () => {
		const text = await scrape(ports.booking);
		expect(sample(text, "saga_started", { type: "ConfirmReservation" })).toBe(2);
		expect(sample(text, "saga_completed", { type: "ConfirmReservation" })).toBe(1);
		expect(sample(text, "saga_compensated", { type: "ConfirmReservation" })).toBe(1);
		// Moleculer's reporter writes histogram buckets (no _count without quantiles): the +Inf bucket counts them all.
		expect(sample(text, "saga_step_duration_bucket", { type: "ConfirmReservation", step: "pay", outcome: "ok", le: "+Inf" })).toBe(1);
		expect(sample(text, "saga_step_duration_bucket", { type: "ConfirmReservation", step: "pay", outcome: "rejected", le: "+Inf" })).toBe(1);
	});

	it("when a hold lost to another, then the concert node counts holds and conflicts", async () => {
		const text = await scrape(ports.booking);
		expect(sample(text, "concert_hold_requests", { outcome: "held" })).toBe(2);
		expect(sample(text, "concert_hold_requests", { outcome: "conflict" })).toBe(1);
		expect(sample(text, "concert_hold_seats", { outcome: "held" })).toBe(3);
	});

	it("when the ops gauges were collected, then waiting room, admissions, outbox, dead letters and consistency are on the gateway node", async () => {
		const text = await scrape(ports.gateway);
		expect(sample(text, "ops_queue_active", { concertId })).toBe(1);
		expect(sample(text, "ops_queue_waiting", { concertId })).toBe(0);
		expect(sample(text, "ops_queue_admitted_total", { concertId })).toBe(2);
		expect(sample(text, "ops_outbox_backlog", { producer: "reservation" })).toEqual(expect.any(Number));
		expect(sample(text, "ops_outbox_backlog", { producer: "payment" })).toEqual(expect.any(Number));
		expect(sample(text, "ops_outbox_oldest_age_seconds", { producer: "reservation" })).toEqual(expect.any(Number));
		expect(sample(text, "ops_dead_letters_open", { kind: "saga" })).toBe(0);
		expect(sample(text, "ops_consistency_ok", { check: "seats" })).toBe(1);
		expect(sample(text, "ops_consistency_findings", { check: "money" })).toBe(0);
	});

	it("when routes were called, then request counts and latency per action (one action per route) are exposed", async () => {
		const gw = await scrape(ports.gateway);
		expect(sample(gw, "moleculer_request_total", { action: "api.rest" })).toBeGreaterThan(5);
		const booking = await scrape(ports.booking);
		expect(sample(booking, "moleculer_request_total", { action: "reservation.pay" })).toBe(2);
		expect(sample(booking, "moleculer_request_time_bucket", { action: "reservation.create", le: "+Inf" })).toBe(3);
		expect(sample(booking, "moleculer_request_error_total", { action: "reservation.create", errorType: "SEAT_UNAVAILABLE" })).toBe(1);
	});

	it("when each node is scraped, then every series names its node, so two processes never read as one", async () => {
		const byPort = [ports.gateway, ports.booking, ports.money];
		for (const [i, port] of byPort.entries()) {
			const text = await scrape(port);
			const ids = new Set([...text.matchAll(/nodeID="([^"]*)"/g)].map(m => m[1]));
			expect([...ids]).toEqual([brokers[i].nodeID]);
		}
	});

	it("when the nodes run, then each exports its CPU time and event-loop lag, and the ops node the JetStream consumer lag and dead-letter stream size", async () => {
		const text = await scrape(ports.booking);
		expect(sample(text, "process_cpu_seconds_total")).toBeGreaterThan(0);
		expect(sample(text, "process_eventloop_lag_seconds", { stat: "p99" })).toBeGreaterThanOrEqual(0);
		const gw = await scrape(ports.gateway);
		// The ranking and notification groups consume the journey's events; all delivered by now or soon.
		for (const group of ["ranking", "notification"]) expect(sample(gw, "events_consumer_pending", { group })).toEqual(expect.any(Number));
		expect(sample(gw, "events_consumer_ack_pending", { group: "ranking" })).toEqual(expect.any(Number));
		expect(sample(gw, "events_dlq_messages")).toBe(0);
	});

	it("when the nodes run, then every metric name the shipped dashboard and alert rules may use is registered on one of them", async () => {
		// The registries, not the scrapes: a labelled counter (saga_failed) has no series until it first counts.
		const names = new Set<string>();
		for (const b of brokers) {
			for (const m of b.metrics.list() as { name: string; type: string }[]) {
				const name = m.name.replace(/[.-]/g, "_");
				names.add(m.type === "histogram" ? `${name}_bucket` : name);
			}
		}
		expect([...EXPORTED].filter(n => !PROMETHEUS_ONLY.has(n) && !names.has(n))).toEqual([]);
	});
});
