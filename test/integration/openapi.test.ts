/**
 * /api/openapi.json against the contract: every METHOD + path of the route tables of docs/API.md is in the
 * document, with the input schemas of the actions behind them, including actions that live on other nodes
 * (cluster mode). And the browsable docs page with its assets.
 */
import fs from "fs";
import path from "path";
import { toOpenApiPath } from "../../lib/openapi";
import { http, testEnv, type TestEnv } from "../support/harness";
import { opsCluster } from "../support/ops";

const API_MD = path.resolve(__dirname, "../../docs/API.md");

/** Every `METHOD /api/...` in the first cell of API.md's table rows (a cell may list several). */
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

	it("when API.md's route tables are read, then every METHOD + path of them is in /api/openapi.json", () => {
		// Fails (ENOENT) when API.md cannot be read: the contract is the point of this test.
		const routes = apiMdRoutes(fs.readFileSync(API_MD, "utf8"));
		expect(routes.length).toBeGreaterThanOrEqual(34); // as many as API.md v1 lists
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
