/**
 * The actions the booking sagas call, and the params each takes (type-only). A saga definition types each step's
 * params from here (`StepParams<"payment.pay">`) and each participant's handler takes the same type, so a renamed
 * or retyped field fails `npm run typecheck` at the definition and at the participant. It lives in sagas/ because
 * the definitions may not import services/ (docs/ARCHITECTURE.md); the services import it, which runs downwards.
 * Results are read back loosely by the definitions (`r.pay.id`, `r.refund.amount`) and stay untyped here.
 */

// Type aliases, not interfaces: a step's params are a Record<string, unknown> to the engine.
type SeatsOfReservation = {
	reservationId: string;
	scheduleId: string;
	seatIds: string[];
};

export interface ParticipantApi {
	"reservation.markPaying": { reservationId: string };
	"reservation.revertPaying": { reservationId: string };
	"reservation.confirm": { reservationId: string; paymentId: string };
	"reservation.voidConfirmation": { reservationId: string };
	/** `expect`: the status the cancellation starts from (the saga type chose it). */
	"reservation.beginCancel": { reservationId: string; expect: "PENDING" | "CONFIRMED" };
	"reservation.abortCancel": { reservationId: string };
	"reservation.finishCancel": { reservationId: string; refundAmount?: number };
	"payment.pay": { sagaId: string; reservationId: string; userId: string; amount: number };
	"payment.refund": { sagaId: string; reason?: string };
	"concert.confirmSeats": SeatsOfReservation;
	"concert.rehold": SeatsOfReservation;
	"concert.releaseSold": SeatsOfReservation;
	"concert.release": { scheduleId: string; seatIds: string[]; owner: string; abandon?: boolean };
	"queue.expire": { token: string };
}

export type StepAction = keyof ParticipantApi;
export type StepParams<A extends StepAction> = ParticipantApi[A];
