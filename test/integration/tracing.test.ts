/**
 * Tracing across nodes: three brokers over NATS with Moleculer's "Event" exporter, which emits every finished span
 * as a `$tracing.spans` event; a collector service on one node keeps them in memory. One payment over HTTP must
 * give one trace (one traceID) with spans of the gateway, saga, payment, reservation, concert and queue, although
 * the saga drives its steps in the background on another node.
 */
import type { BrokerOptions, Context, ServiceBroker } from "moleculer";
import { adminToken, ownConcert, pay, reserve, seats, shopper } from "../support/booking";
import { gatewayUrl, testEnv, waitFor, type TestEnv } from "../support/harness";
import { OPS_ADMIN } from "../support/ops";
import { SchemaNodes, serviceFile } from "../support/saga";

interface SpanRecord {
	id: string;
	traceID: string;
	parentID: string | null;
	name: string;
	service?: { name: string } | null;
	tags: { action?: { name: string }; nodeID?: string };
}

const TRACED: BrokerOptions = {
	tracing: { enabled: true, sampling: { rate: 1 }, exporter: { type: "Event", options: { interval: 0, sendFinishSpan: true } } }
};

describe("tracing across nodes (cluster, Event exporter)", () => {
	let env: TestEnv;
	let nodes: SchemaNodes;
	let gateway: ServiceBroker;
	const spans: SpanRecord[] = [];

	const collector = {
		name: "spanCollector",
		events: {
			"$tracing.spans"(ctx: Context<SpanRecord[]>) {
				spans.push(...ctx.params);
			}
		}
	};

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: OPS_ADMIN });
		nodes = new SchemaNodes(env);
		[gateway] = await Promise.all([
			nodes.node([serviceFile("api"), serviceFile("user"), serviceFile("queue"), collector], `${env.id}-gw`, TRACED),
			nodes.node([serviceFile("reservation"), serviceFile("saga")], `${env.id}-booking`, TRACED),
			nodes.node([serviceFile("payment"), serviceFile("concert")], `${env.id}-money`, TRACED)
		]);
		await gateway.waitForServices(["reservation", "saga", "payment", "concert"], 45_000);
	}, 120_000);
	afterAll(async () => {
		await nodes.stop();
		await env.cleanup();
	}, 60_000);

	it("when a payment goes through the saga, then one trace holds spans of gateway, saga, payment, reservation, concert and queue", async () => {
		const api = gatewayUrl(gateway);
		const admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 2, 300);
		const u = await shopper(api, concertId, 1000);
		const held = await reserve(api, u, scheduleId, [(await seats(api, scheduleId))[0].id]);
		const paid = await pay(api, u, held.body.id);
		expect(paid.status).toBe(201);

		const actionOf = (s: SpanRecord) => s.tags.action?.name;
		let traceID = "";
		const servicesOf = () => new Set(spans.filter(s => s.traceID === traceID).map(s => s.service?.name ?? actionOf(s)?.split(".")[0]));
		await waitFor(
			() => {
				traceID = spans.find(s => actionOf(s) === "reservation.pay")?.traceID ?? "";
				return traceID !== "" && spans.some(s => s.traceID === traceID && actionOf(s) === "queue.expire");
			},
			10_000,
			`the payment's trace to reach the saga's last step, queue.expire (have ${[...servicesOf()].join(", ")})`
		);
		expect([...servicesOf()]).toEqual(expect.arrayContaining(["api", "reservation", "saga", "payment", "concert", "queue"]));

		const inTrace = spans.filter(s => s.traceID === traceID);
		// The saga's steps hang under the saga.start span, not beside the trace.
		const start = inTrace.find(s => actionOf(s) === "saga.start")!;
		for (const step of ["payment.pay", "reservation.confirm", "concert.confirmSeats", "queue.expire"]) {
			const span = inTrace.find(s => actionOf(s) === step);
			expect({ step, parentID: span?.parentID }).toEqual({ step, parentID: start.id });
		}
		// Spans of every node of the cluster.
		expect(new Set(inTrace.map(s => s.tags.nodeID)).size).toBe(3);
	}, 60_000);
});
