import {
	confirmedFindings,
	holdFindings,
	moneyFindings,
	noFindings,
	seatFindings,
	stuckSagas,
	type AuditPayment,
	type AuditReservation
} from "../../services/ops/consistency";

const res = (id: string, status: AuditReservation["status"], seatIds: string[], extra: Partial<AuditReservation> = {}): AuditReservation => ({
	id,
	status,
	scheduleId: "s1",
	amount: 100 * seatIds.length,
	seatIds,
	paymentId: status === "CONFIRMED" ? `p-${id}` : null,
	paidSagaId: null,
	...extra
});
const payment = (id: string, reservationId: string, amount: number, status = "COMPLETED"): AuditPayment => ({ id, sagaId: `saga-${id}`, reservationId, amount, status });

describe("consistency rules", () => {
	it("when every sale matches a CONFIRMED reservation, then there are no seat findings", () => {
		const f = seatFindings([{ scheduleId: "s1", seatId: "a", reservationId: "r1" }], [res("r1", "CONFIRMED", ["a"])]);
		expect(noFindings(f)).toBe(true);
	});

	it("when two CONFIRMED reservations have one seat, then it is sold twice, naming both", () => {
		const f = seatFindings([{ scheduleId: "s1", seatId: "a", reservationId: "r1" }], [res("r1", "CONFIRMED", ["a"]), res("r2", "CONFIRMED", ["a"])]);
		expect(f.soldTwice).toEqual([{ scheduleId: "s1", seatId: "a", reservationIds: ["r1", "r2"] }]);
		expect(f.confirmedNotSold).toEqual([{ reservationId: "r2", scheduleId: "s1", seatId: "a", soldTo: "r1" }]);
	});

	it("when a sale's reservation is cancelled or unknown, then it is sold without reservation; CANCELLING is in flight", () => {
		const f = seatFindings(
			[
				{ scheduleId: "s1", seatId: "a", reservationId: "r1" },
				{ scheduleId: "s1", seatId: "b", reservationId: "ghost" },
				{ scheduleId: "s1", seatId: "c", reservationId: "r3" }
			],
			[res("r1", "CANCELLED", ["a"]), res("r3", "CANCELLING", ["c"])]
		);
		expect(f.soldWithoutReservation).toEqual([
			{ scheduleId: "s1", seatId: "a", reservationId: "r1", reservationStatus: "CANCELLED" },
			{ scheduleId: "s1", seatId: "b", reservationId: "ghost", reservationStatus: null }
		]);
	});

	it("when a CONFIRMED reservation has no payment, two, or one of another amount, then it is listed", () => {
		const rs = [res("r1", "CONFIRMED", ["a"]), res("r2", "CONFIRMED", ["b"]), res("r3", "CONFIRMED", ["c"]), res("r4", "CONFIRMED", ["d"])];
		const ps = [payment("p-r2", "r2", 100), payment("x", "r2", 100), payment("p-r3", "r3", 99), payment("p-r4", "r4", 100)];
		const f = moneyFindings(rs, ps);
		expect(f.confirmedWithoutPayment.map(x => x.reservationId)).toEqual(["r1", "r2", "r3"]);
		expect(f.completedWithoutReservation.map(x => x.paymentId)).toEqual(["x"]);
	});

	it("when a REFUNDED payment still pays for a CONFIRMED reservation, then it is listed; after a compensated saga it is not", () => {
		const rs = [res("r1", "CONFIRMED", ["a"], { paymentId: "p1" }), res("r2", "EXPIRED", ["b"]), res("r3", "CANCELLED", ["c"])];
		const ps = [payment("p1", "r1", 100, "REFUNDED"), payment("p2", "r2", 100, "REFUNDED"), payment("p3", "r3", 100, "REFUNDED")];
		expect(moneyFindings(rs, ps).refundedButConfirmed).toEqual([{ paymentId: "p1", reservationId: "r1", reservationStatus: "CONFIRMED" }]);
	});

	it("when a COMPLETED payment's reservation is PAYING, then it is in flight, not drift; CANCELLED is drift", () => {
		const f = moneyFindings([res("r1", "PAYING", ["a"]), res("r2", "CANCELLED", ["b"])], [payment("p1", "r1", 100), payment("p2", "r2", 100)]);
		expect(f.completedWithoutReservation.map(x => x.paymentId)).toEqual(["p2"]);
	});

	it("when a hold's owner is not PENDING or PAYING, then it is an orphan", () => {
		const f = holdFindings(
			[
				{ scheduleId: "s1", seatId: "a", owner: "r1" },
				{ scheduleId: "s1", seatId: "b", owner: "r2" },
				{ scheduleId: "s1", seatId: "c", owner: "nobody" }
			],
			[res("r1", "PENDING", ["a"]), res("r2", "EXPIRED", ["b"])]
		);
		expect(f.orphanHolds.map(h => [h.seatId, h.reservationStatus])).toEqual([
			["b", "EXPIRED"],
			["c", null]
		]);
	});

	it("when a saga is RUNNING past the bound, then it is stuck; terminal ones never are", () => {
		const now = Date.parse("2026-01-01T00:10:00Z");
		const rows = [
			{ id: "a", type: "t", status: "RUNNING", updatedAt: "2026-01-01T00:00:00Z" },
			{ id: "b", type: "t", status: "COMPENSATING", updatedAt: "2026-01-01T00:09:30Z" },
			{ id: "c", type: "t", status: "FAILED", updatedAt: "2026-01-01T00:00:00Z" }
		];
		expect(stuckSagas(rows, now, 60_000).map(s => s.id)).toEqual(["a"]);
	});

	it("when a finding is seen by one run only, then it is dropped", () => {
		const out = confirmedFindings({ list: [{ id: 1 }, { id: 2 }], n: 1 }, { list: [{ id: 2 }, { id: 3 }], n: 2 });
		expect(out).toEqual({ list: [{ id: 2 }], n: 2 });
		expect(noFindings({ error: "X" })).toBe(false);
	});
});
