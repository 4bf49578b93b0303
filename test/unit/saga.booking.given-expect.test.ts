/**
 * The booking sagas as defined (sagas/confirm-reservation.saga.ts, sagas/cancel-reservation.saga.ts), in the
 * given/expect style: given the saga's data and what each participant answers, expect the exact calls and
 * compensations with their idempotency keys, the final status, and a dead letter with its alert exactly when the
 * saga is parked FAILED. The real executor runs them with the saga service's settings, on an in-memory store and a
 * fake clock (test/support/saga-given-expect.ts): no broker, no database, no real waiting.
 */
import type { CancelReservationData } from "../../sagas/cancel-reservation.saga";
import { cancelConfirmedReservation, cancelPendingReservation } from "../../sagas/cancel-reservation.saga";
import { confirmReservation, type ConfirmReservationData } from "../../sagas/confirm-reservation.saga";
import { expectSaga, given, leaseTakenThen, ok, reject, SAGA_ID, SETTINGS, timeout, times, transient, type Script } from "../support/saga-given-expect";

const repeat = (n: number, call: string): string[] => Array.from({ length: n }, () => call);

// The saga service's settings the backoff figures below follow from: a 5 s cap, 8 compensation attempts.
test("when the saga service's engine settings change, then this file's backoff figures are reviewed", () => {
	expect([SETTINGS.maxBackoffMs, SETTINGS.compensationAttempts, SETTINGS.compensationBackoffMs]).toEqual([5_000, 8, 250]);
});

describe("ConfirmReservation", () => {
	const data: ConfirmReservationData = {
		reservationId: "r-1",
		userId: "u-1",
		concertId: "c-1",
		scheduleId: "sch-1",
		seatIds: ["A1", "A2"],
		amount: 5000,
		queueToken: "tok-1"
	};
	// What the participants answer when they agree.
	const answers = { "payment.pay": { id: "pay-1", amount: 5000 }, "reservation.confirm": { id: "r-1", status: "CONFIRMED" } };
	const run = (script: Script) => given(confirmReservation, data, script, answers);

	// The saga's table: each step's call and its compensation, under their idempotency keys.
	const MARK = "reservation.markPaying saga-1:markPaying";
	const PAY = "payment.pay saga-1:pay";
	const CONFIRM = "reservation.confirm saga-1:confirm";
	const SELL = "concert.confirmSeats saga-1:sellSeats";
	const EXPIRE = "queue.expire saga-1:expireToken";
	const UNMARK = "reservation.revertPaying saga-1:markPaying:compensate";
	const REFUND = "payment.refund saga-1:pay:compensate";
	const VOID = "reservation.voidConfirmation saga-1:confirm:compensate";
	const REHOLD = "concert.rehold saga-1:sellSeats:compensate";

	it("when every participant agrees, then the five steps run once each, in order, and the saga completes with the payment and reservation", async () => {
		const then = await run({});
		expectSaga(then, { status: "COMPLETED", calls: [MARK, PAY, CONFIRM, SELL, EXPIRE], sleeps: [] });
		expect(then.saga.result).toEqual({ payment: { id: "pay-1", amount: 5000 }, reservation: { id: "r-1", status: "CONFIRMED" } });
		// The params each participant gets: the payment is keyed by the saga, the confirmation names the payment.
		expect(then.detail.map(c => c.params)).toEqual([
			{ reservationId: "r-1" },
			{ sagaId: SAGA_ID, reservationId: "r-1", userId: "u-1", amount: 5000 },
			{ reservationId: "r-1", paymentId: "pay-1" },
			{ reservationId: "r-1", scheduleId: "sch-1", seatIds: ["A1", "A2"] },
			{ token: "tok-1" }
		]);
		expect(then.journal.map(j => [j.step, j.phase, j.status, j.attempts])).toEqual([
			["markPaying", "forward", "SUCCEEDED", 1],
			["pay", "forward", "SUCCEEDED", 1],
			["confirm", "forward", "SUCCEEDED", 1],
			["sellSeats", "forward", "SUCCEEDED", 1],
			["expireToken", "forward", "SUCCEEDED", 1]
		]);
	});

	// A participant says no: the steps before it are undone in reverse order; the one that said no is not.
	it.each([
		["markPaying", "reservation.markPaying", "RESERVATION_NOT_PAYABLE", "the reservation is expired, cancelled or already paid", [MARK]],
		["pay", "payment.pay", "INSUFFICIENT_POINTS", "not enough points", [MARK, PAY, UNMARK]],
		["confirm", "reservation.confirm", "PAYMENT_VOIDED", "the payment was rolled back", [MARK, PAY, CONFIRM, REFUND, UNMARK]],
		["sellSeats", "concert.confirmSeats", "SEAT_UNAVAILABLE", "a seat was sold to someone else", [MARK, PAY, CONFIRM, SELL, VOID, REFUND, UNMARK]],
		["expireToken", "queue.expire", "QUEUE_TOKEN_INVALID", "QUEUE_TOKEN_INVALID", [MARK, PAY, CONFIRM, SELL, EXPIRE, REHOLD, VOID, REFUND, UNMARK]]
	])("when %s is rejected, then the earlier steps are compensated in reverse and the saga is COMPENSATED", async (step, action, type, reason, calls) => {
		const then = await run({ [action]: [reject(type)] });
		expectSaga(then, { status: "COMPENSATED", calls, error: { type, reason, code: 409, step, phase: "forward" }, sleeps: [] });
	});

	// Transient failures within the step's attempts: the same call again, under the same key, after the backoff.
	it.each([
		["markPaying", "reservation.markPaying", [MARK, MARK, PAY, CONFIRM, SELL, EXPIRE], [100]],
		["pay", "payment.pay", [MARK, PAY, PAY, CONFIRM, SELL, EXPIRE], [200]],
		["confirm", "reservation.confirm", [MARK, PAY, CONFIRM, CONFIRM, SELL, EXPIRE], [200]],
		["sellSeats", "concert.confirmSeats", [MARK, PAY, CONFIRM, SELL, SELL, EXPIRE], [200]],
		["expireToken", "queue.expire", [MARK, PAY, CONFIRM, SELL, EXPIRE, EXPIRE], [250]]
	])("when %s fails once (unavailable), then it is called again with the same key and the saga completes", async (step, action, calls, sleeps) => {
		const then = await run({ [action]: [transient()] });
		expectSaga(then, { status: "COMPLETED", calls, sleeps });
		expect(then.journal.find(j => j.step === step)).toMatchObject({ status: "SUCCEEDED", attempts: 2 });
	});

	it("when the payment times out twice and then answers, then it is retried under the saga's key with a doubling backoff and charged once", async () => {
		const then = await run({ "payment.pay": [timeout(), timeout()] });
		expectSaga(then, { status: "COMPLETED", calls: [MARK, PAY, PAY, PAY, CONFIRM, SELL, EXPIRE], sleeps: [200, 400] });
		expect(new Set(then.detail.filter(c => c.action === "payment.pay").map(c => JSON.stringify(c.params))).size).toBe(1);
	});

	it("when the payment times out on every attempt, then it is in doubt and refunded too, before markPaying is reverted", async () => {
		const then = await run({ "payment.pay": times(4, timeout()) });
		expectSaga(then, {
			status: "COMPENSATED",
			calls: [MARK, PAY, PAY, PAY, PAY, REFUND, UNMARK],
			error: { type: "REQUEST_TIMEOUT", code: 504, step: "pay", phase: "forward" },
			sleeps: [200, 400, 800]
		});
	});

	it("when the payment times out and then says not enough points, then the timed-out attempt is refunded as well (it may still apply)", async () => {
		const then = await run({ "payment.pay": [timeout(), reject("INSUFFICIENT_POINTS")] });
		expectSaga(then, {
			status: "COMPENSATED",
			calls: [MARK, PAY, PAY, REFUND, UNMARK],
			error: { type: "INSUFFICIENT_POINTS", reason: "not enough points", step: "pay" },
			sleeps: [200]
		});
	});

	it("when expiring the queue token stays unavailable, then it is retried for about half a minute before the booking is undone", async () => {
		const then = await run({ "queue.expire": times(10, transient()) });
		const sleeps = [250, 500, 1000, 2000, 4000, 5000, 5000, 5000, 5000];
		expectSaga(then, {
			status: "COMPENSATED",
			calls: [MARK, PAY, CONFIRM, SELL, ...repeat(10, EXPIRE), REHOLD, VOID, REFUND, UNMARK],
			error: { type: "SERVICE_UNAVAILABLE", step: "expireToken", phase: "forward" },
			sleeps
		});
		expect(sleeps.reduce((a, b) => a + b)).toBe(27_750);
	});

	it("when the refund fails twice while compensating, then it is retried under its compensation key and the saga is COMPENSATED", async () => {
		const then = await run({ "reservation.confirm": [reject("PAYMENT_VOIDED")], "payment.refund": [transient(), timeout()] });
		expectSaga(then, {
			status: "COMPENSATED",
			calls: [MARK, PAY, CONFIRM, REFUND, REFUND, REFUND, UNMARK],
			error: { type: "PAYMENT_VOIDED", step: "confirm" },
			sleeps: [250, 500]
		});
		expect(then.journal.find(j => j.step === "pay" && j.phase === "compensate")).toMatchObject({ status: "SUCCEEDED", attempts: 3 });
	});

	it("when the refund keeps failing, then the saga is parked FAILED with a dead letter and an alert, and markPaying is not reverted before it", async () => {
		const then = await run({ "reservation.confirm": [reject("PAYMENT_VOIDED")], "payment.refund": times(8, transient()) });
		expectSaga(then, {
			status: "FAILED",
			calls: [MARK, PAY, CONFIRM, ...repeat(8, REFUND)],
			// The saga keeps why it was being undone; the dead letter says what keeps failing.
			error: { type: "PAYMENT_VOIDED", step: "confirm", phase: "forward" },
			deadLetter: { step: "pay", phase: "compensate" },
			sleeps: [250, 500, 1000, 2000, 4000, 5000, 5000]
		});
		expect(then.deadLetters[0].error).toMatchObject({ type: "SERVICE_UNAVAILABLE", step: "pay", phase: "compensate" });
		expect(then.saga).toMatchObject({ step: 1, stepName: "pay", attempts: 8 });
	});

	it("when a refused compensation keeps being refused, then it is retried like any failure and parked, never dropped", async () => {
		const then = await run({
			"concert.confirmSeats": [reject("SEAT_UNAVAILABLE")],
			"reservation.voidConfirmation": times(8, reject("RESERVATION_NOT_FOUND", 404))
		});
		expectSaga(then, {
			status: "FAILED",
			calls: [MARK, PAY, CONFIRM, SELL, ...repeat(8, VOID)],
			error: { type: "SEAT_UNAVAILABLE", step: "sellSeats" },
			deadLetter: { step: "confirm", phase: "compensate" }
		});
	});

	it("when an operator retries the parked saga after the payment service recovers, then the refund runs again under the same key and the rest is undone", async () => {
		const then = await run({ "reservation.confirm": [reject("PAYMENT_VOIDED")], "payment.refund": times(8, transient()) });
		expect(then.saga.status).toBe("FAILED");
		expect(then.store.resumeFailed(SAGA_ID, "node-1", SETTINGS.leaseMs)).toBe(true);
		expect(await then.drive()).toBe("terminal");
		expect(then.saga.status).toBe("COMPENSATED");
		expect(then.calls.slice(-3)).toEqual([REFUND, REFUND, UNMARK]);
		expect(then.saga.leaseOwner).toBeNull();
	});
});

describe("CancelPendingReservation", () => {
	const data: CancelReservationData = { reservationId: "r-1", expect: "PENDING", scheduleId: "sch-1", seatIds: ["A1", "A2"], paidSagaId: null };
	const run = (script: Script) => given(cancelPendingReservation, data, script);

	const BEGIN = "reservation.beginCancel saga-1:beginCancel";
	const RELEASE = "concert.release saga-1:releaseSeats";
	const FINISH = "reservation.finishCancel saga-1:finishCancel";
	const ABORT = "reservation.abortCancel saga-1:beginCancel:compensate";
	// The retriable steps' policy (12 attempts from 250 ms), capped at the engine's 5 s: about 38 s in all.
	const UNTIL_IT_WORKS = [250, 500, 1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000, 5000];

	it("when every participant agrees, then the holds are released and the reservation cancelled, in order", async () => {
		const then = await run({});
		expectSaga(then, { status: "COMPLETED", calls: [BEGIN, RELEASE, FINISH], sleeps: [] });
		expect(then.detail.map(c => c.params)).toEqual([
			{ reservationId: "r-1", expect: "PENDING" },
			{ scheduleId: "sch-1", seatIds: ["A1", "A2"], owner: "r-1" },
			{ reservationId: "r-1" }
		]);
	});

	it("when beginCancel is rejected (before the pivot), then nothing is undone and the saga is COMPENSATED with the reason", async () => {
		const then = await run({ "reservation.beginCancel": [reject("RESERVATION_NOT_CANCELLABLE")] });
		expectSaga(then, {
			status: "COMPENSATED",
			calls: [BEGIN],
			error: { type: "RESERVATION_NOT_CANCELLABLE", reason: "the reservation can no longer be cancelled", step: "beginCancel" }
		});
	});

	it("when beginCancel stays unavailable, then it is in doubt and aborted, and the saga is COMPENSATED", async () => {
		const then = await run({ "reservation.beginCancel": times(3, transient()) });
		expectSaga(then, {
			status: "COMPENSATED",
			calls: [BEGIN, BEGIN, BEGIN, ABORT],
			error: { type: "SERVICE_UNAVAILABLE", step: "beginCancel" },
			sleeps: [100, 200]
		});
	});

	it.each([
		["beginCancel", "reservation.beginCancel", [BEGIN, BEGIN, RELEASE, FINISH], [100]],
		["releaseSeats", "concert.release", [BEGIN, RELEASE, RELEASE, FINISH], [250]],
		["finishCancel", "reservation.finishCancel", [BEGIN, RELEASE, FINISH, FINISH], [250]]
	])("when %s times out once, then it is called again with the same key and the saga completes", async (_step, action, calls, sleeps) => {
		expectSaga(await run({ [action]: [timeout()] }), { status: "COMPLETED", calls, sleeps });
	});

	it.each([
		["releaseSeats", "concert.release", [BEGIN, ...repeat(12, RELEASE)]],
		["finishCancel", "reservation.finishCancel", [BEGIN, RELEASE, ...repeat(12, FINISH)]]
	])("when %s (after the pivot) stays unavailable, then it is retried, never compensated, and the saga is parked FAILED", async (step, action, calls) => {
		const then = await run({ [action]: times(12, transient()) });
		expectSaga(then, {
			status: "FAILED",
			calls,
			error: { type: "SERVICE_UNAVAILABLE", step, phase: "forward" },
			deadLetter: { step, phase: "forward" },
			sleeps: UNTIL_IT_WORKS
		});
	});

	it.each([
		["releaseSeats", "concert.release", [BEGIN, RELEASE]],
		["finishCancel", "reservation.finishCancel", [BEGIN, RELEASE, FINISH]]
	])("when %s (after the pivot) is rejected, then it is not retried or compensated: FAILED for an operator", async (step, action, calls) => {
		const then = await run({ [action]: [reject("SEAT_NOT_HELD")] });
		expectSaga(then, { status: "FAILED", calls, error: { type: "SEAT_NOT_HELD", step }, deadLetter: { step, phase: "forward" }, sleeps: [] });
		expect(then.journal.find(j => j.step === step)).toMatchObject({ status: "REJECTED", attempts: 1 });
	});

	it("when an operator retries a saga parked at releaseSeats, then that step runs again under its key and the cancellation finishes", async () => {
		const then = await run({ "concert.release": times(12, transient()) });
		expect(then.store.resumeFailed(SAGA_ID, "node-1", SETTINGS.leaseMs)).toBe(true);
		expect(await then.drive()).toBe("terminal");
		expect(then.saga.status).toBe("COMPLETED");
		expect(then.calls.slice(-2)).toEqual([RELEASE, FINISH]);
		expect(then.calls).not.toContain(ABORT);
	});
});

describe("CancelConfirmedReservation", () => {
	const data: CancelReservationData = { reservationId: "r-1", expect: "CONFIRMED", scheduleId: "sch-1", seatIds: ["A1"], paidSagaId: "confirm-saga-9" };
	const run = (script: Script) => given(cancelConfirmedReservation, data, script, { "payment.refund": { id: "pay-1", amount: 5000 } });

	const BEGIN = "reservation.beginCancel saga-1:beginCancel";
	const REFUND = "payment.refund saga-1:refund";
	const RELEASE_SOLD = "concert.releaseSold saga-1:releaseSold";
	const FINISH = "reservation.finishCancel saga-1:finishCancel";
	const ABORT = "reservation.abortCancel saga-1:beginCancel:compensate";

	it("when every participant agrees, then the paid saga's payment is refunded, the seats released and the refund amount recorded", async () => {
		const then = await run({});
		expectSaga(then, { status: "COMPLETED", calls: [BEGIN, REFUND, RELEASE_SOLD, FINISH], sleeps: [] });
		expect(then.detail.map(c => c.params)).toEqual([
			{ reservationId: "r-1", expect: "CONFIRMED" },
			{ sagaId: "confirm-saga-9", reason: "cancelled by user" },
			{ reservationId: "r-1", scheduleId: "sch-1", seatIds: ["A1"] },
			{ reservationId: "r-1", refundAmount: 5000 }
		]);
	});

	it("when beginCancel is rejected, then nothing is refunded and the saga is COMPENSATED", async () => {
		const then = await run({ "reservation.beginCancel": [reject("RESERVATION_NOT_CANCELLABLE")] });
		expectSaga(then, { status: "COMPENSATED", calls: [BEGIN], error: { type: "RESERVATION_NOT_CANCELLABLE", step: "beginCancel" } });
	});

	it("when beginCancel stays unavailable and aborting it keeps failing, then the saga is parked FAILED at the compensation", async () => {
		const then = await run({ "reservation.beginCancel": times(3, transient()), "reservation.abortCancel": times(8, timeout()) });
		expectSaga(then, {
			status: "FAILED",
			calls: [BEGIN, BEGIN, BEGIN, ...repeat(8, ABORT)],
			error: { type: "SERVICE_UNAVAILABLE", step: "beginCancel", phase: "forward" },
			deadLetter: { step: "beginCancel", phase: "compensate" },
			sleeps: [100, 200, 250, 500, 1000, 2000, 4000, 5000, 5000]
		});
		expect(then.calls).not.toContain(REFUND);
	});

	it.each([
		["beginCancel", "reservation.beginCancel", [BEGIN, BEGIN, REFUND, RELEASE_SOLD, FINISH], [100]],
		["refund", "payment.refund", [BEGIN, REFUND, REFUND, RELEASE_SOLD, FINISH], [250]],
		["releaseSold", "concert.releaseSold", [BEGIN, REFUND, RELEASE_SOLD, RELEASE_SOLD, FINISH], [250]],
		["finishCancel", "reservation.finishCancel", [BEGIN, REFUND, RELEASE_SOLD, FINISH, FINISH], [250]]
	])("when %s is unavailable once, then it is called again with the same key and the saga completes", async (_step, action, calls, sleeps) => {
		expectSaga(await run({ [action]: [transient()] }), { status: "COMPLETED", calls, sleeps });
	});

	it.each([
		["refund", "payment.refund", [BEGIN, ...repeat(12, REFUND)]],
		["releaseSold", "concert.releaseSold", [BEGIN, REFUND, ...repeat(12, RELEASE_SOLD)]],
		["finishCancel", "reservation.finishCancel", [BEGIN, REFUND, RELEASE_SOLD, ...repeat(12, FINISH)]]
	])(
		"when %s (the pivot or after it) keeps timing out, then the booking is never put back to CONFIRMED: FAILED for an operator",
		async (step, action, calls) => {
			const then = await run({ [action]: times(12, timeout()) });
			expectSaga(then, { status: "FAILED", calls, error: { type: "REQUEST_TIMEOUT", step, phase: "forward" }, deadLetter: { step, phase: "forward" } });
			expect(then.calls).not.toContain(ABORT);
		}
	);

	it.each([
		["refund", "payment.refund", [BEGIN, REFUND]],
		["releaseSold", "concert.releaseSold", [BEGIN, REFUND, RELEASE_SOLD]],
		["finishCancel", "reservation.finishCancel", [BEGIN, REFUND, RELEASE_SOLD, FINISH]]
	])("when %s (the pivot or after it) is rejected, then nothing is undone: FAILED for an operator", async (step, action, calls) => {
		const then = await run({ [action]: [reject("RESERVATION_NOT_CANCELLABLE")] });
		expectSaga(then, { status: "FAILED", calls, error: { type: "RESERVATION_NOT_CANCELLABLE", step }, deadLetter: { step, phase: "forward" }, sleeps: [] });
	});

	it("when an operator retries a saga parked at finishCancel, then it finishes with the refund amount journalled before the park", async () => {
		const then = await run({ "reservation.finishCancel": times(12, transient()) });
		expect(then.store.resumeFailed(SAGA_ID, "node-1", SETTINGS.leaseMs)).toBe(true);
		expect(await then.drive()).toBe("terminal");
		expect(then.saga.status).toBe("COMPLETED");
		expect(then.calls.slice(-1)).toEqual([FINISH]);
		expect(then.calls.filter(c => c === REFUND)).toHaveLength(1);
		expect(then.detail.at(-1)!.params).toEqual({ reservationId: "r-1", refundAmount: 5000 });
	});
});

describe("leases", () => {
	it("when another node takes the lease while a step is in flight, then this node writes nothing more and reports the saga lost", async () => {
		const data: CancelReservationData = { reservationId: "r-1", expect: "PENDING", scheduleId: "sch-1", seatIds: ["A1"], paidSagaId: null };
		// releaseSeats answers only after the lease moved: this node paused past its lease and another claimed the saga.
		const then = await given(cancelPendingReservation, data, { "concert.release": [leaseTakenThen(ok())] });
		expect(then.outcome).toBe("lost");
		expect(then.calls).toEqual(["reservation.beginCancel saga-1:beginCancel", "concert.release saga-1:releaseSeats"]);
		expect(then.saga).toMatchObject({ status: "RUNNING", leaseOwner: "node-2", stepName: "releaseSeats" });
		// The call's result was not journalled by the node that lost the lease: the new owner calls it again.
		expect(then.journal.find(j => j.step === "releaseSeats")).toMatchObject({ status: "RUNNING", owner: "node-1" });
		expect(then.terminal).toBeUndefined();
	});
});
