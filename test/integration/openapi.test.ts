/**
 * /api/openapi.json against the contract: every METHOD + path of the route tables of docs/API.md is in the
 * document, with the input schemas of the actions behind them, including actions that live on other nodes
 * (cluster mode). And the browsable docs page with its assets.
 */
import fs from "fs";
import path from "path";
import Ajv from "ajv";
import { toOpenApiPath } from "../../lib/openapi";
import { ROUTE_RESPONSES } from "../../lib/openapi-responses";
import { ROUTES } from "../../services/api/routes";
import { adminToken, ownConcert, pay, reserve, seats, shopper } from "../support/booking";
import { http, testEnv, type TestEnv } from "../support/harness";
import { OPS_ADMIN, opsCluster } from "../support/ops";

const API_MD = path.resolve(__dirname, "../../docs/API.md");

/** Every `METHOD /api/...` in the first cell of docs/API.md's table rows (a cell may list several). */
function apiMdRoutes(markdown: string): { method: string; path: string }[] {
	const out: { method: string; path: string }[] = [];
	for (const line of markdown.split("\n")) {
		if (!line.startsWith("|")) continue;
		const first = line.split("|")[1] ?? "";
		for (const m of first.matchAll(/\b(GET|POST|PUT|PATCH|DELETE) (\/api\/[^\s,?`|]+)/g))
			out.push({ method: m[1].toLowerCase(), path: toOpenApiPath(m[2]).path });
	}
	return out;
}

describe("OpenAPI document (cluster)", () => {
	let env: TestEnv;
	let api: string;
	let doc: { openapi: string; paths: Record<string, Record<string, any>> };

	beforeAll(async () => {
		env = testEnv({ cluster: true });
		({ api } = await opsCluster(env));
		const res = await http("GET", `${api}/openapi.json`);
		expect(res.status).toBe(200);
		doc = res.body;
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when docs/API.md's route tables are read, then every METHOD + path of them is in /api/openapi.json", () => {
		// Fails (ENOENT) when docs/API.md cannot be read: the contract is the point of this test.
		const routes = apiMdRoutes(fs.readFileSync(API_MD, "utf8"));
		expect(routes.length).toBeGreaterThanOrEqual(34); // as many as docs/API.md v1 lists
		expect(doc.openapi).toMatch(/^3\./);
		const missing = routes.filter(r => !doc.paths[r.path]?.[r.method]).map(r => `${r.method.toUpperCase()} ${r.path}`);
		expect(missing).toEqual([]);
	});

	it("when an action lives on another node, then its params schema still becomes the request body", () => {
		const create = doc.paths["/api/reservations"].post;
		expect(create.operationId).toBe("reservation.create");
		expect(create.requestBody.content["application/json"].schema).toMatchObject({
			type: "object",
			required: expect.arrayContaining(["scheduleId", "seatIds"]),
			properties: { seatIds: { type: "array", minItems: 1, maxItems: 4 } }
		});
		expect(create.parameters).toEqual(expect.arrayContaining([expect.objectContaining({ name: "X-Queue-Token", in: "header", required: true })]));

		const pay = doc.paths["/api/payments"].post;
		expect(pay.parameters).toEqual(expect.arrayContaining([expect.objectContaining({ name: "Idempotency-Key", in: "header", required: true })]));

		const register = doc.paths["/api/auth/register"].post;
		expect(register.security).toEqual([]);
		expect(register.requestBody.content["application/json"].schema.properties.password).toMatchObject({ type: "string", minLength: 8, maxLength: 128 });

		const seats = doc.paths["/api/schedules/{id}/seats"].get;
		expect(seats.parameters).toEqual([expect.objectContaining({ name: "id", in: "path", required: true })]);

		const consistency = doc.paths["/api/admin/consistency"].get;
		expect(consistency.security).toEqual([{ bearer: [] }]);
		expect(Object.keys(consistency.responses)).toEqual(expect.arrayContaining(["401", "403"]));

		const list = doc.paths["/api/concerts"].get;
		expect(list.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`).sort()).toEqual(["query:page", "query:pageSize"]);
	});

	it("when /api/docs is opened, then a swagger-ui page and its assets are served from the gateway; an unknown asset is 404", async () => {
		const page = await http("GET", `${api}/docs`);
		expect(page.status).toBe(200);
		expect(page.headers.get("content-type")).toMatch(/text\/html/);
		expect(page.body).toContain("/api/docs/swagger-ui-bundle.js");
		const bundle = await fetch(`${api}/docs/swagger-ui-bundle.js`);
		expect(bundle.status).toBe(200);
		expect(bundle.headers.get("content-type")).toMatch(/javascript/);
		expect((await bundle.text()).length).toBeGreaterThan(100_000);
		const init = await http("GET", `${api}/docs/init.js`);
		expect(init.body).toContain("/api/openapi.json");
		const unknown = await http("GET", `${api}/docs/..%2Fpackage.json`);
		expect(unknown.status).toBe(404);
		expect(unknown.body.type).toBe("NOT_FOUND");
	});
});

describe("OpenAPI response schemas against real answers (cluster)", () => {
	let env: TestEnv;
	let api: string;
	let doc: { paths: Record<string, Record<string, any>>; components: Record<string, unknown> };
	const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: OPS_ADMIN });
		({ api } = await opsCluster(env));
		doc = (await http("GET", `${api}/openapi.json`)).body;
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when the route table is read, then every route has its success status and body in the document", () => {
		expect(Object.keys(ROUTES).filter(r => !ROUTE_RESPONSES[r])).toEqual([]);
		expect(Object.keys(ROUTE_RESPONSES).filter(r => !ROUTES[r])).toEqual([]);
	});

	it("when a journey calls the routes, then each success answer has the documented status and matches its schema", async () => {
		const admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 300);
		const buyer = await shopper(api, concertId, 2000);
		const [a, b] = await seats(api, scheduleId);
		const held = await reserve(api, buyer, scheduleId, [a.id]);
		const paid = await pay(api, buyer, held.body.id);
		const other = await shopper(api, concertId, 0);
		const second = await reserve(api, other, scheduleId, [b.id]);
		const cancel = await http("POST", `${api}/reservations/${second.body.id}/cancel`, { token: other.token, headers: { "idempotency-key": "oa-c" } });
		const sagas = await http("GET", `${api}/admin/sagas`, { token: admin });
		const u = { token: buyer.token };
		const ad = { token: admin };
		const answers: [string, { status: number; body: unknown }][] = [
			["POST /reservations", held],
			["POST /payments", paid],
			["POST /reservations/:id/cancel", cancel],
			["GET /admin/sagas", sagas],
			["GET /health", await http("GET", `${api}/health`)],
			["GET /concerts", await http("GET", `${api}/concerts`)],
			["GET /concerts/:id", await http("GET", `${api}/concerts/${concertId}`)],
			["GET /concerts/:id/schedules", await http("GET", `${api}/concerts/${concertId}/schedules`)],
			["GET /schedules/:id/seats", await http("GET", `${api}/schedules/${scheduleId}/seats`)],
			["GET /users/me", await http("GET", `${api}/users/me`, u)],
			["GET /queue/tokens/:token", await http("GET", `${api}/queue/tokens/${buyer.queueToken}`, u)],
			["GET /reservations", await http("GET", `${api}/reservations`, u)],
			["GET /reservations/:id", await http("GET", `${api}/reservations/${held.body.id}`, u)],
			["GET /payments", await http("GET", `${api}/payments`, u)],
			["GET /payments/:id", await http("GET", `${api}/payments/${paid.body.id}`, u)],
			["GET /points", await http("GET", `${api}/points`, u)],
			["GET /points/transactions", await http("GET", `${api}/points/transactions`, u)],
			["GET /notifications", await http("GET", `${api}/notifications`, u)],
			["POST /notifications/read-all", await http("POST", `${api}/notifications/read-all`, u)],
			["GET /rankings/concerts", await http("GET", `${api}/rankings/concerts`)],
			["GET /admin/sagas/:id", await http("GET", `${api}/admin/sagas/${sagas.body.rows[0].id}`, ad)],
			["GET /admin/dead-letters", await http("GET", `${api}/admin/dead-letters`, ad)],
			["GET /admin/consistency", await http("GET", `${api}/admin/consistency`, ad)],
			["GET /admin/queues/:concertId", await http("GET", `${api}/admin/queues/${concertId}`, ad)],
			["GET /admin/alerts", await http("GET", `${api}/admin/alerts`, ad)],
			["GET /admin/event-dead-letters", await http("GET", `${api}/admin/event-dead-letters`, ad)],
			["GET /admin/nodes", await http("GET", `${api}/admin/nodes`, ad)],
			["GET /admin/figures", await http("GET", `${api}/admin/figures`, ad)],
			["POST /admin/retention/run", await http("POST", `${api}/admin/retention/run`, ad)]
		];
		const problems: string[] = [];
		for (const [route, res] of answers) {
			const [method, raw] = route.split(" ");
			const op = doc.paths[`/api${toOpenApiPath(raw).path}`][method.toLowerCase()];
			const documented = Object.keys(op.responses).filter(k => /^2\d\d$/.test(k));
			if (!documented.includes(String(res.status))) {
				problems.push(`${route}: answered ${res.status}, documented ${documented.join(",")}: ${JSON.stringify(res.body).slice(0, 200)}`);
				continue;
			}
			const schema = op.responses[String(res.status)].content?.["application/json"]?.schema;
			if (!schema) continue;
			const validate = ajv.compile({ ...schema, components: doc.components });
			if (!validate(res.body)) problems.push(`${route}: ${ajv.errorsText(validate.errors)}`);
		}
		expect(problems).toEqual([]);
	}, 90_000);
});
