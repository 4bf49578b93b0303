/**
 * The shape of a request as every service sees it, written once: what the gateway and the saga engine put in
 * `ctx.meta`, the signed-in-user check, the saga a participant step runs under, and paging (its params schema,
 * which is also its type, and the window it selects).
 */
import { Errors, type Context } from "moleculer";
import type { AuthUser } from "./auth";
import { UnauthorizedError } from "./errors";

/** `ctx.meta` of a request: set by the gateway (user, headers), the saga engine (sagaId) or a handler ($...). */
export interface RequestMeta {
	/** The signed-in caller; absent for calls from the REPL or other services. */
	user?: AuthUser | null;
	/** The client's address (gateway). */
	clientIp?: string;
	/** The `Idempotency-Key` header, or the saga engine's `<sagaId>:<step>` key. */
	idempotencyKey?: string;
	/** The `X-Queue-Token` header. */
	queueToken?: string;
	/** The saga a participant step runs under (saga engine). */
	sagaId?: string;
	/** The HTTP status of a non-200 answer, and the `Location` of a 201. */
	$statusCode?: number;
	$location?: string;
}

export type RequestContext<P = unknown> = Context<P, RequestMeta>;

/** The signed-in caller, or 401 UNAUTHORIZED. */
export function signedInUser(ctx: Context<unknown, RequestMeta>): AuthUser {
	const user = ctx.meta.user;
	if (!user) throw new UnauthorizedError();
	return user;
}

/** The saga a participant step runs under, or 400 SAGA_REQUIRED (the step was called outside a saga). */
export function sagaIdOf(ctx: Context<unknown, RequestMeta>): string {
	const id = ctx.meta.sagaId;
	if (!id) throw new Errors.MoleculerClientError("This step runs inside a saga", 400, "SAGA_REQUIRED");
	return id;
}

export const DEFAULT_PAGE_SIZE = 20;

/** Params of a paged list (`?page=&pageSize=`), both optional. */
export const pageParams = {
	page: { type: "number", integer: true, min: 1, max: 1_000_000, convert: true, optional: true },
	pageSize: { type: "number", integer: true, min: 1, max: 100, convert: true, optional: true }
} as const;

export interface PageParams {
	page?: number;
	pageSize?: number;
}

export interface PageWindow {
	page: number;
	pageSize: number;
	offset: number;
	limit: number;
}

/** The rows a page covers, with the defaults filled in. */
export function pageWindow(p: PageParams): PageWindow {
	const page = p.page ?? 1;
	const pageSize = p.pageSize ?? DEFAULT_PAGE_SIZE;
	return { page, pageSize, offset: (page - 1) * pageSize, limit: pageSize };
}
