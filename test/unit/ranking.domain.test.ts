/** Pure ranking rules: what each reservation event counts for, the rows answered, the check against the truth. */
import { makeEvent } from "../support/events";
import { MalformedEventError, rankingMismatches, rankingRows, reservationState } from "../../services/ranking/ranking.domain";

describe("ranking domain", () => {
	const base = { reservationId: "r1", concertId: "c1", userId: "u", scheduleId: "s", seatIds: ["a", "b", "c"], amount: 300 };

	it("when a reservation is confirmed, then it counts its seats; cancelled or expired, none", () => {
		expect(reservationState(makeEvent("reservation.confirmed", "r1", 2, base))).toEqual({ reservationId: "r1", concertId: "c1", version: 2, seats: 3 });
		expect(reservationState(makeEvent("reservation.cancelled", "r1", 3, { ...base, wasConfirmed: true, reason: "cancelled by user" })).seats).toBe(0);
		expect(reservationState(makeEvent("reservation.expired", "r1", 2, base)).seats).toBe(0);
	});

	it("when an event lacks its ids or seats, then it is refused as malformed", () => {
		expect(() => reservationState(makeEvent("reservation.confirmed", "r1", 2, { ...base, concertId: "" }))).toThrow(MalformedEventError);
		expect(() => reservationState(makeEvent("reservation.confirmed", "r1", 2, { ...base, seatIds: [] }))).toThrow(/seatIds/);
		expect(() => reservationState(makeEvent("reservation.cancelled", "r1", 0, { ...base, wasConfirmed: false, reason: "x" }))).toThrow(/version/);
		// The catalog's schema decides: a cancellation without its reason is as malformed as one without its ids.
		expect(() => reservationState(makeEvent("reservation.cancelled", "r1", 3, { ...base, wasConfirmed: true }))).toThrow(/reason/);
	});

	it("when titles are missing, then rows carry null titles and ranks follow the order", () => {
		expect(
			rankingRows(
				[
					{ concertId: "a", score: 5 },
					{ concertId: "b", score: 2 }
				],
				new Map([["a", "A"]])
			)
		).toEqual([
			{ rank: 1, concertId: "a", title: "A", score: 5 },
			{ rank: 2, concertId: "b", title: null, score: 2 }
		]);
	});

	it("when the ranking differs from the truth, then each concert that differs is named", () => {
		expect(
			rankingMismatches(
				[
					{ concertId: "a", score: 5 },
					{ concertId: "b", score: 1 }
				],
				[
					{ concertId: "a", score: 5 },
					{ concertId: "c", score: 2 },
					{ concertId: "z", score: 0 }
				]
			)
		).toEqual([
			{ concertId: "b", ranking: 1, truth: 0 },
			{ concertId: "c", ranking: 0, truth: 2 }
		]);
		expect(rankingMismatches([], [{ concertId: "z", score: 0 }])).toEqual([]);
	});
});
