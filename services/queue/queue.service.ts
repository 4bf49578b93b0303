/**
 * Queue context: the waiting room in front of a concert's flash sale (DESIGN.md section 4 step 1, API.md
 * "Waiting room"). At most `QUEUE_MAX_ACTIVE` users per concert are ACTIVE (may hold seats and pay) at a time;
 * everyone else waits in strict arrival order and is admitted when a slot frees: on leave, on the payment saga's
 * `expire` step, or when an active token lapses after `QUEUE_ACTIVE_TTL_SEC` (a sweep every second catches
 * those). All state lives in the coordination store (Redis in a cluster) and every change is one atomic script,
 * so any number of queue nodes can serve the same concert without exceeding the cap or admitting anyone twice.
 */
import type { Context, ServiceSchema } from "moleculer";
import type { AuthUser } from "../../lib/auth";
import { NotFoundError, UnauthorizedError } from "../../lib/errors";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import { QueueDependencyUnavailableError, QueueTokenNotActiveError } from "./errors";
import {
	CONCERT_ID_PATTERN,
	isActiveFor,
	newTokenId,
	parseToken,
	toTokenView,
	type TokenView
} from "./queue.domain";
import { createQueueStore, type QueueLimits, type QueueStats, type QueueStore } from "./queue.store";

interface Settings {
	/** How often each node expires lapsed active tokens and promotes (ms). */
	sweepIntervalMs: number;
	/** How long a concert id confirmed by `concert.get` is trusted without asking again (ms). */
	concertCacheMs: number;
	/** Bound on the concert-id cache per node. */
	concertCacheMax: number;
}

interface Meta {
	user?: AuthUser | null;
	$statusCode?: number;
	$location?: string;
}

interface Vars {
	queueStore: QueueStore;
	/** concertId -> epoch ms until which the concert is known to exist. */
	knownConcerts: Map<string, number>;
	sweepTimer?: NodeJS.Timeout;
	sweeping?: Promise<void>;
	lastSweepError?: number;
}

interface Methods {
	limits(): QueueLimits;
	view(concertId: string, entry: Parameters<typeof toTokenView>[1]): TokenView;
	caller(ctx: Context<unknown, Meta>): AuthUser;
	ensureConcert(ctx: Context, concertId: string): Promise<void>;
	sweepOnce(): Promise<void>;
}

const concertIdParam = { type: "string", min: 1, max: 64, pattern: CONCERT_ID_PATTERN } as const;
// Tokens are parsed by the handler: a malformed one reads exactly like an unknown one (404 / 403), never a 422
// that would tell a prober which shapes are valid.
const tokenParam = { type: "string", min: 1, max: 200 } as const;

const QueueService: ServiceSchema<Settings, Methods, PlatformVars & Vars> = {
	name: "queue",

	mixins: [PlatformMixin],

	settings: {
		sweepIntervalMs: 1000,
		concertCacheMs: 30_000,
		concertCacheMax: 10_000
	},

	actions: {
		/**
		 * POST /api/queue/tokens: enter the waiting room of a concert. 201 with a new token (ACTIVE at once when a
		 * slot is free, else WAITING with its position); 200 with the same token when the user already holds one.
		 */
		enter: {
			visibility: "published",
			auth: "user",
			params: { concertId: concertIdParam, $$strict: "remove" },
			async handler(ctx: Context<{ concertId: string }, Meta>) {
				const user = this.caller(ctx);
				const { concertId } = ctx.params;
				await this.ensureConcert(ctx, concertId);
				const entry = await this.queueStore.enter(concertId, user.id, newTokenId(), this.limits());
				const view = this.view(concertId, entry);
				if (entry.created) {
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/api/queue/tokens/${encodeURIComponent(view.token)}`;
				}
				return view;
			}
		},

		/** GET /api/queue/tokens/:token: status, position, ETA, expiry. One store round trip; foreign reads 404. */
		status: {
			visibility: "published",
			auth: "user",
			params: { token: tokenParam, $$strict: "remove" },
			async handler(ctx: Context<{ token: string }, Meta>) {
				const user = this.caller(ctx);
				const parsed = parseToken(ctx.params.token);
				const entry = parsed ? await this.queueStore.read(parsed.concertId, parsed.tokenId) : null;
				if (!parsed || !entry || entry.userId !== user.id) throw new NotFoundError("queue token");
				return this.view(parsed.concertId, entry);
			}
		},

		/** DELETE /api/queue/tokens/:token: leave the line or give the active slot back (the next in line moves up). */
		leave: {
			visibility: "published",
			auth: "user",
			params: { token: tokenParam, $$strict: "remove" },
			async handler(ctx: Context<{ token: string }, Meta>) {
				const user = this.caller(ctx);
				const parsed = parseToken(ctx.params.token);
				const was = parsed ? await this.queueStore.leave(parsed.concertId, parsed.tokenId, user.id, this.limits()) : null;
				if (!was) throw new NotFoundError("queue token");
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		/** GET /api/admin/queues/:concertId (and the REPL): the line, the active set and the admission rate. */
		stats: {
			visibility: "published",
			auth: "admin",
			params: { concertId: concertIdParam, $$strict: "remove" },
			async handler(ctx: Context<{ concertId: string }>) {
				const s: QueueStats = await this.queueStore.stats(ctx.params.concertId);
				return {
					concertId: ctx.params.concertId,
					waiting: s.waiting,
					active: s.active,
					maxActive: this.config.queueMaxActive,
					admittedPerMinute: s.admittedLastMinute,
					admittedTotal: s.admittedTotal
				};
			}
		},

		/**
		 * For queue-gated routes: is `token` an ACTIVE token of `userId` for `concertId`? Anything else (unknown,
		 * waiting, lapsed, foreign, other concert) is 403 QUEUE_TOKEN_NOT_ACTIVE.
		 */
		validate: {
			visibility: "public",
			params: {
				token: tokenParam,
				userId: { type: "string", min: 1, max: 64 },
				concertId: { type: "string", min: 1, max: 64 }
			},
			async handler(ctx: Context<{ token: string; userId: string; concertId: string }>) {
				const { token, userId, concertId } = ctx.params;
				const parsed = parseToken(token);
				const entry = parsed ? await this.queueStore.read(parsed.concertId, parsed.tokenId) : null;
				if (!parsed || !isActiveFor(entry, parsed, { userId, concertId })) throw new QueueTokenNotActiveError(concertId);
				return { ok: true, token, concertId, userId, expiresAt: new Date(entry.expiresAt!).toISOString() };
			}
		},

		/**
		 * Saga step 4 (seed 000, 3.1): the purchase is done, free the slot for the next in line. Idempotent: a token
		 * that is already gone (expired, left, or a replay of this step) answers `{expired: false}`.
		 */
		expire: {
			visibility: "public",
			params: { token: tokenParam },
			async handler(ctx: Context<{ token: string }>) {
				const parsed = parseToken(ctx.params.token);
				const was = parsed ? await this.queueStore.leave(parsed.concertId, parsed.tokenId, null, this.limits()) : null;
				return { expired: was !== null };
			}
		},

		/** Health probe for the gateway's /api/health (the queue's "database" is the coordination store). */
		health: {
			visibility: "public",
			async handler() {
				const started = Date.now();
				await this.store.ping();
				return { ok: true, store: this.store.kind, latencyMs: Date.now() - started };
			}
		}
	},

	methods: {
		limits() {
			return { maxActive: this.config.queueMaxActive, activeTtlMs: this.config.queueActiveTtlSec * 1000 };
		},

		view(concertId, entry) {
			return toTokenView(concertId, entry, {
				maxActive: this.config.queueMaxActive,
				activeTtlSec: this.config.queueActiveTtlSec
			});
		},

		caller(ctx) {
			const user = ctx.meta.user;
			if (!user) throw new UnauthorizedError();
			return user;
		},

		/**
		 * 404 for an unknown concert. Known ids are cached per node for a short while, so the hot path of a flash
		 * sale (thousands entering one concert) costs one store round trip, not a catalog call each.
		 */
		async ensureConcert(ctx, concertId) {
			const now = Date.now();
			const until = this.knownConcerts.get(concertId);
			if (until !== undefined && until > now) return;
			try {
				await ctx.call("concert.get", { id: concertId });
			} catch (err) {
				const e = err as { type?: string; code?: number };
				if (e.type === "SERVICE_NOT_FOUND" || e.type === "SERVICE_NOT_AVAILABLE") throw new QueueDependencyUnavailableError();
				// The catalog's 404, or a 422 because the id is not even a valid concert id: no such concert.
				if (e.code === 404 || e.type === "VALIDATION_ERROR") throw new NotFoundError("concert", concertId);
				throw err;
			}
			if (this.knownConcerts.size >= this.settings.concertCacheMax) this.knownConcerts.clear();
			this.knownConcerts.set(concertId, now + this.settings.concertCacheMs);
		},

		/** One sweep at a time per node; several nodes sweeping at once is harmless (each step is atomic). */
		async sweepOnce() {
			if (this.sweeping) return this.sweeping;
			this.sweeping = this.queueStore
				.sweep(this.limits())
				.then(r => {
					if (r.expired > 0 || r.admitted > 0) this.logger.debug(`queue sweep: ${r.expired} expired, ${r.admitted} admitted`);
				})
				.catch(err => {
					// At most one warning a minute while the store is down; the health check shows the outage.
					const now = Date.now();
					if (!this.lastSweepError || now - this.lastSweepError > 60_000) {
						this.lastSweepError = now;
						this.logger.warn(`queue sweep failed: ${(err as Error).message}`);
					}
				})
				.finally(() => {
					this.sweeping = undefined;
				});
			return this.sweeping;
		}
	},

	created() {
		this.knownConcerts = new Map();
	},

	async started() {
		this.queueStore = createQueueStore(this.store);
		this.sweepTimer = setInterval(() => void this.sweepOnce(), this.settings.sweepIntervalMs);
		this.sweepTimer.unref();
	},

	async stopped() {
		if (this.sweepTimer) clearInterval(this.sweepTimer);
		this.sweepTimer = undefined;
		// The platform closes the store after the services stop: let a sweep in flight finish first.
		await this.sweeping;
	}
};

export default QueueService;
