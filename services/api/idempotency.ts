/**
 * The API idempotency layer (docs/DESIGN.md section 6; seed 000 section 3.2), a connect-style middleware on the
 * gateway's routes. For a state-changing request carrying `Idempotency-Key`:
 *   - the first request takes an in-flight slot (SET NX with a bounded TTL) and runs; its answer is stored for
 *     IDEMPOTENCY_TTL_SEC under (caller, matched route, key) with a fingerprint of the request. The route is the
 *     one the gateway matched, with its decoded parameters (`POST /reservations/<id>/cancel`), not the raw path:
 *     `/points/charge/`, `/POINTS/CHARGE` and `/points/charge` are one route and share their keys;
 *   - the same key with the same request gets the stored status and body back, with `Idempotent-Replayed: true`;
 *   - the same key with another request: 422 IDEMPOTENCY_KEY_REUSED; while the first still runs: 409
 *     IDEMPOTENCY_KEY_IN_PROGRESS; a required key that is missing: 400 IDEMPOTENCY_KEY_REQUIRED.
 * Only answers that are outcomes are stored (2xx and business 4xx; for anonymous callers 2xx only). Transient failures (5xx, 401/403, 429,
 * validation) release the slot so the client can retry with the same key.
 *
 * The in-flight slot is a short lease (`inFlightLeaseMs`, 5 s on the gateway) that the process running the request
 * renews every third of it until the answer is written (for at most `inFlightMaxMs`). A gateway worker that dies
 * mid-request stops renewing, and its slot is free a few seconds later, so the client's retry goes through; with
 * a fixed 60 s slot every such retry was a 409 for a minute (issue 15). While the owner lives, the slot stays
 * taken however long the request runs: two executions of one key never run at once on the gateway (and the
 * services key their own work by the same Idempotency-Key, should a frozen process outlive its lease).
 */
import crypto from "crypto";
import type { IncomingMessage, ServerResponse } from "http";
import { verifyAccessToken, type AuthUser } from "../../lib/auth";
import { toHttpError } from "../../lib/errors";
import type { CoordinationStore } from "../../lib/store";
import { isValidIdempotencyKey } from "../../lib/idempotency-key";
import { IdempotencyError } from "./errors";
import { matchedRoute, type GuardedRequest, type MatchedRoute } from "./request-guard";

/**
 * Answers that are not outcomes of the operation: never replayed, the slot is released. 202 says the operation is
 * still running: a retry with the key asks again (the service finds its saga by the key and answers its state).
 */
const NOT_STORED = new Set([202, 400, 401, 403, 408, 413, 415, 422, 429]);

interface StoredAnswer {
	state: "running" | "done";
	fp: string;
	status?: number;
	body?: string;
	contentType?: string;
	location?: string;
}

export interface IdempotencyOptions {
	store: CoordinationStore;
	jwtSecret: string;
	ttlSec: number;
	/** How long an in-flight slot lives without renewal (its process died); renewed every third of it meanwhile. */
	inFlightLeaseMs: number;
	/** The longest a slot is renewed for one request: a request that never ends does not lock its key forever. */
	inFlightMaxMs: number;
	/** `METHOD /path` templates (as in routes.ts) where the header is mandatory. */
	required: string[];
	/** `METHOD /path` templates that are exempt (e.g. login: a token must not be replayed for a day). */
	exempt: string[];
	clientAddress: (req: IncomingMessage) => string;
	/** The route a request matched (the gateway's own matcher by default; tests give their own). */
	matchRoute?: (req: GuardedRequest) => MatchedRoute | null;
	/** Who a verified token's user is now (null: deleted): only a current user gets a slot or a stored answer. */
	currentUser?: (claims: AuthUser) => Promise<AuthUser | null>;
}

/** Stable fingerprint of a request: its route (method, template, parameters) and the body with keys sorted. */
export function fingerprint(route: string, body: unknown): string {
	return crypto
		.createHash("sha256")
		.update(`${route}\n${canonicalJson(body)}`)
		.digest("base64url");
}

/**
 * JSON with object keys sorted, so two bodies that differ only in key order are one request. Iterative with its
 * own stack: the input is a client's, and recursion over it is a stack overflow waiting for a deep enough body
 * (the gateway bounds the depth before this runs; this does not rely on it).
 */
export function canonicalJson(value: unknown): string {
	const out: string[] = [];
	// A work item is a value to write, or a literal piece of punctuation.
	const stack: ({ v: unknown } | string)[] = [{ v: value }];
	while (stack.length > 0) {
		const item = stack.pop()!;
		if (typeof item === "string") {
			out.push(item);
			continue;
		}
		const v = item.v;
		if (v === null || typeof v !== "object") {
			out.push(JSON.stringify(v ?? null) ?? "null");
			continue;
		}
		const entries: ({ v: unknown } | string)[] = [];
		if (Array.isArray(v)) {
			v.forEach((x, i) => entries.push(i > 0 ? "," : "", { v: x }));
			entries.unshift("[");
			entries.push("]");
		} else {
			const obj = v as Record<string, unknown>;
			Object.keys(obj)
				.sort()
				.forEach((k, i) => entries.push(`${i > 0 ? "," : ""}${JSON.stringify(k)}:`, { v: obj[k] }));
			entries.unshift("{");
			entries.push("}");
		}
		for (let i = entries.length - 1; i >= 0; i--) stack.push(entries[i]);
	}
	return out.join("");
}

function sendError(res: ServerResponse, err: IdempotencyError): void {
	const { status, body } = toHttpError(err);
	res.setHeader("Content-Type", "application/json; charset=utf-8");
	// A request still running: ask again in a second (the slot of a dead process is free within its lease).
	if (body.type === "IDEMPOTENCY_KEY_IN_PROGRESS") res.setHeader("Retry-After", "1");
	res.writeHead(status);
	res.end(JSON.stringify(body));
}

export function idempotencyMiddleware(opts: IdempotencyOptions) {
	const required = new Set(opts.required);
	const exempt = new Set(opts.exempt);
	const matchRoute = opts.matchRoute ?? matchedRoute;

	return async function idempotency(req: GuardedRequest, res: ServerResponse, next: (err?: unknown) => void) {
		const method = req.method ?? "GET";
		if (method !== "POST" && method !== "DELETE" && method !== "PUT" && method !== "PATCH") return next();
		// No route: the gateway answers 404 next, and there is nothing to key on.
		const route = matchRoute(req);
		if (!route || exempt.has(route.template)) return next();

		const raw = req.headers["idempotency-key"];
		const key = Array.isArray(raw) ? raw[0] : raw;
		if (key === undefined) {
			if (required.has(route.template)) {
				return sendError(res, new IdempotencyError(400, "IDEMPOTENCY_KEY_REQUIRED", "This request needs an Idempotency-Key header"));
			}
			return next();
		}
		if (!isValidIdempotencyKey(key)) {
			return sendError(res, new IdempotencyError(400, "IDEMPOTENCY_KEY_INVALID", "Idempotency-Key must be 1..255 printable characters"));
		}

		// Scope: the authenticated user, or the client address for anonymous requests. A bad token, or the token of
		// a user who no longer exists, gets no slot and no replay: the gateway answers 401 right after.
		const auth = req.headers.authorization;
		let scope: string;
		if (auth) {
			const claims = verifyAccessToken(auth.replace(/^Bearer /, ""), opts.jwtSecret);
			const user = claims && opts.currentUser ? await opts.currentUser(claims).catch(() => null) : claims;
			if (!user) return next();
			scope = `u:${user.id}`;
		} else {
			scope = `a:${opts.clientAddress(req)}`;
		}
		const storeKey = `idem:${scope}:${route.key}:${crypto.createHash("sha256").update(key).digest("base64url")}`;
		const fp = fingerprint(route.key, req.body);

		// Unique per request, so releasing the slot can never delete a newer request's slot or answer.
		const slotValue = JSON.stringify({ state: "running", fp, nonce: crypto.randomUUID() } satisfies StoredAnswer & { nonce: string });
		try {
			const took = await opts.store.set(storeKey, slotValue, { ifAbsent: true, ttlMs: opts.inFlightLeaseMs });
			if (!took) {
				const existing = await opts.store.get(storeKey);
				if (existing === null) {
					// The slot vanished between the two calls (expired or released): let the client retry.
					return sendError(res, new IdempotencyError(409, "IDEMPOTENCY_KEY_IN_PROGRESS", "A request with this Idempotency-Key is in progress"));
				}
				const prev = JSON.parse(existing) as StoredAnswer;
				if (prev.fp !== fp) {
					return sendError(res, new IdempotencyError(422, "IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was used with another request"));
				}
				if (prev.state === "running") {
					return sendError(res, new IdempotencyError(409, "IDEMPOTENCY_KEY_IN_PROGRESS", "A request with this Idempotency-Key is in progress"));
				}
				res.setHeader("Idempotent-Replayed", "true");
				if (prev.contentType) res.setHeader("Content-Type", prev.contentType);
				if (prev.location) res.setHeader("Location", prev.location);
				res.writeHead(prev.status ?? 200);
				res.end(prev.body ?? "");
				return;
			}
		} catch {
			// The store is down: run the request without the layer rather than refuse it; the services' own
			// idempotency (saga keys, payment keys) still holds.
			return next();
		}

		// Renew the slot while the request runs. A renewal that finds the slot taken by another request (this
		// process was frozen past the lease) stops: the slot is not ours any more.
		const renewUntil = Date.now() + opts.inFlightMaxMs;
		const renewal = setInterval(
			() => {
				if (Date.now() >= renewUntil) return clearInterval(renewal);
				opts.store.acquireLease(storeKey, slotValue, opts.inFlightLeaseMs).then(
					held => held || clearInterval(renewal),
					() => undefined
				);
			},
			Math.max(10, Math.floor(opts.inFlightLeaseMs / 3))
		);
		renewal.unref?.();

		// Capture the answer when it is written, then store it or release the slot.
		const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
		res.end = function (this: ServerResponse, ...args: unknown[]) {
			clearInterval(renewal);
			const chunk = args[0];
			const status = res.statusCode;
			const body = typeof chunk === "string" ? chunk : Buffer.isBuffer(chunk) ? chunk.toString("utf8") : "";
			const done: StoredAnswer = {
				state: "done",
				fp,
				status,
				body,
				contentType: res.getHeader("content-type")?.toString(),
				location: res.getHeader("location")?.toString()
			};
			// Anonymous requests (sign-ups) keep only successes: a stranger's 409s under fresh keys would otherwise
			// fill the store for a day, one entry per request.
			const outcome = status < 500 && !NOT_STORED.has(status) && (scope.startsWith("u:") || status < 300);
			// Release only our own slot (compare-and-delete): a request that outlived its slot's TTL must not
			// delete the answer of the request that took the key after it.
			const write = outcome
				? opts.store.set(storeKey, JSON.stringify(done), { ttlMs: opts.ttlSec * 1000 })
				: opts.store.releaseLease(storeKey, slotValue);
			// The answer is stored before the client sees it, so an immediate replay finds it.
			write.catch(() => undefined).then(() => end(...args));
			return res;
		} as ServerResponse["end"];
		next();
	};
}
