/**
 * Queue context: the waiting room in front of a concert's flash sale (docs/DESIGN.md section 4 step 1, docs/API.md
 * "Waiting room"). At most `QUEUE_MAX_ACTIVE` users per concert are ACTIVE (may hold seats and pay) at a time;
 * everyone else waits in strict arrival order and is admitted when a slot frees: on leave, on the payment saga's
 * `expire` step, or when an active token lapses after `QUEUE_ACTIVE_TTL_SEC` (a sweep every second catches
 * those). All state lives in the coordination store (Redis in a cluster) and every change is one atomic script,
 * so any number of queue nodes can serve the same concert without exceeding the cap or admitting anyone twice.
 *
 * The line follows the concert's sales calendar and knows who is still there:
 * - before the sale opens, entries join a pre-queue that is admitted in a random order at the opening;
 * - a WAITING token not polled for `QUEUE_WAITING_TTL_SEC` leaves the line; a token promoted from the line that is
 *   neither polled nor presented within `QUEUE_ADMIT_GRACE_SEC` gives its slot back;
 * - every few seconds each node asks the catalog how the sale of each concert with a line stands: a concert with
 *   nothing left to sell (no seat available, none held) closes its line SOLD_OUT, one whose sales ended closes it
 *   CLOSED; a closed line answers that to every poll, refuses entries, and its memory is freed. A SOLD_OUT line whose
 *   seats come back (a cancellation) reopens, and those still polling join it again.
 */
import { LRUCache } from "lru-cache";
import type { Context, ServiceSchema } from "moleculer";
import { callerOf } from "../../lib/actions";
import { NotFoundError } from "../../lib/errors";
import { signedInUser, type RequestMeta } from "../../lib/request";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import { QueueDependencyUnavailableError, QueueLineClosedError, QueueTokenNotActiveError } from "./errors";
import { CONCERT_ID_PATTERN, endedTokenView, isActiveFor, newTokenId, parseToken, toTokenView, type TokenView } from "./queue.domain";
import type { ConcertApi, SaleStatus } from "../concert/concert.api";
import type { StepParams } from "../../sagas/participants.api";
import type { QueueApi } from "./queue.api";
import { createQueueStore, type QueueLimits, type QueueStats, type QueueStore } from "./queue.store";

/** What the catalog says about a concert's sale (concert.saleStatus). */
type SaleInfo = Pick<SaleStatus, "state" | "opensAt" | "closesAt" | "soldOut">;

interface Settings {
	/** How often each node expires lapsed active tokens and promotes (ms). */
	sweepIntervalMs: number;
	/** How long a concert's sale status from `concert.saleStatus` is trusted without asking again (ms). */
	concertCacheMs: number;
	/** Bound on the sale-status cache per node. */
	concertCacheMax: number;
	/** How often each node checks the sale of every concert with a line (sold out, closed, seats back) (ms). */
	saleCheckIntervalMs: number;
	/** How long a closed line's marker lives without being refreshed by a check (ms). */
	closedMarkerMs: number;
}

interface Vars {
	queueStore: QueueStore;
	/** concertId -> its sale status and until when it is fresh (epoch ms). */
	knownConcerts: LRUCache<string, { sale: SaleInfo; until: number }>;
	/** concertId -> the catalog lookup in flight (one per concert and node, whatever the number of callers). */
	saleLookups: Map<string, Promise<SaleInfo>>;
	sweepTimer?: NodeJS.Timeout;
	saleTimer?: NodeJS.Timeout;
	checkingSales?: Promise<void>;
	sweeping?: Promise<void>;
	lastSweepError?: number;
}

interface Methods {
	limits(): QueueLimits;
	view(concertId: string, entry: Parameters<typeof toTokenView>[1]): TokenView;
	saleOf(ctx: Context | null, concertId: string, fresh?: boolean): Promise<SaleInfo>;
	limitsFor(sale: SaleInfo | undefined): QueueLimits;
	sweepOnce(): Promise<void>;
	checkSalesOnce(): Promise<void>;
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
		concertCacheMs: 2000,
		concertCacheMax: 10_000,
		saleCheckIntervalMs: 5000,
		closedMarkerMs: 86_400_000
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
			async handler(ctx: Context<{ concertId: string }, RequestMeta>) {
				const user = signedInUser(ctx);
				const { concertId } = ctx.params;
				const sale = await this.saleOf(ctx, concertId);
				if (sale.state === "CLOSED") throw new QueueLineClosedError(concertId, "CLOSED");
				const entry = await this.queueStore.enter(concertId, user.id, newTokenId(), this.limitsFor(sale));
				const view = this.view(concertId, entry);
				if (entry.created) {
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/api/queue/tokens/${encodeURIComponent(view.token)}`;
				}
				return view;
			}
		},

		/**
		 * GET /api/queue/tokens/:token: status, position, ETA, expiry. One store round trip; foreign reads 404. A
		 * poll keeps a waiting token in line and confirms a promoted one. A token that left answers why (EXPIRED,
		 * LEFT, COMPLETED) for an hour; a closed line answers SOLD_OUT or CLOSED; a reopened line takes those who
		 * still poll back (a new token at the end of the line).
		 */
		status: {
			visibility: "published",
			auth: "user",
			params: { token: tokenParam, $$strict: "remove" },
			async handler(ctx: Context<{ token: string }, RequestMeta>) {
				const user = signedInUser(ctx);
				const parsed = parseToken(ctx.params.token);
				if (!parsed) throw new NotFoundError("queue token");
				const found = await this.queueStore.lookup(parsed.concertId, parsed.tokenId, user.id);
				switch (found.kind) {
					case "live":
						if (found.entry.userId !== user.id) break;
						return this.view(parsed.concertId, found.entry);
					case "gone":
						if (found.userId !== user.id) break;
						return endedTokenView(parsed.concertId, parsed.tokenId, found.reason);
					case "closed":
						return endedTokenView(parsed.concertId, parsed.tokenId, found.state);
					case "rejoin": {
						// A new token at the end of the line (never the id the caller presented: that could be anyone's).
						const sale = await this.saleOf(ctx, parsed.concertId);
						if (sale.state === "CLOSED") throw new QueueLineClosedError(parsed.concertId, "CLOSED");
						const entry = await this.queueStore.enter(parsed.concertId, user.id, newTokenId(), this.limitsFor(sale));
						return this.view(parsed.concertId, entry);
					}
				}
				throw new NotFoundError("queue token");
			}
		},

		/** DELETE /api/queue/tokens/:token: leave the line or give the active slot back (the next in line moves up). */
		leave: {
			visibility: "published",
			auth: "user",
			params: { token: tokenParam, $$strict: "remove" },
			async handler(ctx: Context<{ token: string }, RequestMeta>) {
				const user = signedInUser(ctx);
				const parsed = parseToken(ctx.params.token);
				const was = parsed ? await this.queueStore.leave(parsed.concertId, parsed.tokenId, user.id, this.limits(), "LEFT") : null;
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
					state: s.state ?? "OPEN",
					waiting: s.waiting,
					active: s.active,
					maxActive: this.config.queueMaxActive,
					admittedPerMinute: s.admittedLastMinute,
					admittedTotal: s.admittedTotal
				};
			}
		},

		/** Drops every key of a concert whose last show is over (called by the ops retention job). */
		forget: {
			visibility: "public",
			params: { concertId: concertIdParam, $$strict: "remove" },
			async handler(ctx: Context<{ concertId: string }>) {
				await this.queueStore.forgetConcert(ctx.params.concertId);
				return { concertId: ctx.params.concertId, forgotten: true };
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
			async handler(ctx: Context<QueueApi["queue.validate"]["params"]>): Promise<QueueApi["queue.validate"]["result"]> {
				const { token, userId, concertId } = ctx.params;
				const parsed = parseToken(token);
				// Presenting the token is using it: a promoted token keeps its slot for the full time.
				const found = parsed ? await this.queueStore.lookup(parsed.concertId, parsed.tokenId, userId) : null;
				const entry = found?.kind === "live" ? found.entry : null;
				// A closed line is a sale that is over (or has nothing left): say so, not "your token is not active".
				if (found?.kind === "closed" && parsed?.concertId === concertId) throw new QueueLineClosedError(concertId, found.state);
				if (!parsed || !isActiveFor(entry, parsed, { userId, concertId })) {
					// The caller's own token says what it is instead (WAITING, EXPIRED, SOLD_OUT...); anyone else's says nothing.
					const own =
						found?.kind === "live" && found.entry.userId === userId
							? found.entry.status
							: found?.kind === "gone" && found.userId === userId
								? found.reason
								: found?.kind === "closed"
									? found.state
									: undefined;
					throw new QueueTokenNotActiveError(concertId, parsed?.concertId === concertId ? own : undefined);
				}
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
			async handler(ctx: Context<StepParams<"queue.expire">>) {
				const parsed = parseToken(ctx.params.token);
				const was = parsed ? await this.queueStore.leave(parsed.concertId, parsed.tokenId, null, this.limits(), "COMPLETED") : null;
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
			return this.limitsFor(undefined);
		},

		limitsFor(sale) {
			return {
				maxActive: this.config.queueMaxActive,
				activeTtlMs: this.config.queueActiveTtlSec * 1000,
				graceMs: this.config.queueAdmitGraceSec * 1000,
				waitingTtlMs: this.config.queueWaitingTtlSec * 1000,
				...(sale ? { opensAt: sale.opensAt ? Date.parse(sale.opensAt) : 0 } : {})
			};
		},

		view(concertId, entry) {
			return toTokenView(concertId, entry, {
				maxActive: this.config.queueMaxActive,
				activeTtlSec: this.config.queueActiveTtlSec
			});
		},

		/**
		 * The concert's sale status; 404 for an unknown concert. Cached per node for `concertCacheMs`, so the hot path
		 * of a flash sale (thousands entering one concert) costs one store round trip, not a catalog call each.
		 */
		async saleOf(ctx, concertId, fresh = false) {
			const now = Date.now();
			const known = this.knownConcerts.get(concertId);
			if (!fresh && known !== undefined) {
				// Fresh: the answer. Stale (up to 15 x the freshness): still the answer, refreshed in the background, so a
				// flash sale's thousands of entries a second never wait for, nor pile onto, the catalog.
				if (known.until > now) return known.sale;
				if (known.until + 14 * this.settings.concertCacheMs > now) {
					void this.saleOf(null, concertId, true).catch(() => undefined);
					return known.sale;
				}
			}
			// One lookup per concert at a time on this node: concurrent callers share it.
			const inFlight = this.saleLookups.get(concertId);
			if (inFlight) return inFlight;
			const lookup = (async () => {
				let sale: SaleInfo;
				try {
					sale = await callerOf<ConcertApi>(ctx ?? this.broker)("concert.saleStatus", { id: concertId });
				} catch (err) {
					const e = err as { type?: string; code?: number };
					if (e.type === "SERVICE_NOT_FOUND" || e.type === "SERVICE_NOT_AVAILABLE") throw new QueueDependencyUnavailableError();
					// The catalog's 404, or a 422 because the id is not even a valid concert id: no such concert.
					if (e.code === 404 || e.type === "VALIDATION_ERROR") throw new NotFoundError("concert", concertId);
					throw err;
				}
				this.knownConcerts.set(concertId, { sale, until: Date.now() + this.settings.concertCacheMs });
				return sale;
			})().finally(() => this.saleLookups.delete(concertId));
			this.saleLookups.set(concertId, lookup);
			return lookup;
		},

		/**
		 * Each concert with a line, or with a line closed SOLD_OUT: closed SOLD_OUT when nothing is left to sell,
		 * CLOSED when its sales ended, reopened when a sold-out concert has seats again. Idempotent, so several nodes
		 * doing it at once agree.
		 */
		async checkSalesOnce() {
			if (this.checkingSales) return this.checkingSales;
			this.checkingSales = (async () => {
				const { live, soldOut } = await this.queueStore.concerts();
				const wasSoldOut = new Set(soldOut);
				for (const concertId of new Set([...live, ...soldOut])) {
					try {
						const sale = await this.saleOf(null, concertId, true);
						if (sale.state === "CLOSED") await this.queueStore.close(concertId, "CLOSED", this.settings.closedMarkerMs);
						else if (sale.soldOut && sale.state === "OPEN") await this.queueStore.close(concertId, "SOLD_OUT", this.settings.closedMarkerMs);
						else if (wasSoldOut.has(concertId)) {
							await this.queueStore.reopen(concertId);
							this.logger.info(`queue: seats came back for concert ${concertId}; its line reopens`);
						}
					} catch (err) {
						if ((err as { code?: number }).code === 404) await this.queueStore.close(concertId, "CLOSED", this.settings.closedMarkerMs);
						else this.logger.debug(`queue: sale check of ${concertId} failed: ${(err as Error).message}`);
					}
				}
			})()
				.catch(err => this.logger.debug(`queue: sale check failed: ${(err as Error).message}`))
				.finally(() => {
					this.checkingSales = undefined;
				});
			return this.checkingSales;
		},

		/** One sweep at a time per node; several nodes sweeping at once is harmless (each step is atomic). */
		async sweepOnce() {
			if (this.sweeping) return this.sweeping;
			// A concert whose sale status this node knows passes its opening time along (an admin may have moved it).
			const opensAt = (concertId: string) => {
				const known = this.knownConcerts.get(concertId);
				return known ? (known.sale.opensAt ? Date.parse(known.sale.opensAt) : 0) : undefined;
			};
			this.sweeping = this.queueStore
				.sweep(this.limits(), opensAt)
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
		this.knownConcerts = new LRUCache({ max: this.settings.concertCacheMax });
		this.saleLookups = new Map();
	},

	async started() {
		this.queueStore = createQueueStore(this.store);
		this.sweepTimer = setInterval(() => void this.sweepOnce(), this.settings.sweepIntervalMs);
		this.sweepTimer.unref();
		this.saleTimer = setInterval(() => void this.checkSalesOnce(), this.settings.saleCheckIntervalMs);
		this.saleTimer.unref();
	},

	async stopped() {
		if (this.sweepTimer) clearInterval(this.sweepTimer);
		if (this.saleTimer) clearInterval(this.saleTimer);
		this.sweepTimer = undefined;
		this.saleTimer = undefined;
		await this.checkingSales;
		// The platform closes the store after the services stop: let a sweep in flight finish first.
		await this.sweeping;
	}
};

export default QueueService;
