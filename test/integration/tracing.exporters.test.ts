/**
 * TRACING as an operator sets it (issue 19): three real node processes, started by scripts/node.ts exactly as
 * `npm run cluster` starts them, with nothing but the environment variables to turn tracing on. tracing.test.ts
 * proves the spans of a payment form one trace with hand-written tracing options (the Event exporter); this file
 * proves that the environment reaches them: moleculer-runner used to overwrite the broker's `tracing` option with
 * the raw string of TRACING (scripts/node.ts), and the stock Console exporter printed one node's tables without
 * their trace, so nothing here could tell whether a setting took effect.
 *
 * - TRACING=console: the nodes' stdout holds tables headed "trace <traceID> on <nodeID>"; the tables of the payment's
 *   trace, across the three nodes, name spans of the gateway, reservation, saga, payment, concert and queue.
 * - TRACING=zipkin (and =jaeger, the same exporter aimed at Jaeger's Zipkin-compatible collector) with
 *   TRACING_ENDPOINT at a Zipkin v2 collector this test runs (POST /api/v2/spans): the spans of the payment share
 *   one traceId and cover the same services. The endpoint is given both as a base URL and with the
 *   /api/v2/spans path, as Jaeger's documentation writes it.
 */
import http from "http";
import type { AddressInfo } from "net";
import { adminToken, ownConcert, pay, reserve, seats, shopper } from "../support/booking";
import { http as request, testEnv, waitFor, type SpawnedNode, type TestEnv } from "../support/harness";
import { freePort } from "../support/nats-server";
import { OPS_ADMIN } from "../support/ops";

const SERVICES = ["api", "reservation", "saga", "payment", "concert", "queue"];

/** The split of tracing.test.ts: the saga's steps cross the nodes (queue beside the gateway, payment and concert apart). */
const NODES = [
	{ name: "gw", services: ["api", "user", "queue"] },
	{ name: "booking", services: ["reservation", "saga"] },
	{ name: "money", services: ["payment", "concert"] }
];

interface ZipkinSpan {
	traceId: string;
	id: string;
	parentId?: string | null;
	name: string;
	localEndpoint?: { serviceName?: string | null };
	tags?: Record<string, string>;
}

/** The service a span belongs to, read from its caption: `action 'payment.pay'`, or the gateway's `POST /api/...`. */
function serviceOfCaption(caption: string): string | undefined {
	const action = /action '([\w$-]+)\./.exec(caption);
	if (action) return action[1];
	if (/\b(GET|POST|PUT|PATCH|DELETE) \/api\//.test(caption)) return "api";
	return undefined;
}

interface ConsoleTrace {
	traceID: string;
	nodeID: string;
	rows: string[];
}

/** The tables TRACING=console printed in one node's output, each with its trace and node. */
function consoleTraces(output: string): ConsoleTrace[] {
	const traces: ConsoleTrace[] = [];
	let current: ConsoleTrace | undefined;
	for (const line of output.split("\n")) {
		const head = /TRACER: trace (\S+) on (\S+):$/.exec(line);
		if (head) {
			current = { traceID: head[1], nodeID: head[2], rows: [] };
			traces.push(current);
		} else if (current && /TRACER: │/.test(line)) current.rows.push(line);
		else if (current && /TRACER: └/.test(line)) current = undefined;
	}
	return traces;
}

describe("tracing chosen by TRACING, three node processes (cluster)", () => {
	let env: TestEnv;
	let collector: http.Server;
	let collectorUrl: string;
	const zipkin: ZipkinSpan[] = [];
	const posts: string[] = [];

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: OPS_ADMIN });
		// A Zipkin v2 collector: what Zipkin and Jaeger's collector (COLLECTOR_ZIPKIN_HOST_PORT) accept.
		collector = http.createServer((req, res) => {
			let body = "";
			req.on("data", d => (body += d));
			req.on("end", () => {
				posts.push(`${req.method} ${req.url}`);
				if (req.method === "POST" && req.url === "/api/v2/spans") {
					zipkin.push(...(JSON.parse(body) as ZipkinSpan[]));
					res.writeHead(202).end();
				} else res.writeHead(404).end();
			});
		});
		await new Promise<void>(resolve => collector.listen(0, "127.0.0.1", resolve));
		collectorUrl = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
	}, 30_000);

	afterAll(async () => {
		await env.cleanup();
		await new Promise(resolve => collector.close(resolve));
	}, 60_000);

	/** The three nodes with `tracing` env each (in NODES order); answers the nodes and the gateway's URL once healthy. */
	async function startCluster(tracing: Record<string, string>[]): Promise<{ nodes: SpawnedNode[]; api: string }> {
		const port = await freePort();
		const nodes = await Promise.all(
			NODES.map((n, i) => env.spawn(n.services, { nodeID: `${env.id}-${n.name}-${tracing[i].TRACING}`, env: { PORT: String(port), ...tracing[i] } }))
		);
		const api = `http://127.0.0.1:${port}/api`;
		await waitFor(async () => (await request("GET", `${api}/health`).catch(() => ({ status: 0 }))).status === 200, 30_000, "the gateway's health");
		return { nodes, api };
	}

	/** A booking over HTTP: sign-in, waiting room, hold, and the payment through the saga. */
	async function book(api: string): Promise<void> {
		const admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 2, 300);
		const u = await shopper(api, concertId, 1000);
		const held = await reserve(api, u, scheduleId, [(await seats(api, scheduleId))[0].id]);
		expect(held.status).toBe(201);
		const paid = await pay(api, u, held.body.id);
		expect(paid.status).toBe(201);
	}

	it("when the nodes run with TRACING=console, then their output holds the payment's trace across the three nodes, with spans of gateway, reservation, saga, payment, concert and queue", async () => {
		const { nodes, api } = await startCluster(NODES.map(() => ({ TRACING: "console" })));
		try {
			await book(api);
			const all = () => nodes.flatMap(n => consoleTraces(n.output()));
			let traceID = "";
			const inTrace = () => all().filter(t => t.traceID === traceID);
			const services = () => new Set(inTrace().flatMap(t => t.rows.map(r => serviceOfCaption(r.split("TRACER:")[1]))));
			await waitFor(
				() => {
					traceID = all().find(t => t.rows.some(r => r.includes("POST /api/payments")))?.traceID ?? "";
					return traceID !== "" && SERVICES.every(s => services().has(s));
				},
				15_000,
				`the payment's trace in the nodes' output to name ${SERVICES.join(", ")} (have ${[...services()].join(", ")})`
			);
			expect([...services()]).toEqual(expect.arrayContaining(SERVICES));
			// Each node printed its part of the one trace, the saga's last step included.
			expect(new Set(inTrace().map(t => t.nodeID))).toEqual(new Set(nodes.map(n => n.nodeID)));
			expect(inTrace().some(t => t.rows.some(r => r.includes("action 'queue.expire'")))).toBe(true);
		} finally {
			await Promise.all(nodes.map(n => n.stop()));
		}
	}, 120_000);

	it("when the nodes run with TRACING=zipkin (or jaeger) and TRACING_ENDPOINT at a Zipkin v2 collector, then it receives the payment's spans under one traceId, covering the same services", async () => {
		const { nodes, api } = await startCluster([
			{ TRACING: "zipkin", TRACING_ENDPOINT: collectorUrl },
			{ TRACING: "jaeger", TRACING_ENDPOINT: `${collectorUrl}/api/v2/spans` },
			{ TRACING: "zipkin", TRACING_ENDPOINT: `${collectorUrl}/` }
		]);
		try {
			await book(api);
			let traceId = "";
			const inTrace = () => zipkin.filter(s => s.traceId === traceId);
			const services = () => new Set(inTrace().map(s => s.localEndpoint?.serviceName));
			// The exporter posts its batch every 5 s.
			await waitFor(
				() => {
					traceId = zipkin.find(s => s.name === "POST /api/payments")?.traceId ?? "";
					return traceId !== "" && SERVICES.every(s => services().has(s)) && inTrace().some(s => s.name === "action 'queue.expire'");
				},
				20_000,
				`the collector to receive the payment's trace naming ${SERVICES.join(", ")} (have ${[...services()].join(", ")}; posts: ${posts.slice(0, 5).join(", ")})`
			);
			expect([...services()]).toEqual(expect.arrayContaining(SERVICES));
			expect(posts.every(p => p === "POST /api/v2/spans")).toBe(true);
			// The sign-ins and the sign-up were traced, and no password, token or secret reached the collector.
			const sent = JSON.stringify(zipkin);
			expect(zipkin.some(s => s.name === "action 'user.login'")).toBe(true);
			for (const secret of [OPS_ADMIN.ADMIN_PASSWORD, "password-1"]) expect(sent).not.toContain(secret);
			expect(sent).toContain("[redacted]");
			// Every node sent its spans of the trace, parents linked across them.
			expect(new Set(inTrace().map(s => s.tags?.nodeID))).toEqual(new Set(nodes.map(n => n.nodeID)));
			const ids = new Set(inTrace().map(s => s.id));
			expect(inTrace().filter(s => !s.parentId || !ids.has(s.parentId))).toHaveLength(1);
		} finally {
			await Promise.all(nodes.map(n => n.stop()));
		}
	}, 120_000);
});
