/**
 * Review context (seed 003): a user with a confirmed booking of a show of a concert that has taken place may
 * review the concert once (docs/API.md, Ranking, reviews, notifications). The concert must exist (concert.get), the
 * booking comes from the reservation context (reservation.hasConfirmed), and "once" is the unique index on
 * (user_id, concert_id). A cancelled booking withdraws its review (the reservation.cancelled event) unless the user
 * still holds another confirmed booking of the concert.
 */
import crypto from "crypto";
import type { Context, ServiceSchema } from "moleculer";
import { DataTypes, QueryTypes, UniqueConstraintError } from "sequelize";
import { callerOf } from "../../lib/actions";
import { pageParams, pageWindow, signedInUser, type PageParams, type RequestMeta } from "../../lib/request";
import { DbMixin, type DbVars } from "../../mixins/db.mixin";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import { EventConsumerMixin } from "../../mixins/event-consumer.mixin";
import type { CatalogEvent } from "../../lib/events/catalog";
import type { ConcertApi } from "../concert/concert.api";
import type { ReservationApi } from "../reservation/reservation.api";
import { callPeer, ReviewExistsError, ReviewNotAllowedError } from "./errors";
import { createReviews } from "./migrations/001_create_reviews";
import { averageRating, CONTENT_MAX, RATING_MAX, RATING_MIN, toPublicReview, type ReviewRow } from "./review.domain";

interface CreateParams {
	id: string;
	rating: number;
	content: string;
}
interface ListParams extends PageParams {
	id: string;
}
interface ReviewMethods {
	assertConcert(ctx: Context, concertId: string): Promise<void>;
	withdrawReview(event: CatalogEvent<"reservation.cancelled">): Promise<void>;
}
type This = PlatformVars & DbVars & ReviewMethods;

// The same bound as the catalog's own GET /concerts/:id, so an unknown id is a 404 there and here alike.
const concertId = { type: "string", min: 1, max: 1000 } as const;

const ReviewService: ServiceSchema<Record<string, never>, ReviewMethods, PlatformVars & DbVars> = {
	name: "review",

	mixins: [
		PlatformMixin,
		EventConsumerMixin({ handlers: { "reservation.cancelled": "withdrawReview" } }),
		DbMixin({
			database: "review",
			migrations: [createReviews],
			model: {
				name: "reviews",
				define: {
					id: { type: DataTypes.STRING(36), primaryKey: true },
					concert_id: { type: DataTypes.STRING(64), allowNull: false },
					user_id: { type: DataTypes.STRING(64), allowNull: false },
					rating: { type: DataTypes.INTEGER, allowNull: false },
					content: { type: DataTypes.TEXT, allowNull: false }
				},
				options: { tableName: "reviews", timestamps: false, underscored: true }
			}
		})
	],

	actions: {
		/**
		 * POST /api/concerts/:id/reviews: 201 with the review; 404 for an unknown concert, 403 REVIEW_NOT_ALLOWED
		 * without a confirmed reservation, 409 REVIEW_EXISTS for a second review by the same user.
		 */
		create: {
			visibility: "published",
			params: {
				id: concertId,
				rating: { type: "number", integer: true, min: RATING_MIN, max: RATING_MAX },
				content: { type: "string", trim: true, min: 1, max: CONTENT_MAX },
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<CreateParams, RequestMeta>) {
				const user = signedInUser(ctx);
				const { id, rating, content } = ctx.params;
				await this.assertConcert(ctx, id);
				const { confirmed, attended } = await callPeer("reservation", () =>
					callerOf<ReservationApi>(ctx)("reservation.hasConfirmed", { userId: user.id, concertId: id })
				);
				if (confirmed !== true) throw new ReviewNotAllowedError(id);
				if (attended !== true) throw new ReviewNotAllowedError(id, "SHOW_NOT_YET");
				const row: ReviewRow = { id: crypto.randomUUID(), concert_id: id, user_id: user.id, rating, content, created_at: new Date() };
				try {
					await this.sequelize.query("INSERT INTO reviews (id, concert_id, user_id, rating, content, created_at) VALUES (?, ?, ?, ?, ?, ?)", {
						replacements: [row.id, row.concert_id, row.user_id, row.rating, row.content, row.created_at]
					});
				} catch (err) {
					if (err instanceof UniqueConstraintError) throw new ReviewExistsError(id);
					throw err;
				}
				Object.assign(ctx.meta, { $statusCode: 201, $location: `/api/concerts/${encodeURIComponent(id)}/reviews` });
				return toPublicReview(row);
			}
		},

		/** GET /api/concerts/:id/reviews: newest first, paginated, with the concert's average rating. */
		list: {
			visibility: "published",
			auth: false,
			params: {
				id: concertId,
				...pageParams,
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<ListParams>) {
				const { id } = ctx.params;
				await this.assertConcert(ctx, id);
				const { page, pageSize, offset } = pageWindow(ctx.params);
				const [rows, stats] = await Promise.all([
					this.sequelize.query<ReviewRow>(
						"SELECT id, concert_id, user_id, rating, content, created_at FROM reviews WHERE concert_id = ? ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
						{ replacements: [id, pageSize, offset], type: QueryTypes.SELECT }
					),
					this.sequelize.query<{ n: number; avg: number | string | null }>(
						"SELECT COUNT(*) AS n, AVG(rating) AS avg FROM reviews WHERE concert_id = ?",
						{ replacements: [id], type: QueryTypes.SELECT }
					)
				]);
				const total = Number(stats[0]?.n ?? 0);
				return { rows: rows.map(toPublicReview), page, pageSize, total, averageRating: averageRating(stats[0]?.avg, total) };
			}
		}
	},

	methods: {
		/** concert.get answers 404 NOT_FOUND for an unknown concert; that error goes to the client as it is. */
		async assertConcert(ctx: Context, id: string) {
			await callPeer("concert", () => callerOf<ConcertApi>(ctx)("concert.get", { id }));
		},

		/**
		 * A booking was cancelled (and refunded): the review it allowed goes, unless the user still holds another
		 * confirmed booking of the concert. Idempotent: a redelivery finds nothing to delete.
		 */
		async withdrawReview(this: This & { broker: { call: Context["call"] } }, event: CatalogEvent<"reservation.cancelled">) {
			const { userId, concertId } = event.payload;
			const { confirmed } = await callerOf<ReservationApi>(this.broker)("reservation.hasConfirmed", { userId, concertId });
			if (confirmed) return;
			await this.sequelize.query("DELETE FROM reviews WHERE user_id = ? AND concert_id = ?", { replacements: [userId, concertId] });
		}
	}
};

export default ReviewService;
