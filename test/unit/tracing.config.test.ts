/**
 * TRACING and TRACING_ENDPOINT, from the environment to the broker's tracing options (issue 19), without servers:
 * what lib/config.ts accepts (jaeger needs no jaeger-client package: it is the Zipkin exporter aimed at Jaeger's
 * Zipkin-compatible collector; the endpoint is cut back to its base URL), what moleculer.config.ts builds from it,
 * and what the console exporter prints: every table headed by its trace and node, a span that outlives its parent
 * printed when it ends, and all of it even with LOG_LEVEL=warn. tracing.exporters.test.ts runs the real nodes.
 */
import fs from "fs";
import os from "os";
import path from "path";
import { ServiceBroker, TracerExporters } from "moleculer";
import { brokerOptions, redactedTags } from "../../moleculer.config";
import { ConfigError, loadConfig } from "../../lib/config";

const problemsOf = (env: Record<string, string>): string[] => {
	try {
		loadConfig(env);
		return [];
	} catch (err) {
		if (err instanceof ConfigError) return err.problems;
		throw err;
	}
};

describe("TRACING configuration", () => {
	let dataDir: string;
	beforeAll(() => {
		dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "crp-tracing-"));
	});
	afterAll(() => fs.rmSync(dataDir, { recursive: true, force: true }));
	const config = (env: Record<string, string>) => loadConfig({ DATA_DIR: dataDir, METRICS_PORT: "0", ...env });

	it("when TRACING=jaeger is set with an endpoint, then it is accepted without the jaeger-client package and sends Zipkin v2 to that base URL", () => {
		for (const endpoint of ["http://jaeger:9411", "http://jaeger:9411/", "http://jaeger:9411/api/v2/spans", "http://jaeger:9411/api/v2/spans/"]) {
			const c = config({ TRACING: "jaeger", TRACING_ENDPOINT: endpoint });
			expect(c.tracing).toEqual({ exporter: "jaeger", endpoint: "http://jaeger:9411" });
			expect(brokerOptions(c).tracing).toEqual({
				enabled: true,
				tags: { action: redactedTags },
				exporter: { type: "Zipkin", options: { baseURL: "http://jaeger:9411" } }
			});
		}
		expect(brokerOptions(config({ TRACING: "zipkin", TRACING_ENDPOINT: "https://zipkin.example:443/base" })).tracing).toEqual({
			enabled: true,
			tags: { action: redactedTags },
			exporter: { type: "Zipkin", options: { baseURL: "https://zipkin.example:443/base" } }
		});
	});

	it("when an action is traced, then its span carries its params with every secret replaced, two levels deep, and no meta", () => {
		expect(redactedTags({ params: { email: "a@b.c", password: "s3cret", body: { newPassword: "x", name: "n" }, token: "t", seatIds: ["s1"] } })).toEqual({
			params: { email: "a@b.c", password: "[redacted]", body: { newPassword: "[redacted]", name: "n" }, token: "[redacted]", seatIds: ["s1"] }
		});
		expect(redactedTags({ params: { headers: { Authorization: "Bearer x", "idempotency-key": "k" } } })).toEqual({
			params: { headers: { Authorization: "[redacted]", "idempotency-key": "[redacted]" } }
		});
		expect(redactedTags({ params: undefined })).toEqual({ params: undefined });
		expect(brokerOptions(config({ TRACING: "console" })).tracing).toMatchObject({ tags: { action: redactedTags } });
	});

	it("when the endpoint is missing or not an http URL, then the node refuses to start and says why; off ignores it", () => {
		expect(problemsOf({ DATA_DIR: "/tmp", TRACING: "jaeger" })).toEqual([expect.stringMatching(/TRACING=jaeger needs TRACING_ENDPOINT/)]);
		expect(problemsOf({ DATA_DIR: "/tmp", TRACING: "zipkin", TRACING_ENDPOINT: "jaeger:9411" })).toEqual([
			expect.stringMatching(/TRACING_ENDPOINT must be an http\(s\) URL/)
		]);
		expect(problemsOf({ DATA_DIR: "/tmp", TRACING: "off", TRACING_ENDPOINT: "whatever" })).toEqual([]);
		expect(brokerOptions(config({})).tracing).toEqual({ enabled: false });
	});

	it("when TRACING=console and LOG_LEVEL=warn, then each node's tables are printed anyway, headed by trace and node, and a span that outlives its parent is printed when it ends", async () => {
		const c = config({ TRACING: "console", LOG_LEVEL: "warn" });
		const options = brokerOptions(c);
		expect(options.tracing).toMatchObject({ enabled: true, exporter: expect.any(TracerExporters.Console) });
		expect((options.logger as unknown as { options: { level: unknown } }).options.level).toEqual({ TRACER: "info", "**": "warn" });

		const lines: string[] = [];
		const log = jest.spyOn(console, "log").mockImplementation((...args: unknown[]) => void lines.push(args.join(" ")));
		const broker = new ServiceBroker({ ...options, nodeID: "tracing-unit" });
		let late: Promise<unknown> = Promise.resolve();
		broker.createService({
			name: "t",
			actions: {
				// Starts `slow` and answers before it ends, as saga.start answers while its steps go on.
				outer(ctx) {
					late = ctx.call("t.slow");
					return ctx.call("t.quick");
				},
				async slow(ctx) {
					await new Promise(r => setTimeout(r, 100));
					return ctx.call("t.quick");
				},
				quick: () => 1
			}
		});
		try {
			await broker.start();
			await broker.call("t.outer");
			await late;
		} finally {
			await broker.stop();
			log.mockRestore();
		}
		const text = lines.join("\n");
		const heads = [...text.matchAll(/TRACER: trace (\S+) on tracing-unit:/g)].map(m => m[1]);
		expect(heads).toHaveLength(2);
		expect(new Set(heads).size).toBe(1);
		// The second table: `slow` and its own child, which the stock exporter dropped with `outer`'s table.
		const second = text.slice(text.lastIndexOf("TRACER: trace "));
		expect(second).toMatch(/action 't\.slow'[^\n]*\n[^\n]*action 't\.quick'/);
		expect(text).not.toMatch(/INFO {2}BROKER/);
	});
});
