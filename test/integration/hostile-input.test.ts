/**
 * Hostile input against every route, generated from the route table (services/api/routes.ts) and the actions'
 * params schemas as the registry knows them, so a new route or field is covered without a new test:
 *   - a body nested 5,000 levels deep on every route with a body, with and without Idempotency-Key: 400, and the
 *     node answers afterwards (it used to overflow the stack of the idempotency fingerprint and exit);
 *   - NUL and other control characters (and a lone surrogate) in every string field, path parameter and query
 *     parameter: 400 INVALID_CHARACTERS, and nothing changed (balances, seats, reservations);
 *   - a burst of such requests does not open a circuit breaker: real logins still work afterwards.
 * Embedded mode runs the whole matrix (the NUL used to reach SQLite there); cluster mode runs the gateway as its
 * own OS process and checks that the same attacks leave it up.
 */
import type { ServiceBroker } from "moleculer";
import { ROUTES } from "../../services/api/routes";
import { adminToken, balance, ownConcert, reserve, seats, shopper, type Shopper } from "../support/booking";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { freePort } from "../support/nats-server";

const ADMIN = { ADMIN_EMAIL: "ops@example.com", ADMIN_PASSWORD: "ops-password" };
const ALL = ["api", "user", "queue", "concert", "payment", "saga", "reservation", "ranking", "notification", "review", "ops"];
const BAD = ["a\u0000b", "\u0001", "x\u001b[2J", "\u007f", "\ud800"];
/** A lone surrogate cannot be percent-encoded (no UTF-8 exists for it): in a URL it travels as its WTF-8 bytes. */
const enc = (v: string) => (v === "\ud800" ? "%ED%A0%80" : encodeURIComponent(v));

const nested = (n: number) => "[".repeat(n) + "]".repeat(n);

/** Paths of the string fields of a fastest-validator schema (`venue.name`, `schedules[0].startsAt`...). */
function stringFields(params: Record<string, unknown> | undefined, prefix = ""): string[] {
	const out: string[] = [];
	for (const [name, raw] of Object.entries(params ?? {})) {
		if (name.startsWith("$$")) continue;
		const rule = (typeof raw === "string" ? { type: raw.split("|")[0] } : raw) as { type?: string; props?: Record<string, unknown>; items?: unknown };
		const at = prefix ? `${prefix}.${name}` : name;
		if (["string", "email", "uuid", "date", "url", "enum", "any"].includes(rule?.type ?? "")) out.push(at);
		if (rule?.type === "object" && rule.props) out.push(...stringFields(rule.props, at));
		if (rule?.type === "array" && rule.items) {
			const items = (typeof rule.items === "string" ? { type: rule.items } : rule.items) as { type?: string; props?: Record<string, unknown> };
			if (items.type === "object" && items.props) out.push(...stringFields(items.props, `${at}[0]`));
			else if (items.type === "string") out.push(`${at}[0]`);
		}
	}
	return out;
}

/** `{a: {b: [ {c: value} ]}}` for the path `a.b[0].c`. */
function bodyWith(path: string, value: string): Record<string, unknown> {
	const parts = path.split(".").flatMap(p => (p.endsWith("[0]") ? [p.slice(0, -3), 0] : [p]));
	const root: Record<string, unknown> = {};
	let at: Record<string | number, unknown> = root;
	parts.forEach((p, i) => {
		const last = i === parts.length - 1;
		const next = typeof parts[i + 1] === "number" ? [] : {};
		at[p] = last ? value : next;
		at = at[p] as Record<string | number, unknown>;
	});
	return root;
}

interface Case {
	route: string;
	method: string;
	url: string;
	body?: unknown;
	raw?: string;
	headers?: Record<string, string>;
	/** A path parameter that does not URL-decode: moleculer-web's own 400 (UNABLE_DECODE_PARAM) is as good. */
	anyType?: boolean;
}

function routeCases(broker: ServiceBroker, api: string, ids: { id: string; token: string }): Case[] {
	const actions = new Map(
		(broker.registry.getActionList({ skipInternal: true }) as { name: string; action?: { params?: Record<string, unknown> } }[]).map(a => [
			a.name,
			a.action?.params
		])
	);
	const cases: Case[] = [];
	for (const [route, action] of Object.entries(ROUTES)) {
		const [method, template] = route.split(" ");
		const pathParams = [...template.matchAll(/:([A-Za-z]+)/g)].map(m => m[1]);
		const fill = (bad?: { name: string; value: string }) =>
			`${api}${template.replace(/:([A-Za-z]+)/g, (_, n: string) => (bad?.name === n ? enc(bad.value) : encodeURIComponent(n === "token" ? ids.token : ids.id)))}`;
		const headers = { "idempotency-key": `hostile-${cases.length}`, "x-queue-token": ids.token };
		for (const value of BAD) {
			for (const name of pathParams) {
				cases.push({ route, method, url: fill({ name, value }), headers, anyType: value === "\ud800" });
				// moleculer-web runs the GET action for an OPTIONS without a preflight header: the same guard applies.
				if (method === "GET") cases.push({ route, method: "OPTIONS", url: fill({ name, value }), headers, anyType: value === "\ud800" });
			}
			const fields = stringFields(actions.get(action)).filter(f => !pathParams.includes(f));
			for (const field of fields) {
				if (method !== "GET")
					cases.push({
						route,
						method,
						url: fill(),
						body: bodyWith(field, value),
						headers: { ...headers, "idempotency-key": `hostile-${cases.length}` }
					});
				// The query parser leaves an undecodable escape as plain text ("%ED%A0%80"): harmless, not a case.
				else if (value !== "\ud800") cases.push({ route, method, url: `${fill()}?${encodeURIComponent(field)}=${enc(value)}`, headers });
			}
			// Query strings reach every route (merged into the params): a bad one is refused everywhere.
			if (value !== "\ud800") cases.push({ route, method, url: `${fill()}?q=${enc(value)}`, headers });
		}
	}
	return cases;
}

describe("hostile input on every route (embedded)", () => {
	let env: TestEnv;
	let broker: ServiceBroker;
	let api: string;
	let admin: string;
	let scheduleId: string;
	let buyer: Shopper;

	beforeAll(async () => {
		env = testEnv({ cluster: false, env: { ...ADMIN, RATE_LIMIT_PER_MINUTE: "0" } });
		broker = await env.broker(ALL);
		api = gatewayUrl(broker);
		admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
		const concert = await ownConcert(api, admin, 1, 6, 1000);
		scheduleId = concert.scheduleId;
		buyer = await shopper(api, concert.concertId, 50_000);
		const held = await reserve(api, buyer, scheduleId, [(await seats(api, scheduleId))[0].id]);
		expect(held.status).toBe(201);
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	/** What an accepted request could have changed: the buyer's balance and reservations, the seat map. */
	const world = async () => ({
		balance: await balance(api, buyer),
		seats: (await seats(api, scheduleId)).map(s => `${s.id}:${s.status}`),
		reservations: (await http("GET", `${api}/reservations`, { token: buyer.token })).body
	});

	it("when every route with a body gets 5,000 nested arrays, with and without Idempotency-Key, then each is a 400 and the node answers", async () => {
		const writes = Object.keys(ROUTES).filter(r => !r.startsWith("GET "));
		expect(writes.length).toBeGreaterThan(10);
		for (const route of writes) {
			const [method, template] = route.split(" ");
			const url = `${api}${template.replace(/:[A-Za-z]+/g, "x")}`;
			for (const headers of [{}, { "idempotency-key": `deep-${route}` }] as Record<string, string>[]) {
				for (const raw of [nested(5_000), `{"a":${nested(5_000)}}`]) {
					const res = await http(method, url, { raw, token: admin, headers });
					expect({ route, status: res.status }).toEqual({ route, status: 400 });
					expect(["INVALID_BODY", "BODY_TOO_COMPLEX"]).toContain(res.body.type);
				}
			}
		}
		expect((await http("GET", `${api}/health`)).status).toBe(200);
	});

	it("when a control character or a lone surrogate is in any string field, path or query parameter, then 400 INVALID_CHARACTERS and nothing changes", async () => {
		const before = await world();
		const cases = routeCases(broker, api, { id: buyer.userId, token: buyer.queueToken });
		// Every route is covered, and the body fields of the richest one (concert.create) are found.
		expect(new Set(cases.map(c => c.route)).size).toBe(Object.keys(ROUTES).length);
		expect(cases.some(c => JSON.stringify(c.body ?? {}).includes("grades"))).toBe(true);
		const wrong: string[] = [];
		for (const c of cases) {
			const res = await http(c.method, c.url, { body: c.body, token: admin, headers: c.headers });
			if (res.status !== 400 || (!c.anyType && res.body?.type !== "INVALID_CHARACTERS"))
				wrong.push(`${c.method} ${c.url} ${JSON.stringify(c.body)} -> ${res.status} ${res.body?.type}`);
		}
		expect(wrong).toEqual([]);
		expect(await world()).toEqual(before);
	});

	it("when 60 logins with a NUL come first, then real logins still succeed: a bad request never trips a circuit breaker", async () => {
		const bad = await Promise.all(Array.from({ length: 60 }, () => http("POST", `${api}/auth/login`, { body: { email: "a\u0000b", password: "x" } })));
		expect(new Set(bad.map(r => r.status))).toEqual(new Set([400]));
		const good = await http("POST", `${api}/auth/login`, { body: { email: ADMIN.ADMIN_EMAIL, password: ADMIN.ADMIN_PASSWORD } });
		expect(good.status).toBe(200);
	});

	it("when a compressed body does not inflate, then 400 BAD_REQUEST, not a 500", async () => {
		for (const encoding of ["gzip", "deflate", "br"]) {
			const res = await http("POST", `${api}/auth/login`, { raw: "xxxxxxxx", headers: { "content-encoding": encoding } });
			expect({ encoding, status: res.status, type: res.body.type }).toEqual({ encoding, status: 400, type: "BAD_REQUEST" });
		}
	});

	it("when the docs are asked for an object's built-in names, then 404, not a 500", async () => {
		for (const name of ["toString", "constructor", "__proto__", "hasOwnProperty", "..%2fpackage.json"]) {
			expect((await http("GET", `${api}/docs/${name}`)).status).toBe(404);
		}
		expect((await http("GET", `${api}/docs/init.js`)).status).toBe(200);
	});
});

describe("hostile input against a gateway node of its own (cluster)", () => {
	let env: TestEnv;
	let api: string;

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: { RATE_LIMIT_PER_MINUTE: "0" } });
		const port = await freePort();
		await env.spawn(["api", "user"], { env: { PORT: String(port) } });
		api = `http://127.0.0.1:${port}/api`;
		await waitFor(
			async () =>
				(await http("POST", `${api}/auth/login`, { body: { email: "x@example.com", password: "y" } }).catch(() => ({ status: 0 }))).status === 401,
			30_000,
			"the gateway"
		);
	}, 90_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when the attacks that used to kill it arrive, then each is a 4xx and the gateway process is still there", async () => {
		const node = env.spawned[0];
		const attacks = [
			http("POST", `${api}/auth/register`, { raw: nested(5_000), headers: { "idempotency-key": "k1" } }),
			http("POST", `${api}/auth/register`, { raw: `{"email":${nested(5_000)}}`, headers: { "idempotency-key": "k2" } }),
			http("POST", `${api}/auth/login`, { body: { email: "a\u0000b", password: "x" } }),
			http("GET", `${api}/docs/toString`)
		];
		const statuses = (await Promise.all(attacks)).map(r => r.status);
		expect(statuses).toEqual([400, 400, 400, 404]);
		expect(node.proc.exitCode).toBeNull();
		const reg = await http("POST", `${api}/auth/register`, { body: { email: "still@example.com", password: "password-1", name: "S" } });
		expect(reg.status).toBe(201);
	});
});
