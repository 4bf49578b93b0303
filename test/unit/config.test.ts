import path from "path";
import { loadConfig, redactUrl } from "../../lib/config";
import { problemsOf } from "../support/config-problems";

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
			CLUSTER_SECRET: "c".repeat(32),
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
			JWT_SECRET: "x".repeat(32),
			CLUSTER_SECRET: "c".repeat(32)
		});
		expect(problems).toHaveLength(1);
		expect(problems[0]).toMatch(/REDIS_URL/);
	});

	it("when cluster mode lacks JWT_SECRET or CLUSTER_SECRET, then both are required", () => {
		const problems = problemsOf({
			TRANSPORTER: "nats://127.0.0.1:4222",
			DATABASE_URL: "mysql://root@127.0.0.1",
			REDIS_URL: "redis://127.0.0.1:6379"
		});
		expect(problems).toEqual([expect.stringMatching(/JWT_SECRET is required/), expect.stringMatching(/CLUSTER_SECRET is required/)]);
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
		for (const name of [
			"PORT",
			"HOLD_TTL_SEC",
			"QUEUE_MAX_ACTIVE",
			"LOG_LEVEL",
			"TRACING",
			"JWT_SECRET",
			"DATABASE_URL",
			"TRANSPORTER",
			"ADMIN_EMAIL and ADMIN_PASSWORD",
			"NAMESPACE",
			"TRUST_PROXY"
		]) {
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
		const problems = problemsOf({ TRANSPORTER: "tcp://u:hunter2@x", JWT_SECRET: "x".repeat(32) });
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

	describe("cluster membership and credentials", () => {
		const cluster = {
			TRANSPORTER: "nats://127.0.0.1:4222",
			DATABASE_URL: "mysql://root@127.0.0.1",
			REDIS_URL: "redis://127.0.0.1:6379",
			JWT_SECRET: "j".repeat(32),
			CLUSTER_SECRET: "c".repeat(32)
		};

		it("when CLUSTER_SECRET is short, equals JWT_SECRET, or an accepted secret comes alone, then it is refused", () => {
			expect(problemsOf({ ...cluster, CLUSTER_SECRET: "short" })).toEqual([expect.stringMatching(/CLUSTER_SECRET must be at least 32/)]);
			expect(problemsOf({ ...cluster, CLUSTER_SECRET: "j".repeat(32) })).toEqual([expect.stringMatching(/must differ from JWT_SECRET/)]);
			expect(problemsOf({ JWT_SECRET: "j".repeat(32), CLUSTER_SECRET_ACCEPT: "a".repeat(32) })).toEqual([expect.stringMatching(/needs CLUSTER_SECRET/)]);
			expect(loadConfig({ ...cluster, CLUSTER_SECRET_ACCEPT: "a".repeat(32) }).cluster).toEqual({ secret: "c".repeat(32), accept: "a".repeat(32) });
		});

		it("when NATS credentials come from NATS_USER/NATS_PASSWORD, then they reach the client and the URL carries none", () => {
			const c = loadConfig({ ...cluster, TRANSPORTER: "nats://n1:4222,nats://n2", NATS_USER: "node", NATS_PASSWORD: "p@ss/word" });
			expect(c.transporter).toMatchObject({ servers: ["n1:4222", "n2:4222"], user: "node", password: "p@ss/word" });
			expect(c.warnings).toEqual([]);
		});

		it("when NATS credentials are inside the URL, then they are taken out of it (user:password, or a token)", () => {
			const withPass = loadConfig({ ...cluster, TRANSPORTER: "nats://node:s%40cret@nats:4222" });
			expect(withPass.transporter).toMatchObject({ servers: ["nats:4222"], user: "node", password: "s@cret" });
			expect(withPass.transporter!.url).not.toContain("cret");
			expect(loadConfig({ ...cluster, TRANSPORTER: "nats://t0ken@nats:4222" }).transporter).toMatchObject({ token: "t0ken", user: undefined });
		});

		it("when a cluster has no NATS credentials, then production refuses to start and anything else warns", () => {
			expect(problemsOf({ ...cluster, NODE_ENV: "production" })).toEqual([expect.stringMatching(/required when NODE_ENV=production/)]);
			expect(loadConfig(cluster).warnings).toEqual([expect.stringMatching(/NATS has no credentials/)]);
			expect(problemsOf({ ...cluster, NODE_ENV: "production", NATS_TOKEN: "t".repeat(20) })).toEqual([]);
		});

		it("when TRANSPORTER asks for TLS, then the client gets TLS options, with the files given", () => {
			expect(loadConfig({ ...cluster, TRANSPORTER: "tls://nats:4222" }).transporter!.tls).toEqual({});
			expect(problemsOf({ ...cluster, NATS_TLS_CA: "/nonexistent/ca.pem" })).toEqual([
				expect.stringMatching(/NATS_TLS_CA names a file that does not exist/)
			]);
			expect(problemsOf({ ...cluster, NATS_TLS_CERT: __filename })).toEqual([
				expect.stringMatching(/NATS_TLS_CERT and NATS_TLS_KEY must be set together/)
			]);
		});
	});

	describe("database credentials", () => {
		it("when the password comes apart from the URL, then any character works, with no encoding", () => {
			for (const password of ["a/b+c=", "p@ss#word", "abc%zz", "we:ird?&"]) {
				const c = loadConfig({ DATABASE_URL: "mysql://app@db:3306", DATABASE_PASSWORD: password });
				expect(c.sql).toMatchObject({ host: "db", user: "app", password });
			}
			expect(loadConfig({ DATABASE_URL: "mysql://app:old@db", DATABASE_USER: "other", DATABASE_PASSWORD: "new" }).sql).toMatchObject({
				user: "other",
				password: "new"
			});
		});

		it("when an unencoded password sits in the URL, then start-up names the problem and never prints the password", () => {
			for (const password of ["a/b+c=", "p@ss#word", "abc%zz", "x?y"]) {
				const problems = problemsOf({ DATABASE_URL: `mysql://root:${password}@db:3306` });
				expect(problems).toHaveLength(1);
				expect(problems[0]).toMatch(/DATABASE_URL/);
				expect(problems[0]).toMatch(/DATABASE_PASSWORD/);
				expect(problems[0]).not.toContain(password);
			}
		});

		it("when any URL with credentials is redacted, then nothing of the password is left", () => {
			for (const raw of ["mysql://u:a/b@h", "mysql://u:p@ss#w@h", "nats://u:x,y@h1,nats://u:x,y@h2", "redis://:pw@h:6379", "nats://tok@h"]) {
				const out = redactUrl(raw);
				for (const secret of ["a/b", "p@ss", "x,y", "pw", "tok"]) if (raw.includes(secret)) expect(out).not.toContain(secret);
			}
		});

		it("when a URL lacks its :// the password is still hidden, from startup errors too", () => {
			for (const [name, raw] of [
				["TRANSPORTER", "crp:pw1@host:4222"],
				["TRANSPORTER", "nats:/crp:pw1@h"],
				["DATABASE_URL", "mysql//root:pw1@db:3306"],
				["REDIS_URL", "redis//:pw1@cache"]
			]) {
				const problems = problemsOf({ [name]: raw });
				expect(problems.length).toBeGreaterThan(0);
				expect(problems.join("\n")).not.toContain("pw1");
			}
		});

		it("when DATABASE_PASSWORD is given without a MariaDB URL, then it is refused", () => {
			expect(problemsOf({ DATABASE_PASSWORD: "x" })).toEqual([expect.stringMatching(/need a mysql:\/\//)]);
		});
	});

	it("when TRUST_PROXY is false, true or a count, then it is that many trusted hops", () => {
		expect([undefined, "false", "true", "2"].map(v => loadConfig(v === undefined ? {} : { TRUST_PROXY: v }).http.trustProxy)).toEqual([0, 0, 1, 2]);
		expect(problemsOf({ TRUST_PROXY: "11" })).toEqual([expect.stringMatching(/TRUST_PROXY/)]);
	});

	it("when metrics are on, then they listen on loopback unless METRICS_HOST says otherwise", () => {
		expect(loadConfig({}).metricsHost).toBe("127.0.0.1");
		expect(loadConfig({ METRICS_HOST: "0.0.0.0" }).metricsHost).toBe("0.0.0.0");
	});
});
