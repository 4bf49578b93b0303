/**
 * When a consumer group retries a failing event, and when it gives up (docs/DESIGN.md section 7; issue 15 item 2).
 *
 * A handler fails mostly because something it needs is briefly gone: Redis restarting under the ranking, a
 * MariaDB failover under the notifications. So the delays grow exponentially from `firstDelayMs`, are capped at
 * `maxDelayMs`, and carry up to 20 % of random shortening (jitter: the events that failed together do not all
 * come back in the same instant). The number of deliveries is derived from `retryForMs` (EVENT_RETRY_FOR_SEC):
 * enough that the delays add up to at least that long even when every one of them is jittered to its shortest.
 * Only then is the event dead-lettered. With the defaults (200 ms, 30 s cap, 300 s) that is 20 deliveries over
 * 5 to 6.5 minutes, against the 5 deliveries in 2 s there were before.
 *
 * The same schedule runs in both buses: `nak(delay)` on JetStream, a timer in the memory bus.
 */
export interface RetryPolicy {
	/** Delay after the first failed delivery; it doubles after each further one. */
	firstDelayMs: number;
	/** No delay is longer than this (EVENT_RETRY_MAX_DELAY_SEC). */
	maxDelayMs: number;
	/** Keep retrying for at least this long before the dead-letter queue (EVENT_RETRY_FOR_SEC). */
	retryForMs: number;
	/** Deliveries before the dead-letter queue, when set: overrides `retryForMs` (tests, a group that must not wait). */
	maxAttempts?: number;
}

export const DEFAULT_RETRY: RetryPolicy = { firstDelayMs: 200, maxDelayMs: 30_000, retryForMs: 300_000 };

/** Largest share of a delay that jitter takes off. */
export const JITTER = 0.2;

/** The delay before delivery `attempt + 1` without jitter: firstDelayMs * 2^(attempt-1), capped. */
export function nominalDelayMs(attempt: number, p: RetryPolicy): number {
	return Math.min(p.maxDelayMs, p.firstDelayMs * 2 ** Math.min(Math.max(0, attempt - 1), 40));
}

/** The delay after failed delivery number `attempt` (1-based), jittered: between 80 % and 100 % of the nominal one. */
export function retryDelayMs(attempt: number, p: RetryPolicy, random: () => number = Math.random): number {
	return Math.max(1, Math.round(nominalDelayMs(attempt, p) * (1 - JITTER * random())));
}

/** Deliveries before the dead-letter queue: the fewest whose shortest possible delays add up to `retryForMs`. */
export function maxAttemptsOf(p: RetryPolicy): number {
	if (p.maxAttempts !== undefined) return Math.max(1, p.maxAttempts);
	let waited = 0;
	let attempts = 1;
	while (waited < p.retryForMs && attempts < 100_000) {
		waited += nominalDelayMs(attempts, p) * (1 - JITTER);
		attempts++;
	}
	return attempts;
}

/** The bus's policy with a subscription's overrides (`maxAttempts`, `backoffMs` as the first delay). */
export function policyOf(base: RetryPolicy, overrides: { maxAttempts?: number; backoffMs?: number; retry?: Partial<RetryPolicy> }): RetryPolicy {
	const p: RetryPolicy = { ...base, ...overrides.retry };
	if (overrides.backoffMs !== undefined) p.firstDelayMs = overrides.backoffMs;
	if (overrides.maxAttempts !== undefined) p.maxAttempts = overrides.maxAttempts;
	return p;
}

/** The automatic redrive of the dead-letter queue (DLQ_REDRIVE_SEC, DLQ_REDRIVE_MAX). */
export interface RedrivePolicy {
	/** A dead letter is sent back to its group once it has waited this long; 0 turns the redrive off. */
	afterMs: number;
	/** Redrives per event; a letter that already had this many stays for an operator (the alert says so). */
	maxRedrives: number;
}

export const DEFAULT_REDRIVE: RedrivePolicy = { afterMs: 600_000, maxRedrives: 3 };

/** Whether a dead letter goes back now, later, or never (it had its redrives: an operator's). */
export function redriveDue(
	letter: { failedAt: string; redrives?: number; invalid?: boolean },
	policy: RedrivePolicy,
	now: number
): "due" | "wait" | "exhausted" {
	// An event its handler called invalid fails the same way every time: an operator's, not a timer's.
	if (letter.invalid || (letter.redrives ?? 0) >= policy.maxRedrives) return "exhausted";
	const failedAt = Date.parse(letter.failedAt);
	return Number.isFinite(failedAt) && now - failedAt < policy.afterMs ? "wait" : "due";
}
