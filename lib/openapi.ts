/**
 * The OpenAPI 3 document of the public HTTP API, generated from what actually serves it: the route table
 * (services/api/routes.ts: every `METHOD /path` and its published action) and each action's `params` schema
 * (fastest-validator) and `auth`, as the registry knows them on any node. Nothing is written by hand, so the
 * document cannot drift from the routes; a test checks it against every route of docs/API.md. The success answers are
 * the one part written by hand (lib/openapi-responses.ts), checked against real answers by the same test.
 *
 * Why not moleculer-auto-openapi: it collects routes by asking each gateway's `settings.routes` over
 * `$node.services` and keys them by action (our two /api routes, read and write, share a path and alias lists),
 * and its UI loads swagger-ui from a CDN; the schema conversion below is the part we need, and it is small.
 */

import { RESPONSE_COMPONENTS, ROUTE_RESPONSES } from "./openapi-responses";

type Schema = Record<string, unknown>;

export interface ActionInfo {
	params?: Record<string, unknown>;
	auth?: "user" | "admin" | false;
	description?: string;
}

export interface OpenApiInput {
	routes: Record<string, string>;
	actions: Map<string, ActionInfo>;
	/** Routes where Idempotency-Key is mandatory, and those left out of the idempotency layer. */
	idempotencyRequired: string[];
	idempotencyExempt: string[];
	/** Routes that need an ACTIVE waiting-room token in X-Queue-Token. */
	queueGated: string[];
	basePath?: string;
	version?: string;
}

const ERROR_BODY: Schema = {
	type: "object",
	required: ["name", "message", "code", "type"],
	properties: {
		name: { type: "string" },
		message: { type: "string" },
		code: { type: "integer" },
		type: { type: "string", description: "Stable UPPER_SNAKE error type" },
		data: { description: "Ids and field names only" }
	}
};

/** fastest-validator rule (object or shorthand string) -> JSON schema, plus whether it is optional. */
export function ruleToSchema(rule: unknown): { schema: Schema; optional: boolean } {
	if (typeof rule === "string") {
		const [type, ...flags] = rule.split("|").map(s => s.trim());
		return { schema: ruleToSchema({ type }).schema, optional: flags.includes("optional") };
	}
	if (Array.isArray(rule)) {
		const alts = rule.map(r => ruleToSchema(r));
		return { schema: { oneOf: alts.map(a => a.schema) }, optional: alts.every(a => a.optional) };
	}
	if (!rule || typeof rule !== "object") return { schema: {}, optional: true };
	const r = rule as Record<string, unknown>;
	const optional = r.optional === true || r.default !== undefined;
	const s: Schema = {};
	const num = (k: string) => (typeof r[k] === "number" ? (r[k] as number) : undefined);
	switch (r.type) {
		case "string":
			s.type = "string";
			if (num("min") !== undefined) s.minLength = num("min");
			if (num("max") !== undefined) s.maxLength = num("max");
			if (num("length") !== undefined) s.minLength = s.maxLength = num("length");
			// A RegExp survives only in-process; over the transporter it arrives as {}.
			if (r.pattern instanceof RegExp) s.pattern = r.pattern.source;
			else if (typeof r.pattern === "string") s.pattern = r.pattern;
			if (Array.isArray(r.enum)) s.enum = r.enum;
			break;
		case "number":
			s.type = r.integer ? "integer" : "number";
			if (num("min") !== undefined) s.minimum = num("min");
			if (num("max") !== undefined) s.maximum = num("max");
			break;
		case "boolean":
			s.type = "boolean";
			break;
		case "email":
			s.type = "string";
			s.format = "email";
			break;
		case "date":
			s.type = "string";
			s.format = "date-time";
			break;
		case "uuid":
			s.type = "string";
			s.format = "uuid";
			break;
		case "enum":
			s.enum = Array.isArray(r.values) ? r.values : [];
			break;
		case "equal":
			s.enum = [r.value];
			break;
		case "array":
			s.type = "array";
			if (r.items !== undefined) s.items = ruleToSchema(r.items).schema;
			if (num("min") !== undefined) s.minItems = num("min");
			if (num("max") !== undefined) s.maxItems = num("max");
			break;
		case "object":
			Object.assign(s, objectSchema((r.props ?? r.properties) as Record<string, unknown> | undefined));
			break;
		case "multi":
			s.oneOf = Array.isArray(r.rules) ? r.rules.map(x => ruleToSchema(x).schema) : [];
			break;
		default:
			break;
	}
	if (r.default !== undefined && typeof r.default !== "function") s.default = r.default;
	if (typeof r.description === "string") s.description = r.description;
	return { schema: s, optional };
}

/** A params schema (its `$$` keys skipped) -> an object JSON schema with its required list. */
export function objectSchema(props: Record<string, unknown> | undefined, skip: string[] = []): Schema {
	const properties: Record<string, Schema> = {};
	const required: string[] = [];
	for (const [k, rule] of Object.entries(props ?? {})) {
		if (k.startsWith("$$") || skip.includes(k)) continue;
		const { schema, optional } = ruleToSchema(rule);
		properties[k] = schema;
		if (!optional) required.push(k);
	}
	return required.length > 0 ? { type: "object", properties, required } : { type: "object", properties };
}

/** "/concerts/:id/reviews" -> "/concerts/{id}/reviews" and its parameter names. */
export function toOpenApiPath(path: string): { path: string; params: string[] } {
	const params: string[] = [];
	const p = path.replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) => {
		params.push(name);
		return `{${name}}`;
	});
	return { path: p, params };
}

export function buildOpenApi(input: OpenApiInput): Schema {
	const base = input.basePath ?? "/api";
	const paths: Record<string, Record<string, Schema>> = {};
	for (const [route, actionName] of Object.entries(input.routes)) {
		const [method, rawPath] = route.split(" ");
		const { path, params: pathParams } = toOpenApiPath(rawPath);
		const action = input.actions.get(actionName) ?? {};
		const auth = action.auth === undefined ? "user" : action.auth;
		const [service] = actionName.split(".");
		const parameters: Schema[] = pathParams.map(name => ({ name, in: "path", required: true, schema: { type: "string" } }));
		const op: Schema = {
			operationId: actionName,
			tags: [service],
			summary: action.description ?? `${method} ${base}${rawPath} (${actionName})`,
			responses: {
				default: { description: "Error", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } }
			}
		};
		const responses = op.responses as Record<string, Schema>;
		// The success status and body of each route (lib/openapi-responses.ts, the same as docs/API.md says).
		const ok = ROUTE_RESPONSES[route];
		if (ok) {
			responses[String(ok.status)] = {
				description: ok.description ?? "Success",
				...(ok.schema ? { content: { "application/json": { schema: ok.schema } } } : {})
			};
		} else responses["2XX"] = { description: "Success: status and body as in docs/API.md" };
		// The gateway's own refusals, on every route, before any service sees the request.
		responses["400"] = {
			description:
				"INVALID_JSON, INVALID_BODY (not an object), BODY_TOO_COMPLEX (deeper than 16, more than 100 keys, 1,000 items or 10,000 values), INVALID_CHARACTERS (control characters or broken Unicode)",
			content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } }
		};
		responses["429"] = {
			description: "RATE_LIMITED (with Retry-After); on login LOGIN_THROTTLED, on login and register AUTH_BUSY",
			content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } }
		};
		if (auth !== false) {
			op.security = [{ bearer: [] }];
			responses["401"] = {
				description: "UNAUTHORIZED: missing or bad bearer token",
				content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } }
			};
			if (auth === "admin")
				responses["403"] = {
					description: "FORBIDDEN: admin role required",
					content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } }
				};
		} else op.security = [];
		if (action.params && Object.keys(action.params).some(k => !k.startsWith("$$") && !pathParams.includes(k))) {
			responses["422"] = {
				description: "VALIDATION_ERROR: the offending fields in data",
				content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } }
			};
		}
		if (input.queueGated.includes(route)) {
			parameters.push({
				name: "X-Queue-Token",
				in: "header",
				required: true,
				schema: { type: "string" },
				description: "An ACTIVE waiting-room token of this user for this concert (403 QUEUE_TOKEN_NOT_ACTIVE otherwise)"
			});
		}
		if (method !== "GET" && !input.idempotencyExempt.includes(route)) {
			const required = input.idempotencyRequired.includes(route);
			parameters.push({
				name: "Idempotency-Key",
				in: "header",
				required,
				schema: { type: "string", minLength: 1, maxLength: 255 },
				description:
					"Replays answer the stored response with Idempotent-Replayed: true" + (required ? " (400 IDEMPOTENCY_KEY_REQUIRED without it)" : "")
			});
		}
		if (method === "GET") {
			const query = objectSchema(action.params, pathParams) as { properties: Record<string, Schema>; required?: string[] };
			for (const [name, schema] of Object.entries(query.properties)) {
				parameters.push({ name, in: "query", required: (query.required ?? []).includes(name), schema });
			}
		} else if (action.params) {
			const body = objectSchema(action.params, pathParams) as { properties: Record<string, Schema> };
			if (Object.keys(body.properties).length > 0) op.requestBody = { required: true, content: { "application/json": { schema: body } } };
		}
		if (parameters.length > 0) op.parameters = parameters;
		const key = `${base}${path}`;
		paths[key] ??= {};
		paths[key][method.toLowerCase()] = op;
	}
	// The live seat map: a stream the gateway serves beside its routes (services/api/seat-feed.ts).
	paths[`${base}/schedules/{id}/seats/events`] = {
		get: {
			operationId: "api.seatEvents",
			tags: ["concert"],
			summary: "The seat map as Server-Sent Events: `event: seats` with {scheduleId, seats: [{id, status}]}, at once and after every change",
			security: [],
			parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
			responses: {
				"200": { description: "A stream that stays open", content: { "text/event-stream": { schema: { type: "string" } } } },
				"404": { description: "NOT_FOUND: no such schedule", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } },
				"429": {
					description: "RATE_LIMITED: too many streams from this address",
					content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } }
				},
				"503": {
					description: "This gateway serves its maximum of streams: poll GET .../seats",
					content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } }
				}
			}
		}
	};
	return {
		openapi: "3.0.3",
		info: {
			title: "Concert reservation platform",
			version: input.version ?? "1",
			description: "Generated from the gateway's route table and the actions' params schemas. Errors: {name, message, code, type, data}."
		},
		servers: [{ url: "/" }],
		paths,
		components: {
			securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
			schemas: { Error: ERROR_BODY, ...RESPONSE_COMPONENTS }
		}
	};
}

/** The docs page: swagger-ui served by the gateway itself (no CDN), reading /api/openapi.json. */
export function docsPage(base = "/api"): string {
	return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Concert reservation API</title>
<link rel="stylesheet" href="${base}/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="${base}/docs/swagger-ui-bundle.js"></script>
<script src="${base}/docs/init.js"></script>
</body></html>
`;
}

export function docsInitScript(base = "/api"): string {
	return `window.onload = function () {
  window.ui = SwaggerUIBundle({ url: "${base}/openapi.json", dom_id: "#swagger-ui", deepLinking: true, presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout" });
};
`;
}
