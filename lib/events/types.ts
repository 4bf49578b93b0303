/**
 * Durable events (docs/DESIGN.md section 7; seed 003 sections 3.5 and 6): the message every producer's outbox relay
 * publishes, and the bus that carries it to consumer groups with retries and a dead-letter queue.
 *
 * Delivery is at least once. Each consumer group receives each event once in the normal case and again after a
 * crash, a redelivery or a replay; consumers therefore dedupe by event id (or by aggregate version) in their own
 * state, atomically with the effect.
 */

import type { RedrivePolicy, RetryPolicy } from "./retry";

/** One outbox row as it travels. `id` is the outbox id: the message id and the consumers' dedupe key. */
export interface EventMessage {
	id: string;
	/** docs/DESIGN.md section 7's name, e.g. "reservation.confirmed". */
	type: string;
	aggregateType: string;
	aggregateId: string;
	/** Per-aggregate version: 1, 2, 3... in commit order. */
	version: number;
	/** When the producer committed it (ISO-8601 UTC). */
	createdAt: string;
	/** The producer's payload; appendOutbox adds `eventId` and `version` to it. */
	payload: Record<string, unknown>;
}

/**
 * A handler's verdict that no retry can help: the event itself is unusable (its payload does not match the
 * catalog). The bus dead-letters it at once, with this message as the reason, instead of retrying it for
 * EVENT_RETRY_FOR_SEC first.
 */
export class InvalidEventError extends Error {
	readonly invalidEvent = true;
	constructor(eventId: string, type: string, problems: string[]) {
		super(`event ${eventId} (${type}) is invalid: ${problems.join("; ")}`);
		this.name = "InvalidEventError";
	}
}

/** By a flag, not `instanceof`: the error may come from another copy of this module. */
export const isInvalidEvent = (err: unknown): boolean => (err as { invalidEvent?: unknown } | null)?.invalidEvent === true;

export interface DeliveryInfo {
	/** 1 on the first delivery to this group, 2 on the first retry, ... */
	attempt: number;
	/** True when the message is an operator's replay of a dead letter. */
	replayed: boolean;
}

export type EventHandler = (event: EventMessage, info: DeliveryInfo) => Promise<void>;

export interface SubscribeOptions {
	/** Consumer group: each group gets each event once; the members of a group share the work. */
	group: string;
	/** Event types this group handles; others are acknowledged unread. */
	types: string[];
	handler: EventHandler;
	/**
	 * How long and how often a failing event is retried before the dead-letter queue (lib/events/retry.ts): the
	 * bus's policy (EVENT_RETRY_FOR_SEC, EVENT_RETRY_MAX_DELAY_SEC) unless overridden here.
	 */
	retry?: Partial<RetryPolicy>;
	/** Deliveries before the dead-letter queue, whatever `retry.retryForMs` says (tests). */
	maxAttempts?: number;
	/** The first retry delay (it doubles from there). */
	backoffMs?: number;
	/** Called after an event was moved to the dead-letter queue (admin alert). */
	onDeadLetter?: (letter: DeadLetter) => void;
}

export interface Subscription {
	readonly group: string;
	stop(): Promise<void>;
}

/** An event a group gave up on after `attempts` deliveries. */
export interface DeadLetter {
	/** The dead-letter queue's own id (stream sequence in cluster mode). */
	id: string;
	group: string;
	event: EventMessage;
	error: string;
	attempts: number;
	failedAt: string;
	/** How many automatic redrives this event had before it landed here again (0 the first time). */
	redrives: number;
	/** Its handler called it invalid (InvalidEventError): sending it back cannot help, so it is never redriven by itself. */
	invalid?: boolean;
}

/** What one redrive round did: the letters it sent back, and how many it left for an operator. */
export interface RedriveResult {
	redriven: DeadLetter[];
	/** Letters of the group that had their `maxRedrives` already. */
	exhausted: number;
}

export interface EventBus {
	readonly kind: "jetstream" | "memory";
	/**
	 * Publishes one event; resolves once the broker stored it. Rejects while the broker is unreachable (the relay
	 * then keeps the row and backs off). The event id is the message id: the broker drops a duplicate publish
	 * within its dedupe window.
	 */
	publish(event: EventMessage): Promise<void>;
	subscribe(opts: SubscribeOptions): Promise<Subscription>;
	/** Dead letters, oldest first. */
	deadLetters(opts?: { group?: string; limit?: number }): Promise<DeadLetter[]>;
	/**
	 * Sends a dead letter back to its group only, and removes it from the queue. Answers the letter, or null when
	 * there is no such letter (already replayed). The group's dedupe makes a replay apply at most once.
	 */
	replay(id: string, opts?: { automatic?: boolean }): Promise<DeadLetter | null>;
	/**
	 * Sends back to `group` each of its dead letters that has waited `policy.afterMs` and had fewer than
	 * `policy.maxRedrives` redrives (a replay with the count + 1, so a poison event stops after that many). Safe to
	 * run on several nodes at once: a replay of one letter is published once (its message id) and removes it.
	 */
	redrive(group: string, policy: RedrivePolicy, now?: number): Promise<RedriveResult>;
	/** Per group: events not yet delivered and delivered but not acknowledged; dead letters kept (gauges). */
	stats(): Promise<BusStats>;
	close(): Promise<void>;
}

export interface BusStats {
	consumers: { group: string; pending: number; ackPending: number }[];
	deadLetters: number;
}

/** Subject-safe names for this install: [A-Za-z0-9_-]. */
export function safeName(s: string): string {
	return s.replace(/[^A-Za-z0-9_-]/g, "_") || "default";
}
