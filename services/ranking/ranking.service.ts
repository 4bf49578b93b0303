/**
 * Ranking context: concert popularity by seats sold (DESIGN.md section 7; seed 000 section 3.4). Eventually
 * consistent: it follows reservation.confirmed / cancelled / expired from the durable event bus and applies each
 * one by the reservation's version (ranking.store.ts explains why duplicates and out-of-order events cannot
 * inflate or deflate a score). `rebuild` resets the scores from the reservation service's truth.
 */
import type { Context, ServiceSchema } from "moleculer";
import type { EventMessage } from "../../lib/events/types";
import { EventConsumerMixin } from "../../lib/events/consumer.mixin";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import { RankingTruthUnavailableError } from "./errors";
import { rankingMismatches, rankingRows, reservationState } from "./ranking.domain";
import { createRankingStore, type ConcertScore, type RankingStore } from "./ranking.store";

interface RankingVars {
	ranking: RankingStore;
	titles: Map<string, { title: string | null; until: number }>;
}
interface RankingMethods {
	applyReservation(event: EventMessage): Promise<void>;
	titlesOf(ctx: Context, concertIds: string[]): Promise<Map<string, string | null>>;
	truth(ctx: Context): Promise<ConcertScore[]>;
}
type This = PlatformVars & RankingVars & RankingMethods & { logger: { warn(...a: unknown[]): void } };

/** A title is looked up at most once a minute per node; a missing concert is remembered as well. */
const TITLE_TTL_MS = 60_000;

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
				return rankingRows(scores, await this.titlesOf(ctx, scores.map(s => s.concertId)));
			}
		},

		/**
		 * Recomputes every score from `reservation.soldSeatsByConcert()` (the truth) and replaces the sorted set in
		 * one step. Admin over HTTP, and callable from the REPL: `call ranking.rebuild`.
		 */
		rebuild: {
			visibility: "published",
			auth: "admin",
			params: { $$strict: "remove" },
			async handler(this: This, ctx: Context) {
				const truth = await this.truth(ctx);
				await this.ranking.replaceAll(truth);
				return { concerts: truth.length, seats: truth.reduce((n, s) => n + s.score, 0) };
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
		async applyReservation(this: This, event: EventMessage) {
			await this.ranking.apply(reservationState(event));
		},

		async truth(ctx: Context) {
			let rows: { concertId: string; seats: number }[];
			try {
				rows = await ctx.call<{ concertId: string; seats: number }[], Record<string, never>>("reservation.soldSeatsByConcert", {});
			} catch (err) {
				const type = (err as { type?: string }).type;
				if (type === "SERVICE_NOT_FOUND" || type === "SERVICE_NOT_AVAILABLE") throw new RankingTruthUnavailableError();
				throw err;
			}
			return rows.map(r => ({ concertId: r.concertId, score: Number(r.seats) }));
		},

		/**
		 * Titles through concert.get, cached. If the catalog does not answer, the title is null and not cached:
		 * the ranking still answers with correct scores (an honest degraded answer, DESIGN.md section 8).
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
						const c = await ctx.call<{ title: string }, { id: string }>("concert.get", { id }, { timeout: 1000, retries: 0 });
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
	}
};

export default RankingService;
