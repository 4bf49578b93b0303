/** Pure rules of the ranking context, tested without a broker. */
import type { EventMessage } from "../../lib/events/types";
import type { ConcertScore, ReservationState } from "./ranking.store";

export class MalformedEventError extends Error {
	constructor(eventId: string, field: string) {
		super(`event ${eventId}: missing or invalid ${field}`);
		this.name = "MalformedEventError";
	}
}

/**
 * What a reservation event means for the ranking: confirmed counts its seats, cancelled and expired count none.
 * The version is the event's aggregate version (the reservation's).
 */
export function reservationState(event: EventMessage): ReservationState {
	const p = event.payload;
	const str = (k: string) => {
		const v = p[k];
		if (typeof v !== "string" || v.length === 0) throw new MalformedEventError(event.id, k);
		return v;
	};
	const reservationId = str("reservationId");
	const concertId = str("concertId");
	if (!Number.isInteger(event.version) || event.version < 1) throw new MalformedEventError(event.id, "version");
	let seats = 0;
	if (event.type === "reservation.confirmed") {
		const ids = p.seatIds;
		if (!Array.isArray(ids) || ids.length === 0) throw new MalformedEventError(event.id, "seatIds");
		seats = ids.length;
	}
	return { reservationId, concertId, version: event.version, seats };
}

export interface RankingRow {
	rank: number;
	concertId: string;
	/** null when the catalog could not be asked (it is down): the scores stay right, only the title is missing. */
	title: string | null;
	score: number;
}

export function rankingRows(scores: ConcertScore[], titles: Map<string, string | null>): RankingRow[] {
	return scores.map((s, i) => ({ rank: i + 1, concertId: s.concertId, title: titles.get(s.concertId) ?? null, score: s.score }));
}

/** Differences between the ranking and the truth (seats sold per concert), for the consistency check. */
export function rankingMismatches(ranking: ConcertScore[], truth: ConcertScore[]): { concertId: string; ranking: number; truth: number }[] {
	const r = new Map(ranking.map(s => [s.concertId, s.score]));
	const t = new Map(truth.filter(s => s.score > 0).map(s => [s.concertId, s.score]));
	const ids = [...new Set([...r.keys(), ...t.keys()])].sort();
	return ids
		.filter(id => (r.get(id) ?? 0) !== (t.get(id) ?? 0))
		.map(id => ({ concertId: id, ranking: r.get(id) ?? 0, truth: t.get(id) ?? 0 }));
}
