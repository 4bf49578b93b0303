/**
 * The per-buyer rule (reservation.domain.ts `buyerVerdict`) and the saga key of a keyed request, without a
 * database: what counts against a buyer, and when an expired hold stops counting.
 */
import { buyerVerdict, EXPIRY_GRACE_MS, sagaKeyOf } from "../../services/reservation/reservation.domain";

const now = new Date("2026-12-06T12:00:00Z");
const at = (ms: number) => new Date(now.getTime() + ms);

describe("buyerVerdict", () => {
	it("when the buyer has nothing, then up to the limit is allowed and one more is not", () => {
		expect(buyerVerdict([], 4, 4, now)).toEqual({ ok: true });
		expect(buyerVerdict([], 5, 4, now)).toEqual({ ok: false, taken: 0 });
	});

	it("when confirmed seats add up, then the limit counts them, and an open reservation is refused first", () => {
		const confirmed = { id: "c", status: "CONFIRMED", expires_at: at(-60_000), seats: 3 };
		expect(buyerVerdict([confirmed], 1, 4, now)).toEqual({ ok: true });
		expect(buyerVerdict([confirmed], 2, 4, now)).toEqual({ ok: false, taken: 3 });
		expect(buyerVerdict([confirmed, { id: "p", status: "PAYING", expires_at: at(-1), seats: 1 }], 1, 4, now)).toEqual({ ok: false, open: "p" });
	});

	it("when a PENDING hold has just expired, then it still counts (a payment may be moving it), and stops counting after the grace", () => {
		const pending = (expiredMsAgo: number) => ({ id: "p", status: "PENDING", expires_at: at(-expiredMsAgo), seats: 4 });
		expect(buyerVerdict([pending(1000)], 1, 4, now)).toEqual({ ok: false, open: "p" });
		expect(buyerVerdict([pending(EXPIRY_GRACE_MS + 1)], 4, 4, now)).toEqual({ ok: true });
	});
});

describe("sagaKeyOf", () => {
	it("when a key is short, then it is kept; when it is long (up to the API's 255), then the saga key still fits 191 characters", () => {
		const id = "0f8fad5b-d9cb-469f-a165-70867728950e";
		expect(sagaKeyOf("confirm", id, "pay-1")).toBe(`confirm:${id}:pay-1`);
		const long = sagaKeyOf("cancel", id, "k".repeat(255));
		expect(long.length).toBeLessThanOrEqual(191);
		expect(long).not.toBe(sagaKeyOf("cancel", id, "k".repeat(254)));
	});
});
