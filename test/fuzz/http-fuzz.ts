/**
 * Property-based fuzz of the whole HTTP surface, driven by the OpenAPI document the gateway serves
 * (GET /api/openapi.json): every operation (path + method) in it gets request generators, so a new route is
 * fuzzed without a line here.
 *
 * Why fast-check: a hand-written fuzz loop finds a failing request among thousands of noisy ones; fast-check
 * also SHRINKS it (5,000 nested arrays become the smallest depth that still fails, a body of ten fields becomes
 * the one field that matters), replays it from a seed, and composes generators from the schema with no code per
 * route. Each failure is reported as its minimal counterexample.
 *
 * What is generated, per operation (see `requestArb`):
 *   - path parameters: real ids of a seeded world (concert, schedule, reservation, payment, saga, queue token),
 *     random UUIDs, or hostile strings (control characters, lone surrogates, prototype names such as
 *     `toString`, very long, broken percent-escapes); the path itself may get doubled or trailing slashes or
 *     upper case; the method may be swapped for another one;
 *   - query parameters: valid per schema (types, bounds, enums, patterns), or out of bounds, fractional, huge,
 *     NaN-like, duplicated, prototype keys, bracket-nested keys;
 *   - a JSON body from the requestBody schema: valid (emails, ISO dates, real ids), or with fields missing,
 *     extra (prototype names as keys), of the wrong type, too long or with control characters, nested a few
 *     hundred to 5,000 levels deep; or replaced by raw non-JSON text, a non-object, a body past the size limit;
 *     with the right or a wrong content type;
 *   - headers: Idempotency-Key (fresh, deliberately reused, malformed) and X-Queue-Token (own, someone else's,
 *     random, hostile); the bearer token of one of three callers (anonymous, a user, an admin), sometimes
 *     malformed or forged.
 *
 * Properties checked for each request:
 *   1. no answer has status >= 500, no request crashes the process (an uncaught exception or unhandled
 *      rejection while it runs: Node's default kills the process) or goes unanswered (fetch timeout), and the
 *      gateway still answers /api/health (periodically, after any suspicious request, and at the end); every
 *      100 requests a few VALID requests (log in, balance, reservations...) must still succeed, which shows a
 *      circuit breaker opened for everyone by the fuzz's server faults;
 *   2. a state-changing request (anything but GET/HEAD/OPTIONS) answered 4xx changes nothing: the balances of
 *      the fuzz users, the seat statuses of the seeded schedule and each fuzz user's reservations are read
 *      before it and, only when it answers 4xx, after it, and compared.
 *
 * Unlike `fc.assert`, `runHttpFuzz` does not stop at the first failure: it shrinks each new kind of failure
 * (its signature: kind, status, operation; a crash by its error alone) to a minimal counterexample, then goes
 * on with the remaining runs treating the known kinds as passing, so one run lists every distinct failure.
 *
 * Crashes: the platform runs in this process (embedded mode), so the fuzz takes the process-level error events
 * while it runs (`installCrashGuard`, on jest's real process under jest) and reports them against the request
 * in flight, whose fetch it then abandons; every fetch also has a timeout, so nothing hangs.
 */
import fc from "fast-check";
import { http } from "../support/harness";
import { ownConcert } from "../support/booking";

// The world the generators draw real ids from, and the callers.

export type CallerName = "anonymous" | "user" | "admin";

export interface Identity {
	token: string;
	userId: string;
	email: string;
	/** Known for the users the seed registers; unknown for the bootstrap admin unless given. */
	password?: string;
	/** An ACTIVE waiting-room token of this user for the seeded concert. */
	queueToken: string;
}

export interface Identities {
	user: Identity;
	admin: Identity;
}

export interface World {
	/** The seeded concert (first) and the demo catalog's. */
	concertIds: string[];
	/** The seeded schedule: the one whose seat statuses the invariant compares. */
	scheduleId: string;
	/** Every seat of the seeded schedule. */
	seatIds: string[];
	/** The user's PENDING and CONFIRMED reservations, and the admin's PENDING one. */
	reservationIds: string[];
	paymentIds: string[];
	sagaIds: string[];
	queueTokens: string[];
}

/**
 * A world of its own: a concert with one schedule (2 rows x 5 seats, admin route), a user with points, an ACTIVE
 * queue token, a CONFIRMED (paid) reservation and a PENDING one, and the admin with points, an ACTIVE token and
 * a PENDING reservation of its own (someone else's reservation, from the user's side).
 */
export async function seedWorld(api: string, adminToken: string, adminPassword?: string): Promise<{ world: World; identities: Identities }> {
	const must = (what: string, res: { status: number; body: any }, ok: number[] = [200, 201]) => {
		if (!ok.includes(res.status)) throw new Error(`seedWorld: ${what}: ${res.status} ${JSON.stringify(res.body)}`);
		return res.body;
	};
	const { concertId, scheduleId } = await ownConcert(api, adminToken, 2, 5, 1000);
	const seats = must("seats", await http("GET", `${api}/schedules/${scheduleId}/seats`)) as { id: string }[];
	const demo = must("concerts", await http("GET", `${api}/concerts?pageSize=5`)) as { rows: { id: string }[] };

	const tag = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
	const email = `fuzz-${tag}@example.com`;
	const password = "fuzz-password-1";
	const reg = must("register", await http("POST", `${api}/auth/register`, { body: { email, password, name: "Fuzz" } }));
	const userToken = must("login", await http("POST", `${api}/auth/login`, { body: { email, password } })).accessToken as string;
	const me = must("admin me", await http("GET", `${api}/users/me`, { token: adminToken }));

	const prepare = async (token: string, points: number, who: string) => {
		must(
			`${who} charge`,
			await http("POST", `${api}/points/charge`, { token, body: { amount: points }, headers: { "idempotency-key": `seed-${who}-${tag}` } })
		);
		const q = must(`${who} queue`, await http("POST", `${api}/queue/tokens`, { token, body: { concertId } }));
		if (q.status !== "ACTIVE") throw new Error(`seedWorld: ${who} queue token not ACTIVE: ${JSON.stringify(q)}`);
		return q.token as string;
	};
	const userQueue = await prepare(userToken, 100_000, "user");
	const adminQueue = await prepare(adminToken, 50_000, "admin");

	const reserve = async (token: string, queueToken: string, seatIds: string[], who: string) =>
		must(`${who} reserve`, await http("POST", `${api}/reservations`, { token, body: { scheduleId, seatIds }, headers: { "x-queue-token": queueToken } }))
			.id as string;
	// One open reservation per buyer and show: the first is paid (which uses the queue token up) before the second.
	const paid = await reserve(userToken, userQueue, [seats[0].id], "user");
	const payment = must(
		"pay",
		await http("POST", `${api}/payments`, {
			token: userToken,
			body: { reservationId: paid },
			headers: { "x-queue-token": userQueue, "idempotency-key": `seed-pay-${tag}` }
		})
	);
	const enter = must("user queue again", await http("POST", `${api}/queue/tokens`, { token: userToken, body: { concertId } }));
	if (enter.status !== "ACTIVE") throw new Error(`seedWorld: user queue token not ACTIVE after the payment: ${JSON.stringify(enter)}`);
	const pending = await reserve(userToken, enter.token, [seats[1].id, seats[2].id], "user");
	const adminPending = await reserve(adminToken, adminQueue, [seats[3].id], "admin");
	const payments = must("payments", await http("GET", `${api}/payments`, { token: userToken })) as { rows: { id: string }[] };
	const sagas = must("sagas", await http("GET", `${api}/admin/sagas?pageSize=5`, { token: adminToken })) as { rows: { id: string }[] };

	return {
		world: {
			concertIds: [concertId, ...demo.rows.map(r => r.id).filter(id => id !== concertId)],
			scheduleId,
			seatIds: seats.map(s => s.id),
			reservationIds: [pending, paid, adminPending],
			paymentIds: payments.rows.map(p => p.id),
			sagaIds: [payment.sagaId, ...sagas.rows.map(r => r.id)].filter((x): x is string => typeof x === "string"),
			queueTokens: [enter.token, adminQueue, userQueue]
		},
		identities: {
			user: { token: userToken, userId: reg.id, email, password, queueToken: enter.token },
			admin: { token: adminToken, userId: me.id, email: me.email, password: adminPassword, queueToken: adminQueue }
		}
	};
}

// The operations, read from /api/openapi.json.

type Schema = {
	type?: string;
	format?: string;
	enum?: unknown[];
	pattern?: string;
	minLength?: number;
	maxLength?: number;
	minimum?: number;
	maximum?: number;
	minItems?: number;
	maxItems?: number;
	items?: Schema;
	properties?: Record<string, Schema>;
	required?: string[];
	oneOf?: Schema[];
};

interface Param {
	name: string;
	in: "path" | "query" | "header";
	required: boolean;
	schema: Schema;
}

export interface Operation {
	id: string;
	method: string;
	/** As in the document: `/api/concerts/{id}`. */
	path: string;
	pathParams: string[];
	query: Param[];
	headers: Param[];
	body?: Schema;
	auth: "none" | "user" | "admin";
}

export async function loadOperations(baseUrl: string): Promise<Operation[]> {
	const res = await http("GET", `${baseUrl}/openapi.json`);
	if (res.status !== 200) throw new Error(`openapi.json: ${res.status}`);
	const ops: Operation[] = [];
	for (const [path, methods] of Object.entries(res.body.paths as Record<string, Record<string, any>>)) {
		for (const [method, op] of Object.entries(methods)) {
			const params = (op.parameters ?? []) as Param[];
			ops.push({
				id: op.operationId,
				method: method.toUpperCase(),
				path,
				pathParams: params.filter(p => p.in === "path").map(p => p.name),
				query: params.filter(p => p.in === "query"),
				headers: params.filter(p => p.in === "header"),
				body: op.requestBody?.content?.["application/json"]?.schema,
				// The document marks admin routes by their 403 "admin role required"; /api/admin/* are all admin's.
				auth:
					(op.security ?? []).length === 0
						? "none"
						: /admin/i.test(op.responses?.["403"]?.description ?? "") || path.startsWith("/api/admin/")
							? "admin"
							: "user"
			});
		}
	}
	return ops;
}

// Hostile values.

/**
 * For a `fc.oneof` whose first choice is the plain one (absent, valid, the route's own method): shrinking may
 * jump to it, so a counterexample keeps only the hostile parts it needs.
 */
const FIRST_IS_SIMPLEST = { withCrossShrink: true } as const;

/** Characters that have broken parsers, databases and loggers: C0/C1 controls, DEL, lone surrogates, BOM. */
const CONTROL = ["\u0000", "\u0001", "\u0008", "\u001b", "\u007f", "\u0085", "\ud800", "\udfff", "\u2028", "\ufeff"];
/** Names that are properties of every object: as keys, file names or ids they find what a Map would not. */
export const PROTO_NAMES = ["__proto__", "constructor", "toString", "prototype", "hasOwnProperty", "valueOf", "__defineGetter__", "isPrototypeOf"];

/** `s` with the hostile character(s) of `bad` in its middle. */
const withChar = (s: string, bad: string) => s.slice(0, s.length >> 1) + bad + s.slice(s.length >> 1);

/** A string with one hostile character put somewhere in it. */
function withControl(arb: fc.Arbitrary<string>): fc.Arbitrary<string> {
	// NUL most often: it is the one that goes furthest (through validators, into SQL text).
	const char = fc.oneof({ weight: 1, arbitrary: fc.constant("\u0000") }, { weight: 1, arbitrary: fc.constantFrom(...CONTROL) });
	return fc.tuple(arb, fc.nat(), char).map(([s, at, c]) => {
		const i = at % (s.length + 1);
		return s.slice(0, i) + c + s.slice(i);
	});
}

const controlString = withControl(fc.string({ maxLength: 8 }));

const nastyString: fc.Arbitrary<string> = fc.oneof(
	{ weight: 3, arbitrary: controlString },
	{
		weight: 2,
		arbitrary: fc.constantFrom(
			"",
			" ",
			"\t",
			"NaN",
			"Infinity",
			"-1",
			"0",
			"1e309",
			"null",
			"undefined",
			"true",
			"[]",
			"{}",
			"%",
			"../..",
			"' OR '1'='1",
			"<script>"
		)
	},
	{ weight: 2, arbitrary: fc.constantFrom(...PROTO_NAMES) },
	{ weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 12 }) },
	{ weight: 1, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }) },
	{ weight: 1, arbitrary: fc.integer({ min: 256, max: 20_000 }).map(n => "x".repeat(n)) }
);

const nastyNumber: fc.Arbitrary<number> = fc.oneof(
	fc.constantFrom(-1, 0, -0, 0.5, 1.5, -1e9, 1e21, 1e308, -1e308, 2 ** 31, 2 ** 53, 2 ** 53 + 2, -(2 ** 63), 5e-324),
	fc.double()
);

/** Raw JSON text embedded as is by `toJson` (deep nesting, NaN literals: what JSON.stringify cannot write). */
class Raw {
	constructor(
		readonly text: string,
		readonly label: string
	) {}
}

/** `depth` nested arrays or objects around a value, as raw JSON (serializing it recursively here would be the bug we look for). */
const deepNest: fc.Arbitrary<Raw> = fc
	.tuple(fc.integer({ min: 300, max: 5000 }), fc.constantFrom("array", "object"))
	.map(([depth, kind]) =>
		kind === "array"
			? new Raw("[".repeat(depth) + "]".repeat(depth), `${depth} nested arrays`)
			: new Raw('{"a":'.repeat(depth) + "1" + "}".repeat(depth), `${depth} nested objects`)
	);

/** An object whose own keys may be prototype names (defined, not assigned, so `__proto__` is an own key). */
function objectOf(entries: [string, unknown][]): Record<string, unknown> {
	const o: Record<string, unknown> = {};
	for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, configurable: true, writable: true });
	return o;
}

const nastyKey = fc.oneof(fc.constantFrom(...PROTO_NAMES, "", "$$strict", "role", "userId", "id", "a.b", "a[0]"), controlString, fc.string({ maxLength: 8 }));

/** Any value of the wrong shape: hostile strings and numbers, other types, prototype-keyed objects, deep nesting. */
const nastyValue: fc.Arbitrary<unknown> = fc.oneof(
	{ weight: 4, arbitrary: nastyString },
	{ weight: 3, arbitrary: nastyNumber },
	{ weight: 1, arbitrary: fc.constantFrom(null, true, false, [], {}) },
	{ weight: 1, arbitrary: fc.constantFrom(new Raw("NaN", "NaN literal"), new Raw("-Infinity", "Infinity literal"), new Raw("1e400", "1e400")) },
	{ weight: 1, arbitrary: fc.array(fc.oneof(nastyString, nastyNumber), { maxLength: 5 }) },
	{ weight: 1, arbitrary: fc.array(fc.tuple(nastyKey, fc.oneof(nastyString, nastyNumber)), { maxLength: 4 }).map(objectOf) },
	{ weight: 1, arbitrary: deepNest }
);

/** JSON text of a generated value: Raw pieces verbatim, own keys (even `__proto__`), NaN as JSON.stringify writes it. */
export function toJson(v: unknown): string {
	if (v instanceof Raw) return v.text;
	if (Array.isArray(v)) return `[${v.map(toJson).join(",")}]`;
	if (v && typeof v === "object") {
		return `{${Object.keys(v)
			.map(k => `${JSON.stringify(k)}:${toJson((v as Record<string, unknown>)[k])}`)
			.join(",")}}`;
	}
	return JSON.stringify(v) ?? "null";
}

/** The labels of the Raw pieces in a value, to name them in a report. */
function rawLabels(v: unknown, out: string[] = []): string[] {
	if (v instanceof Raw) out.push(v.label);
	else if (v && typeof v === "object") for (const x of Object.values(v)) rawLabels(x, out);
	return out;
}

// Schema-driven values: valid ones (with real ids where the field names one) and invalid ones.

interface GenContext {
	world: World;
	identities: Identities;
}

/** Real values for fields whose name says what they are. */
function realValues(name: string, ctx: GenContext): fc.Arbitrary<unknown> | undefined {
	const { world, identities } = ctx;
	switch (name) {
		case "concertId":
			return fc.constantFrom(...world.concertIds);
		case "scheduleId":
			return fc.constant(world.scheduleId);
		case "reservationId":
			return fc.constantFrom(...world.reservationIds);
		case "seatIds":
			return fc.shuffledSubarray(world.seatIds, { minLength: 1, maxLength: 4 });
		case "startsAt":
			return fc.integer({ min: 1, max: 365 }).map(d => new Date(Date.now() + d * 86_400_000).toISOString());
		case "email":
			return fc.oneof(fc.constantFrom(identities.user.email, identities.admin.email), fc.emailAddress());
		case "password":
			return identities.user.password ? fc.oneof(fc.constant(identities.user.password), fc.string({ minLength: 8, maxLength: 20 })) : undefined;
		default:
			return undefined;
	}
}

export function validValue(schema: Schema, name: string, ctx: GenContext): fc.Arbitrary<unknown> {
	const real = realValues(name, ctx);
	const fromSchema = schemaValue(schema, ctx);
	return real ? fc.oneof(FIRST_IS_SIMPLEST, { weight: 3, arbitrary: real }, { weight: 1, arbitrary: fromSchema }) : fromSchema;
}

function schemaValue(schema: Schema, ctx: GenContext): fc.Arbitrary<unknown> {
	if (schema.enum) return fc.constantFrom(...schema.enum);
	if (schema.oneOf) return fc.oneof(...schema.oneOf.map(s => schemaValue(s, ctx)));
	switch (schema.type) {
		case "string": {
			const min = schema.minLength ?? 0;
			const max = schema.maxLength ?? Math.max(min, 40);
			if (schema.format === "email") return fc.emailAddress();
			if (schema.format === "uuid") return fc.uuid();
			if (schema.format === "date-time") return fc.date({ noInvalidDate: true }).map(d => d.toISOString());
			if (schema.pattern) return fc.stringMatching(new RegExp(schema.pattern)).filter(s => s.length >= min && s.length <= max);
			return fc.oneof(
				{ weight: 4, arbitrary: fc.string({ minLength: min, maxLength: Math.min(max, min + 30) }) },
				{ weight: 1, arbitrary: fc.string({ unit: "grapheme", minLength: min, maxLength: Math.min(max, min + 10) }).filter(s => s.length <= max) },
				{ weight: 1, arbitrary: fc.constant("x".repeat(max)) }
			);
		}
		case "integer":
			return fc.integer({ min: schema.minimum ?? -(2 ** 31), max: schema.maximum ?? 2 ** 31 });
		case "number":
			return fc.double({ min: schema.minimum ?? -1e9, max: schema.maximum ?? 1e9, noNaN: true });
		case "boolean":
			return fc.boolean();
		case "array":
			return fc.array(schemaValue(schema.items ?? {}, ctx), {
				minLength: schema.minItems ?? 0,
				maxLength: Math.min(schema.maxItems ?? 5, (schema.minItems ?? 0) + 5)
			});
		case "object":
			return objectValue(schema, ctx);
		default:
			return fc.jsonValue({ maxDepth: 2 });
	}
}

/** A valid object: every required property, optional ones sometimes, each through `validValue` (real ids). */
function objectValue(schema: Schema, ctx: GenContext): fc.Arbitrary<Record<string, unknown>> {
	const props = schema.properties ?? {};
	const model = Object.fromEntries(Object.entries(props).map(([k, s]) => [k, validValue(s, k, ctx)]));
	return fc.record(model, { requiredKeys: schema.required ?? [] }) as fc.Arbitrary<Record<string, unknown>>;
}

/**
 * A value this schema rejects, or that only a careful service survives: out of bounds, the wrong type,
 * fractional, too long, hostile; and for strings, a VALID value with a control character or lone surrogate put
 * in it (`ada\u0000@example.com`, a real id with a NUL), which passes a length check and reaches the service.
 */
export function invalidValue(schema: Schema, name: string, ctx: GenContext): fc.Arbitrary<unknown> {
	const edges: unknown[] = [];
	if (schema.type === "string") {
		if ((schema.minLength ?? 0) > 0) edges.push("");
		if (schema.maxLength !== undefined) edges.push("x".repeat(schema.maxLength + 1));
		edges.push(42, ["a"]);
	}
	if (schema.type === "integer" || schema.type === "number") {
		if (schema.minimum !== undefined) edges.push(schema.minimum - 1);
		if (schema.maximum !== undefined) edges.push(schema.maximum + 1);
		edges.push((schema.minimum ?? 0) + 0.5, "5", String(schema.maximum ?? 1));
		// No maximum in the schema: what does a page of 1e21 or 2^63 do to an OFFSET?
		if (schema.maximum === undefined) edges.push(2 ** 53, 1e21, 2 ** 63);
	}
	if (schema.enum) edges.push("NOT_IN_ENUM", String(schema.enum[0]).toLowerCase());
	if (schema.type === "array") {
		edges.push(
			[],
			"a",
			Array.from({ length: (schema.maxItems ?? 10) + 1 }, (_, i) => `x${i}`)
		);
	}
	if (schema.type === "object") edges.push([], "object", 1);
	const choices: fc.WeightedArbitrary<unknown>[] = [{ weight: 3, arbitrary: nastyValue }];
	if (edges.length > 0) choices.push({ weight: 2, arbitrary: fc.constantFrom(...edges) });
	const valid = validValue(schema, name, ctx);
	if (schema.type === "string" || schema.enum) choices.push({ weight: 3, arbitrary: withControl(valid.map(v => String(v))) });
	if (schema.type === "array" && schema.items?.type === "string") {
		choices.push({
			weight: 2,
			arbitrary: fc.tuple(valid as fc.Arbitrary<string[]>, withControl(fc.string({ maxLength: 8 }))).map(([a, bad]) => [...a.slice(0, -1), bad])
		});
	}
	return fc.oneof(...choices);
}

// Requests.

export interface FuzzRequest {
	op: string;
	method: string;
	/** Path and query string, as sent (after the origin). */
	path: string;
	caller: CallerName;
	headers: Record<string, string>;
	body?: string;
	/** What the generator did on purpose, to read a counterexample quickly. */
	notes: string[];
}

/** Stands for a new Idempotency-Key, made unique when the request is sent (`fz-<run>-<n>`). */
const FRESH_KEY = "<fresh>";
let keySeq = 0;
const keyRun = Date.now().toString(36);

/** Header values fetch (undici) can send: latin-1 without NUL, CR, LF, and without surrounding whitespace. */
const sendable = (v: string) => /^[\x21-\x7e\x80-\xff]([\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?$/.test(v) || v === "";

/**
 * encodeURIComponent that also takes lone surrogates (it throws on them): each becomes its three WTF-8 bytes
 * (`\ud800` -> `%ED%A0%80`), what a client that does not check its strings sends.
 */
export function encodeAny(s: string): string {
	return s.replace(/[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]|[^\ud800-\udfff]+/g, part => {
		if (part.length !== 1 || part.charCodeAt(0) < 0xd800 || part.charCodeAt(0) > 0xdfff) return encodeURIComponent(part);
		const c = part.charCodeAt(0);
		return [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)].map(b => `%${b.toString(16).toUpperCase()}`).join("");
	});
}

/** Encodes a path segment, or leaves in hostile escapes on purpose. */
const pathSegment = (value: string, raw: boolean) => (raw ? value : encodeAny(value));

function pathParamArb(op: Operation, name: string, ctx: GenContext): fc.Arbitrary<{ value: string; raw: boolean; note?: string }> {
	const segments = op.path.split("/");
	const before = segments[segments.indexOf(`{${name}}`) - 1];
	const { world } = ctx;
	const real: Record<string, string[]> = {
		concerts: world.concertIds,
		queues: world.concertIds,
		schedules: [world.scheduleId],
		reservations: world.reservationIds,
		payments: world.paymentIds,
		sagas: world.sagaIds,
		tokens: world.queueTokens,
		docs: ["init.js", "swagger-ui.css"],
		"dead-letters": ["1"],
		"event-dead-letters": ["1"]
	};
	const ids = (real[before] ?? []).filter(Boolean);
	return fc.oneof(
		FIRST_IS_SIMPLEST,
		{
			weight: ids.length > 0 ? 6 : 0,
			arbitrary: ids.length > 0 ? fc.constantFrom(...ids).map(value => ({ value, raw: false })) : fc.constant({ value: "x", raw: false })
		},
		{ weight: 1, arbitrary: fc.uuid().map(value => ({ value, raw: false, note: `unknown ${name}` })) },
		{ weight: 3, arbitrary: nastyString.filter(s => s.length > 0).map(value => ({ value, raw: false, note: `hostile ${name}` })) },
		{
			weight: ids.length > 0 ? 2 : 0,
			arbitrary: withControl(fc.constantFrom(...(ids.length > 0 ? ids : ["x"]))).map(value => ({
				value,
				raw: false,
				note: `real ${name} with a hostile character`
			}))
		},
		{
			weight: 1,
			arbitrary: fc
				.constantFrom("%", "%zz", "%ED%A0%80", "%00", "%2F", "%C0%AF", "%FF", "a%2Fb", "%E2%80%A8")
				.map(value => ({ value, raw: true, note: `raw escape in ${name}` }))
		}
	);
}

function queryArb(op: Operation, ctx: GenContext): fc.Arbitrary<{ pairs: [string, string][]; notes: string[] }> {
	const str = (v: unknown) => (v instanceof Raw ? v.text : typeof v === "string" ? v : toJson(v));
	const perParam = op.query.map(p =>
		fc.oneof(
			FIRST_IS_SIMPLEST,
			{ weight: 4, arbitrary: fc.constant(null) },
			{ weight: 4, arbitrary: validValue(p.schema, p.name, ctx).map(v => ({ pairs: [[p.name, str(v)]] as [string, string][], note: "" })) },
			{
				weight: 2,
				arbitrary: invalidValue(p.schema, p.name, ctx).map(v => ({ pairs: [[p.name, str(v)]] as [string, string][], note: `invalid ${p.name}` }))
			},
			{
				weight: 1,
				arbitrary: fc.tuple(fc.nat(1000), fc.nat(1000)).map(([a, b]) => ({
					pairs: [
						[p.name, String(a)],
						[p.name, String(b)]
					] as [string, string][],
					note: `duplicated ${p.name}`
				}))
			}
		)
	);
	const extra = fc.oneof(
		FIRST_IS_SIMPLEST,
		{ weight: 6, arbitrary: fc.constant(null) },
		{ weight: 1, arbitrary: fc.tuple(nastyKey, nastyString).map(([k, v]) => ({ pairs: [[k, v]] as [string, string][], note: "extra query parameter" })) },
		{
			weight: 1,
			arbitrary: fc
				.constantFrom<[string, string]>(
					["__proto__[x]", "1"],
					["constructor[prototype][x]", "1"],
					["a[b][c][d][e][f][g][h]", "1"],
					["page[]", "1"],
					["pageSize[$gt]", "0"]
				)
				.map(kv => ({ pairs: [kv], note: "bracketed query key" }))
		}
	);
	return fc.tuple(fc.tuple(...perParam), extra).map(([ps, x]) => {
		const parts = [...ps, x].filter((p): p is { pairs: [string, string][]; note: string } => p !== null);
		return { pairs: parts.flatMap(p => p.pairs), notes: parts.map(p => p.note).filter(Boolean) };
	});
}

/** A body field left out on purpose. */
const MISSING = Symbol("missing");

interface BodyGen {
	value: unknown;
	notes: string[];
}

/** A body from the schema: valid, valid with one field broken, or something else entirely. */
function bodyArb(op: Operation, ctx: GenContext): fc.Arbitrary<BodyGen | undefined> {
	const structural: fc.Arbitrary<BodyGen> = fc.oneof(
		deepNest.map(r => ({ value: r as unknown, notes: [`body: ${r.label}`] })),
		fc
			.constantFrom("{", "not json", "{'a':1}", "\u0000", "[1,2", '{"a":1}{"b":2}', "nul", '"\ud800"', "[]", "null", "42", '"text"', "true", " ")
			.map(t => ({ value: new Raw(t, "raw") as unknown, notes: ["body: raw text"] })),
		fc.integer({ min: 101, max: 200 }).map(kb => ({ value: { pad: "x".repeat(kb * 1024) } as unknown, notes: [`body: ${kb} kB (past the limit)`] })),
		fc.array(fc.tuple(nastyKey, nastyValue), { minLength: 1, maxLength: 4 }).map(e => ({ value: objectOf(e) as unknown, notes: ["body: hostile keys"] }))
	);
	if (!op.body) {
		if (op.method === "GET") return fc.constant<BodyGen | undefined>(undefined);
		return fc.oneof(
			FIRST_IS_SIMPLEST,
			{ weight: 6, arbitrary: fc.constant<BodyGen | undefined>(undefined) },
			{ weight: 1, arbitrary: fc.constant<BodyGen>({ value: {}, notes: [] }) },
			{ weight: 3, arbitrary: structural }
		);
	}
	const schema = op.body;
	const props = Object.entries(schema.properties ?? {});
	const valid = objectValue(schema, ctx);
	// One field broken: a wrong value, or gone.
	// One field broken: gone, or a wrong value. Built without `chain`, so shrinking keeps the broken value and
	// shrinks it (a chained value would be drawn anew at each shrink step).
	const broken = fc.oneof(
		...props.map(([key, p]) =>
			fc.tuple(valid, fc.oneof(fc.constant(MISSING), invalidValue(p, key, ctx))).map(([obj, v]): BodyGen => {
				const rest = Object.entries(obj).filter(([k]) => k !== key);
				return v === MISSING
					? { value: objectOf(rest), notes: [`missing ${key}`] }
					: { value: objectOf([...rest, [key, v]]), notes: [`invalid ${key}`] };
			})
		)
	);
	// Every string field of a valid body with a hostile character in it (a NUL in the email AND the password);
	// shrinking takes back the ones the failure does not need.
	const stringKeys = props.filter(([, p]) => p.type === "string").map(([k]) => k);
	const hostileChar = fc.option(withControl(fc.constant("")), { nil: "" });
	const allHostile = fc.tuple(valid, fc.tuple(...stringKeys.map(() => hostileChar))).map(([obj, bad]): BodyGen => ({
		value: objectOf(Object.entries(obj).map(([k, v]) => [k, stringKeys.includes(k) ? withChar(String(v), bad[stringKeys.indexOf(k)]) : v])),
		notes: ["hostile characters in the string fields"]
	}));
	const extra = fc
		.tuple(valid, nastyKey, nastyValue)
		.map(([obj, k, v]): BodyGen => ({ value: objectOf([...Object.entries(obj), [k, v]]) as unknown, notes: [`extra field ${JSON.stringify(k)}`] }));
	const plain = valid.map((value): BodyGen => ({ value, notes: [] }));
	return fc.oneof(
		FIRST_IS_SIMPLEST,
		{ weight: 5, arbitrary: plain },
		{ weight: 5, arbitrary: props.length > 0 ? broken : plain },
		{ weight: 2, arbitrary: extra },
		{ weight: stringKeys.length > 0 ? 3 : 0, arbitrary: stringKeys.length > 0 ? allHostile : plain },
		{ weight: 3, arbitrary: structural },
		{ weight: 1, arbitrary: fc.constant<BodyGen | undefined>(undefined) }
	);
}

function headersArb(op: Operation, ctx: GenContext): fc.Arbitrary<{ headers: Record<string, string>; notes: string[] }> {
	const has = (name: string) => op.headers.some(h => h.name.toLowerCase() === name);
	const idem = fc.oneof(
		FIRST_IS_SIMPLEST,
		{ weight: has("idempotency-key") ? 3 : 8, arbitrary: fc.constant(null) },
		// A new key per request (see FRESH_KEY): shrinking a failure must not replay a stored answer or hit its in-flight slot.
		{ weight: 3, arbitrary: fc.constant([FRESH_KEY, ""] as const) },
		{ weight: 1, arbitrary: fc.constantFrom("fuzz-key-1", "fuzz-key-2").map(v => [v, "reused idempotency key"] as const) },
		{
			weight: 1,
			arbitrary: fc
				.constantFrom("", "has space", "x".repeat(256), "cl\u00e9", "a\tb", "\u00ff".repeat(3))
				.map(v => [v, "malformed idempotency key"] as const)
		}
	);
	const { user, admin } = ctx.identities;
	const queue = fc.oneof(
		FIRST_IS_SIMPLEST,
		{ weight: has("x-queue-token") ? 2 : 10, arbitrary: fc.constant(null) },
		{ weight: 4, arbitrary: fc.constantFrom(user.queueToken, admin.queueToken).map(v => [v, ""] as const) },
		{ weight: 1, arbitrary: fc.uuid().map(v => [v, "unknown queue token"] as const) },
		{ weight: 1, arbitrary: nastyString.filter(sendable).map(v => [v, "hostile queue token"] as const) }
	);
	const contentType = fc.oneof(
		FIRST_IS_SIMPLEST,
		{ weight: 10, arbitrary: fc.constant("application/json") },
		{
			weight: 1,
			arbitrary: fc.constantFrom(
				"text/plain",
				"application/x-www-form-urlencoded",
				"application/json; charset=utf-16",
				"multipart/form-data; boundary=x",
				"application/xml",
				"application/JSON",
				"application/merge-patch+json"
			)
		}
	);
	return fc.record({ idem, queue, contentType }).map(({ idem: i, queue: q, contentType: ct }) => {
		const headers: Record<string, string> = { "content-type": ct };
		const notes: string[] = [];
		if (ct !== "application/json") notes.push(`content-type ${ct}`);
		if (i) {
			headers["idempotency-key"] = i[0];
			if (i[1]) notes.push(i[1]);
		}
		if (q) {
			headers["x-queue-token"] = q[0];
			if (q[1]) notes.push(q[1]);
		}
		return { headers, notes };
	});
}

/** Bearer tokens that must all be 401: malformed, unsigned, signed with another secret. */
const BAD_AUTH = [
	"Bearer",
	"Bearer ",
	"Basic YWRtaW46YWRtaW4=",
	"Bearer x.y.z",
	// {"alg":"none"} with an admin role claim and no signature
	"Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIn0.",
	// HS256 signed with "wrong-secret"
	"Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIiwiZXhwIjo0MTAyNDQ0ODAwfQ.rC9nKJd3jQKuF-3V4jUdVlU2QUv7vCUfE2JQlPCMlAI"
];

/** Every generated request of one operation. */
export function operationArb(op: Operation, ctx: GenContext): fc.Arbitrary<FuzzRequest> {
	const params = fc.tuple(...op.pathParams.map(name => pathParamArb(op, name, ctx)));
	const style = fc.oneof(
		FIRST_IS_SIMPLEST,
		{ weight: 12, arbitrary: fc.constant("normal") },
		{ weight: 1, arbitrary: fc.constantFrom("trailing slash", "double slash", "upper case", "mixed case") }
	);
	const otherMethods = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"].filter(m => m !== op.method);
	const method = fc.oneof(FIRST_IS_SIMPLEST, { weight: 15, arbitrary: fc.constant(op.method) }, { weight: 1, arbitrary: fc.constantFrom(...otherMethods) });
	// Mostly the caller the route is for (past authorization is where the services are); the others get 401/403.
	const proper: CallerName = op.auth === "admin" ? "admin" : op.auth === "user" ? "user" : "anonymous";
	const caller = fc.oneof(
		FIRST_IS_SIMPLEST,
		{ weight: 4, arbitrary: fc.constant(proper) },
		{ weight: 2, arbitrary: fc.constantFrom<CallerName>(...(["anonymous", "user", "admin"] as const).filter(c => c !== proper)) }
	);
	const auth = fc.oneof(FIRST_IS_SIMPLEST, { weight: 15, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(...BAD_AUTH) });
	return fc.record({ params, style, method, caller, auth, query: queryArb(op, ctx), body: bodyArb(op, ctx), headers: headersArb(op, ctx) }).map(r => {
		const notes: string[] = [];
		let path = op.path;
		op.pathParams.forEach((name, i) => {
			const p = r.params[i];
			path = path.replace(`{${name}}`, pathSegment(p.value, p.raw));
			if (p.note) notes.push(p.note);
		});
		if (r.style === "trailing slash") path += "/";
		else if (r.style === "double slash") path = path.replace(/^\/api\//, "/api//");
		else if (r.style === "upper case") path = path.toUpperCase();
		else if (r.style === "mixed case") path = path.replace(/[a-z]/, c => c.toUpperCase());
		if (r.style !== "normal") notes.push(r.style);
		if (r.query.pairs.length > 0) path += "?" + r.query.pairs.map(([k, v]) => `${encodeAny(k)}=${encodeAny(v)}`).join("&");
		notes.push(...r.query.notes);
		const m = r.method;
		if (m !== op.method) notes.push(`method ${m} instead of ${op.method}`);
		const headers = { ...r.headers.headers };
		notes.push(...r.headers.notes);
		let body: string | undefined;
		if (r.body && m !== "GET" && m !== "HEAD") {
			body = toJson(r.body.value);
			notes.push(
				...r.body.notes,
				...rawLabels(r.body.value)
					.filter(l => !r.body!.notes.some(n => n.includes(l)))
					.map(l => `value: ${l}`)
			);
		} else {
			delete headers["content-type"];
		}
		if (r.auth) {
			headers.authorization = r.auth;
			notes.push("bad authorization");
		}
		return { op: op.id, method: m, path, caller: r.caller, headers, body, notes };
	});
}

/** Requests for every operation of the document, each operation as likely as another. */
export function requestArb(ops: Operation[], ctx: GenContext): fc.Arbitrary<FuzzRequest> {
	return fc.oneof(...ops.map(op => operationArb(op, ctx)));
}

// Crashes: an uncaught exception or unhandled rejection while a request runs kills a production process.

export interface CrashEvent {
	kind: "uncaughtException" | "unhandledRejection";
	error: string;
}

/**
 * The process whose "uncaughtException"/"unhandledRejection" events fire. Under jest the global `process` is a
 * sandbox copy on which these never fire; jest-circus keeps the real one in its state as `parentProcess` (where
 * it puts its own handlers). Outside jest: `process`.
 */
function hostProcess(): NodeJS.Process {
	for (const sym of Object.getOwnPropertySymbols(globalThis)) {
		if (sym.description !== "JEST_STATE_SYMBOL") continue;
		const parent = (globalThis as unknown as Record<symbol, { parentProcess?: NodeJS.Process } | undefined>)[sym]?.parentProcess;
		if (parent) return parent;
	}
	return process;
}

/**
 * Captures process-level errors while the fuzz runs instead of letting them end the process (Node's default) or
 * the surrounding test runner's hooks report them out of context; the listeners present before are set aside
 * and put back by `uninstall`.
 */
export function installCrashGuard(): { events: CrashEvent[]; onEvent(cb: (() => void) | null): void; uninstall(): void } {
	const events: CrashEvent[] = [];
	let notify: (() => void) | null = null;
	const proc = hostProcess();
	const saved = { uncaughtException: proc.listeners("uncaughtException"), unhandledRejection: proc.listeners("unhandledRejection") };
	proc.removeAllListeners("uncaughtException");
	proc.removeAllListeners("unhandledRejection");
	const describe = (e: unknown) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e)).slice(0, 300);
	const onException = (e: unknown) => {
		events.push({ kind: "uncaughtException", error: describe(e) });
		notify?.();
	};
	const onRejection = (e: unknown) => {
		events.push({ kind: "unhandledRejection", error: describe(e) });
		notify?.();
	};
	proc.on("uncaughtException", onException);
	proc.on("unhandledRejection", onRejection);
	return {
		events,
		onEvent: cb => (notify = cb),
		uninstall() {
			proc.removeListener("uncaughtException", onException);
			proc.removeListener("unhandledRejection", onRejection);
			for (const l of saved.uncaughtException) proc.on("uncaughtException", l as (e: Error) => void);
			for (const l of saved.unhandledRejection) proc.on("unhandledRejection", l as (e: unknown) => void);
		}
	};
}

// Sending, and the world snapshot of property 2.

interface Answer {
	outcome: "answer" | "timeout" | "network" | "crash" | "unsendable";
	/** The headers as sent (a fresh Idempotency-Key filled in, the bearer token by caller name). */
	sent: Record<string, string>;
	status?: number;
	body?: string;
	error?: string;
	crashes: CrashEvent[];
	ms: number;
}

async function send(
	origin: string,
	req: FuzzRequest,
	tokens: Record<CallerName, string | undefined>,
	timeoutMs: number,
	guard: ReturnType<typeof installCrashGuard>
): Promise<Answer> {
	const headers: Record<string, string> = { ...req.headers };
	if (headers["idempotency-key"] === FRESH_KEY) headers["idempotency-key"] = `fz-${keyRun}-${++keySeq}`;
	// What the report shows: the headers as sent, the caller's token by name only.
	const shown = { ...headers, ...(headers.authorization === undefined && tokens[req.caller] ? { authorization: `Bearer <${req.caller} token>` } : {}) };
	const token = tokens[req.caller];
	if (token && headers.authorization === undefined) headers.authorization = `Bearer ${token}`;
	const started = Date.now();
	const seen = guard.events.length;
	const controller = new AbortController();
	let why: "timeout" | "crash" | undefined;
	const timer = setTimeout(() => {
		why = "timeout";
		controller.abort();
	}, timeoutMs);
	// A crash while this request runs answers nothing: give up on it at once rather than wait for the timeout.
	guard.onEvent(() => {
		why ??= "crash";
		setTimeout(() => controller.abort(), 200);
	});
	try {
		const res = await fetch(origin + req.path, { method: req.method, headers, body: req.body, signal: controller.signal });
		// A stream (the live seat map) stays open: its answer is its status and first event; then it is closed.
		if (res.status === 200 && /^text\/event-stream/.test(res.headers.get("content-type") ?? "")) {
			const first = await res.body!.getReader().read();
			controller.abort();
			const body = new TextDecoder().decode(first.value ?? new Uint8Array());
			return { outcome: "answer", sent: shown, status: res.status, body, crashes: guard.events.slice(seen), ms: Date.now() - started };
		}
		const body = await res.text();
		return { outcome: "answer", sent: shown, status: res.status, body, crashes: guard.events.slice(seen), ms: Date.now() - started };
	} catch (err) {
		const e = err as Error & { cause?: { code?: string; message?: string } };
		const crashes = guard.events.slice(seen);
		if (why) return { outcome: crashes.length > 0 ? "crash" : why, sent: shown, error: why, crashes, ms: Date.now() - started };
		// A TypeError without a network cause: fetch refused to build the request (a header it cannot send).
		if (e.name === "TypeError" && !e.cause) return { outcome: "unsendable", sent: shown, error: e.message, crashes, ms: Date.now() - started };
		return {
			outcome: crashes.length > 0 ? "crash" : "network",
			sent: shown,
			error: `${e.message}: ${e.cause?.code ?? e.cause?.message ?? ""}`,
			crashes,
			ms: Date.now() - started
		};
	} finally {
		clearTimeout(timer);
		guard.onEvent(null);
	}
}

export interface Snapshot {
	balances: Record<string, unknown>;
	seats: unknown;
	reservations: Record<string, unknown>;
}

/** What a rejected write must not change: the fuzz users' balances and reservations, the seeded schedule's seats. */
export async function snapshotWorld(api: string, world: World, identities: Identities, timeoutMs: number): Promise<Snapshot | { error: string }> {
	const get = async (path: string, token?: string) => {
		const res = await fetch(`${api}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(timeoutMs) });
		const text = await res.text();
		if (res.status !== 200) throw new Error(`GET /api${path}: ${res.status} ${text.slice(0, 200)}`);
		return JSON.parse(text);
	};
	try {
		const who = Object.entries(identities) as [string, Identity][];
		const [balances, reservations, seats] = await Promise.all([
			Promise.all(who.map(async ([name, id]) => [name, (await get("/points", id.token)).balance] as const)),
			Promise.all(
				who.map(
					async ([name, id]) =>
						[
							name,
							((await get("/reservations?pageSize=100", id.token)).rows as { id: string; status: string }[])
								.map(r => `${r.id}:${r.status}`)
								.sort()
						] as const
				)
			),
			get(`/schedules/${encodeURIComponent(world.scheduleId)}/seats`)
		]);
		return {
			balances: Object.fromEntries(balances),
			reservations: Object.fromEntries(reservations),
			seats: (seats as { id: string; status: string }[]).map(s => `${s.id}:${s.status}`).sort()
		};
	} catch (err) {
		return { error: (err as Error).message };
	}
}

function snapshotDiff(a: Snapshot, b: Snapshot): string[] {
	const out: string[] = [];
	for (const part of ["balances", "seats", "reservations"] as const) {
		const x = JSON.stringify(a[part]);
		const y = JSON.stringify(b[part]);
		if (x !== y) out.push(`${part}: ${x} -> ${y}`);
	}
	return out;
}

// The run.

/**
 * 5xx, crash, timeout, network (connection dropped), health: property 1 on a request. canary: a VALID request
 * (log in, balance, concert, reservations, payment) refused after the fuzz's requests: what a circuit breaker or
 * lock opened by earlier failures does to everyone else. invariant, snapshot: property 2.
 */
export type FailureKind = "5xx" | "crash" | "timeout" | "network" | "health" | "canary" | "invariant" | "snapshot";

export interface FuzzFailure {
	kind: FailureKind;
	/** kind + operation (+ what changed): one entry per signature. */
	signature: string;
	detail: string;
	/** The minimal counterexample (the last failing request of the shrink). */
	request: FuzzRequest;
	status?: number;
	responseBody?: string;
	/** How many main-phase requests hit this signature (shrinking not counted), and on which operations. */
	occurrences: number;
	seenOn: Record<string, number>;
	shrinks: number;
	seed: number;
}

export interface FuzzReport {
	seed: number;
	requests: number;
	skipped: number;
	/** Rejected (4xx) state-changing requests whose world was compared before and after (property 2). */
	worldChecks: number;
	perOperation: Record<string, number>;
	statuses: Record<string, number>;
	failures: FuzzFailure[];
	healthy: boolean;
	/** The run stopped early: the gateway died, the time limit passed, or too many distinct failures. */
	stoppedEarly?: string;
	durationMs: number;
}

export interface FuzzOptions {
	/** The gateway's base URL, ending in /api (as `gatewayUrl(broker)` gives it). */
	baseUrl: string;
	numRuns: number;
	seed?: number;
	identities: Identities;
	world: World;
	/** Per request; past it the request is a `timeout` failure. Default 15 s (above the 10 s service timeout). */
	timeoutMs?: number;
	/** Shrink steps per failure before the smallest counterexample so far is kept. Default 150. */
	maxShrinkSteps?: number;
	/** Stop after this many distinct failures. Default 30. */
	maxFailures?: number;
	/** Check /api/health every this many requests. Default 100. */
	healthEvery?: number;
	/** Stop sending (and shrinking) after this long; the report says so. Default: no limit. */
	timeLimitMs?: number;
	/** Operations to leave out (operationIds). */
	exclude?: string[];
	/** Failures of an earlier run: not shrunk again, their occurrences go on counting; all are in the report. */
	known?: FuzzFailure[];
	log?: (line: string) => void;
}

/** The readable request of a report: method, path, caller, headers, body (hostile characters escaped, long ones cut). */
export function formatRequest(req: FuzzRequest): string {
	const lines = [`${req.method} ${visible(req.path, 300)}   (as ${req.caller}; operation ${req.op})`];
	for (const [k, v] of Object.entries(req.headers)) lines.push(`${k}: ${visible(v, 120)}`);
	if (req.body !== undefined) lines.push(`body (${req.body.length} chars): ${visible(req.body, 400)}`);
	if (req.notes.length > 0) lines.push(`generated: ${req.notes.join("; ")}`);
	return lines.join("\n");
}

/** Escapes control characters and lone surrogates, and shortens repetitions (`[` x 5000). */
function visible(s: string, max: number): string {
	// A repeated unit starts with a bracket (nesting) or is one character (padding).
	const squeezed = s.replace(/([[{\]}][^]{0,4}?|[^])\1{9,}/g, (m, unit: string) => `〈${unit} ×${m.length / unit.length}〉`);
	const escaped = squeezed.replace(
		/[\u0000-\u001f\u007f-\u009f\u2028\u2029\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
		c => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`
	);
	return escaped.length > max ? `${escaped.slice(0, max)}... (${s.length} chars)` : escaped;
}

export function formatFailure(f: FuzzFailure): string {
	const answer = f.status !== undefined ? `-> ${f.status} ${visible(f.responseBody ?? "", 400)}` : `-> no answer`;
	return [
		`[${f.kind}] ${f.signature}`,
		`  ${f.detail}`,
		...formatRequest(f.request)
			.split("\n")
			.map(l => `  ${l}`),
		`  ${answer}`,
		`  (seed ${f.seed}, ${f.shrinks} shrinks; seen ${f.occurrences}x: ${Object.entries(f.seenOn)
			.map(([op, n]) => `${op} ${n}x`)
			.join(", ")})`
	].join("\n");
}

export function formatReport(r: FuzzReport, withFailures = true): string {
	const ops = Object.entries(r.perOperation).sort((a, b) => a[0].localeCompare(b[0]));
	const statuses = Object.entries(r.statuses).sort((a, b) => a[0].localeCompare(b[0]));
	return [
		`HTTP fuzz: ${r.requests} requests (${r.skipped} unsendable skipped) in ${(r.durationMs / 1000).toFixed(1)} s, seed ${r.seed}, gateway ${r.healthy ? "healthy" : "NOT HEALTHY"} at the end`,
		`property 2 (a rejected write changes nothing) checked on ${r.worldChecks} rejected state-changing requests`,
		...(r.stoppedEarly ? [`stopped early: ${r.stoppedEarly}`] : []),
		`requests per operation:`,
		...ops.map(([op, n]) => `  ${op.padEnd(36)} ${n}`),
		`statuses: ${statuses.map(([s, n]) => `${s}: ${n}`).join(", ")}`,
		...(withFailures
			? [r.failures.length === 0 ? "failures: none" : `failures (${r.failures.length} distinct):`, ...r.failures.map(f => formatFailure(f) + "\n")]
			: [])
	].join("\n");
}

interface Problem {
	kind: FailureKind;
	signature: string;
	detail: string;
}

/**
 * Runs the fuzz: `numRuns` generated requests in all (shrinking not counted), each failure kind shrunk once to
 * a minimal counterexample, then the run goes on with the next seed treating the known kinds as passing.
 */
export async function runHttpFuzz(opts: FuzzOptions): Promise<FuzzReport> {
	const started = Date.now();
	const seed = opts.seed ?? Date.now() % 2 ** 31;
	const timeoutMs = opts.timeoutMs ?? 15_000;
	const maxShrinkSteps = opts.maxShrinkSteps ?? 150;
	const maxFailures = opts.maxFailures ?? 30;
	const healthEvery = opts.healthEvery ?? 100;
	const log = opts.log ?? (() => undefined);
	const api = opts.baseUrl.replace(/\/$/, "");
	const origin = new URL(api).origin;
	const { world, identities } = opts;
	const tokens: Record<CallerName, string | undefined> = { anonymous: undefined, user: identities.user.token, admin: identities.admin.token };

	const ops = (await loadOperations(api)).filter(op => !(opts.exclude ?? []).includes(op.id));
	const arb = requestArb(ops, { world, identities });
	const report: FuzzReport = { seed, requests: 0, skipped: 0, worldChecks: 0, perOperation: {}, statuses: {}, failures: [], healthy: true, durationMs: 0 };
	const known = new Map<string, FuzzFailure>((opts.known ?? []).map(f => [f.signature, f]));
	const metWhileShrinking = new Map<string, { problem: Problem; req: FuzzRequest; answer: Answer; seed: number }>();
	const guard = installCrashGuard();
	let dead = false;
	const deadline = opts.timeLimitMs !== undefined ? started + opts.timeLimitMs : Infinity;

	const health = async (): Promise<{ ok: boolean; detail: string }> => {
		try {
			const res = await fetch(`${api}/health`, { signal: AbortSignal.timeout(5000) });
			const text = await res.text();
			return { ok: res.status === 200, detail: `GET /api/health: ${res.status} ${text.slice(0, 300)}` };
		} catch (err) {
			return { ok: false, detail: `GET /api/health: no answer (${(err as Error).message})` };
		}
	};

	/**
	 * Valid requests that must succeed whatever the fuzz sent before; run every `healthEvery` requests and at the
	 * end. A refusal (anything but 200, or a deliberate 429) is recorded as is (not shrunk: no single request
	 * caused it).
	 */
	const canaries = async (when: string) => {
		const { user } = identities;
		const probes: { name: string; method: string; path: string; token?: string; body?: unknown }[] = [
			...(user.password ? [{ name: "log in", method: "POST", path: "/auth/login", body: { email: user.email, password: user.password } }] : []),
			{ name: "balance", method: "GET", path: "/points", token: user.token },
			{ name: "concert", method: "GET", path: `/concerts/${world.concertIds[0]}` },
			{ name: "reservations", method: "GET", path: "/reservations", token: user.token },
			...(world.paymentIds[0] ? [{ name: "payment", method: "GET", path: `/payments/${world.paymentIds[0]}`, token: user.token }] : [])
		];
		for (const p of probes) {
			let status: number | undefined;
			let text = "";
			try {
				const res = await fetch(`${api}${p.path}`, {
					method: p.method,
					headers: { ...(p.token ? { authorization: `Bearer ${p.token}` } : {}), ...(p.body ? { "content-type": "application/json" } : {}) },
					body: p.body ? JSON.stringify(p.body) : undefined,
					signal: AbortSignal.timeout(timeoutMs)
				});
				status = res.status;
				text = await res.text();
			} catch (err) {
				text = (err as Error).message;
			}
			const signature = `canary ${p.name}`;
			// 429 is a deliberate refusal (login throttling after the fuzz's wrong passwords for this email, rate limits).
			if (status === 200 || status === 429 || known.has(signature)) continue;
			const request: FuzzRequest = {
				op: `(valid) ${p.name}`,
				method: p.method,
				path: `/api${p.path}`,
				caller: p.token ? "user" : "anonymous",
				headers: {},
				body: p.body ? JSON.stringify(p.body) : undefined,
				notes: [when]
			};
			const before = [...known.keys()].filter(k => !k.startsWith("canary"));
			known.set(signature, {
				kind: "canary",
				signature,
				detail: `a valid request was refused ${when}${before.length > 0 ? `; failures seen before it: ${before.join(", ")}` : ""}`,
				request,
				status,
				responseBody: text,
				occurrences: 1,
				seenOn: {},
				shrinks: 0,
				seed
			});
			log(formatFailure(known.get(signature)!));
		}
	};

	/** One request and its checks: the problem it shows, or null. */
	const exchange = async (req: FuzzRequest, count: boolean): Promise<{ problem: Problem | null; answer: Answer }> => {
		const writes = !["GET", "HEAD", "OPTIONS"].includes(req.method);
		const before = writes ? await snapshotWorld(api, world, identities, timeoutMs) : undefined;
		const answer = await send(origin, req, tokens, timeoutMs, guard);
		if (count && answer.outcome !== "unsendable") {
			report.requests++;
			report.perOperation[req.op] = (report.perOperation[req.op] ?? 0) + 1;
			const key = answer.outcome === "answer" ? String(answer.status) : answer.outcome;
			report.statuses[key] = (report.statuses[key] ?? 0) + 1;
		} else if (count) report.skipped++;
		const problem = await judge(req, answer, writes ? before : undefined, count);
		return { problem, answer };
	};

	const judge = async (req: FuzzRequest, a: Answer, before: Snapshot | { error: string } | undefined, count: boolean): Promise<Problem | null> => {
		if (a.outcome === "unsendable") return null;
		const suspicious = a.outcome !== "answer" || (a.status ?? 0) >= 500;
		// Property 1, part 2: still alive after anything suspicious, and every so often.
		if (suspicious || (count && report.requests % healthEvery === 0)) {
			const h = await health();
			if (!h.ok) {
				if (a.outcome !== "answer" || a.crashes.length > 0) dead = !(await health()).ok;
				return { kind: "health", signature: `health after ${req.op}`, detail: `${h.detail}${dead ? " (the gateway is gone: the run stops)" : ""}` };
			}
		}
		if (a.crashes.length > 0) {
			const first = a.crashes[0];
			// One signature per error, whatever the route: a process-level crash is one bug wherever it is reached.
			return {
				kind: "crash",
				signature: `crash: ${first.error.slice(0, 80)}`,
				detail: `${first.kind} while the request ran (kills a production process): ${first.error}`
			};
		}
		if (a.outcome === "timeout") return { kind: "timeout", signature: `timeout ${req.op}`, detail: `no answer within ${timeoutMs} ms` };
		if (a.outcome === "network") return { kind: "network", signature: `network ${req.op}`, detail: `the connection failed without an answer: ${a.error}` };
		const status = a.status!;
		if (status >= 500) {
			let type = "";
			try {
				type = JSON.parse(a.body ?? "").type ?? "";
			} catch {
				/* not JSON */
			}
			// By status too: a 503 after 500s on the same action is its circuit breaker, a consequence worth its own line.
			const hint = status === 503 && type === "SERVICE_UNAVAILABLE" ? " (a circuit breaker opened by earlier server faults of this action?)" : "";
			return { kind: "5xx", signature: `${status} ${req.op}`, detail: `answered ${status}${type ? ` ${type}` : ""}${hint}` };
		}
		// Property 2: a rejected write changes nothing.
		if (before && status >= 400 && status < 500) {
			if ("error" in before) return { kind: "snapshot", signature: `snapshot before ${req.op}`, detail: before.error };
			const after = await snapshotWorld(api, world, identities, timeoutMs);
			if ("error" in after) return { kind: "snapshot", signature: `snapshot after ${req.op}`, detail: after.error };
			if (count) report.worldChecks++;
			const diff = snapshotDiff(before, after);
			if (diff.length > 0) {
				return {
					kind: "invariant",
					signature: `invariant ${req.op} ${diff.map(d => d.split(":")[0]).join("+")}`,
					detail: `answered ${status} but changed ${diff.join("; ")}`
				};
			}
		}
		return null;
	};

	try {
		let remaining = opts.numRuns;
		for (let iteration = 0; remaining > 0 && known.size < maxFailures && !dead && Date.now() <= deadline; iteration++) {
			let ran = 0;
			let failing: { problem: Problem; req: FuzzRequest; answer: Answer } | null = null;
			let firstOp = "";
			let shrinkSteps = 0;
			const property = fc.asyncProperty(arb, async req => {
				if (dead || Date.now() > deadline) return true;
				if (failing) {
					// Shrinking: out of budget, keep the smallest failing request found so far.
					if (++shrinkSteps > maxShrinkSteps) return true;
				} else ran++;
				const { problem, answer } = await exchange(req, !failing);
				if (!failing && report.requests > 0 && report.requests % healthEvery === 0) await canaries(`after ${report.requests} requests`);
				if (!problem) return true;
				const old = known.get(problem.signature);
				if (old) {
					if (!failing) {
						old.occurrences++;
						old.seenOn[req.op] = (old.seenOn[req.op] ?? 0) + 1;
					}
					return true;
				}
				// While shrinking, only the same failure counts: another one is kept aside (a later pass may meet and
				// shrink it; if none does, it is reported as met).
				if (failing && failing.problem.signature !== problem.signature) {
					if (!metWhileShrinking.has(problem.signature)) metWhileShrinking.set(problem.signature, { problem, req, answer, seed: seed + iteration });
					return true;
				}
				if (!failing) {
					firstOp = req.op;
					log(`found: ${problem.signature} (${problem.detail}); shrinking`);
				}
				failing = { problem, req, answer };
				return false;
			});
			const details = await fc.check(property, { numRuns: remaining, seed: seed + iteration });
			remaining -= ran;
			if (!failing) break;
			const f = failing as { problem: Problem; req: FuzzRequest; answer: Answer };
			const failure: FuzzFailure = {
				...f.problem,
				request: { ...f.req, headers: f.answer.sent },
				status: f.answer.status,
				responseBody: f.answer.body,
				occurrences: 1,
				seenOn: { [firstOp]: 1 },
				shrinks: details.numShrinks,
				seed: seed + iteration
			};
			known.set(failure.signature, failure);
			log(formatFailure(failure));
		}
		if (dead) report.stoppedEarly = "the gateway stopped answering";
		else if (Date.now() > deadline) report.stoppedEarly = `time limit of ${opts.timeLimitMs} ms`;
		else if (known.size >= maxFailures) report.stoppedEarly = `${maxFailures} distinct failures`;
		for (const [signature, m] of metWhileShrinking) {
			if (known.has(signature)) continue;
			known.set(signature, {
				...m.problem,
				detail: `${m.problem.detail} (met while shrinking another failure: not shrunk)`,
				request: { ...m.req, headers: m.answer.sent },
				status: m.answer.status,
				responseBody: m.answer.body,
				occurrences: 1,
				seenOn: { [m.req.op]: 1 },
				shrinks: 0,
				seed: m.seed
			});
		}
		if (!dead) await canaries("at the end of the run");
		const end = await health();
		report.healthy = end.ok;
		if (!end.ok && !dead) {
			const last: FuzzRequest = { op: "api.health", method: "GET", path: "/api/health", caller: "anonymous", headers: {}, notes: ["after the run"] };
			known.set("health at the end", {
				kind: "health",
				signature: "health at the end",
				detail: end.detail,
				request: last,
				occurrences: 1,
				seenOn: {},
				shrinks: 0,
				seed
			});
		}
	} finally {
		guard.uninstall();
	}
	report.failures = [...known.values()];
	report.durationMs = Date.now() - started;
	return report;
}
