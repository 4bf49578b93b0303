/**
 * The retry schedule of a failing event (lib/events/retry.ts) and the dead-letter redrive rule: growing, capped,
 * jittered delays that add up to at least EVENT_RETRY_FOR_SEC before the dead-letter queue.
 */
import { DEFAULT_RETRY, JITTER, maxAttemptsOf, nominalDelayMs, policyOf, redriveDue, retryDelayMs, type RetryPolicy } from "../../lib/events/retry";

const shortest = (attempt: number, p: RetryPolicy) => retryDelayMs(attempt, p, () => 1);
const longest = (attempt: number, p: RetryPolicy) => retryDelayMs(attempt, p, () => 0);
/** The shortest and longest time from the first delivery to the last one. */
const span = (p: RetryPolicy, delay: (a: number, p: RetryPolicy) => number) => {
	let ms = 0;
	for (let a = 1; a < maxAttemptsOf(p); a++) ms += delay(a, p);
	return ms;
};

describe("event retry schedule", () => {
	it("when an event keeps failing, then the delays double from 200 ms and stop growing at the cap", () => {
		const p = { ...DEFAULT_RETRY, maxDelayMs: 5_000 };
		expect([1, 2, 3, 4, 5, 6, 7, 8].map(a => nominalDelayMs(a, p))).toEqual([200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
		expect(nominalDelayMs(10_000, p)).toBe(5_000);
	});

	it("when jitter applies, then a delay is between 80 % and 100 % of the nominal one, never longer than the cap", () => {
		const p = { ...DEFAULT_RETRY, maxDelayMs: 5_000 };
		for (let a = 1; a < 12; a++) {
			expect(longest(a, p)).toBe(nominalDelayMs(a, p));
			expect(shortest(a, p)).toBe(Math.round(nominalDelayMs(a, p) * (1 - JITTER)));
			const d = retryDelayMs(a, p);
			expect(d).toBeGreaterThanOrEqual(shortest(a, p));
			expect(d).toBeLessThanOrEqual(p.maxDelayMs);
		}
	});

	it("when the defaults apply, then an event is retried for at least 300 s (not 2 s) and at most 6.5 minutes before the DLQ", () => {
		expect(maxAttemptsOf(DEFAULT_RETRY)).toBe(20);
		expect(span(DEFAULT_RETRY, shortest)).toBeGreaterThanOrEqual(300_000);
		expect(span(DEFAULT_RETRY, longest)).toBeLessThanOrEqual(390_000);
	});

	it("when EVENT_RETRY_FOR_SEC is shorter or longer, then the number of deliveries follows it", () => {
		for (const retryForMs of [0, 1_000, 10_000, 60_000, 3_600_000]) {
			const p = { ...DEFAULT_RETRY, retryForMs };
			expect(span(p, shortest)).toBeGreaterThanOrEqual(retryForMs);
			// One delivery fewer would not be enough.
			expect(span({ ...p, maxAttempts: maxAttemptsOf(p) - 1 }, shortest) < retryForMs || retryForMs === 0).toBe(true);
		}
		expect(maxAttemptsOf({ ...DEFAULT_RETRY, retryForMs: 0 })).toBe(1);
	});

	it("when a subscription gives maxAttempts or a first delay, then they override the bus's policy", () => {
		expect(policyOf(DEFAULT_RETRY, { maxAttempts: 3, backoffMs: 30 })).toEqual({ ...DEFAULT_RETRY, maxAttempts: 3, firstDelayMs: 30 });
		expect(maxAttemptsOf(policyOf(DEFAULT_RETRY, { maxAttempts: 3 }))).toBe(3);
		expect(policyOf(DEFAULT_RETRY, { retry: { retryForMs: 5_000 } }).retryForMs).toBe(5_000);
	});

	it("when a dead letter is younger than the redrive delay, then it waits; past its redrives, it stays for an operator", () => {
		const policy = { afterMs: 60_000, maxRedrives: 2 };
		const now = Date.parse("2025-01-01T00:10:00Z");
		expect(redriveDue({ failedAt: "2025-01-01T00:09:30Z", redrives: 0 }, policy, now)).toBe("wait");
		expect(redriveDue({ failedAt: "2025-01-01T00:09:00Z", redrives: 0 }, policy, now)).toBe("due");
		expect(redriveDue({ failedAt: "2025-01-01T00:00:00Z", redrives: 1 }, policy, now)).toBe("due");
		expect(redriveDue({ failedAt: "2025-01-01T00:00:00Z", redrives: 2 }, policy, now)).toBe("exhausted");
		expect(redriveDue({ failedAt: "2025-01-01T00:00:00Z" }, policy, now)).toBe("due");
	});
});
