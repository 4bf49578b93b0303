/** The engine's pure rules: which errors reject, backoff, what a saga keeps of an error, definition checks. */
import { Errors } from "moleculer";
import { backoffDelay, isRejection, toSagaError } from "../../sagas/policy";
import { defineSaga } from "../../sagas/types";

describe("isRejection", () => {
	it("when a participant answers a non-retryable 4xx, then it is a business rejection", () => {
		expect(isRejection(new Errors.MoleculerClientError("no", 402, "INSUFFICIENT_POINTS"))).toBe(true);
		// As it arrives over the transporter: a plain object, no class.
		expect(isRejection({ code: 409, type: "SEAT_UNAVAILABLE", retryable: false })).toBe(true);
	});

	it("when the error is a timeout, an unreachable node, a retryable 4xx or a 5xx, then it is transient", () => {
		expect(isRejection(new Errors.RequestTimeoutError({ action: "x", nodeID: "n" }))).toBe(false);
		expect(isRejection(new Errors.ServiceNotFoundError({ action: "x" }))).toBe(false); // 404 but retryable
		expect(isRejection(new Errors.ServiceNotAvailableError({ action: "x" }))).toBe(false);
		expect(isRejection({ code: 429, type: "RATE_LIMITED", retryable: true })).toBe(false);
		expect(isRejection(new Errors.MoleculerServerError("boom", 500, "BROKEN"))).toBe(false);
		expect(isRejection(new Error("socket hang up"))).toBe(false);
		expect(isRejection(undefined)).toBe(false);
	});
});

describe("backoffDelay", () => {
	it("when attempts fail, then the delay doubles from the base up to the cap", () => {
		expect([1, 2, 3, 4, 5, 6].map(a => backoffDelay(a, 100, 1000))).toEqual([100, 200, 400, 800, 1000, 1000]);
		expect(backoffDelay(50, 100, 5000)).toBe(5000);
		expect(backoffDelay(1, 0, 1000)).toBe(0);
	});
});

describe("toSagaError", () => {
	const def = { rejections: { INSUFFICIENT_POINTS: "not enough points" } };

	it("when the type is mapped, then the reason is the definition's; ids stay in data; no stack", () => {
		const err = new Errors.MoleculerClientError("Not enough points", 402, "INSUFFICIENT_POINTS", { userId: "u1" });
		const out = toSagaError(def, err, "pay", "forward");
		expect(out).toEqual({
			type: "INSUFFICIENT_POINTS",
			reason: "not enough points",
			code: 402,
			message: "Not enough points",
			data: { userId: "u1" },
			step: "pay",
			phase: "forward"
		});
		expect(JSON.stringify(out)).not.toContain("at ");
	});

	it("when the error has no type or code, then STEP_FAILED with 500 and the type as reason", () => {
		expect(toSagaError(def, new Error("x".repeat(900)), "s", "compensate")).toMatchObject({
			type: "STEP_FAILED",
			reason: "STEP_FAILED",
			code: 500,
			phase: "compensate"
		});
		expect(toSagaError(def, new Error("x".repeat(900)), "s", "forward").message).toHaveLength(500);
	});
});

describe("defineSaga", () => {
	const step = (name: string) => ({ name, action: "a.b", params: () => ({}) });

	it("when a definition is well formed, then it is returned as is", () => {
		const def = { type: "Ok", steps: [step("one"), step("two")] };
		expect(defineSaga(def)).toBe(def);
	});

	it("when step names repeat, are malformed or a retry is impossible, then it throws at load", () => {
		expect(() => defineSaga({ type: "Dup", steps: [step("a"), step("a")] })).toThrow(/duplicate step name a/);
		expect(() => defineSaga({ type: "Bad", steps: [step("has:colon")] })).toThrow(/bad step name/);
		expect(() => defineSaga({ type: "bad type!", steps: [] })).toThrow(/not a valid name/);
		expect(() => defineSaga({ type: "Retry", steps: [{ ...step("a"), retry: { attempts: 0, backoffMs: 10 } }] })).toThrow(/bad retry/);
		expect(() => defineSaga({ type: "Piv", steps: [{ ...step("a"), retriable: true }, step("b")] })).toThrow(/must be retriable too/);
		const undo = { action: "a.undo", params: () => ({}) };
		expect(() => defineSaga({ type: "Piv", steps: [{ ...step("a"), retriable: true, compensate: undo }] })).toThrow(/cannot have a compensation/);
		expect(
			defineSaga({
				type: "Piv",
				steps: [
					{ ...step("a"), compensate: undo },
					{ ...step("b"), retriable: true }
				]
			}).steps
		).toHaveLength(2);
	});
});
