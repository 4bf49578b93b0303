import path from "path";
import { ConfigError, loadConfig, redactUrl } from "../../lib/config";

const problemsOf = (env: Record<string, string>): string[] => {
	try {
		loadConfig(env);
	} catch (err) {
		if (err instanceof ConfigError) return err.problems;
		throw err;
	}
	return [];
};

describe("configuration", () => {
	it("when nothing is set, then it is embedded with the documented defaults", () => {
		const c = loadConfig({});
		expect(c.mode).toBe("embedded");
		expect(c.port).toBe(3000);
		expect(c.dataDir).toBe(path.resolve("./data"));
		expect(c.sql).toMatchObject({ dialect: "sqlite", dir: path.resolve("./data/db") });
		expect(c.redis).toBeUndefined();
		expect(c.transporter).toBeUndefined();
		expect(c).toMatchObject({
			holdTtlSec: 300,
			queueMaxActive: 100,
			queueActiveTtlSec: 600,
			idempotencyTtlSec: 86400,
			outboxPollMs: 1000,
			logLevel: "info",
			metricsPort: 3030
		});
		expect(c.tracing.exporter).toBe("off");
		expect(c.requestTimeoutMs).toBeGreaterThan(0);
	});

	it("when the cluster variables are set, then it is cluster mode on MariaDB, Redis and NATS", () => {
		const c = loadConfig({
			TRANSPORTER: "nats://127.0.0.1:4222",
			DATABASE_URL: "mysql://app:s%40cret@db:3307",
			REDIS_URL: "redis://cache:6379",
			JWT_SECRET: "x".repeat(32),
			NAMESPACE: "prod",
			DB_PREFIX: "crp_"
		});
		expect(c.mode).toBe("cluster");
		expect(c.sql).toMatchObject({ dialect: "mysql", host: "db", port: 3307, user: "app", password: "s@cret", prefix: "crp_" });
		expect(c.redis).toEqual({ url: "redis://cache:6379" });
		expect(c.storePrefix).toBe("crp:prod:");
	});

	it("when a transporter comes with SQLite and the memory store, then start-up fails naming both", () => {
		const problems = problemsOf({ TRANSPORTER: "nats://127.0.0.1:4222", JWT_SECRET: "x".repeat(32) });
		expect(problems.join("\n")).toMatch(/SQLite files cannot be shared/);
		expect(problems.join("\n")).toMatch(/in-memory store cannot be shared/);
	});

	it("when REDIS_URL=memory is given with a transporter, then it is refused too", () => {
		const problems = problemsOf({
			TRANSPORTER: "nats://127.0.0.1:4222",
			DATABASE_URL: "mysql://root@127.0.0.1",
			REDIS_URL: "memory",
			JWT_SECRET: "x".repeat(32)
		});
		expect(problems).toHaveLength(1);
		expect(problems[0]).toMatch(/REDIS_URL/);
	});

	it("when cluster mode lacks JWT_SECRET, then it is required", () => {
		const problems = problemsOf({
			TRANSPORTER: "nats://127.0.0.1:4222",
			DATABASE_URL: "mysql://root@127.0.0.1",
			REDIS_URL: "redis://127.0.0.1:6379"
		});
		expect(problems).toEqual([expect.stringMatching(/JWT_SECRET is required/)]);
	});

	it("when values are nonsense, then every problem is listed at once", () => {
		const problems = problemsOf({
			PORT: "eighty",
			HOLD_TTL_SEC: "0",
			QUEUE_MAX_ACTIVE: "-3",
			LOG_LEVEL: "loud",
			TRACING: "carrier-pigeon",
			JWT_SECRET: "short",
			DATABASE_URL: "postgres://x",
			TRANSPORTER: "amqp://x",
			ADMIN_EMAIL: "admin@example.com",
			NAMESPACE: "bad namespace!",
			TRUST_PROXY: "maybe"
		});
		const text = problems.join("\n");
		for (const name of ["PORT", "HOLD_TTL_SEC", "QUEUE_MAX_ACTIVE", "LOG_LEVEL", "TRACING", "JWT_SECRET", "DATABASE_URL", "TRANSPORTER", "ADMIN_EMAIL and ADMIN_PASSWORD", "NAMESPACE", "TRUST_PROXY"]) {
			expect(text).toContain(name);
		}
	});

	it("when a tracing exporter needs an endpoint, then it must be given", () => {
		expect(problemsOf({ TRACING: "zipkin" })).toEqual([expect.stringMatching(/TRACING_ENDPOINT/)]);
		expect(loadConfig({ TRACING: "zipkin", TRACING_ENDPOINT: "http://zipkin:9411" }).tracing).toEqual({
			exporter: "zipkin",
			endpoint: "http://zipkin:9411"
		});
	});

	it("when a URL with a password is reported, then the password is hidden", () => {
		expect(redactUrl("mysql://app:hunter2@db:3306")).toBe("mysql://app:***@db:3306");
		const problems = problemsOf({ TRANSPORTER: "tcp://u:hunter2@x" , JWT_SECRET: "x".repeat(32) });
		expect(problems.join("\n")).not.toContain("hunter2");
	});

	it("when the error is printed, then it reads as a list", () => {
		try {
			loadConfig({ PORT: "x" });
			throw new Error("expected a ConfigError");
		} catch (err) {
			expect((err as Error).message).toMatch(/^Invalid configuration:\n {2}- PORT must be an integer/);
		}
	});
});
