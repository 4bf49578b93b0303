/**
 * What the gateway promises about every answer and every caller (issue 14, smaller items): security headers,
 * request ids, idempotency keyed on the matched route, tokens of deleted users and role changes, login
 * throttling, and moleculer-web's management actions kept to the gateway itself. Embedded and cluster (the
 * gateway and the user service on separate brokers over NATS).
 */
import type { ServiceBroker } from "moleculer";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";

const ADMIN = { ADMIN_EMAIL: "ops@example.com", ADMIN_PASSWORD: "ops-password" };

describe.each([
	["embedded", false],
	["cluster", true]
])("gateway security (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let gateway: ServiceBroker;
	let accounts: ServiceBroker;
	let api: string;
	let seq = 0;

	beforeAll(async () => {
		env = testEnv({
			cluster,
			env: { ...ADMIN, AUTH_CACHE_SEC: "1", HSTS_MAX_AGE_SEC: "31536000", LOGIN_LIMIT_PER_ACCOUNT: "3", RATE_LIMIT_PER_MINUTE: "0" }
		});
		if (cluster) {
			accounts = await env.broker(["user", "payment", "queue"]);
			gateway = await env.broker(["api"]);
			await gateway.waitForServices(["user", "payment", "queue"], 20_000);
		} else {
			gateway = accounts = await env.broker(["api", "user", "payment", "queue"]);
		}
		api = gatewayUrl(gateway);
	}, 90_000);
	afterAll(() => env.cleanup(), 60_000);

	async function signUp(): Promise<{ id: string; email: string; token: string }> {
		const email = `sec${++seq}-${Date.now().toString(36)}@example.com`;
		const reg = await http("POST", `${api}/auth/register`, { body: { email, password: "password-1", name: "S" } });
		expect(reg.status).toBe(201);
		const login = await http("POST", `${api}/auth/login`, { body: { email, password: "password-1" } });
		return { id: reg.body.id, email, token: login.body.accessToken };
	}
	const users = () =>
		(accounts.getLocalService("user") as unknown as { model: { update(v: object, o: object): Promise<unknown>; destroy(o: object): Promise<number> } })
			.model;

	it("when answers of every kind go out (200, 400, 401, 404, 422), then each carries the security headers", async () => {
		const u = await signUp();
		await http("POST", `${api}/points/charge`, { token: u.token, body: { amount: 10 }, headers: { "idempotency-key": "h-1" } });
		const answers = await Promise.all([
			http("GET", `${api}/points`, { token: u.token }),
			http("POST", `${api}/auth/login`, { raw: "[[[[]]]]" }),
			http("GET", `${api}/users/me`, { token: "not.a.token" }),
			http("GET", `${api}/no/such/route`),
			http("POST", `${api}/points/charge`, { token: u.token, body: { amount: 11 }, headers: { "idempotency-key": "h-1" } }),
			http("POST", `${api}/auth/register`, { body: { email: "bad" } })
		]);
		expect(answers.map(a => a.status)).toEqual([200, 400, 401, 404, 422, 422]);
		for (const a of answers) {
			expect(a.headers.get("x-content-type-options")).toBe("nosniff");
			expect(a.headers.get("x-frame-options")).toBe("DENY");
			expect(a.headers.get("referrer-policy")).toBe("no-referrer");
			expect(a.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
			expect(a.headers.get("strict-transport-security")).toBe("max-age=31536000; includeSubDomains");
		}
		const docs = await http("GET", `${api}/docs`);
		expect(docs.headers.get("content-security-policy")).toMatch(/default-src 'self'.*frame-ancestors 'none'/);
	});

	it("when X-Request-ID is short and plain it is kept; when it is long or odd, a generated one replaces it", async () => {
		const ok = await http("GET", `${api}/openapi.json`, { headers: { "x-request-id": "req-123.abc:9" } });
		expect(ok.headers.get("x-request-id")).toBe("req-123.abc:9");
		for (const bad of ["<script>alert(1)</script>", "a".repeat(65), "has space"]) {
			const res = await http("GET", `${api}/openapi.json`, { headers: { "x-request-id": bad } });
			expect(res.headers.get("x-request-id")).not.toBe(bad);
			expect(res.headers.get("x-request-id")).toMatch(/^[A-Za-z0-9._:-]{1,64}$/);
		}
	});

	it("when one Idempotency-Key is sent to /points/charge, /points/charge/ and /POINTS/CHARGE, then it is one route: charged once, replayed twice", async () => {
		const u = await signUp();
		const send = (path: string) => http("POST", `${api}${path}`, { token: u.token, body: { amount: 500 }, headers: { "idempotency-key": "route-key" } });
		const first = await send("/points/charge");
		const second = await send("/points/charge/");
		const third = await send("/POINTS/CHARGE");
		expect([first.status, second.status, third.status]).toEqual([200, 200, 200]);
		expect([second.headers.get("idempotent-replayed"), third.headers.get("idempotent-replayed")]).toEqual(["true", "true"]);
		expect((await http("GET", `${api}/points`, { token: u.token })).body.balance).toBe(500);
	});

	it("when a user is deleted, then its still-valid token is refused within the cache lifetime", async () => {
		const u = await signUp();
		expect((await http("GET", `${api}/users/me`, { token: u.token })).status).toBe(200);
		await users().destroy({ where: { id: u.id } });
		await waitFor(async () => (await http("GET", `${api}/points`, { token: u.token })).status === 401, 5_000, "the deleted user's token to be refused");
	});

	it("when a deleted user replays an Idempotency-Key, then the stored answer is not handed out", async () => {
		const u = await signUp();
		const charge = () =>
			http("POST", `${api}/points/charge`, { token: u.token, body: { amount: 70 }, headers: { "idempotency-key": "replay-after-delete" } });
		expect((await charge()).status).toBe(200);
		expect((await charge()).headers.get("idempotent-replayed")).toBe("true");
		await users().destroy({ where: { id: u.id } });
		await waitFor(async () => (await charge()).status === 401, 5_000, "the replay to be refused");
	});

	it("when an anonymous request ends in a 4xx, then it is not stored under its key: only successes are", async () => {
		const u = await signUp();
		const again = () =>
			http("POST", `${api}/auth/register`, { body: { email: u.email, password: "password-1", name: "S" }, headers: { "idempotency-key": "anon-409" } });
		const first = await again();
		const second = await again();
		expect([first.status, second.status]).toEqual([409, 409]);
		expect(second.headers.get("idempotent-replayed")).toBeNull();
	});

	it("when a user's role changes, then the gateway follows the database, not the token", async () => {
		const u = await signUp();
		const adminRoute = () => http("GET", `${api}/admin/queues/some-concert`, { token: u.token }).then(r => r.status);
		expect(await adminRoute()).toBe(403);
		await users().update({ role: "admin" }, { where: { id: u.id } });
		await waitFor(async () => (await adminRoute()) === 200, 5_000, "the promotion to take effect");
		await users().update({ role: "user" }, { where: { id: u.id } });
		await waitFor(async () => (await adminRoute()) === 403, 5_000, "the demotion to take effect");
	});

	it("when an account gets more login attempts than LOGIN_LIMIT_PER_ACCOUNT in a minute, then 429 LOGIN_THROTTLED with Retry-After, even with the right password", async () => {
		const u = await signUp(); // one login already
		const attempts = [];
		for (let i = 0; i < 3; i++)
			attempts.push(await http("POST", `${api}/auth/login`, { body: { email: u.email, password: i < 2 ? "wrong-password" : "password-1" } }));
		expect(attempts.map(a => a.status)).toEqual([401, 401, 429]);
		expect(attempts[2].body.type).toBe("LOGIN_THROTTLED");
		const retryAfter = Number(attempts[2].headers.get("retry-after"));
		expect(retryAfter).toBeGreaterThanOrEqual(1);
		expect(retryAfter).toBeLessThanOrEqual(60);
		// Another spelling the database's collation reads as the same account is the same bucket (MariaDB ignores
		// accents; SQLite compares bytes, so there it is an unknown email). Either way no way in.
		const variant = u.email.replace("sec", "séc");
		expect((await http("POST", `${api}/auth/login`, { body: { email: variant, password: "password-1" } })).status).toBe(cluster ? 429 : 401);
		// Another account is not affected.
		expect((await http("POST", `${api}/auth/login`, { body: { email: ADMIN.ADMIN_EMAIL, password: ADMIN.ADMIN_PASSWORD } })).status).toBe(200);
	});

	it("when another node calls moleculer-web's management actions, then they are not there for it", async () => {
		const other = await env.broker([]);
		for (const action of ["api.addRoute", "api.removeRoute", "api.listAliases"]) {
			await expect(other.call(action, { route: { path: "/x", aliases: { "GET x": "user.get" } }, name: "api-write" })).rejects.toMatchObject({
				type: expect.stringMatching(/SERVICE_NOT_FOUND|SERVICE_NOT_AVAILABLE/)
			});
		}
		expect((await http("POST", `${api}/auth/login`, { body: { email: "x@example.com", password: "y" } })).status).toBe(401);
	});
});

describe("login throttling per client address", () => {
	let env: TestEnv;
	let api: string;

	beforeAll(async () => {
		env = testEnv({ cluster: false, env: { LOGIN_LIMIT_PER_ADDRESS: "5", LOGIN_LIMIT_PER_ACCOUNT: "0", RATE_LIMIT_PER_MINUTE: "0" } });
		api = gatewayUrl(await env.broker(["api", "user"]));
	}, 60_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when one address tries more logins than LOGIN_LIMIT_PER_ADDRESS in a minute, whatever the accounts, then the rest are 429 and cost no hash", async () => {
		const results = [];
		for (let i = 0; i < 8; i++)
			results.push(await http("POST", `${api}/auth/login`, { body: { email: `nobody${i}@example.com`, password: "whatever-1" } }));
		expect(results.map(r => r.status)).toEqual([401, 401, 401, 401, 401, 429, 429, 429]);
		expect(results[5].body.type).toBe("LOGIN_THROTTLED");
		expect(results[5].headers.get("retry-after")).toMatch(/^\d+$/);
		// A sign-up costs a hash too: it shares the address's allowance.
		expect((await http("POST", `${api}/auth/register`, { body: { email: "late@example.com", password: "password-1", name: "L" } })).status).toBe(429);
	});
});
