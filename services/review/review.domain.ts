/** Pure rules of the review context. */
export const RATING_MIN = 1;
export const RATING_MAX = 5;
export const CONTENT_MAX = 2000;

export interface ReviewRow {
	id: string;
	concert_id: string;
	user_id: string;
	rating: number;
	content: string;
	created_at: Date | string;
}

export interface PublicReview {
	id: string;
	concertId: string;
	userId: string;
	rating: number;
	content: string;
	createdAt: string;
}

export function toPublicReview(r: ReviewRow): PublicReview {
	return {
		id: r.id,
		concertId: r.concert_id,
		userId: r.user_id,
		rating: Number(r.rating),
		content: r.content,
		createdAt: new Date(r.created_at).toISOString()
	};
}

/** The average of the ratings to two decimals, or null when there is none. */
export function averageRating(avg: number | string | null | undefined, count: number): number | null {
	if (!count || avg === null || avg === undefined) return null;
	return Math.round(Number(avg) * 100) / 100;
}
