/** Pure rules of the ranking context, tested without a broker. */
import { payloadProblems, type CatalogEvent } from "../../lib/events/catalog";
import type { EventMessage } from "../../lib/events/types";
import type { ConcertScore, ReservationState } from "./ranking.store";

export class MalformedEventError extends Error {
	constructor(eventId: string, field: string) {
		super(`event ${eventId}: missing or invalid ${field}`);
		this.name = "MalformedEventError";
	}
}

/** Reservation events the ranking follows, and rebuilds from. */
export const RANKED_EVENTS = ["reservation.confirmed", "reservation.cancelled", "reservation.expired"] as const;
export type RankedEventType = (typeof RANKED_EVENTS)[number];

/**
 * An event (delivered, or read from the reservations' outbox by the rebuild) as a ranked catalog event: its type is
 * one the ranking follows, its payload passes the catalog's schema, its version is one. MalformedEventError names
 * what is wrong otherwise.
 */
export function rankedEvent(event: EventMessage): CatalogEvent<RankedEventType> {
	if (!(RANKED_EVENTS as readonly string[]).includes(event.type)) throw new MalformedEventError(event.id, "type");
	const problems = payloadProblems(event.type as RankedEventType, event.payload);
	if (problems.length > 0) throw new MalformedEventError(event.id, problems.join("; "));
	if (!Number.isInteger(event.version) || event.version < 1) throw new MalformedEventError(event.id, "version");
	return event as unknown as CatalogEvent<RankedEventType>; // checked above
}

/**
 * What a reservation event means for the ranking: confirmed counts its seats, cancelled and expired count none.
 * The version is the event's aggregate version (the reservation's).
 */
export function reservationState(event: EventMessage): ReservationState {
	const e = rankedEvent(event);
	const { reservationId, concertId, seatIds } = e.payload;
	return { reservationId, concertId, version: e.version, seats: e.type === "reservation.confirmed" ? seatIds.length : 0 };
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
	return ids.filter(id => (r.get(id) ?? 0) !== (t.get(id) ?? 0)).map(id => ({ concertId: id, ranking: r.get(id) ?? 0, truth: t.get(id) ?? 0 }));
}
