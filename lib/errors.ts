/**
 * Platform-wide errors and the one mapping from any error to the HTTP error body of docs/API.md:
 * `{name, message, code, type, data}`, a stable UPPER_SNAKE `type`, `data` with ids and field names only, and
 * never a stack, SQL text or an internal address. Domain errors live in each service's own errors.ts.
 */
import { Errors } from "moleculer";

const { MoleculerClientError, MoleculerRetryableError } = Errors;

export class UnauthorizedError extends MoleculerClientError {
	constructor(message = "Authentication required") {
		super(message, 401, "UNAUTHORIZED");
		this.name = "UnauthorizedError";
	}
}

export class ForbiddenError extends MoleculerClientError {
	constructor(message = "Not allowed") {
		super(message, 403, "FORBIDDEN");
		this.name = "ForbiddenError";
	}
}

/** A missing resource and someone else's resource read exactly the same (docs/API.md conventions). */
export class NotFoundError extends MoleculerClientError {
	constructor(resource: string, id?: string | number) {
		super(`${resource} not found`, 404, "NOT_FOUND", id === undefined ? { resource } : { resource, id: String(id) });
		this.name = "NotFoundError";
	}
}

/** A validation failure found by a handler rather than by the params schema; same shape as the schema's. */
export class FieldValidationError extends MoleculerClientError {
	constructor(fields: { field: string; type: string; message: string }[]) {
		super("Parameters validation error!", 422, "VALIDATION_ERROR", fields);
		this.name = "ValidationError";
	}
}

/**
 * A service's database cannot be reached, refuses us, or is too busy (lock wait timeout, too many connections):
 * retryable, a 503 with Retry-After at the gateway. `reason` is a short phrase without hosts ("connection refused").
 */
export class DatabaseUnavailableError extends MoleculerRetryableError {
	constructor(reason = "unavailable") {
		super(`database unavailable: ${reason}`, 503, "SERVICE_UNAVAILABLE", { dependency: "database", reason, retryAfterSec: 2 });
		this.name = "ServiceUnavailableError";
	}
}

/** Driver and server codes of a database that is down, unreachable, refusing us or too busy to answer in time. */
const DB_UNAVAILABLE_CODES = new Set<unknown>([
	"ECONNREFUSED",
	"ECONNRESET",
	"ETIMEDOUT",
	"EPIPE",
	"EHOSTUNREACH",
	"ENETUNREACH",
	"ENOTFOUND",
	"EAI_AGAIN",
	"PROTOCOL_CONNECTION_LOST",
	"PROTOCOL_SEQUENCE_TIMEOUT",
	"ER_CON_COUNT_ERROR",
	"ER_TOO_MANY_USER_CONNECTIONS",
	"ER_SERVER_SHUTDOWN",
	"ER_CONNECTION_KILLED",
	"ER_LOCK_WAIT_TIMEOUT",
	"ER_LOCK_DEADLOCK",
	"ER_ACCESS_DENIED_ERROR",
	"ER_DBACCESS_DENIED_ERROR",
	"SQLITE_BUSY",
	1040, // too many connections
	1045, // access denied for user
	1053, // server shutdown in progress
	1205, // lock wait timeout
	1213, // deadlock (after the transaction's own retries)
	1927 // connection killed
]);
const DB_UNAVAILABLE_NAMES = /^Sequelize(Connection\w*|ConnectionAcquireTimeout|HostNotFound|HostNotReachable|InvalidConnection|AccessDenied|Timeout)Error$/;

/**
 * Whether an error says the database is unavailable rather than that the request is wrong: Sequelize's connection
 * errors by name (which survives the transporter), or the driver's code on the error or the one it wraps.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
	if (!err || typeof err !== "object") return false;
	const e = err as { name?: unknown; code?: unknown; errno?: unknown; parent?: unknown; original?: unknown };
	if (typeof e.name === "string" && DB_UNAVAILABLE_NAMES.test(e.name)) return true;
	return ([e, e.parent, e.original] as { code?: unknown; errno?: unknown }[]).some(
		inner => !!inner && typeof inner === "object" && (DB_UNAVAILABLE_CODES.has(inner.code) || DB_UNAVAILABLE_CODES.has(inner.errno))
	);
}

export interface HttpErrorBody {
	name: string;
	message: string;
	code: number;
	type: string;
	data?: unknown;
}

interface ErrorLike {
	name?: string;
	message?: string;
	code?: unknown;
	status?: unknown;
	type?: unknown;
	data?: unknown;
	retryable?: boolean;
}

/**
 * Error types raised by the gateway library (moleculer-web) and the broker, mapped to our stable types and to
 * messages that name no action or node.
 */
const LIBRARY_TYPES: Record<string, { code: number; type: string; message: string }> = {
	NO_TOKEN: { code: 401, type: "UNAUTHORIZED", message: "Authentication required" },
	INVALID_TOKEN: { code: 401, type: "UNAUTHORIZED", message: "Invalid or expired token" },
	ERR_NO_TOKEN: { code: 401, type: "UNAUTHORIZED", message: "Authentication required" },
	ERR_INVALID_TOKEN: { code: 401, type: "UNAUTHORIZED", message: "Invalid or expired token" },
	SERVICE_NOT_FOUND: { code: 404, type: "NOT_FOUND", message: "Not found" },
	SERVICE_NOT_AVAILABLE: { code: 503, type: "SERVICE_UNAVAILABLE", message: "Service temporarily unavailable" },
	SERVICE_UNAVAILABLE: { code: 503, type: "SERVICE_UNAVAILABLE", message: "Service temporarily unavailable" },
	REQUEST_TIMEOUT: { code: 504, type: "TIMEOUT", message: "The request timed out" },
	CIRCUIT_BREAKER_OPEN: { code: 503, type: "SERVICE_UNAVAILABLE", message: "Service temporarily unavailable" },
	QUEUE_FULL: { code: 503, type: "SERVICE_UNAVAILABLE", message: "Service busy, try again" },
	UNSUPPORTED_MEDIA_TYPE: { code: 415, type: "UNSUPPORTED_MEDIA_TYPE", message: "Unsupported media type" }
};

/** body-parser's error `type`s (it sets `status` and `type` on the errors it throws). */
const BODY_PARSER_TYPES: Record<string, { code: number; type: string; message: string }> = {
	"entity.parse.failed": { code: 400, type: "INVALID_JSON", message: "Malformed JSON body" },
	"entity.too.large": { code: 413, type: "PAYLOAD_TOO_LARGE", message: "Request body too large" },
	"encoding.unsupported": { code: 415, type: "UNSUPPORTED_MEDIA_TYPE", message: "Unsupported content encoding" },
	"charset.unsupported": { code: 415, type: "UNSUPPORTED_MEDIA_TYPE", message: "Unsupported charset" },
	"request.aborted": { code: 400, type: "BAD_REQUEST", message: "Request aborted" },
	"request.size.invalid": { code: 400, type: "BAD_REQUEST", message: "Request size did not match content length" }
};

const STABLE_TYPE = /^[A-Z][A-Z0-9_]*$/;

/**
 * Maps any error to the status and body the gateway sends. Client errors (4xx) of our own keep their message,
 * type and data; everything else becomes a generic body, because a server-side message may carry SQL, a host or
 * a stack.
 */
export function toHttpError(err: unknown): { status: number; body: HttpErrorBody } {
	const e = (err ?? {}) as ErrorLike;
	const type = typeof e.type === "string" ? e.type : undefined;
	const code = typeof e.code === "number" ? e.code : typeof e.status === "number" ? e.status : 500;

	if (type && BODY_PARSER_TYPES[type]) {
		const m = BODY_PARSER_TYPES[type];
		return { status: m.code, body: { name: "BadRequestError", message: m.message, code: m.code, type: m.type } };
	}
	if (type === "VALIDATION_ERROR") {
		return {
			status: 422,
			body: {
				name: "ValidationError",
				message: "Parameters validation error!",
				code: 422,
				type: "VALIDATION_ERROR",
				data: sanitizeValidationData(e.data)
			}
		};
	}
	// moleculer-web's RateLimitExceeded carries no type, only its status (ours, such as LOGIN_THROTTLED, keep theirs).
	if (code === 429 && !(type && STABLE_TYPE.test(type))) {
		return { status: 429, body: { name: "RateLimitExceeded", message: "Too many requests", code: 429, type: "RATE_LIMITED" } };
	}
	if (type && LIBRARY_TYPES[type]) {
		const m = LIBRARY_TYPES[type];
		const name = m.code >= 500 ? "ServiceUnavailableError" : (e.name ?? "Error");
		return { status: m.code, body: { name, message: m.message, code: m.code, type: m.type } };
	}
	// A compressed body that does not inflate: moleculer-web rewraps the body parser's error with zlib's own code
	// (Z_DATA_ERROR, Z_BUF_ERROR, brotli's ERR__ERROR_FORMAT_...) in place of its status 400.
	if (typeof e.code === "string" && /^(Z_[A-Z_]+|ERR__ERROR_[A-Z0-9_]+|ERR_BROTLI_[A-Z_]+)$/.test(e.code)) {
		return { status: 400, body: { name: "BadRequestError", message: "The request body could not be decompressed", code: 400, type: "BAD_REQUEST" } };
	}
	if (code >= 400 && code < 500 && type && STABLE_TYPE.test(type)) {
		const body: HttpErrorBody = { name: e.name ?? "Error", message: e.message ?? type, code, type };
		if (e.data !== undefined && e.data !== null) body.data = e.data;
		return { status: code, body };
	}
	if (code === 503 || e.retryable || isDatabaseUnavailable(err)) {
		return {
			status: 503,
			body: { name: "ServiceUnavailableError", message: "Service temporarily unavailable", code: 503, type: "SERVICE_UNAVAILABLE" }
		};
	}
	return {
		status: 500,
		body: { name: "InternalServerError", message: "Internal server error", code: 500, type: "INTERNAL_ERROR" }
	};
}

/** Keeps the field name, the failed rule and the message; drops `actual` (it may hold the submitted password). */
export function sanitizeValidationData(data: unknown): { field: string; type: string; message: string }[] {
	if (!Array.isArray(data)) return [];
	return data.map(d => {
		const item = (d ?? {}) as Record<string, unknown>;
		return {
			field: String(item.field ?? ""),
			type: String(item.type ?? "invalid"),
			message: String(item.message ?? "invalid value")
		};
	});
}

/** Moleculer's retry check: errors do not keep their class across the transporter, so read the flag. */
export function isRetryable(err: unknown): boolean {
	return !!(err && typeof err === "object" && ((err as ErrorLike).retryable === true || isDatabaseUnavailable(err)));
}

/** Circuit-breaker check: only server-side failures (5xx, timeouts, unknown errors) count against an action. */
export function isServerFault(err: unknown): boolean {
	if (!err || typeof err !== "object") return true;
	const code = (err as ErrorLike).code;
	return !(typeof code === "number" && code >= 400 && code < 500);
}
