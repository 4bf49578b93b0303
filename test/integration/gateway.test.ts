/**
 * The gateway over HTTP, in both run modes: embedded (one process, SQLite, memory store) and cluster (gateway
 * broker in this process, user service in a separate OS process, talking over the real NATS server, with the
 * real MariaDB and Redis).
 */
import jwt from "jsonwebtoken";
import type { ServiceBroker } from "moleculer";
import { REQUIRED_SERVICES } from "../../services/api/routes";
import { gatewayUrl, http, testEnv, type TestEnv } from "../support/harness";

const modes: [string, boolean][] = [
	["embedded", false],
	["cluster", true]
];

describe.each(modes)("gateway and users (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let gateway: ServiceBroker;
	let api: string;

	beforeAll(async () => {
		env = testEnv({ cluster, env: { ADMIN_EMAIL: "root@example.com", ADMIN_PASSWORD: "admin-password" } });
		if (cluster) {
			await env.spawn(["user"]);
			gateway = await env.broker(["api"]);
			await gateway.waitForServices(["user"], 20_000);
		} else {
			gateway = await env.broker(["api", "user"]);
		}
		api = gatewayUrl(gateway);
	}, 90_000);

	afterAll(async () => {
		await env.cleanup();
	}, 60_000);

	const register = (email: string, extra: Record<string, unknown> = {}) =>
		http("POST", `${api}/auth/register`, { body: { email, password: "correct horse", name: "Ada", ...extra } });
	const login = (email: string, password = "correct horse") => http("POST", `${api}/auth/login`, { body: { email, password } });

	it("when a user registers, logs in and asks who they are, then each step answers per docs/API.md", async () => {
		const reg = await register("ada@example.com");
		expect(reg.status).toBe(201);
		expect(reg.body).toEqual({ id: expect.any(String), email: "ada@example.com", name: "Ada", role: "user" });
		expect(reg.body.password_hash).toBeUndefined();

		const log = await login("ADA@example.com ");
		expect(log.status).toBe(200);
		expect(log.body).toMatchObject({ tokenType: "Bearer", expiresIn: 900, user: { id: reg.body.id, role: "user" } });

		const me = await http("GET", `${api}/users/me`, { token: log.body.accessToken });
		expect(me.status).toBe(200);
		expect(me.body).toEqual(reg.body);
	});

	it("when the email is taken (in any case), then 409 EMAIL_TAKEN and no second account", async () => {
		expect((await register("dup@example.com")).status).toBe(201);
		const again = await register("DUP@example.com");
		expect(again.status).toBe(409);
		expect(again.body).toEqual({
			name: "EmailTakenError",
			message: expect.any(String),
			code: 409,
			type: "EMAIL_TAKEN"
		});
	});

	it("when 20 registrations of one email race, then exactly one succeeds", async () => {
		const results = await Promise.all(Array.from({ length: 20 }, () => register("race@example.com")));
		expect(results.filter(r => r.status === 201)).toHaveLength(1);
		expect(results.filter(r => r.status === 409)).toHaveLength(19);
	});

	it("when the password is wrong or the user unknown, then the same 401 INVALID_CREDENTIALS", async () => {
		await register("pw@example.com");
		const wrong = await login("pw@example.com", "wrong password");
		const unknown = await login("nobody@example.com", "whatever1");
		for (const r of [wrong, unknown]) {
			expect(r.status).toBe(401);
			expect(r.body.type).toBe("INVALID_CREDENTIALS");
			expect(r.body.message).toBe(wrong.body.message);
		}
	});

	it("when a body sets role admin, then the account is still a user", async () => {
		const reg = await register("sneaky@example.com", { role: "admin" });
		expect(reg.status).toBe(201);
		expect(reg.body.role).toBe("user");
		const log = await login("sneaky@example.com");
		expect(log.body.user.role).toBe("user");
	});

	it("when the token is missing, malformed, tampered, foreign-signed, alg none or expired, then 401 UNAUTHORIZED", async () => {
		await register("tok@example.com");
		const good: string = (await login("tok@example.com")).body.accessToken;
		const [h, p, s] = good.split(".");
		const payload = JSON.parse(Buffer.from(p, "base64url").toString());
		const escalated = Buffer.from(JSON.stringify({ ...payload, role: "admin" })).toString("base64url");
		const noneToken = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${escalated}.`;
		const foreign = jwt.sign({ email: payload.email, role: "admin" }, "x".repeat(40), {
			algorithm: "HS256",
			subject: payload.sub,
			issuer: payload.iss,
			audience: payload.aud,
			expiresIn: 60
		});
		const expired = jwt.sign({ email: payload.email, role: "user" }, env.config.jwt.secret!, {
			algorithm: "HS256",
			subject: payload.sub,
			issuer: payload.iss,
			audience: payload.aud,
			expiresIn: -10
		});
		const cases: Record<string, string | undefined> = {
			missing: undefined,
			notBearer: `Basic ${Buffer.from("a:b").toString("base64")}`,
			tampered: `Bearer ${h}.${escalated}.${s}`,
			none: `Bearer ${noneToken}`,
			foreign: `Bearer ${foreign}`,
			expired: `Bearer ${expired}`
		};
		for (const [name, header] of Object.entries(cases)) {
			const res = await http("GET", `${api}/users/me`, { headers: header ? { authorization: header } : {} });
			expect({ name, status: res.status, type: res.body.type }).toEqual({ name, status: 401, type: "UNAUTHORIZED" });
			expect(res.body.stack).toBeUndefined();
		}
	});

	it("when JSON is malformed, then 400 INVALID_JSON and nothing is created", async () => {
		const res = await http("POST", `${api}/auth/register`, { raw: '{"email": "half@example.com", "password": ' });
		expect(res.status).toBe(400);
		expect(res.body).toMatchObject({ code: 400, type: "INVALID_JSON" });
		expect((await login("half@example.com")).status).toBe(401);
	});

	it("when fields are invalid, then 422 VALIDATION_ERROR names each field and never echoes the values", async () => {
		const res = await http("POST", `${api}/auth/register`, {
			body: { email: "not-an-email", password: "short", name: "" }
		});
		expect(res.status).toBe(422);
		expect(res.body.type).toBe("VALIDATION_ERROR");
		expect(res.body.data.map((d: { field: string }) => d.field).sort()).toEqual(["email", "name", "password"]);
		expect(JSON.stringify(res.body)).not.toContain("short");
		expect(JSON.stringify(res.body)).not.toContain("not-an-email");
	});

	it("when the body is over the limit, then 413 PAYLOAD_TOO_LARGE", async () => {
		const res = await http("POST", `${api}/auth/register`, {
			body: { email: "big@example.com", password: "x".repeat(200_000), name: "Big" }
		});
		expect(res.status).toBe(413);
		expect(res.body.type).toBe("PAYLOAD_TOO_LARGE");
	});

	it("when an unknown route or an internal action is asked for, then 404 NOT_FOUND", async () => {
		for (const path of ["/nope", "/user/get", "/user.get", "/api/health", "/$node/list", "/~node/list"]) {
			const res = await http("GET", `${api}${path}`);
			expect({ path, status: res.status }).toEqual({ path, status: 404 });
		}
		expect((await http("POST", `${api}/user.get`, { body: { id: "x" } })).status).toBe(404);
	});

	it("when the bootstrap admin logs in, then the token carries the admin role", async () => {
		const log = await login("root@example.com", "admin-password");
		expect(log.status).toBe(200);
		expect(log.body.user.role).toBe("admin");
	});

	it("when health is asked, then every dependency is checked and the status follows the checks", async () => {
		const res = await http("GET", `${api}/health`);
		expect(res.body.checks.store).toMatchObject({ ok: true });
		expect(res.body.checks["db:user"]).toMatchObject({ ok: true });
		if (cluster) expect(res.body.checks.transporter).toMatchObject({ ok: true });
		else expect(res.body.checks.transporter).toBeUndefined();
		for (const svc of REQUIRED_SERVICES) expect(res.body.checks[`db:${svc}`]).toBeDefined();
		const allOk = Object.values(res.body.checks).every((c: any) => c.ok);
		expect(res.status).toBe(allOk ? 200 : 503);
		expect(res.body.status).toBe(allOk ? "ok" : "degraded");
	});

	it("when a response is sent, then it carries CORS and rate-limit headers", async () => {
		const res = await http("GET", `${api}/health`, { headers: { origin: "http://example.com" } });
		expect(res.headers.get("access-control-allow-origin")).toBe("*");
		expect(Number(res.headers.get("x-rate-limit-limit"))).toBeGreaterThan(0);
	});

	// Last: it takes the user service away.
	it("when the user service is gone, then health answers 503 and names it", async () => {
		if (cluster) await env.spawned[0].stop();
		else await gateway.destroyService(gateway.getLocalService("user")!);
		const res = await http("GET", `${api}/health`);
		expect(res.status).toBe(503);
		expect(res.body.status).toBe("degraded");
		expect(res.body.checks["db:user"]).toEqual({ ok: false, error: "service unavailable" });
		expect(JSON.stringify(res.body)).not.toMatch(/127\.0\.0\.1|3306|stack/);
	});
});
