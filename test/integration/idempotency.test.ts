/**
 * The gateway's Idempotency-Key layer over HTTP, embedded and cluster (Redis holds the keys there).
 */
import type { ServiceBroker } from "moleculer";
import { gatewayUrl, http, testEnv, type TestEnv } from "../support/harness";

describe.each([
	["embedded", false],
	["cluster", true]
])("idempotency keys (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let gateway: ServiceBroker;
	let api: string;
	let token: string;

	beforeAll(async () => {
		env = testEnv({ cluster });
		gateway = await env.broker(["api", "user", "payment"]);
		api = gatewayUrl(gateway);
		await http("POST", `${api}/auth/register`, { body: { email: "idem@example.com", password: "password-1", name: "I" } });
		token = (await http("POST", `${api}/auth/login`, { body: { email: "idem@example.com", password: "password-1" } })).body.accessToken;
	}, 90_000);
	afterAll(() => env.cleanup(), 60_000);

	const charge = (key: string | undefined, amount: number, as = token) =>
		http("POST", `${api}/points/charge`, { token: as, body: { amount }, headers: key === undefined ? {} : { "idempotency-key": key } });
	const balance = async (as = token) => (await http("GET", `${api}/points`, { token: as })).body.balance as number;

	it("when the same key and request come twice, then the second is the stored answer, marked replayed", async () => {
		const before = await balance();
		const first = await charge("k-same", 500);
		const second = await charge("k-same", 500);
		expect(first.status).toBe(200);
		expect(first.headers.get("idempotent-replayed")).toBeNull();
		expect(second.status).toBe(200);
		expect(second.headers.get("idempotent-replayed")).toBe("true");
		expect(second.body).toEqual(first.body);
		expect(await balance()).toBe(before + 500);
	});

	it("when the same key comes with another request, then 422 IDEMPOTENCY_KEY_REUSED and nothing changes", async () => {
		await charge("k-reuse", 100);
		const before = await balance();
		const other = await charge("k-reuse", 200);
		expect(other.status).toBe(422);
		expect(other.body.type).toBe("IDEMPOTENCY_KEY_REUSED");
		expect(await balance()).toBe(before);
	});

	it("when 10 requests with one key race, then it runs once and the rest are told it is in progress or replayed", async () => {
		const before = await balance();
		const results = await Promise.all(Array.from({ length: 10 }, () => charge("k-race", 70)));
		const executed = results.filter(r => r.status === 200 && r.headers.get("idempotent-replayed") === null);
		expect(executed).toHaveLength(1);
		for (const r of results) {
			if (r === executed[0]) continue;
			const replayed = r.status === 200 && r.headers.get("idempotent-replayed") === "true";
			const inProgress = r.status === 409 && r.body.type === "IDEMPOTENCY_KEY_IN_PROGRESS";
			expect(replayed || inProgress).toBe(true);
		}
		expect(await balance()).toBe(before + 70);
	});

	it("when a required key is missing or malformed, then 400 and nothing changes", async () => {
		const before = await balance();
		const missing = await charge(undefined, 10);
		expect(missing.status).toBe(400);
		expect(missing.body.type).toBe("IDEMPOTENCY_KEY_REQUIRED");
		const tooLong = await charge("x".repeat(256), 10);
		expect(tooLong.status).toBe(400);
		expect(tooLong.body.type).toBe("IDEMPOTENCY_KEY_INVALID");
		expect(await balance()).toBe(before);
	});

	it("when a request fails validation, then its key is not locked and a corrected request runs", async () => {
		const bad = await charge("k-fix", 0);
		expect(bad.status).toBe(422);
		const before = await balance();
		const fixed = await charge("k-fix", 30);
		expect(fixed.status).toBe(200);
		expect(fixed.headers.get("idempotent-replayed")).toBeNull();
		expect(await balance()).toBe(before + 30);
	});

	it("when another user sends the same key, then it is their own request", async () => {
		await http("POST", `${api}/auth/register`, { body: { email: "idem2@example.com", password: "password-1", name: "J" } });
		const other = (await http("POST", `${api}/auth/login`, { body: { email: "idem2@example.com", password: "password-1" } })).body.accessToken;
		await charge("k-shared", 40);
		const res = await charge("k-shared", 40, other);
		expect(res.status).toBe(200);
		expect(res.headers.get("idempotent-replayed")).toBeNull();
		expect(await balance(other)).toBe(40);
	});

	it("when an anonymous register is repeated with its key, then one account and the same 201", async () => {
		const body = { email: "anon-idem@example.com", password: "password-1", name: "A" };
		const a = await http("POST", `${api}/auth/register`, { body, headers: { "idempotency-key": "reg-1" } });
		const b = await http("POST", `${api}/auth/register`, { body, headers: { "idempotency-key": "reg-1" } });
		expect(a.status).toBe(201);
		expect(b.status).toBe(201);
		expect(b.headers.get("idempotent-replayed")).toBe("true");
		expect(b.body).toEqual(a.body);
	});

	it("when a login carries a key, then it is not replayed: every login is fresh", async () => {
		const body = { email: "idem@example.com", password: "password-1" };
		const a = await http("POST", `${api}/auth/login`, { body, headers: { "idempotency-key": "login-1" } });
		const b = await http("POST", `${api}/auth/login`, { body, headers: { "idempotency-key": "login-1" } });
		expect(a.status).toBe(200);
		expect(b.status).toBe(200);
		expect(b.headers.get("idempotent-replayed")).toBeNull();
	});
});
