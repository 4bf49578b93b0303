/**
 * MariaDB going away under a running cluster, on a private mariadbd (test/support/mariadb-server.ts) that the test
 * kills and restarts: the shared server is never touched. A gateway node and a user node talk over the real NATS.
 */
import type { ServiceBroker } from "moleculer";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { startMariaDb, type PrivateMariaDb } from "../support/mariadb-server";
import { freePort } from "../support/nats-server";

describe("a database outage", () => {
	let db: PrivateMariaDb;
	let env: TestEnv;
	let gateway: ServiceBroker;
	let api: string;

	beforeAll(async () => {
		db = await startMariaDb();
		env = testEnv({ cluster: true, env: { DATABASE_URL: db.url } });
		await env.broker(["user"]);
		gateway = await env.broker(["api"]);
		await gateway.waitForServices(["user"], 20_000);
		api = gatewayUrl(gateway);
	}, 120_000);

	afterAll(async () => {
		await db?.restart().catch(() => undefined);
		await env?.cleanup();
		await db?.stop();
	}, 60_000);

	let n = 0;
	const register = () => http("POST", `${api}/auth/register`, { body: { email: `outage-${++n}@example.com`, password: "correct horse", name: "Ada" } });

	it("when MariaDB is killed, then requests that need it get 503 SERVICE_UNAVAILABLE with Retry-After, and succeed again once it is back", async () => {
		expect((await register()).status).toBe(201);

		await db.kill();
		const during = await register();
		expect(during.status).toBe(503);
		expect(during.body).toEqual({
			name: "ServiceUnavailableError",
			message: "Service temporarily unavailable",
			code: 503,
			type: "SERVICE_UNAVAILABLE"
		});
		expect(Number(during.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
		const login = await http("POST", `${api}/auth/login`, { body: { email: "outage-1@example.com", password: "correct horse" } });
		expect(login.status).toBe(503);
		expect(login.headers.get("retry-after")).not.toBeNull();
		const health = await http("GET", `${api}/health`);
		expect(health.status).toBe(503);
		expect(health.body.checks["db:user"]).toEqual({ ok: false, error: "database: connection refused" });
		expect(health.body.checks.database).toEqual({ ok: false, error: "connection refused" });

		await db.restart();
		let after = { status: 0 };
		await waitFor(async () => (after = await register()).status !== 503, 30_000, "a registration after the restart");
		expect(after.status).toBe(201);
	}, 90_000);
});

describe("a node whose database is not there at start", () => {
	let env: TestEnv | undefined;
	let db: PrivateMariaDb | undefined;

	afterEach(async () => {
		await env?.cleanup();
		await db?.stop();
		env = db = undefined;
	}, 60_000);

	/** The node's lines about its database, and whether anything it printed was a stack frame. */
	const attempts = (out: string) => out.split("\n").filter(l => / not available for /.test(l));
	const stackLines = (out: string) => out.split("\n").filter(l => /^\s+at /.test(l));

	it("when nothing listens on the database port, then the node says where and why once per attempt, backs off, and /api/health names the database", async () => {
		const port = await freePort();
		env = testEnv({ cluster: true, env: { DATABASE_URL: `mysql://root:pw-not-to-print@127.0.0.1:${port}` } });
		const node = await env.spawn(["user"], { readyPattern: /\(attempt 4\)/ });
		const out = node.output();
		const lines = attempts(out);
		expect(lines.slice(0, 4).map(l => l.replace(/^.*?database /, "database "))).toEqual(
			[0.5, 1, 2, 4].map(
				(s, i) => `database 127.0.0.1:${port} not available for ${env!.env.DB_PREFIX}user (attempt ${i + 1}): connection refused; retrying in ${s} s`
			)
		);
		expect(stackLines(out)).toEqual([]);
		expect(out).not.toContain("pw-not-to-print");

		const gateway = await env.broker(["api"]);
		const health = await http("GET", `${gatewayUrl(gateway)}/health`);
		expect(health.status).toBe(503);
		expect(health.body.checks).toMatchObject({
			store: { ok: true },
			transporter: { ok: true },
			"db:user": { ok: false, error: "service unavailable" },
			database: { ok: false, error: "connection refused" }
		});
	}, 90_000);

	it("when the database refuses the password, then each attempt says access denied for the user, never the password", async () => {
		db = await startMariaDb();
		env = testEnv({ cluster: true, env: { DATABASE_URL: `mysql://root:wrong-password-9@127.0.0.1:${db.port}` } });
		const node = await env.spawn(["user"], { readyPattern: /\(attempt 2\)/ });
		const out = node.output();
		expect(attempts(out)[0]).toMatch(
			new RegExp(
				`database 127\\.0\\.0\\.1:${db.port} not available for \\w+ \\(attempt 1\\): access denied for user 'root'@'[^']+' \\(using password: YES\\); retrying in 0\\.5 s$`
			)
		);
		expect(stackLines(out)).toEqual([]);
		expect(out).not.toContain("wrong-password-9");
	}, 90_000);
});
