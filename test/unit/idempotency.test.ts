import { canonicalJson, fingerprint, templateMatcher } from "../../services/api/idempotency";

describe("idempotency fingerprints and route matching", () => {
	it("when two bodies differ only in key order, then their fingerprints match", () => {
		expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}');
		expect(fingerprint("POST", "/api/x", { a: 1, b: 2 })).toBe(fingerprint("POST", "/api/x", { b: 2, a: 1 }));
	});

	it("when the body, path or method differ, then the fingerprints differ", () => {
		const base = fingerprint("POST", "/api/x", { a: 1 });
		expect(fingerprint("POST", "/api/x", { a: 2 })).not.toBe(base);
		expect(fingerprint("POST", "/api/y", { a: 1 })).not.toBe(base);
		expect(fingerprint("DELETE", "/api/x", { a: 1 })).not.toBe(base);
	});

	it("when a path matches a route template, then the matcher says so, method included", () => {
		const m = templateMatcher(["POST /payments", "POST /reservations/:id/cancel"]);
		expect(m("POST", "/api/payments")).toBe(true);
		expect(m("POST", "/api/reservations/abc-1/cancel")).toBe(true);
		expect(m("GET", "/api/payments")).toBe(false);
		expect(m("POST", "/api/reservations/abc/cancel/extra")).toBe(false);
		expect(m("POST", "/api/paymentsX")).toBe(false);
	});
});
