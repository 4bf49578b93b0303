import { buildOpenApi, objectSchema, ruleToSchema, toOpenApiPath } from "../../lib/openapi";

describe("OpenAPI generation", () => {
	it("when fastest-validator rules are converted, then types, bounds, enums, arrays and optionality carry over", () => {
		expect(ruleToSchema({ type: "string", min: 8, max: 128, pattern: /^[a-z]+$/ })).toEqual({
			schema: { type: "string", minLength: 8, maxLength: 128, pattern: "^[a-z]+$" },
			optional: false
		});
		expect(ruleToSchema({ type: "number", integer: true, min: 1, max: 100, optional: true, default: 20 })).toEqual({
			schema: { type: "integer", minimum: 1, maximum: 100, default: 20 },
			optional: true
		});
		expect(ruleToSchema({ type: "enum", values: ["A", "B"] }).schema).toEqual({ enum: ["A", "B"] });
		expect(ruleToSchema({ type: "array", min: 1, max: 4, items: { type: "string" } }).schema).toEqual({
			type: "array",
			minItems: 1,
			maxItems: 4,
			items: { type: "string" }
		});
		expect(ruleToSchema("string|optional")).toEqual({ schema: { type: "string" }, optional: true });
		// A pattern that crossed the transporter arrives as {}: dropped, not written as "[object Object]".
		expect(ruleToSchema({ type: "string", pattern: {} }).schema).toEqual({ type: "string" });
	});

	it("when a params schema has $$ keys and path params, then they stay out of the body", () => {
		expect(
			objectSchema({ id: { type: "string" }, rating: { type: "number" }, note: { type: "string", optional: true }, $$strict: "remove" }, ["id"])
		).toEqual({
			type: "object",
			properties: { rating: { type: "number" }, note: { type: "string" } },
			required: ["rating"]
		});
	});

	it("when routes are given, then paths use {param}, GET params become query, writes a body, and headers follow the route lists", () => {
		expect(toOpenApiPath("/concerts/:id/reviews")).toEqual({ path: "/concerts/{id}/reviews", params: ["id"] });
		const doc = buildOpenApi({
			routes: { "GET /things": "thing.list", "POST /things/:id/pay": "thing.pay", "GET /open": "thing.open" },
			actions: new Map([
				["thing.list", { params: { page: { type: "number", optional: true } }, auth: "admin" as const }],
				["thing.pay", { params: { id: { type: "string" }, amount: { type: "number" } } }],
				["thing.open", { auth: false as const }]
			]),
			idempotencyRequired: ["POST /things/:id/pay"],
			idempotencyExempt: [],
			queueGated: ["POST /things/:id/pay"]
		}) as { paths: Record<string, Record<string, any>> };
		expect(doc.paths["/api/things"].get.parameters).toEqual([{ name: "page", in: "query", required: false, schema: { type: "number" } }]);
		expect(Object.keys(doc.paths["/api/things"].get.responses)).toEqual(expect.arrayContaining(["401", "403", "422"]));
		const pay = doc.paths["/api/things/{id}/pay"].post;
		expect(pay.requestBody.content["application/json"].schema).toEqual({
			type: "object",
			properties: { amount: { type: "number" } },
			required: ["amount"]
		});
		expect(pay.parameters.map((p: { in: string; name: string; required: boolean }) => `${p.in}:${p.name}:${p.required}`)).toEqual([
			"path:id:true",
			"header:X-Queue-Token:true",
			"header:Idempotency-Key:true"
		]);
		expect(doc.paths["/api/open"].get.security).toEqual([]);
	});
});
