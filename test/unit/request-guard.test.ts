/**
 * The gateway's input guard (services/api/request-guard.ts) as a pure function: the structural limits, the
 * characters it refuses, and that it never recurses.
 */
import { hasBadCharacters, inspectInput, INPUT_LIMITS } from "../../services/api/request-guard";

const typeOf = (v: unknown) => (inspectInput(v) as { type?: string } | null)?.type ?? null;

describe("request guard", () => {
	it("when a body is an ordinary request, then it passes", () => {
		expect(inspectInput({ email: "a@b.c", password: "pässwörd 🎫", seats: { rows: 2, grades: [{ grade: "VIP", rows: 1 }] } })).toBeNull();
		expect(inspectInput({ content: "Great show!\n\tLine two\r\n" })).toBeNull();
		expect(inspectInput(undefined)).toBeNull();
	});

	it("when a body nests 5,000 (or 1,000,000) levels, then it is BODY_TOO_COMPLEX without a stack overflow", () => {
		for (const n of [5_000, 1_000_000]) {
			expect(typeOf(JSON.parse("[".repeat(n) + "]".repeat(n)))).toBe("BODY_TOO_COMPLEX");
			expect(typeOf(JSON.parse('{"a":'.repeat(n) + "1" + "}".repeat(n)))).toBe("BODY_TOO_COMPLEX");
		}
	});

	it("when a body is exactly at the depth limit, then it passes; one more level does not", () => {
		const nest = (n: number) => JSON.parse("[".repeat(n) + "]".repeat(n));
		expect(inspectInput(nest(INPUT_LIMITS.maxDepth))).toBeNull();
		expect(inspectInput(nest(INPUT_LIMITS.maxDepth + 1))).toMatchObject({ type: "BODY_TOO_COMPLEX", data: { limit: "depth" } });
	});

	it("when an object has too many keys, an array too many items, or the body too many values, then each limit names itself", () => {
		const keys = Object.fromEntries(Array.from({ length: INPUT_LIMITS.maxKeys + 1 }, (_, i) => [`k${i}`, i]));
		expect(inspectInput(keys)).toMatchObject({ data: { limit: "keys" } });
		expect(inspectInput({ a: Array(INPUT_LIMITS.maxItems + 1).fill(0) })).toMatchObject({ data: { limit: "items" } });
		const many = { a: Array.from({ length: 20 }, () => Array(INPUT_LIMITS.maxItems).fill(0)) };
		expect(inspectInput(many)).toMatchObject({ data: { limit: "values" } });
	});

	it("when a string holds NUL, another control character, DEL, a C1 control or a lone surrogate, then it is refused", () => {
		for (const s of ["a\u0000b", "\u0001", "x\u001b[31m", "\u007f", "\u0085", "\ud800", "a\udc00b", "\udfff\ud800"]) expect(hasBadCharacters(s)).toBe(true);
		for (const s of ["", "plain", "tab\there", "line\nfeed\r", "emoji 🎫", "한국어", "\u00a0nbsp"]) expect(hasBadCharacters(s)).toBe(false);
	});

	it("when a bad character hides in a nested value or in a key, then the field it is in is named", () => {
		expect(inspectInput({ seats: { grades: [{ grade: "V\u0000IP" }] } })).toMatchObject({
			type: "INVALID_CHARACTERS",
			data: [{ field: "seats.grades[0].grade" }]
		});
		expect(inspectInput({ venue: { "na\u0000me": "x" } })).toMatchObject({ type: "INVALID_CHARACTERS", data: [{ field: "venue" }] });
	});
});
