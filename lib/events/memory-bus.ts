/**
 * In-process bus for embedded mode and unit tests: the same contract as the JetStream bus (groups, retries with
 * backoff, a dead-letter queue, replay to one group) inside one process.
 *
 * Like a durable JetStream consumer created with "deliver all", a group that subscribes late still receives the
 * events published before it (the bus keeps the last `retain` events). Durability ends at the process: an event
 * published but not yet handled when the process stops is not redelivered at the next start.
 */
import { DEFAULT_RETRY, maxAttemptsOf, policyOf, redriveDue, retryDelayMs, type RedrivePolicy, type RetryPolicy } from "./retry";
import {
	isInvalidEvent,
	type BusStats,
	type DeadLetter,
	type DeliveryInfo,
	type EventBus,
	type EventMessage,
	type RedriveResult,
	type SubscribeOptions,
	type Subscription
} from "./types";

interface Pending {
	event: EventMessage;
	attempt: number;
	replayed: boolean;
	/** Automatic redrives this event had (carried into its next dead letter). */
	redrives: number;
}

export interface MemoryEventBusOptions {
	/** Events kept for groups that subscribe late (default 10,000). */
	retain?: number;
	/** Retry schedule of every group unless its subscription overrides it (lib/events/retry.ts). */
	retry?: Partial<RetryPolicy>;
}

interface Member {
	opts: SubscribeOptions;
	busy: boolean;
	stopped: boolean;
	idle?: () => void;
}

interface Group {
	name: string;
	types: Set<string>;
	members: Member[];
	queue: Pending[];
	next: number;
	timers: Set<NodeJS.Timeout>;
}

export class MemoryEventBus implements EventBus {
	readonly kind = "memory" as const;
	private readonly log: EventMessage[] = [];
	private readonly seen = new Set<string>();
	private readonly groups = new Map<string, Group>();
	private readonly letters = new Map<string, DeadLetter>();
	private letterSeq = 0;
	private closed = false;

	private readonly retain: number;
	private readonly retry: RetryPolicy;

	constructor(opts: MemoryEventBusOptions = {}) {
		this.retain = opts.retain ?? 10_000;
		this.retry = { ...DEFAULT_RETRY, ...opts.retry };
	}

	async publish(event: EventMessage): Promise<void> {
		if (this.closed) throw new Error("event bus closed");
		// The broker-side dedupe window: the same message id is stored once.
		if (this.seen.has(event.id)) return;
		this.seen.add(event.id);
		this.log.push(event);
		if (this.log.length > this.retain) this.seen.delete(this.log.shift()!.id);
		for (const g of this.groups.values()) this.enqueue(g, { event, attempt: 1, replayed: false, redrives: 0 });
	}

	async subscribe(opts: SubscribeOptions): Promise<Subscription> {
		let g = this.groups.get(opts.group);
		if (!g) {
			g = { name: opts.group, types: new Set(opts.types), members: [], queue: [], next: 0, timers: new Set() };
			this.groups.set(opts.group, g);
			for (const event of this.log) this.enqueue(g, { event, attempt: 1, replayed: false, redrives: 0 });
		}
		const member: Member = { opts, busy: false, stopped: false };
		g.members.push(member);
		const group = g;
		setImmediate(() => this.pump(group));
		return {
			group: opts.group,
			stop: async () => {
				member.stopped = true;
				group.members = group.members.filter(m => m !== member);
				if (member.busy) await new Promise<void>(resolve => (member.idle = resolve));
				if (group.members.length === 0) for (const t of group.timers) clearTimeout(t);
			}
		};
	}

	async deadLetters(opts: { group?: string; limit?: number } = {}): Promise<DeadLetter[]> {
		const all = [...this.letters.values()].filter(l => !opts.group || l.group === opts.group);
		return all.slice(0, opts.limit ?? 100);
	}

	async replay(id: string, opts: { automatic?: boolean } = {}): Promise<DeadLetter | null> {
		const letter = this.letters.get(id);
		if (!letter) return null;
		this.letters.delete(id);
		const g = this.groups.get(letter.group);
		// An operator's replay keeps the count (a poison event does not earn new automatic rounds by it).
		const redrives = (letter.redrives ?? 0) + (opts.automatic ? 1 : 0);
		if (g) this.enqueue(g, { event: letter.event, attempt: 1, replayed: true, redrives }, true);
		return letter;
	}

	async redrive(group: string, policy: RedrivePolicy, now = Date.now()): Promise<RedriveResult> {
		const out: RedriveResult = { redriven: [], exhausted: 0 };
		for (const letter of [...this.letters.values()]) {
			if (letter.group !== group) continue;
			const due = redriveDue(letter, policy, now);
			if (due === "exhausted") out.exhausted++;
			if (due !== "due") continue;
			const sent = await this.replay(letter.id, { automatic: true });
			if (sent) out.redriven.push(sent);
		}
		return out;
	}

	async stats(): Promise<BusStats> {
		return {
			consumers: [...this.groups.values()].map(g => ({ group: g.name, pending: g.queue.length, ackPending: g.members.filter(m => m.busy).length })),
			deadLetters: this.letters.size
		};
	}

	async close(): Promise<void> {
		this.closed = true;
		for (const g of this.groups.values()) for (const t of g.timers) clearTimeout(t);
	}

	private enqueue(g: Group, p: Pending, force = false): void {
		if (!force && !g.types.has(p.event.type)) return;
		g.queue.push(p);
		setImmediate(() => this.pump(g));
	}

	private pump(g: Group): void {
		while (g.queue.length > 0 && !this.closed) {
			const free = g.members.filter(m => !m.busy && !m.stopped);
			if (free.length === 0) return;
			const member = free[g.next++ % free.length];
			const p = g.queue.shift()!;
			member.busy = true;
			void this.deliver(g, member, p);
		}
	}

	private async deliver(g: Group, member: Member, p: Pending): Promise<void> {
		const info: DeliveryInfo = { attempt: p.attempt, replayed: p.replayed };
		try {
			await member.opts.handler(p.event, info);
		} catch (err) {
			const policy = policyOf(this.retry, member.opts);
			if (p.attempt >= maxAttemptsOf(policy) || isInvalidEvent(err)) {
				const letter: DeadLetter = {
					id: String(++this.letterSeq),
					group: g.name,
					event: p.event,
					error: errorText(err),
					attempts: p.attempt,
					failedAt: new Date().toISOString(),
					redrives: p.redrives,
					...(isInvalidEvent(err) ? { invalid: true } : {})
				};
				this.letters.set(letter.id, letter);
				member.opts.onDeadLetter?.(letter);
			} else {
				const t = setTimeout(
					() => {
						g.timers.delete(t);
						g.queue.push({ ...p, attempt: p.attempt + 1 });
						this.pump(g);
					},
					retryDelayMs(p.attempt, policy)
				);
				g.timers.add(t);
			}
		} finally {
			member.busy = false;
			member.idle?.();
			if (!this.closed) this.pump(g);
		}
	}
}

export function errorText(err: unknown): string {
	const e = err as { type?: string; message?: string };
	return String(e?.type ? `${e.type}: ${e.message}` : (e?.message ?? err)).slice(0, 500);
}
