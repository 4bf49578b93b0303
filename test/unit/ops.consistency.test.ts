import { keysetAfter, pageOf } from "../../lib/audit";
import {
	checkStatus,
	confirmedFindings,
	findingReservationIds,
	holdFindings,
	moneyFindings,
	noFindings,
	overallStatus,
	seatFindings,
	stuckReservations,
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
const payment = (id: string, reservationId: string, amount: number, status = "COMPLETED"): AuditPayment => ({
	id,
	sagaId: `saga-${id}`,
	reservationId,
	amount,
	status
});

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

	it("when a reservation is PAYING or CANCELLING and its saga FAILED, then it is stuck at once; with no running saga, only past the bound", () => {
		const now = Date.parse("2026-01-01T01:00:00Z");
		const old = "2026-01-01T00:00:00Z";
		const recent = "2026-01-01T00:59:50Z";
		const rows = [
			res("failed", "PAYING", ["a"], { sagaId: "s-failed", updatedAt: recent }),
			res("gone", "CANCELLING", ["b"], { sagaId: "s-gone", updatedAt: old }),
			res("none", "PAYING", ["c"], { sagaId: null, updatedAt: old }),
			res("running", "PAYING", ["d"], { sagaId: "s-running", updatedAt: old }),
			res("young", "PAYING", ["e"], { sagaId: "s-done", updatedAt: recent }),
			res("settled", "CONFIRMED", ["f"], { sagaId: "s-failed", updatedAt: old })
		];
		const sagas = new Map<string, string | null>([
			["s-failed", "FAILED"],
			["s-gone", null],
			["s-running", "COMPENSATING"],
			["s-done", "COMPLETED"]
		]);
		expect(stuckReservations(rows, sagas, now, 60_000)).toEqual([
			{ reservationId: "failed", status: "PAYING", sagaId: "s-failed", sagaStatus: "FAILED", updatedAt: recent },
			{ reservationId: "gone", status: "CANCELLING", sagaId: "s-gone", sagaStatus: null, updatedAt: old },
			{ reservationId: "none", status: "PAYING", sagaId: null, sagaStatus: null, updatedAt: old }
		]);
	});

	it("when findings name reservations (by id, ids or hold owner), then the incremental check carries exactly those ids", () => {
		const f = {
			soldTwice: [{ scheduleId: "s1", seatId: "a", reservationIds: ["r2", "r1"] }],
			orphanHolds: [{ scheduleId: "s1", seatId: "b", owner: "ghost", reservationStatus: null }],
			confirmedWithoutPayment: [{ reservationId: "r3", amount: 1, completedPayments: [] }],
			counters: { n: 1 }
		};
		expect(findingReservationIds(f)).toEqual(["ghost", "r1", "r2", "r3"]);
	});

	it("when a source could not be read, then the check is unavailable, not drift, and the report is drift only if some check drifted", () => {
		expect(checkStatus({ error: "MAX_PAYLOAD_EXCEEDED", message: "x" })).toBe("unavailable");
		expect(checkStatus({ list: [] })).toBe("ok");
		expect(checkStatus({ list: [1] })).toBe("drift");
		expect(overallStatus(["ok", "unavailable"])).toBe("unavailable");
		expect(overallStatus(["unavailable", "drift"])).toBe("drift");
		expect(overallStatus(["ok", "ok"])).toBe("ok");
	});

	it("when a keyset cursor has several columns, then the condition is each column greater after the earlier ones equal", () => {
		expect(keysetAfter(["a"], [1])).toEqual({ sql: "a > ?", params: [1] });
		expect(keysetAfter(["a", "b", "c"], [1, 2, 3])).toEqual({ sql: "(a > ? OR (a = ? AND (b > ? OR (b = ? AND c > ?))))", params: [1, 1, 2, 2, 3] });
		expect(() => keysetAfter(["a", "b"], [1])).toThrow();
	});

	it("when one row more than the page is read, then the page has `limit` rows and the next cursor is the last row's key; else no cursor", () => {
		const rows = [{ id: "a" }, { id: "b" }, { id: "c" }];
		expect(
			pageOf(
				rows,
				2,
				r => r.id,
				r => [r.id]
			)
		).toEqual({ rows: ["a", "b"], next: ["b"] });
		expect(
			pageOf(
				rows,
				3,
				r => r.id,
				r => [r.id]
			)
		).toEqual({ rows: ["a", "b", "c"], next: null });
	});
});
