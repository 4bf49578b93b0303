/**
 * The reservation's state machine (reservation.domain.ts `TRANSITIONS`) and `decide`, the verdict of a saga's
 * forward step after its conditional UPDATE, without a database: every step's apply, repeat and refusal, and the
 * ties between rows (a compensation undoes exactly what its step made; the sweeper races markPaying for one state).
 */
import { decide, TRANSITIONS, type ReservationStatus, type StepName } from "../../services/reservation/reservation.domain";

const ID = "r-1";
const SAGA = "saga-mine";
const OTHER = "saga-other";

const row = (status: ReservationStatus, saga_id: string | null = null, paid_saga_id: string | null = null) => ({ status, saga_id, paid_saga_id });

/** The refusal's stable type and data, as a caller across the transporter sees it. */
function refusal(step: StepName, r: ReturnType<typeof row> | null) {
	const v = decide(step, 0, r, ID, SAGA);
	if (v.outcome !== "refuse") throw new Error(`expected a refusal, got ${v.outcome}`);
	const e = v.error as Error & { type?: string; code?: number; data?: unknown };
	return { type: e.type, code: e.code, data: e.data };
}

describe("decide: every forward step", () => {
	const steps: StepName[] = ["markPaying", "confirm", "beginCancel", "finishCancel"];

	it.each(steps)("when %s's update changed the row, then it applied and answers its target state", step => {
		expect(decide(step, 1, null, ID, SAGA)).toEqual({ outcome: "apply", status: TRANSITIONS[step].to });
	});

	it.each(steps)("when %s changed nothing and there is no such reservation, then it is 404 NOT_FOUND", step => {
		expect(refusal(step, null)).toEqual({ type: "NOT_FOUND", code: 404, data: { resource: "reservation", id: ID } });
	});
});

describe("decide: markPaying (PENDING -> PAYING)", () => {
	it("when the saga finds the reservation PAYING or already CONFIRMED under itself, then it is a repeat answering that status", () => {
		expect(decide("markPaying", 0, row("PAYING", SAGA), ID, SAGA)).toEqual({ outcome: "repeat", status: "PAYING" });
		expect(decide("markPaying", 0, row("CONFIRMED", SAGA, SAGA), ID, SAGA)).toEqual({ outcome: "repeat", status: "CONFIRMED" });
	});

	it("when another saga is paying, then it is 409 RESERVATION_NOT_PAYABLE with the status", () => {
		expect(refusal("markPaying", row("PAYING", OTHER))).toEqual({
			type: "RESERVATION_NOT_PAYABLE",
			code: 409,
			data: { reservationId: ID, status: "PAYING" }
		});
	});

	it("when the row is still PENDING (its hold ran out, or this saga was voided), then it is refused as EXPIRED", () => {
		expect(refusal("markPaying", row("PENDING"))).toEqual({ type: "RESERVATION_NOT_PAYABLE", code: 409, data: { reservationId: ID, status: "EXPIRED" } });
	});

	it("when it is cancelled or expired, then it is refused with that status, whichever saga last moved it", () => {
		expect(refusal("markPaying", row("CANCELLED", SAGA)).data).toEqual({ reservationId: ID, status: "CANCELLED" });
		expect(refusal("markPaying", row("EXPIRED")).data).toEqual({ reservationId: ID, status: "EXPIRED" });
	});
});

describe("decide: confirm (PAYING -> CONFIRMED)", () => {
	it("when the reservation is CONFIRMED by this saga's payment, then it is a repeat", () => {
		expect(decide("confirm", 0, row("CONFIRMED", SAGA, SAGA), ID, SAGA)).toEqual({ outcome: "repeat", status: "CONFIRMED" });
	});

	it("when it is CONFIRMED by another saga's payment, then it is 409 RESERVATION_STATE_CONFLICT, even if this saga moved it last", () => {
		expect(refusal("confirm", row("CONFIRMED", SAGA, OTHER))).toEqual({
			type: "RESERVATION_STATE_CONFLICT",
			code: 409,
			data: { reservationId: ID, status: "CONFIRMED" }
		});
	});

	it("when this saga's payment was rolled back (PENDING again), then it is refused rather than answered as done", () => {
		expect(refusal("confirm", row("PENDING")).type).toBe("RESERVATION_STATE_CONFLICT");
		expect(refusal("confirm", row("CANCELLED", SAGA, SAGA)).data).toEqual({ reservationId: ID, status: "CANCELLED" });
	});
});

describe("decide: beginCancel (PENDING or CONFIRMED -> CANCELLING)", () => {
	it("when the reservation is CANCELLING or already CANCELLED under this saga, then it is a repeat answering that status", () => {
		expect(decide("beginCancel", 0, row("CANCELLING", SAGA), ID, SAGA)).toEqual({ outcome: "repeat", status: "CANCELLING" });
		expect(decide("beginCancel", 0, row("CANCELLED", SAGA), ID, SAGA)).toEqual({ outcome: "repeat", status: "CANCELLED" });
	});

	it("when another saga holds it or it is in a state the saga did not expect, then it is 409 RESERVATION_NOT_CANCELLABLE", () => {
		expect(refusal("beginCancel", row("CANCELLING", OTHER))).toEqual({
			type: "RESERVATION_NOT_CANCELLABLE",
			code: 409,
			data: { reservationId: ID, status: "CANCELLING" }
		});
		expect(refusal("beginCancel", row("PAYING", OTHER)).data).toEqual({ reservationId: ID, status: "PAYING" });
		expect(refusal("beginCancel", row("CONFIRMED", SAGA, SAGA)).data).toEqual({ reservationId: ID, status: "CONFIRMED" });
	});
});

describe("decide: finishCancel (CANCELLING -> CANCELLED)", () => {
	it("when the reservation is CANCELLED under this saga, then it is a repeat", () => {
		expect(decide("finishCancel", 0, row("CANCELLED", SAGA), ID, SAGA)).toEqual({ outcome: "repeat", status: "CANCELLED" });
	});

	it("when another saga cancelled it or the cancellation was aborted, then it is 409 RESERVATION_STATE_CONFLICT", () => {
		expect(refusal("finishCancel", row("CANCELLED", OTHER))).toEqual({
			type: "RESERVATION_STATE_CONFLICT",
			code: 409,
			data: { reservationId: ID, status: "CANCELLED" }
		});
		expect(refusal("finishCancel", row("CONFIRMED", SAGA, SAGA)).data).toEqual({ reservationId: ID, status: "CONFIRMED" });
		expect(refusal("finishCancel", row("CANCELLING", OTHER)).data).toEqual({ reservationId: ID, status: "CANCELLING" });
	});
});

describe("TRANSITIONS", () => {
	const steps = (Object.keys(TRANSITIONS) as (keyof typeof TRANSITIONS)[]).filter((k): k is StepName => TRANSITIONS[k].kind === "step");

	it("when a step's update changed nothing yet the row is in the step's own target state under its saga, then that is a repeat (a retry is never refused)", () => {
		for (const step of steps) {
			const t = TRANSITIONS[step];
			const own = row(t.to, t.repeat.by === "saga_id" ? SAGA : null, t.repeat.by === "paid_saga_id" ? SAGA : null);
			expect([step, decide(step, 0, own, ID, SAGA).outcome]).toEqual([step, "repeat"]);
		}
	});

	it("when a step's update changed nothing and the row is still in a state it leaves, then it is refused, never answered as done", () => {
		for (const step of steps) {
			for (const from of TRANSITIONS[step].from) {
				expect([step, from, decide(step, 0, row(from, SAGA, SAGA), ID, SAGA).outcome]).toEqual([step, from, "refuse"]);
			}
		}
	});

	it("when a compensation runs, then it leaves only the state its own step made", () => {
		expect(TRANSITIONS.revertPaying.from).toEqual([TRANSITIONS.markPaying.to]);
		expect(TRANSITIONS.revertPaying.to).toBe(TRANSITIONS.markPaying.from[0]);
		expect(TRANSITIONS.voidConfirmation.from).toEqual([TRANSITIONS.confirm.to]);
		expect(TRANSITIONS.abortCancel.from).toEqual([TRANSITIONS.beginCancel.to]);
		expect(TRANSITIONS.abortCancel.to).toBe("PREVIOUS_STATUS");
		for (const name of ["revertPaying", "voidConfirmation", "abortCancel"] as const) expect(TRANSITIONS[name].kind).toBe("compensation");
	});

	it("when the sweeper expires a reservation, then it races markPaying for the same state, so only one of them can win", () => {
		expect(TRANSITIONS.expire).toEqual({ kind: "sweep", from: TRANSITIONS.markPaying.from, to: "EXPIRED" });
	});
});
