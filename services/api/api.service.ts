/**
 * API gateway (moleculer-web): the only HTTP entry point. It authenticates bearer tokens, authorizes by the
 * `auth` declared on each action, maps every error to docs/API.md's error body, limits body size and request rate,
 * and answers /api/health. Routes are an explicit alias list with `mappingPolicy: "restrict"`: nothing that is
 * not listed here is reachable over HTTP, and only `published` actions can be listed.
 */
import type { IncomingMessage, ServerResponse } from "http";
import cluster from "cluster";
import { Errors, type Context, type ServiceBroker, type ServiceSchema } from "moleculer";
import ApiGateway, { type ApiRouteSchema, type ApiSettingsSchema } from "moleculer-web";
import { verifyAccessToken, type AuthUser } from "../../lib/auth";
import { sqlFor, sqlServerKey, type Config } from "../../lib/config";
import { ForbiddenError, NotFoundError, toHttpError, UnauthorizedError } from "../../lib/errors";
import { callerOf } from "../../lib/actions";
import type { RequestMeta } from "../../lib/request";
import type { UserApi } from "../user/user.api";
import { platformOf, type Platform } from "../../lib/platform";
import { PlatformMixin } from "../../mixins/platform.mixin";
import { CurrentUsers } from "./current-user";
import { clientAddress, StoreRateLimit } from "./rate-limit";
import { idempotencyMiddleware } from "./idempotency";
import { requestGuard } from "./request-guard";
import { SEAT_EVENTS_PATH, SeatFeed } from "./seat-feed";
import { IDEMPOTENCY_EXEMPT, IDEMPOTENCY_REQUIRED, PAGES, QUEUE_GATED, REQUIRED_SERVICES, ROUTES } from "./routes";
import { buildOpenApi, docsInitScript, docsPage, type ActionInfo } from "../../lib/openapi";
import fs from "fs";
import path from "path";

type GatewayRequest = IncomingMessage & { $action?: { auth?: "user" | "admin" | false } };
interface Check {
	ok: boolean;
	error?: string;
	latencyMs?: number;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
	return new Promise<T>((resolve, reject) => {
		const t = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
		p.then(
			v => {
				clearTimeout(t);
				resolve(v);
			},
			e => {
				clearTimeout(t);
				reject(e);
			}
		);
	});
}

export function apiGatewaySchema(platform: Platform): ServiceSchema<ApiSettingsSchema> {
	const { config } = platform;
	const jwtSecret = config.jwt.secret;
	if (!jwtSecret) throw new Error("api gateway started without a JWT secret");
	const securityHeaders = responseSecurityHeaders(config);
	// Set when the service is created (it needs the broker to call the user service).
	let currentUsers: CurrentUsers | undefined;
	/** The live seat streams of this gateway process (services/api/seat-feed.ts). */
	let seatFeed: SeatFeed | undefined;

	return {
		name: "api",
		mixins: [ApiGateway, PlatformMixin],

		settings: {
			port: config.port,
			ip: "0.0.0.0",
			// Request lines only at LOG_LEVEL=debug: a flash sale would otherwise flood the log, and below debug
			// moleculer-web would still format (and colour) each line only to drop it. Params and bodies are never
			// logged (they carry passwords and tokens).
			logRequest: ["debug", "trace"].includes(config.logLevel) ? "debug" : null,
			logResponse: ["debug", "trace"].includes(config.logLevel) ? "debug" : null,
			logRequestParams: null,
			logResponseData: null,
			log4XXResponses: false,

			cors: {
				origin: config.http.corsOrigins,
				methods: ["GET", "POST", "DELETE", "OPTIONS"],
				allowedHeaders: ["Content-Type", "Authorization", "Idempotency-Key", "X-Queue-Token"],
				exposedHeaders: ["Idempotent-Replayed", "X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"],
				credentials: false,
				maxAge: 600
			},

			// Two routes share /api: reads may be retried on another replica (a timed-out GET is safe to repeat),
			// writes never are from here (their idempotency is the services' and the Idempotency-Key's business).
			// The request guard comes first on both: bounded, clean input before anything reads it.
			routes: [
				apiRoute(config, "api-read", readAliases(), { timeout: READ_TIMEOUT_MS, retries: 2 }, [requestGuard()]),
				apiRoute(config, "api-write", writeAliases(), { retries: 0 }, [
					requestGuard(),
					idempotencyMiddleware({
						// A getter: the store opens on first use, not when the schema is built.
						get store() {
							return platform.store;
						},
						jwtSecret,
						ttlSec: config.idempotencyTtlSec,
						// A dead worker's slot is free within 5 s; a live one's is renewed for as long as a call may take.
						inFlightLeaseMs: IDEMPOTENCY_LEASE_MS,
						inFlightMaxMs: Math.max(60_000, 3 * config.requestTimeoutMs),
						required: IDEMPOTENCY_REQUIRED,
						exempt: IDEMPOTENCY_EXEMPT,
						clientAddress: req => clientAddress(req, config.http.trustProxy),
						// A stored answer goes only to a user who still exists (a deleted user's token gets the 401).
						currentUser: claims => currentUsers!.resolve(claims)
					})
				]),
				// The pages outside /api (the booking page at /, the operator console at /admin): last, so /api is matched first.
				{ ...apiRoute(config, "pages", PAGES, { timeout: READ_TIMEOUT_MS, retries: 2 }, [requestGuard()]), path: "/" }
			],

			onError(this: { logger: { error(...a: unknown[]): void; warn(...a: unknown[]): void } }, req: IncomingMessage, res: ServerResponse, err: unknown) {
				const { status, body } = toHttpError(notRegisteredYet(err) ? new Errors.ServiceNotAvailableError({ action: "?" }) : err);
				// A 503 is a dependency that is down (a database outage makes thousands): one line each, no stack.
				if (status === 503) this.logger.warn(`${req.method} ${req.url}: 503 (${(err as Error)?.message ?? "unavailable"})`);
				else if (status >= 500) this.logger.error(`${req.method} ${req.url} failed:`, err);
				res.setHeader("Content-Type", "application/json; charset=utf-8");
				if (status === 429) res.setHeader("Retry-After", String(retryAfterSec(err, 60)));
				// A dependency that is down (database, store, a service without replicas): worth a retry shortly.
				if (status === 503) res.setHeader("Retry-After", String(retryAfterSec(err, 2)));
				if (status === 401) res.setHeader("WWW-Authenticate", 'Bearer realm="api"');
				res.writeHead(status);
				res.end(JSON.stringify(body));
			}
		},

		actions: {
			// moleculer-web's HTTP entry action must never be retried by the broker's retry policy: a retry would
			// replay the HTTP handling on a request whose body was already consumed. Nor does it get a bulkhead:
			// every HTTP request is one `rest` call, so one FIFO queue of 64 would put every route behind the
			// slowest (a burst of 150 logins waiting for the password-hash gate held catalog reads for 3 s). The
			// actions it calls have their own bulkheads, per action.
			rest: { retryPolicy: { enabled: false }, bulkhead: { enabled: false } },

			// moleculer-web's management actions: callable from this service only, never from another node (over
			// NATS, addRoute once opened saga.list and concert.create to anonymous HTTP users, removeRoute took
			// every POST route down). The routes are the ones declared here, nothing else.
			addRoute: { visibility: "private" },
			removeRoute: { visibility: "private" },
			listAliases: { visibility: "private" },

			/**
			 * GET /api/health: 200 when every dependency answers, 503 otherwise. Checks the transporter (cluster
			 * mode), the coordination store, and each required service's own database through its `health` action.
			 * A failed check says which dependency is missing ("database: connection refused", "not connected to
			 * NATS", "service unavailable"); when a service is missing or its database fails, the gateway also
			 * asks that service's database server itself (`checks.database`, or `checks["database:payment"]` for a
			 * service on a server of its own, DATABASE_URL_PAYMENT), since a node that cannot reach it never
			 * announces its services. `node` is the gateway node that answered.
			 */
			health: {
				visibility: "published",
				auth: false,
				async handler(this: { broker: ServiceBroker }, ctx: Context<unknown, RequestMeta>) {
					const checks: Record<string, Check> = {};
					const timed = async (name: string, fn: () => Promise<unknown>) => {
						const started = Date.now();
						try {
							await withTimeout(fn(), 2000, name);
							checks[name] = { ok: true, latencyMs: Date.now() - started };
						} catch (err) {
							checks[name] = { ok: false, error: healthError(err) };
						}
					};
					const platform = platformOf(this.broker);
					await Promise.all([
						platform.config.transporter
							? timed("transporter", async () => {
									if (!this.broker.transit?.connected) throw new Error("not connected to NATS");
								})
							: Promise.resolve(),
						timed("store", () => platform.store.ping()),
						...REQUIRED_SERVICES.map(svc => timed(`db:${svc}`, () => ctx.call(`${svc}.health`, {}, { timeout: 2000, retries: 0 })))
					]);
					const dbFailed = REQUIRED_SERVICES.filter(svc => !checks[`db:${svc}`].ok);
					if (dbFailed.length > 0 && platform.config.sql.dialect === "mysql") {
						// Loaded only here: the gateway carries no database driver until a check needs one.
						const { probeDatabaseServer } = await import("../../lib/db");
						// The server of each failing service, probed once each: DATABASE_URL's answers as
						// `checks.database`, a service's own (DATABASE_URL_PAYMENT) as `checks["database:payment"]`.
						const probes = new Map<string, Promise<string | undefined>>();
						await Promise.all(
							dbFailed.map(async svc => {
								const sql = sqlFor(platform.config, svc);
								const key = sqlServerKey(sql);
								if (!probes.has(key)) probes.set(key, probeDatabaseServer(sql));
								const reason = await probes.get(key);
								checks[sql === platform.config.sql ? "database" : `database:${svc}`] = reason ? { ok: false, error: reason } : { ok: true };
							})
						);
					}
					const ok = Object.values(checks).every(c => c.ok);
					if (!ok) ctx.meta.$statusCode = 503;
					return { status: ok ? "ok" : "degraded", mode: platform.config.mode, node: this.broker.nodeID, checks };
				}
			},

			/** GET /api/openapi.json: the OpenAPI 3 document, generated from the route table and the actions' params. */
			openapi: {
				visibility: "published",
				auth: false,
				params: { $$strict: "remove" },
				handler(this: { broker: ServiceBroker }) {
					const actions = new Map<string, ActionInfo>();
					const list = this.broker.registry.getActionList({ skipInternal: true }) as { name: string; action?: ActionInfo }[];
					for (const a of list) if (a.action) actions.set(a.name, a.action);
					return buildOpenApi({
						routes: ROUTES,
						actions,
						idempotencyRequired: IDEMPOTENCY_REQUIRED,
						idempotencyExempt: IDEMPOTENCY_EXEMPT,
						queueGated: QUEUE_GATED
					});
				}
			},

			/** GET /api/docs: a browsable page of the document (swagger-ui, served from here, no CDN). */
			docs: {
				visibility: "published",
				auth: false,
				params: { $$strict: "remove" },
				handler(ctx: Context<unknown, RequestMeta & { $responseType?: string; $responseHeaders?: Record<string, string> }>) {
					ctx.meta.$responseType = "text/html; charset=utf-8";
					// The page loads its script and styles from here only; swagger-ui sets inline styles.
					ctx.meta.$responseHeaders = { "Content-Security-Policy": DOCS_CSP };
					return docsPage();
				}
			},

			/** GET /api/docs/:file: the page's script and stylesheet. */
			docsAsset: {
				visibility: "published",
				auth: false,
				params: { file: { type: "string", min: 1, max: 40 }, $$strict: "remove" },
				handler(ctx: Context<{ file: string }, RequestMeta & { $responseType?: string }>) {
					// A Map, not an object: `toString`, `constructor` or `__proto__` are not files of the page.
					const asset = DOCS_ASSETS.get(ctx.params.file);
					if (!asset) throw new NotFoundError("file", ctx.params.file);
					ctx.meta.$responseType = asset.type;
					if (ctx.params.file === "init.js") return docsInitScript();
					const dir = swaggerUiDir();
					if (!dir) throw new NotFoundError("file", ctx.params.file);
					return fs.readFileSync(path.join(dir, ctx.params.file));
				}
			},

			/**
			 * GET /api/admin/nodes: the cluster's nodes as this gateway's registry knows them (every node announces
			 * itself and its services to all others, and heartbeats carry the CPU): id, available, hostname, CPU %,
			 * last heartbeat, the moleculer version and the services each runs. No addresses.
			 */
			nodes: {
				visibility: "published",
				auth: "admin",
				params: { $$strict: "remove" },
				handler(this: { broker: ServiceBroker }) {
					const list = this.broker.registry.getNodeList({ onlyAvailable: false, withServices: true }) as unknown as RegistryNode[];
					const nodes = list
						.map(n => ({
							id: n.id,
							available: n.available === true,
							local: n.local === true,
							hostname: typeof n.hostname === "string" ? n.hostname : null,
							cpu: typeof n.cpu === "number" ? n.cpu : null,
							lastHeartbeatAt: typeof n.lastHeartbeatTime === "number" ? new Date(n.lastHeartbeatTime).toISOString() : null,
							offlineSince: typeof n.offlineSince === "number" ? new Date(n.offlineSince).toISOString() : null,
							moleculer: n.client?.version ?? null,
							services: [...new Set((n.services ?? []).map(svc => svc.fullName ?? svc.name).filter(name => !name.startsWith("$")))].sort()
						}))
						.sort((a, b) => a.id.localeCompare(b.id));
					return { nodes, available: nodes.filter(n => n.available).length, total: nodes.length };
				}
			},

			/**
			 * GET /: the fans' booking page (services/api/app/index.html, issue 20): sign in, the concerts, the waiting
			 * room, the seat map, paying with points, the ticket and one's bookings, over the public /api routes only.
			 * Its footer links to /api/docs and /admin. GET /app/:file: its script and stylesheet.
			 */
			app: pageAction("app"),
			appAsset: pageAssetAction("app"),

			/** GET /admin: the operator console (services/api/console/); a sign-in form until an admin signs in. */
			console: pageAction("console"),
			consoleAsset: pageAssetAction("console")
		},

		/**
		 * The user lookups of the gateway (services/api/current-user.ts). One cache serves every request, so it
		 * calls through the broker, not through the context of whichever request happened to miss first.
		 */
		created(this: { broker: ServiceBroker; server?: { listen: (...a: unknown[]) => unknown } }) {
			const broker = this.broker;
			// A gateway worker (npm run cluster runs two, sharing one port through the primary) listens only once the
			// services /api/health requires are registered, or after READY_WAIT_MS: until it listens the primary hands
			// every connection to the other worker, so a replacement worker does not answer 503s for its first second.
			if (cluster.isWorker && config.transporter && this.server) {
				const server = this.server;
				const listen = server.listen.bind(server);
				server.listen = (...args: unknown[]) => {
					broker
						.waitForServices(REQUIRED_SERVICES, READY_WAIT_MS, 100)
						.catch(() =>
							broker.logger.warn(
								`Listening without every service /api/health requires (waited ${READY_WAIT_MS} ms): their routes answer 503 until they join.`
							)
						)
						.then(() => listen(...args));
					return server;
				};
			}
			currentUsers = new CurrentUsers(ids => callerOf<UserApi>(broker)("user.getMany", { ids }, { timeout: 2000 }), config.auth.cacheSec * 1000);
			seatFeed = new SeatFeed(broker);
		},

		/** Runs before moleculer-web closes the server, which would otherwise wait for every open seat stream. */
		stopped() {
			seatFeed?.close();
		},

		events: {
			/** A schedule's seats changed (the concert service, coalesced): its open streams get the new list. */
			"concert.seatsChanged": {
				params: { scheduleIds: { type: "array", items: { type: "string", max: 200 }, max: 10_000 } },
				handler(ctx: Context<{ scheduleIds: string[] }>) {
					for (const id of ctx.params.scheduleIds) seatFeed?.changed(id);
				}
			}
		},

		methods: {
			/**
			 * Every HTTP request starts here (moleculer-web's handler, wrapped): the security headers go on every
			 * answer, errors and 404s included, and a client's request id is kept only if it is short and plain.
			 */
			httpHandler(req: IncomingMessage, res: ServerResponse, next?: unknown) {
				for (const [name, value] of securityHeaders) res.setHeader(name, value);
				for (const h of ["x-request-id", "x-correlation-id"]) {
					const v = req.headers[h];
					if (v !== undefined && (typeof v !== "string" || !REQUEST_ID.test(v))) delete req.headers[h];
				}
				// A live seat map: a stream that stays open, served beside moleculer-web (one action call per request).
				const feed = SEAT_EVENTS_PATH.exec(req.url ?? "");
				if (feed && seatFeed) {
					// A refusal before the stream starts is answered as every other error of this gateway (onError).
					void seatFeed.serve(req, res, feed[1], clientAddress(req, config.http.trustProxy), err => {
						if (!res.headersSent) (this as unknown as { sendError(...a: unknown[]): void }).sendError(req, res, err);
					});
					return;
				}
				return (ApiGateway.methods!.httpHandler as (...a: unknown[]) => unknown).call(this, req, res, next);
			},

			/**
			 * moleculer-web's error path without its own log line: it logged every error whose code is not a number
			 * in 400..499 with its stack (a bad gzip body wrote 30 lines). onError logs what is really a 5xx.
			 */
			errorHandler(this: { sendError(...a: unknown[]): void }, req: IncomingMessage, res: ServerResponse, err: unknown) {
				this.sendError(req, res, err);
			},

			/**
			 * Resolves the bearer token to a user; no header means anonymous, a bad one is a 401. The token proves
			 * who signed in; the role, and whether the account still exists, come from the user service (cached
			 * for AUTH_CACHE_SEC, services/api/current-user.ts).
			 */
			async authenticate(_ctx: Context, _route: unknown, req: IncomingMessage): Promise<AuthUser | null> {
				const header = req.headers.authorization;
				if (!header) return null;
				const m = /^Bearer ([A-Za-z0-9_\-.]+)$/.exec(header);
				if (!m) throw new UnauthorizedError("Malformed Authorization header");
				const claims = verifyAccessToken(m[1], jwtSecret);
				if (!claims) throw new UnauthorizedError("Invalid or expired token");
				const user = await currentUsers!.resolve(claims);
				if (!user) throw new UnauthorizedError("Invalid or expired token");
				return user;
			},

			/** Secure by default: an action needs a user unless it says `auth: false`; `auth: "admin"` needs the role. */
			authorize(ctx: Context<unknown, RequestMeta>, _route: unknown, req: GatewayRequest) {
				const need = req.$action?.auth ?? "user";
				if (need === false) return;
				if (!ctx.meta.user) throw new UnauthorizedError();
				if (need === "admin" && ctx.meta.user.role !== "admin") throw new ForbiddenError("Admin role required");
			}
		}
	};
}

/** Files of the docs page; the swagger-ui ones come from the swagger-ui-dist package. */
const DOCS_ASSETS = new Map<string, { type: string }>([
	["swagger-ui.css", { type: "text/css; charset=utf-8" }],
	["swagger-ui-bundle.js", { type: "application/javascript; charset=utf-8" }],
	["init.js", { type: "application/javascript; charset=utf-8" }]
]);

/** The docs page may load what this gateway serves, and nothing else; no other site may frame it. */
const DOCS_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * The gateway's pages (services/api/<folder>/): index.html and a fixed list of assets each, under one CSP. They load
 * their own script and stylesheet and talk to this gateway only (fetch, and the seat map's EventSource): no inline
 * script or style, no other origin, no framing. Their data goes into the page as text (textContent), so an
 * injected value stays text. Maps, so `__proto__` is no file.
 */
const PAGE_ASSETS: Record<"app" | "console", Map<string, string>> = {
	app: new Map([
		["app.css", "text/css; charset=utf-8"],
		["app.js", "application/javascript; charset=utf-8"]
	]),
	console: new Map([
		["console.css", "text/css; charset=utf-8"],
		["console.js", "application/javascript; charset=utf-8"]
	])
};
const PAGE_CSP =
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * Where a page's files are: beside this file under ts-node, or, from the compiled dist/services/api, the same
 * folder copied there (the Docker image does) or the checkout's.
 */
function pageDir(folder: keyof typeof PAGE_ASSETS): string | undefined {
	for (const dir of [path.join(__dirname, folder), path.resolve(__dirname, "../../../services/api", folder)]) {
		if (fs.existsSync(path.join(dir, "index.html"))) return dir;
	}
	return undefined;
}

/** One file of a page, read when asked (they are small, and an edited file is served at once). */
async function readPageFile(folder: keyof typeof PAGE_ASSETS, name: string): Promise<Buffer> {
	const dir = pageDir(folder);
	if (!dir) throw new NotFoundError("file", name);
	return fs.promises.readFile(path.join(dir, name));
}

type PageMeta = RequestMeta & { $responseType?: string; $responseHeaders?: Record<string, string> };

/** The action serving a page's index.html (public: the page itself signs in through the API). */
function pageAction(folder: keyof typeof PAGE_ASSETS) {
	return {
		visibility: "published" as const,
		auth: false as const,
		params: { $$strict: "remove" },
		handler(ctx: Context<unknown, PageMeta>) {
			ctx.meta.$responseType = "text/html; charset=utf-8";
			ctx.meta.$responseHeaders = { "Content-Security-Policy": PAGE_CSP };
			return readPageFile(folder, "index.html");
		}
	};
}

/** The action serving a page's assets: its fixed list, anything else 404. */
function pageAssetAction(folder: keyof typeof PAGE_ASSETS) {
	return {
		visibility: "published" as const,
		auth: false as const,
		params: { file: { type: "string", min: 1, max: 40 }, $$strict: "remove" },
		handler(ctx: Context<{ file: string }, PageMeta>) {
			const type = PAGE_ASSETS[folder].get(ctx.params.file);
			if (!type) throw new NotFoundError("file", ctx.params.file);
			ctx.meta.$responseType = type;
			return readPageFile(folder, ctx.params.file);
		}
	};
}

/** What this gateway reads of a registry node (moleculer's Node, in part). */
interface RegistryNode {
	id: string;
	available?: boolean;
	local?: boolean;
	hostname?: unknown;
	cpu?: unknown;
	lastHeartbeatTime?: unknown;
	offlineSince?: unknown;
	client?: { version?: string };
	services?: { name: string; fullName?: string }[];
}

/** A client's X-Request-ID (or X-Correlation-ID) is kept when it looks like an id; otherwise the broker makes one. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * Headers on every answer: no MIME sniffing, no framing (clickjacking), no referrer to other sites, and a CSP that
 * lets an API answer load nothing (the docs page sets its own). HSTS only when HSTS_MAX_AGE_SEC says the gateway
 * is reached over TLS.
 */
function responseSecurityHeaders(config: Config): [string, string][] {
	const headers: [string, string][] = [
		["X-Content-Type-Options", "nosniff"],
		["X-Frame-Options", "DENY"],
		["Referrer-Policy", "no-referrer"],
		["Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"]
	];
	if (config.http.hstsMaxAgeSec > 0) headers.push(["Strict-Transport-Security", `max-age=${config.http.hstsMaxAgeSec}; includeSubDomains`]);
	return headers;
}

/** Seconds a 429 or 503 asks the client to wait: the error's own figure when it has one (login throttling), else the fallback. */
function retryAfterSec(err: unknown, fallback: number): number {
	const data = (err as { data?: { retryAfterSec?: unknown } })?.data;
	const n = typeof data?.retryAfterSec === "number" ? Math.ceil(data.retryAfterSec) : fallback;
	return Math.min(3600, Math.max(1, n));
}

function swaggerUiDir(): string | undefined {
	try {
		return path.dirname(require.resolve("swagger-ui-dist/package.json"));
	} catch {
		return undefined;
	}
}

/** How long an Idempotency-Key's in-flight slot outlives the process that runs its request (services/api/idempotency.ts). */
const IDEMPOTENCY_LEASE_MS = 5_000;

/** A GET that gets no answer within this long is retried on another replica. */
const READ_TIMEOUT_MS = 5_000;

const readAliases = () => Object.fromEntries(Object.entries(ROUTES).filter(([k]) => k.startsWith("GET ")));
const writeAliases = () => Object.fromEntries(Object.entries(ROUTES).filter(([k]) => !k.startsWith("GET ")));

/** One /api route: explicit aliases only, authentication and authorization on, body and rate limits. */
function apiRoute(
	config: Config,
	name: string,
	aliases: Record<string, string>,
	callOptions: { timeout?: number; retries: number },
	use: NonNullable<ApiRouteSchema["use"]> = []
) {
	return {
		// Routes with the same path need distinct names, or moleculer-web keeps only the last one.
		name,
		path: "/api",
		mappingPolicy: "restrict" as const,
		autoAliases: false,
		authentication: true,
		authorization: true,
		bodyParsers: { json: { strict: true, limit: config.http.bodyLimit }, urlencoded: false },
		rateLimit:
			config.http.rateLimitPerMinute > 0
				? {
						window: 60_000,
						limit: config.http.rateLimitPerMinute,
						headers: true,
						key: (req: IncomingMessage) => clientAddress(req, config.http.trustProxy),
						StoreFactory: StoreRateLimit
					}
				: undefined,
		callOptions,
		aliases,
		// Connect-style middlewares, after the body parsers and before alias resolution.
		use,
		onBeforeCall(ctx: Context<unknown, RequestMeta>, _route: unknown, req: IncomingMessage, res: ServerResponse) {
			ctx.meta.clientIp = clientAddress(req, config.http.trustProxy);
			// Request headers the services act on travel in meta (docs/STYLE.md practice 7).
			const idem = req.headers["idempotency-key"];
			if (typeof idem === "string") ctx.meta.idempotencyKey = idem;
			const queueToken = req.headers["x-queue-token"];
			if (typeof queueToken === "string") ctx.meta.queueToken = queueToken;
			res.setHeader("Cache-Control", "no-store");
		}
	};
}

/** How long a gateway worker waits for the services it needs before it listens anyway. */
const READY_WAIT_MS = 10_000;

/**
 * A service that is not registered (SERVICE_NOT_FOUND from the broker, here or on the node the call went to): a
 * node that just (re)joined has not heard of every service yet, or none of its replicas is up. Every route is an
 * explicit alias of a published action, so it is never the client's mistake: a 503 with Retry-After, not a 404.
 */
function notRegisteredYet(err: unknown): boolean {
	return (err as { type?: string } | null)?.type === "SERVICE_NOT_FOUND";
}

/** A short reason for a failed check, without hosts, ports or stack traces. */
function healthError(err: unknown): string {
	const e = err as { type?: string; message?: string; data?: { dependency?: unknown; reason?: unknown } };
	if (typeof e?.data?.dependency === "string" && typeof e.data.reason === "string") return `${e.data.dependency}: ${e.data.reason}`;
	if (e?.type === "SERVICE_NOT_FOUND" || e?.type === "SERVICE_NOT_AVAILABLE") return "service unavailable";
	if (e?.type === "REQUEST_TIMEOUT") return "timed out";
	if (/did not answer|not connected/.test(e?.message ?? "")) return e.message!;
	return "unavailable";
}

/** moleculer-runner calls this with the broker; the schema is built from the node's validated config. */
export default function (broker: ServiceBroker): ServiceSchema<ApiSettingsSchema> {
	return apiGatewaySchema(platformOf(broker));
}
