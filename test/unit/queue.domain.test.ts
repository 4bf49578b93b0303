import { etaSeconds, formatToken, isActiveFor, newTokenId, parseToken, toTokenView, type QueueEntry } from "../../services/queue/queue.domain";

const entry = (over: Partial<QueueEntry> = {}): QueueEntry => ({
	tokenId: "AAAAAAAAAAAAAAAAAAAAAA",
	userId: "u1",
	status: "ACTIVE",
	position: 0,
	expiresAt: 2_000,
	admittedLastMinute: 0,
	now: 1_000,
	opensAt: null,
	...over
});

describe("queue tokens", () => {
	it("when a token id is made, then it is 128 random bits in 22 url-safe characters and never repeats", () => {
		const ids = new Set(Array.from({ length: 2000 }, () => newTokenId()));
		expect(ids.size).toBe(2000);
		for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
		expect(newTokenId(n => Buffer.alloc(n, 0xff))).toBe("_____________________w");
	});

	it("when a token is formatted and parsed, then the concert and token id come back", () => {
		const id = newTokenId();
		const token = formatToken("3f2a-uuid_like", id);
		expect(parseToken(token)).toEqual({ concertId: "3f2a-uuid_like", tokenId: id });
	});

	it("when a token is malformed, then it parses to null", () => {
		const id = newTokenId();
		for (const bad of ["", id, `.${id}`, `c.${id}x`, `c.${id.slice(1)}`, `c/d.${id}`, `c.${id.slice(0, 21)}+`, `${"c".repeat(65)}.${id}`]) {
			expect({ bad, parsed: parseToken(bad) }).toEqual({ bad, parsed: null });
		}
	});
});

describe("queue ETA", () => {
	const base = { maxActive: 100, activeTtlSec: 600 };

	it("when the token is active, then the ETA is 0", () => {
		expect(etaSeconds({ ...base, status: "ACTIVE", position: 0, admittedLastMinute: 50 })).toBe(0);
	});

	it("when admissions were measured, then the ETA is the position over the rate", () => {
		expect(etaSeconds({ ...base, status: "WAITING", position: 30, admittedLastMinute: 60 })).toBe(30);
		expect(etaSeconds({ ...base, status: "WAITING", position: 1, admittedLastMinute: 120 })).toBe(1);
		expect(etaSeconds({ ...base, status: "WAITING", position: 7, admittedLastMinute: 3 })).toBe(140);
	});

	it("when the measured rate is slower than the lifetime bound, then the bound wins", () => {
		// One admission in the last minute, but slots live 10 s: position 1 is in within 10 s whatever the rate.
		expect(etaSeconds({ maxActive: 1, activeTtlSec: 10, status: "WAITING", position: 1, admittedLastMinute: 1 })).toBe(10);
		expect(etaSeconds({ maxActive: 2, activeTtlSec: 10, status: "WAITING", position: 3, admittedLastMinute: 1 })).toBe(20);
	});

	it("when nobody was admitted in the last minute, then the ETA is the pessimistic whole-lifetime bound", () => {
		expect(etaSeconds({ ...base, status: "WAITING", position: 1, admittedLastMinute: 0 })).toBe(600);
		expect(etaSeconds({ ...base, status: "WAITING", position: 100, admittedLastMinute: 0 })).toBe(600);
		expect(etaSeconds({ ...base, status: "WAITING", position: 101, admittedLastMinute: 0 })).toBe(1200);
	});
});

describe("queue views and validation", () => {
	it("when an active entry is shown, then it has position 0, ETA 0 and an ISO expiry", () => {
		expect(toTokenView("c1", entry(), { maxActive: 10, activeTtlSec: 60 })).toEqual({
			token: "c1.AAAAAAAAAAAAAAAAAAAAAA",
			concertId: "c1",
			status: "ACTIVE",
			position: 0,
			etaSeconds: 0,
			expiresAt: new Date(2_000).toISOString()
		});
	});

	it("when a waiting entry is shown, then it has its position, an ETA and no expiry", () => {
		const view = toTokenView("c1", entry({ status: "WAITING", position: 4, expiresAt: null, admittedLastMinute: 2 }), {
			maxActive: 10,
			activeTtlSec: 600
		});
		expect(view).toMatchObject({ status: "WAITING", position: 4, etaSeconds: 120, expiresAt: null });
	});

	it("when validating, then only a live ACTIVE token of the same user for the same concert passes", () => {
		const token = { concertId: "c1" };
		const expect1 = { userId: "u1", concertId: "c1" };
		expect(isActiveFor(entry(), token, expect1)).toBe(true);
		expect(isActiveFor(null, token, expect1)).toBe(false);
		expect(isActiveFor(entry({ status: "WAITING", position: 1, expiresAt: null }), token, expect1)).toBe(false);
		expect(isActiveFor(entry({ userId: "u2" }), token, expect1)).toBe(false);
		expect(isActiveFor(entry(), { concertId: "c2" }, expect1)).toBe(false);
		expect(isActiveFor(entry(), token, { userId: "u1", concertId: "c2" })).toBe(false);
		expect(isActiveFor(entry({ expiresAt: 1_000 }), token, expect1)).toBe(false);
	});
});
