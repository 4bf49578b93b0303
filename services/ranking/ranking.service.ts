/**
 * Ranking context: concert popularity by seats sold (docs/DESIGN.md section 7; seed 000 section 3.4). Eventually
 * consistent: it follows reservation.confirmed / cancelled / expired from the durable event bus and applies each
 * one by the reservation's version (ranking.store.ts explains why duplicates and out-of-order events cannot
 * inflate or deflate a score). `rebuild` rebuilds the scores and the versions together from the reservations'
 * latest events (ranking.store.ts says how that stays right with events in flight), and the service rebuilds by
 * itself when it finds its store empty (Redis came back without its data, or a fresh install).
 */
import crypto from "crypto";
import type { Context, ServiceBroker, ServiceSchema } from "moleculer";
import { callerOf, type TypedCall } from "../../lib/actions";
import type { EventMessage } from "../../lib/events/types";
import { EventConsumerMixin } from "../../mixins/event-consumer.mixin";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import type { ConcertApi } from "../concert/concert.api";
import type { ReservationApi } from "../reservation/reservation.api";
import { RankingNotReadyError, RankingRebuildRunningError, RankingTruthUnavailableError } from "./errors";
import { MalformedEventError, RANKED_EVENTS, rankingMismatches, rankingRows, reservationState } from "./ranking.domain";
import { createRankingStore, rebuildRanking, type ConcertScore, type RankingStore, type ReservationState } from "./ranking.store";

interface RankingVars {
	ranking: RankingStore;
	titles: Map<string, { title: string | null; until: number }>;
	/** The self-rebuild check's timer, and the rebuild this node runs now (one at a time per node). */
	readyTimer?: NodeJS.Timeout;
	readyStopped?: boolean;
	rebuilding?: Promise<boolean>;
}
interface RankingMethods {
	applyReservation(event: EventMessage): Promise<void>;
	titlesOf(ctx: Context, concertIds: string[]): Promise<Map<string, string | null>>;
	truth(ctx: Context): Promise<ConcertScore[]>;
	rebuildOnce(call: Caller): Promise<boolean>;
	checkReady(): Promise<void>;
	scheduleReadyCheck(ms: number): void;
}
type Caller = TypedCall<ReservationApi>;
type This = PlatformVars &
	RankingVars &
	RankingMethods & { broker: ServiceBroker; logger: { info(...a: unknown[]): void; warn(...a: unknown[]): void; error(...a: unknown[]): void } };

/** A title is looked up at most once a minute per node; a missing concert is remembered as well. */
const TITLE_TTL_MS = 60_000;
/** Aggregates per page of the truth (each page is one answer over NATS: about 300 bytes each). */
const TRUTH_PAGE = 500;
/** The build lease: a dead builder's rebuild is taken over after this long. */
const BUILD_LEASE_MS = 30_000;
/** How often each node checks that its store still holds a ranking (and how soon after a failed rebuild). */
const READY_CHECK_MS = 5_000;
const READY_RETRY_MS = 1_000;

/** Pages of every reservation's latest ranked event, as states, from the reservation service's outbox. */
async function* truthPages(call: Caller, log: This["logger"]): AsyncIterable<ReservationState[]> {
	let after: string | undefined;
	for (;;) {
		let page: { rows: EventMessage[]; next: string | null };
		try {
			page = await call("reservation.outboxLatest", {
				aggregateType: "reservation",
				eventTypes: [...RANKED_EVENTS],
				limit: TRUTH_PAGE,
				...(after ? { after } : {})
			});
		} catch (err) {
			const type = (err as { type?: string }).type;
			if (type === "SERVICE_NOT_FOUND" || type === "SERVICE_NOT_AVAILABLE") throw new RankingTruthUnavailableError();
			throw err;
		}
		const states: ReservationState[] = [];
		for (const event of page.rows) {
			try {
				states.push(reservationState(event));
			} catch (err) {
				if (!(err instanceof MalformedEventError)) throw err;
				log.warn(`ranking rebuild: ${err.message}; left out`);
			}
		}
		yield states;
		if (!page.next) return;
		after = page.next;
	}
}

const RankingService: ServiceSchema<Record<string, never>, RankingMethods, PlatformVars & RankingVars> = {
	name: "ranking",

	mixins: [
		PlatformMixin,
		EventConsumerMixin({
			handlers: {
				"reservation.confirmed": "applyReservation",
				"reservation.cancelled": "applyReservation",
				"reservation.expired": "applyReservation"
			}
		})
	],

	actions: {
		/** GET /api/rankings/concerts?limit=10: the most popular concerts, highest score (seats sold) first. */
		concerts: {
			visibility: "published",
			auth: false,
			params: {
				limit: { type: "number", integer: true, min: 1, max: 100, convert: true, optional: true },
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<{ limit?: number }>) {
				const scores = await this.ranking.top(ctx.params.limit ?? 10);
				return rankingRows(
					scores,
					await this.titlesOf(
						ctx,
						scores.map(s => s.concertId)
					)
				);
			}
		},

		/**
		 * Rebuilds the ranking, versions and scores together, from every reservation's latest confirmed / cancelled /
		 * expired event (`reservation.outboxLatest`), consistent with the events in flight (ranking.store.ts). Admin
		 * over HTTP, the consistency repair, and the REPL: `call ranking.rebuild`. While another node rebuilds, it
		 * waits for that one and then runs its own; past the wait, 409 RANKING_REBUILD_RUNNING.
		 */
		rebuild: {
			visibility: "published",
			auth: "admin",
			params: { $$strict: "remove" },
			async handler(this: This, ctx: Context) {
				const call: Caller = callerOf<ReservationApi>(ctx);
				const deadline = Date.now() + Math.max(1000, this.config.requestTimeoutMs - 2000);
				while (!(await this.rebuildOnce(call))) {
					if (Date.now() > deadline) throw new RankingRebuildRunningError();
					await new Promise(r => setTimeout(r, 200));
				}
				const scores = await this.ranking.top(1_000_000);
				return { concerts: scores.length, seats: scores.reduce((n, s) => n + s.score, 0) };
			}
		},

		/** For the consistency check: the ranking compared with the truth, without changing anything. */
		verify: {
			visibility: "public",
			async handler(this: This, ctx: Context) {
				const truth = await this.truth(ctx);
				const mismatches = rankingMismatches(await this.ranking.top(10_000), truth);
				return { ok: mismatches.length === 0, mismatches };
			}
		}
	},

	methods: {
		/**
		 * A store without a ranking (Redis lost its data) applies nothing: the event fails, to be retried on the
		 * event schedule, and the self-rebuild starts now instead of at the next check.
		 */
		async applyReservation(this: This, event: EventMessage) {
			const outcome = await this.ranking.apply(reservationState(event));
			if (outcome.lost) {
				this.scheduleReadyCheck(0);
				throw new RankingNotReadyError();
			}
		},

		/** One rebuild on this node; false when another node's rebuild holds the lease. */
		async rebuildOnce(this: This, call: Caller) {
			const owner = `${this.broker.nodeID}:${crypto.randomUUID()}`;
			return rebuildRanking(this.ranking, owner, truthPages(call, this.logger), BUILD_LEASE_MS);
		},

		/** The self-rebuild: when the store holds no ranking, rebuild it from the database (one node at a time). */
		async checkReady(this: This) {
			if (await this.ranking.ready()) return;
			if (this.rebuilding) return;
			this.logger.warn("ranking: the store holds no ranking (Redis restarted without its data, or a fresh install): rebuilding it from the reservations");
			this.rebuilding = this.rebuildOnce(callerOf<ReservationApi>(this.broker));
			try {
				if (await this.rebuilding) this.logger.info("ranking: rebuilt from the reservations");
			} finally {
				this.rebuilding = undefined;
			}
		},

		/** The next self-rebuild check in `ms` (one timer per node; a sooner call replaces a later one). */
		scheduleReadyCheck(this: This, ms: number) {
			if (this.readyStopped) return;
			if (this.readyTimer) clearTimeout(this.readyTimer);
			this.readyTimer = setTimeout(() => {
				this.readyTimer = undefined;
				let next = READY_CHECK_MS;
				this.checkReady()
					.catch((err: Error) => {
						next = READY_RETRY_MS;
						this.logger.warn(`ranking: self-rebuild not done yet (${err.message}); trying again`);
					})
					.finally(() => this.scheduleReadyCheck(next));
			}, ms);
			this.readyTimer.unref();
		},

		async truth(ctx: Context) {
			let rows: { concertId: string; seats: number }[];
			try {
				rows = await callerOf<ReservationApi>(ctx)("reservation.soldSeatsByConcert", {});
			} catch (err) {
				const type = (err as { type?: string }).type;
				if (type === "SERVICE_NOT_FOUND" || type === "SERVICE_NOT_AVAILABLE") throw new RankingTruthUnavailableError();
				throw err;
			}
			return rows.map(r => ({ concertId: r.concertId, score: Number(r.seats) }));
		},

		/**
		 * Titles through concert.get, cached. If the catalog does not answer, the title is null and not cached:
		 * the ranking still answers with correct scores (an honest degraded answer, docs/DESIGN.md section 8).
		 */
		async titlesOf(this: This, ctx: Context, concertIds: string[]) {
			const now = Date.now();
			const out = new Map<string, string | null>();
			await Promise.all(
				concertIds.map(async id => {
					const hit = this.titles.get(id);
					if (hit && hit.until > now) {
						out.set(id, hit.title);
						return;
					}
					try {
						const c = await callerOf<ConcertApi>(ctx)("concert.get", { id }, { timeout: 1000, retries: 0 });
						this.titles.set(id, { title: c.title, until: now + TITLE_TTL_MS });
						out.set(id, c.title);
					} catch (err) {
						if ((err as { type?: string }).type === "NOT_FOUND") this.titles.set(id, { title: null, until: now + TITLE_TTL_MS });
						out.set(id, null);
					}
				})
			);
			return out;
		}
	},

	created() {
		this.titles = new Map();
		// Here rather than in started(): the consumer mixin subscribes in its started(), which runs before ours.
		this.ranking = createRankingStore(this.store);
	},

	started(this: This) {
		// The first check at once: a node that starts on an empty store (fresh install, Redis without its data, an
		// embedded node's memory) rebuilds before the events it receives have to wait for it.
		this.readyStopped = false;
		this.scheduleReadyCheck(0);
	},

	async stopped(this: This) {
		this.readyStopped = true;
		if (this.readyTimer) clearTimeout(this.readyTimer);
		await this.rebuilding?.catch(() => undefined);
	}
};

export default RankingService;
