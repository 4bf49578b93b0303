/**
 * The gateway's first middleware on every /api route: what a request may contain before anything reads it.
 *
 * - Structure: a JSON body (and the query string) is at most `maxDepth` containers deep, an object has at most
 *   `maxKeys` keys, an array at most `maxItems` items, and the whole at most `maxValues` values. Past that: 400
 *   BODY_TOO_COMPLEX. Every route takes a flat object or nothing; the limits only stop payloads made to exhaust
 *   a stack or a CPU (a body of 5,000 nested arrays once overflowed the stack of the idempotency fingerprint).
 * - Characters: no string, key, query value or path parameter may hold C0/C1 control characters other than tab,
 *   line feed and carriage return, or broken UTF-16 (a lone surrogate). Past that: 400 INVALID_CHARACTERS. A NUL
 *   used to reach SQLite and come back as a 500, and three such requests a second kept a circuit breaker open.
 * - A body is a JSON object (400 INVALID_BODY for a top-level array).
 *
 * The walk is iterative with its own stack, so no input can make it recurse. It runs for every route, so a new
 * route is covered without a line here. It also resolves the route the request matched, once, for the layers
 * after it (the idempotency layer keys on the matched route, not on the raw path).
 */
import type { IncomingMessage, ServerResponse } from "http";
import { BodyTooComplexError, InvalidBodyError, InvalidCharactersError } from "./errors";

export interface InputLimits {
	maxDepth: number;
	maxKeys: number;
	maxItems: number;
	maxValues: number;
}

export const INPUT_LIMITS: InputLimits = { maxDepth: 16, maxKeys: 100, maxItems: 1000, maxValues: 10_000 };

/** C0 and C1 controls but tab, LF and CR; DEL; a high surrogate without its low half, or a low one alone. */
const BAD_CHARACTERS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function hasBadCharacters(s: string): boolean {
	return BAD_CHARACTERS.test(s);
}

/**
 * Walks a parsed value and answers the first problem, or null. `field` names where the value sits, for the
 * error's data (`seats.grades[0].grade`).
 */
export function inspectInput(root: unknown, field = "", limits: InputLimits = INPUT_LIMITS): Error | null {
	const stack: { value: unknown; depth: number; field: string }[] = [{ value: root, depth: 0, field }];
	let values = 0;
	while (stack.length > 0) {
		const { value, depth, field: at } = stack.pop()!;
		if (++values > limits.maxValues) return new BodyTooComplexError("values", limits.maxValues);
		if (typeof value === "string") {
			if (hasBadCharacters(value)) return new InvalidCharactersError(at);
			continue;
		}
		if (value === null || typeof value !== "object") continue;
		if (depth >= limits.maxDepth) return new BodyTooComplexError("depth", limits.maxDepth);
		if (Array.isArray(value)) {
			if (value.length > limits.maxItems) return new BodyTooComplexError("items", limits.maxItems);
			for (let i = 0; i < value.length; i++) stack.push({ value: value[i], depth: depth + 1, field: `${at}[${i}]` });
			continue;
		}
		const keys = Object.keys(value);
		if (keys.length > limits.maxKeys) return new BodyTooComplexError("keys", limits.maxKeys);
		for (const key of keys) {
			const child = at ? `${at}.${key}` : key;
			if (hasBadCharacters(key)) return new InvalidCharactersError(at || "(key)");
			stack.push({ value: (value as Record<string, unknown>)[key], depth: depth + 1, field: child });
		}
	}
	return null;
}

/** The route a request matched: its template as in routes.ts (`POST /reservations/:id/cancel`) and parameters. */
export interface MatchedRoute {
	template: string;
	params: Record<string, string>;
	/** The template with the decoded parameters put back: one name per resource, whatever case or escaping the URL used. */
	key: string;
}

interface AliasLike {
	method: string;
	fullPath: string;
	route: { path: string };
}
interface GatewayLike {
	resolveAlias(url: string, method: string): { alias: AliasLike; params: Record<string, string> } | false;
}
export type GuardedRequest = IncomingMessage & {
	body?: unknown;
	query?: unknown;
	parsedUrl?: string;
	/** moleculer-web's service (the gateway) that took the request. */
	$service?: unknown;
	$match?: MatchedRoute | null;
};

/**
 * Resolves (once per request) the alias moleculer-web will call: the same matcher, so the same answer. Null for
 * a request that matches no route (it ends in a 404).
 */
export function matchedRoute(req: GuardedRequest): MatchedRoute | null {
	if (req.$match !== undefined) return req.$match;
	const gateway = req.$service as GatewayLike | undefined;
	// The method moleculer-web resolves with: for OPTIONS it is the preflight's Access-Control-Request-Method, and
	// without one the GET alias, whose action then runs (an OPTIONS /reservations/%00 once reached the database).
	const preflight = req.headers["access-control-request-method"];
	const method = req.method === "OPTIONS" ? (typeof preflight === "string" ? preflight : "GET") : (req.method ?? "GET");
	const found = gateway && req.parsedUrl !== undefined ? gateway.resolveAlias(req.parsedUrl, method) : false;
	if (!found) return (req.$match = null);
	const { alias, params } = found;
	const path = alias.fullPath.slice(alias.route.path.length) || "/";
	const template = `${alias.method} ${path}`;
	const key = template.replace(/:([A-Za-z0-9_]+)/g, (_, name: string) => encodeURIComponent(params[name] ?? ""));
	return (req.$match = { template, params, key });
}

/** Connect-style middleware (moleculer-web `use`): runs after the body parser, before everything else. */
export function requestGuard(limits: InputLimits = INPUT_LIMITS) {
	return function guard(req: GuardedRequest, _res: ServerResponse, next: (err?: unknown) => void): void {
		try {
			const body = req.body;
			if (Array.isArray(body)) return next(new InvalidBodyError());
			const problem =
				inspectInput(body, "", limits) ?? inspectInput(req.query, "", limits) ?? inspectInput(matchedRoute(req)?.params ?? null, "", limits);
			next(problem ?? undefined);
		} catch (err) {
			// moleculer-web's alias matcher throws a 400 for a path parameter that does not URL-decode.
			next(err);
		}
	};
}
