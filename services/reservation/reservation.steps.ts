/**
 * The reservation context's saga participants, mixed into reservation.service.ts: the steps and compensations of
 * ConfirmReservation and the Cancel* sagas (sagas/). Each is idempotent under its saga (ctx.meta.sagaId) and fenced
 * by it. A forward step is one conditional UPDATE (reservation.repo.ts); when it changed nothing,
 * reservation.domain.ts `decide` says whether that is this saga's own repeat (answered as before) or a refusal. A
 * compensation is never refused: it records its saga as voided (a late forward step of it then changes nothing),
 * undoes only what that saga did, and answers the status it leaves.
 */
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { sagaIdOf, type RequestMeta } from "../../lib/request";
import type { StepParams } from "../../sagas/participants.api";
import { decide, TRANSITIONS, type ReservationRow, type ReservationStatus, type StepVerdict } from "./reservation.domain";
import type { ReservationRepo } from "./reservation.repo";

/** A reservation (or payment) id as the reservation actions take it. */
export const idParam = { type: "string", min: 1, max: 64 } as const;

/** What the steps use of the service they are mixed into (reservation.service.ts creates the repository at start). */
interface StepsVars {
	repo: ReservationRepo;
	releaseSeatsOf(via: Context, row: Pick<ReservationRow, "id" | "schedule_id">, why: string): Promise<void>;
}

/** A forward step's answer: the status its verdict leaves, or its refusal thrown. */
function answer(verdict: StepVerdict): ReservationStatus {
	if (verdict.outcome === "refuse") throw verdict.error;
	return verdict.status;
}

/** A compensation's answer: the status it left (null when there is no such reservation). */
async function statusAfter(repo: ReservationRepo, reservationId: string): Promise<{ reservationId: string; status: ReservationStatus | null }> {
	const row = await repo.load(reservationId);
	return { reservationId, status: row?.status ?? null };
}

const steps: Partial<ServiceSchema<ServiceSettingSchema, Record<string, never>, StepsVars>> = {
	actions: {
		/** ConfirmReservation step 0: PENDING -> PAYING, unless the hold has run out. */
		markPaying: {
			visibility: "public",
			params: { reservationId: idParam },
			async handler(ctx: Context<StepParams<"reservation.markPaying">, RequestMeta>) {
				const sagaId = sagaIdOf(ctx);
				const { reservationId } = ctx.params;
				const changed = await this.repo.markPaying(reservationId, sagaId, new Date());
				const row = changed === 1 ? null : await this.repo.load(reservationId);
				return { reservationId, status: answer(decide("markPaying", changed, row, reservationId, sagaId)) };
			}
		},

		/** Compensation of step 0 (seed 003's order rollback): PAYING -> PENDING, only for the saga that set it. */
		revertPaying: {
			visibility: "public",
			circuitBreaker: { enabled: false },
			params: { reservationId: idParam },
			async handler(ctx: Context<StepParams<"reservation.revertPaying">, RequestMeta>) {
				await this.repo.revertPaying(ctx.params.reservationId, sagaIdOf(ctx));
				return statusAfter(this.repo, ctx.params.reservationId);
			}
		},

		/** ConfirmReservation step 2: PAYING -> CONFIRMED with its reservation.confirmed event, in one transaction. */
		confirm: {
			visibility: "public",
			params: { reservationId: idParam, paymentId: idParam },
			async handler(ctx: Context<StepParams<"reservation.confirm">, RequestMeta>) {
				const sagaId = sagaIdOf(ctx);
				const { reservationId, paymentId } = ctx.params;
				const { changed, row } = await this.repo.confirm(reservationId, sagaId, paymentId);
				return { reservationId, status: answer(decide("confirm", changed, row, reservationId, sagaId)) };
			}
		},

		/**
		 * Compensation of step 2: the confirmation is undone by cancelling the reservation (the payment's own
		 * compensation refunds it next). Its seats are released right away.
		 */
		voidConfirmation: {
			visibility: "public",
			circuitBreaker: { enabled: false },
			params: { reservationId: idParam },
			async handler(ctx: Context<StepParams<"reservation.voidConfirmation">, RequestMeta>) {
				const sagaId = sagaIdOf(ctx);
				const { reservationId } = ctx.params;
				const row = await this.repo.voidConfirmation(reservationId, sagaId);
				if (row && row.status === "CANCELLED") await this.releaseSeatsOf(ctx, row, "rolled-back");
				return { reservationId, status: row?.status ?? null };
			}
		},

		/** Cancel sagas, step 0: PENDING or CONFIRMED (as the saga expects) -> CANCELLING. */
		beginCancel: {
			visibility: "public",
			params: { reservationId: idParam, expect: { type: "enum", values: [...TRANSITIONS.beginCancel.from] } },
			async handler(ctx: Context<StepParams<"reservation.beginCancel">, RequestMeta>) {
				const sagaId = sagaIdOf(ctx);
				const { reservationId, expect } = ctx.params;
				const changed = await this.repo.beginCancel(reservationId, sagaId, expect);
				const row = changed === 1 ? null : await this.repo.load(reservationId);
				return { reservationId, status: answer(decide("beginCancel", changed, row, reservationId, sagaId)) };
			}
		},

		/** Compensation of beginCancel: back to the status it had. */
		abortCancel: {
			visibility: "public",
			circuitBreaker: { enabled: false },
			params: { reservationId: idParam },
			async handler(ctx: Context<StepParams<"reservation.abortCancel">, RequestMeta>) {
				await this.repo.abortCancel(ctx.params.reservationId, sagaIdOf(ctx));
				return statusAfter(this.repo, ctx.params.reservationId);
			}
		},

		/** Cancel sagas, last step: CANCELLING -> CANCELLED with its reservation.cancelled event. */
		finishCancel: {
			visibility: "public",
			params: { reservationId: idParam, refundAmount: { type: "number", integer: true, min: 0, optional: true } },
			async handler(ctx: Context<StepParams<"reservation.finishCancel">, RequestMeta>) {
				const sagaId = sagaIdOf(ctx);
				const { reservationId, refundAmount } = ctx.params;
				const { changed, row } = await this.repo.finishCancel(reservationId, sagaId, refundAmount ?? null);
				return { reservationId, status: answer(decide("finishCancel", changed, row, reservationId, sagaId)), refundAmount: refundAmount ?? null };
			}
		}
	}
};

/**
 * The steps as a mixin. Moleculer types a mixin as part of any service, so the host's `repo` (StepsVars) cannot be
 * stated in the type: reservation.service.ts is the one service that mixes this in, and it provides it.
 */
export const ReservationSteps = steps as unknown as Partial<ServiceSchema>;
