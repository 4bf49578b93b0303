/** Which event becomes which inbox entry, for whom, and the admin alerts. */
import { makeEvent } from "../support/events";
import { deadLetterAlert, notificationFor, sagaFailedAlert, UnusableEventError } from "../../services/notification/notification.domain";

describe("notification domain", () => {
	it("when a reservation or payment event arrives, then its user gets the matching type, deduped by the event id", () => {
		const cases: [string, Record<string, unknown>, string, RegExp][] = [
			["reservation.held", { seatIds: ["a", "b"], expiresAt: "2030-01-01T00:00:00.000Z" }, "RESERVATION_HELD", /2 seats held/],
			["reservation.confirmed", { seatIds: ["a"] }, "RESERVATION_CONFIRMED", /1 seat is confirmed/],
			["reservation.cancelled", { refundAmount: 300 }, "RESERVATION_CANCELLED", /300 points are refunded/],
			["reservation.cancelled", {}, "RESERVATION_CANCELLED", /^Your reservation was cancelled\.$/],
			["reservation.expired", {}, "RESERVATION_EXPIRED", /expired/],
			["payment.completed", { amount: 150 }, "PAYMENT_COMPLETED", /150 points/],
			["payment.refunded", { amount: 150 }, "PAYMENT_REFUNDED", /150 points are back/]
		];
		for (const [type, extra, expected, message] of cases) {
			const e = makeEvent(type, "agg", 1, { userId: "u1", reservationId: "r1", ...extra });
			const d = notificationFor(e);
			expect({ type, got: d.type, user: d.userId, key: d.dedupeKey }).toEqual({ type, got: expected, user: "u1", key: e.id });
			expect(d.message).toMatch(message);
		}
	});

	it("when an event has no user or is not an inbox event, then it is refused", () => {
		expect(() => notificationFor(makeEvent("reservation.held", "a", 1, {}))).toThrow(UnusableEventError);
		expect(() => notificationFor(makeEvent("points.charged", "a", 1, { userId: "u" }))).toThrow(/type/);
	});

	it("when a saga fails or an event is dead-lettered, then an admin alert without a user is drafted", () => {
		expect(sagaFailedAlert({ sagaId: "s1", type: "ConfirmReservation", step: "refund", deadLetterId: "d1" })).toMatchObject({
			userId: null,
			type: "ADMIN_ALERT",
			dedupeKey: "saga.failed:s1:d1",
			data: { kind: "saga.failed", sagaId: "s1" }
		});
		const a = deadLetterAlert({ deadLetterId: "7", group: "ranking", eventId: "e1", eventType: "reservation.confirmed", attempts: 5, error: "x" });
		expect(a).toMatchObject({ userId: null, type: "ADMIN_ALERT", data: { kind: "event.deadLettered", eventId: "e1" } });
		expect(a.message).toMatch(/reservation.confirmed e1 failed 5 times in ranking/);
	});
});
