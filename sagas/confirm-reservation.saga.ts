/**
 * ConfirmReservation (docs/DESIGN.md section 4 step 3; seed 000 section 3.1 with its compensation table).
 *
 *   step               participant action           compensation
 *   0 markPaying       reservation PENDING->PAYING   reservation back to PENDING (seed 003's order rollback)
 *   1 pay              payment debit, key = saga id  refund (voids the saga id if the debit never happened)
 *   2 confirm          reservation PAYING->CONFIRMED cancel the reservation (+ its outbox event)
 *   3 sellSeats        concert seats SOLD            re-hold the seats for the reservation
 *   4 expireToken      queue token expired           (none: the last step)
 *   5 (eventually)     ranking, notifications from the outbox events
 *
 * A failure at step 1 compensates nothing but step 0; at step 2: refund; at step 3: cancel + refund; at step 4:
 * re-hold + cancel + refund: the seed's table, read bottom-up by the engine.
 */
import type { StepParams } from "./participants.api";
import { defineSaga } from "./types";

export interface ConfirmReservationData {
	reservationId: string;
	userId: string;
	concertId: string;
	scheduleId: string;
	seatIds: string[];
	amount: number;
	queueToken: string;
}

const seats = (d: ConfirmReservationData): StepParams<"concert.confirmSeats" | "concert.rehold"> => ({
	reservationId: d.reservationId,
	scheduleId: d.scheduleId,
	seatIds: d.seatIds
});

export const confirmReservation = defineSaga<ConfirmReservationData>({
	type: "ConfirmReservation",
	steps: [
		{
			name: "markPaying",
			action: "reservation.markPaying",
			params: (d): StepParams<"reservation.markPaying"> => ({ reservationId: d.reservationId }),
			compensate: { action: "reservation.revertPaying", params: (d): StepParams<"reservation.revertPaying"> => ({ reservationId: d.reservationId }) },
			retry: { attempts: 3, backoffMs: 100 }
		},
		{
			name: "pay",
			action: "payment.pay",
			params: (d, _r, saga): StepParams<"payment.pay"> => ({ sagaId: saga.id, reservationId: d.reservationId, userId: d.userId, amount: d.amount }),
			compensate: {
				action: "payment.refund",
				params: (_d, _r, saga): StepParams<"payment.refund"> => ({ sagaId: saga.id, reason: "booking rolled back" })
			},
			retry: { attempts: 4, backoffMs: 200 },
			timeout: 3000
		},
		{
			name: "confirm",
			action: "reservation.confirm",
			params: (d, r): StepParams<"reservation.confirm"> => ({ reservationId: d.reservationId, paymentId: (r.pay as { id: string }).id }),
			compensate: {
				action: "reservation.voidConfirmation",
				params: (d): StepParams<"reservation.voidConfirmation"> => ({ reservationId: d.reservationId })
			},
			retry: { attempts: 4, backoffMs: 200 }
		},
		{
			name: "sellSeats",
			action: "concert.confirmSeats",
			params: seats,
			compensate: { action: "concert.rehold", params: seats },
			retry: { attempts: 4, backoffMs: 200 }
		},
		{
			name: "expireToken",
			action: "queue.expire",
			params: (d): StepParams<"queue.expire"> => ({ token: d.queueToken }),
			// The seed's table undoes the whole booking when this step fails; a short store outage must not be
			// such a failure, so transient errors are retried for about half a minute first.
			retry: { attempts: 10, backoffMs: 250 }
		}
	],
	rejections: {
		RESERVATION_NOT_PAYABLE: "the reservation is expired, cancelled or already paid",
		INSUFFICIENT_POINTS: "not enough points",
		PAYMENT_VOIDED: "the payment was rolled back",
		SEAT_UNAVAILABLE: "a seat was sold to someone else"
	},
	result: (_d, r) => ({ payment: r.pay, reservation: r.confirm })
});
