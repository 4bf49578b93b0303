/** Which event becomes which inbox entry, for whom, and the admin alerts. */
import type { CatalogEvent } from "../../lib/events/catalog";
import { catalogEvent } from "../support/events";
import { deadLetterAlert, notificationFor, sagaFailedAlert, type InboxEventType } from "../../services/notification/notification.domain";

describe("notification domain", () => {
	it("when a reservation or payment event arrives, then its user gets the matching type, deduped by the event id", () => {
		const r = { reservationId: "r1", userId: "u1", concertId: "c1", scheduleId: "s1", amount: 300 };
		const refund = {
			paymentId: "p1",
			sagaId: "g1",
			reservationId: "r1",
			userId: "u1",
			amount: 150,
			transactionId: "t1",
			balanceAfter: 150,
			reason: null,
			refundedAt: "2030-01-01T00:00:00.000Z"
		};
		const cases: [CatalogEvent<InboxEventType>, string, RegExp][] = [
			[
				catalogEvent("reservation.held", "r1", 1, {
					...r,
					seatIds: ["a", "b"],
					reservedAt: "2029-12-31T23:55:00.000Z",
					expiresAt: "2030-01-01T00:00:00.000Z"
				}),
				"RESERVATION_HELD",
				/2 seats held/
			],
			[catalogEvent("reservation.confirmed", "r1", 2, { ...r, seatIds: ["a"] }), "RESERVATION_CONFIRMED", /1 seat is confirmed/],
			[
				catalogEvent("reservation.cancelled", "r1", 3, { ...r, seatIds: ["a"], wasConfirmed: true, refundAmount: 300, reason: "cancelled by user" }),
				"RESERVATION_CANCELLED",
				/300 points are refunded/
			],
			[
				catalogEvent("reservation.cancelled", "r1", 3, { ...r, seatIds: ["a"], wasConfirmed: false, reason: "cancelled by user" }),
				"RESERVATION_CANCELLED",
				/^Your reservation was cancelled\.$/
			],
			[catalogEvent("reservation.expired", "r1", 2, { ...r, seatIds: ["a"] }), "RESERVATION_EXPIRED", /expired/],
			[
				catalogEvent("payment.completed", "p1", 1, {
					paymentId: "p1",
					sagaId: "g1",
					reservationId: "r1",
					userId: "u1",
					amount: 150,
					paymentDate: "2030-01-01T00:00:00.000Z"
				}),
				"PAYMENT_COMPLETED",
				/150 points/
			],
			[catalogEvent("payment.refunded", "p1", 2, refund), "PAYMENT_REFUNDED", /150 points are back/]
		];
		for (const [e, expected, message] of cases) {
			const d = notificationFor(e);
			expect({ type: e.type, got: d.type, user: d.userId, key: d.dedupeKey }).toEqual({ type: e.type, got: expected, user: "u1", key: e.id });
			expect(d.message).toMatch(message);
			expect(d.data).toMatchObject({ eventType: e.type, reservationId: "r1" });
		}
	});

	it("when a refund belongs to no reservation, then its entry has no reservation id", () => {
		const e = catalogEvent("payment.refunded", "p1", 2, {
			paymentId: "p1",
			sagaId: "g1",
			reservationId: null,
			userId: "u1",
			amount: 5,
			transactionId: "t",
			balanceAfter: 5,
			reason: null,
			refundedAt: "2030-01-01T00:00:00.000Z"
		});
		expect(notificationFor(e).data).not.toHaveProperty("reservationId");
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
