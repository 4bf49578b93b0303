/** Pure rules of the payment context: keys, replays, public shapes and the consistency checks. */
import {
	chargeReplay,
	checkInvariants,
	isValidIdempotencyKey,
	payReplay,
	signedAmount,
	toIso,
	toUserPayment,
	type LedgerRow,
	type PaymentRow,
	type WalletRow
} from "../../services/payment/payment.domain";

const at = new Date("2026-01-01T00:00:00.000Z");

function payment(over: Partial<PaymentRow> = {}): PaymentRow {
	return {
		id: "p1",
		saga_id: "s1",
		reservation_id: "r1",
		user_id: "u1",
		amount: 300,
		status: "COMPLETED",
		created_at: at,
		updated_at: at,
		refunded_at: null,
		...over
	};
}

let seq = 0;
function row(user: string, type: LedgerRow["type"], amount: number, balanceAfter: number, paymentId: string | null = null): LedgerRow {
	seq++;
	return { seq, id: `t${seq}`, user_id: user, type, amount, balance_after: balanceAfter, ref: paymentId ?? `k${seq}`, payment_id: paymentId, created_at: at };
}

describe("payment domain", () => {
	it("when a key is 1..255 printable characters, then it is valid; otherwise not", () => {
		expect(isValidIdempotencyKey("a")).toBe(true);
		expect(isValidIdempotencyKey("x".repeat(255))).toBe(true);
		expect(isValidIdempotencyKey("550e8400-e29b-41d4-a716-446655440000")).toBe(true);
		for (const bad of ["", "x".repeat(256), "tab\there", "new\nline", "   ", "ключ", 42, undefined]) {
			expect({ bad, ok: isValidIdempotencyKey(bad) }).toEqual({ bad, ok: false });
		}
	});

	it("when a charge key comes back, then the same amount replays and another amount is a reuse", () => {
		expect(chargeReplay({ amount: 100 }, 100)).toBe("replay");
		expect(chargeReplay({ amount: 100 }, 101)).toBe("reused");
	});

	it("when a saga id already has a payment, then the answer depends on its status and on the request", () => {
		const req = { sagaId: "s1", reservationId: "r1", userId: "u1", amount: 300 };
		expect(payReplay(payment(), req)).toBe("replay");
		expect(payReplay(payment(), { ...req, amount: 301 })).toBe("reused");
		expect(payReplay(payment(), { ...req, userId: "u2" })).toBe("reused");
		expect(payReplay(payment(), { ...req, reservationId: "r2" })).toBe("reused");
		expect(payReplay(payment({ status: "REFUNDED" }), req)).toBe("voided");
		expect(payReplay(payment({ status: "VOIDED", user_id: null, reservation_id: null, amount: 0 }), req)).toBe("voided");
	});

	it("when a ledger row is read, then only a PAYMENT takes points away", () => {
		expect([signedAmount("CHARGE", 5), signedAmount("PAYMENT", 5), signedAmount("REFUND", 5)]).toEqual([5, -5, 5]);
	});

	it("when a database time comes back as a Date or a string, then it is ISO-8601 UTC", () => {
		expect(toIso(at)).toBe("2026-01-01T00:00:00.000Z");
		expect(toIso("2026-01-01 00:00:00.000 +00:00")).toBe("2026-01-01T00:00:00.000Z");
		expect(toIso("2026-01-01 09:00:00.000 +09:00")).toBe("2026-01-01T00:00:00.000Z");
		expect(toIso("2026-01-01 00:00:00.000")).toBe("2026-01-01T00:00:00.000Z");
	});

	it("when a user reads their payment, then neither the saga id nor the user id is shown", () => {
		expect(toUserPayment(payment({ status: "REFUNDED", refunded_at: at }))).toEqual({
			id: "p1",
			reservationId: "r1",
			amount: 300,
			status: "REFUNDED",
			createdAt: "2026-01-01T00:00:00.000Z",
			refundedAt: "2026-01-01T00:00:00.000Z"
		});
	});

	describe("consistency checks", () => {
		const wallets: WalletRow[] = [
			{ user_id: "a", balance: 700, version: 3 },
			{ user_id: "b", balance: 50, version: 1 }
		];
		const ledger = [
			row("a", "CHARGE", 1000, 1000),
			row("a", "PAYMENT", 300, 700, "p1"),
			row("a", "PAYMENT", 200, 500, "p2"),
			row("a", "REFUND", 200, 700, "p2"),
			row("b", "CHARGE", 50, 50)
		];
		const payments = [
			payment({ id: "p1", user_id: "a", amount: 300 }),
			payment({ id: "p2", saga_id: "s2", user_id: "a", amount: 200, status: "REFUNDED" }),
			payment({ id: "p3", saga_id: "s3", user_id: null, reservation_id: null, amount: 0, status: "VOIDED" })
		];
		const failing = (w: WalletRow[], l: LedgerRow[], p: PaymentRow[]) =>
			Object.fromEntries(
				checkInvariants(w, l, p)
					.filter(c => !c.ok)
					.map(c => [c.name, c.details.ids])
			);

		it("when balances, ledger and payments agree, then every check passes", () => {
			expect(checkInvariants(wallets, ledger, payments).map(c => c.ok)).toEqual([true, true, true, true]);
		});

		it("when a balance drifts from its ledger, then that wallet is named", () => {
			expect(failing([{ ...wallets[0], balance: 701 }, wallets[1]], ledger, payments)).toEqual({
				"wallet-balance-equals-ledger": ["a"]
			});
		});

		it("when a balance is negative, then the wallet is named", () => {
			const l = [...ledger, row("c", "CHARGE", 10, 10), row("c", "PAYMENT", 20, -10, "p9")];
			const p = [...payments, payment({ id: "p9", saga_id: "s9", user_id: "c", amount: 20 })];
			expect(failing([...wallets, { user_id: "c", balance: -10, version: 2 }], l, p)).toEqual({
				"no-negative-balance": ["c", "t" + String(seq)]
			});
		});

		it("when a ledger row's balance-after does not follow from the previous row, then the chain check names the wallet", () => {
			const l = ledger.map(r => (r.id === ledger[1].id ? { ...r, balance_after: 650 } : r));
			expect(failing(wallets, l, payments)).toEqual({ "ledger-chain": ["a"] });
		});

		it("when a payment lacks its rows, has a second debit, or a row points nowhere, then the payment is named", () => {
			expect(
				failing(
					wallets,
					ledger.filter(r => r.type !== "REFUND"),
					payments
				)
			).toMatchObject({
				"payment-has-ledger-rows": ["p2"]
			});
			const twice = [...ledger, row("a", "PAYMENT", 300, 400, "p1")];
			expect(failing([{ ...wallets[0], balance: 400 }, wallets[1]], twice, payments)).toEqual({ "payment-has-ledger-rows": ["p1"] });
			const orphan = [...ledger, row("b", "REFUND", 5, 55, "ghost")];
			expect(failing([wallets[0], { ...wallets[1], balance: 55 }], orphan, payments)).toEqual({ "payment-has-ledger-rows": ["ghost"] });
		});

		it("when ledger rows belong to no wallet, then the user is named", () => {
			expect(failing(wallets, [...ledger, row("z", "CHARGE", 5, 5)], payments)).toEqual({ "wallet-balance-equals-ledger": ["z"] });
		});
	});
});
