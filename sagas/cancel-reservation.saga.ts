/**
 * The cancellation sagas (docs/DESIGN.md section 4 step 4). The reservation service picks one by the reservation's
 * status when the user asks.
 *
 * CancelPendingReservation:  0 beginCancel (PENDING->CANCELLING; comp: back)   1 release the holds
 *                            2 finishCancel (CANCELLED + reservation.cancelled)
 * CancelConfirmedReservation: 0 beginCancel (CONFIRMED->CANCELLING; comp: back)  1 refund (the pivot)
 *                            2 sold seats back to AVAILABLE  3 finishCancel (CANCELLED, refund amount, event)
 *
 * Past beginCancel the steps are `retriable` (the pivot is the refund): they are retried long enough to outlast
 * an outage, a crashed node's saga is resumed by another, and one that still fails parks the saga as FAILED for
 * an operator instead of compensating: a refunded booking must never be put back to CONFIRMED.
 */
import type { StepParams } from "./participants.api";
import { defineSaga } from "./types";

export interface CancelReservationData {
	reservationId: string;
	expect: "PENDING" | "CONFIRMED";
	scheduleId: string;
	seatIds: string[];
	/** The ConfirmReservation saga whose payment is refunded (CONFIRMED only). */
	paidSagaId: string | null;
}

const UNTIL_IT_WORKS = { attempts: 12, backoffMs: 250 };

export const cancelPendingReservation = defineSaga<CancelReservationData>({
	type: "CancelPendingReservation",
	steps: [
		{
			name: "beginCancel",
			action: "reservation.beginCancel",
			params: (d): StepParams<"reservation.beginCancel"> => ({ reservationId: d.reservationId, expect: "PENDING" }),
			compensate: { action: "reservation.abortCancel", params: (d): StepParams<"reservation.abortCancel"> => ({ reservationId: d.reservationId }) },
			retry: { attempts: 3, backoffMs: 100 }
		},
		{
			name: "releaseSeats",
			action: "concert.release",
			params: (d): StepParams<"concert.release"> => ({ scheduleId: d.scheduleId, seatIds: d.seatIds, owner: d.reservationId }),
			retry: UNTIL_IT_WORKS,
			retriable: true
		},
		{
			name: "finishCancel",
			action: "reservation.finishCancel",
			params: (d): StepParams<"reservation.finishCancel"> => ({ reservationId: d.reservationId }),
			retry: UNTIL_IT_WORKS,
			retriable: true
		}
	],
	rejections: { RESERVATION_NOT_CANCELLABLE: "the reservation can no longer be cancelled" }
});

export const cancelConfirmedReservation = defineSaga<CancelReservationData>({
	type: "CancelConfirmedReservation",
	steps: [
		{
			name: "beginCancel",
			action: "reservation.beginCancel",
			params: (d): StepParams<"reservation.beginCancel"> => ({ reservationId: d.reservationId, expect: "CONFIRMED" }),
			compensate: { action: "reservation.abortCancel", params: (d): StepParams<"reservation.abortCancel"> => ({ reservationId: d.reservationId }) },
			retry: { attempts: 3, backoffMs: 100 }
		},
		{
			name: "refund",
			action: "payment.refund",
			params: (d): StepParams<"payment.refund"> => ({ sagaId: d.paidSagaId!, reason: "cancelled by user" }),
			retry: UNTIL_IT_WORKS,
			retriable: true
		},
		{
			name: "releaseSold",
			action: "concert.releaseSold",
			params: (d): StepParams<"concert.releaseSold"> => ({ reservationId: d.reservationId, scheduleId: d.scheduleId, seatIds: d.seatIds }),
			retry: UNTIL_IT_WORKS,
			retriable: true
		},
		{
			name: "finishCancel",
			action: "reservation.finishCancel",
			params: (d, r): StepParams<"reservation.finishCancel"> => ({
				reservationId: d.reservationId,
				refundAmount: Number((r.refund as { amount?: number }).amount ?? 0)
			}),
			retry: UNTIL_IT_WORKS,
			retriable: true
		}
	],
	rejections: { RESERVATION_NOT_CANCELLABLE: "the reservation can no longer be cancelled" }
});
