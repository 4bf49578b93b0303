/** The reservation service's actions as other contexts call them (type-only; see lib/actions.ts). */
import type { EventMessage } from "../../lib/events/types";

export interface ReservationApi {
	/** Does the user hold a confirmed booking of the concert, and one of a show that has started (`attended`)? */
	"reservation.hasConfirmed": { params: { userId: string; concertId: string }; result: { confirmed: boolean; attended: boolean } };
	/** Seats of CONFIRMED reservations per concert: the ranking's truth for its consistency check. */
	"reservation.soldSeatsByConcert": { params: Record<string, never>; result: { concertId: string; seats: number }[] };
	/** Each reservation's latest event of the given types, a page at a time by reservation id (the outbox mixin). */
	"reservation.outboxLatest": {
		params: { aggregateType: string; eventTypes: string[]; after?: string; limit?: number };
		result: { rows: EventMessage[]; next: string | null };
	};
}
