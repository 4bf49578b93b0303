/**
 * In-process bus for embedded mode and unit tests: the same contract as the JetStream bus (groups, retries with
 * backoff, a dead-letter queue, replay to one group) inside one process.
 *
 * Like a durable JetStream consumer created with "deliver all", a group that subscribes late still receives the
 * events published before it (the bus keeps the last `retain` events). Durability ends at the process: an event
 * published but not yet handled when the process stops is not redelivered at the next start.
 */
import type { DeadLetter, DeliveryInfo, EventBus, EventMessage, SubscribeOptions, Subscription } from "./types";

interface Pending {
	event: EventMessage;
	attempt: number;
	replayed: boolean;
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

	constructor(private readonly retain = 10_000) {}

	async publish(event: EventMessage): Promise<void> {
		if (this.closed) throw new Error("event bus closed");
		// The broker-side dedupe window: the same message id is stored once.
		if (this.seen.has(event.id)) return;
		this.seen.add(event.id);
		this.log.push(event);
		if (this.log.length > this.retain) this.seen.delete(this.log.shift()!.id);
		for (const g of this.groups.values()) this.enqueue(g, { event, attempt: 1, replayed: false });
	}

	async subscribe(opts: SubscribeOptions): Promise<Subscription> {
		let g = this.groups.get(opts.group);
		if (!g) {
			g = { name: opts.group, types: new Set(opts.types), members: [], queue: [], next: 0, timers: new Set() };
			this.groups.set(opts.group, g);
			for (const event of this.log) this.enqueue(g, { event, attempt: 1, replayed: false });
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

	async replay(id: string): Promise<DeadLetter | null> {
		const letter = this.letters.get(id);
		if (!letter) return null;
		this.letters.delete(id);
		const g = this.groups.get(letter.group);
		if (g) this.enqueue(g, { event: letter.event, attempt: 1, replayed: true }, true);
		return letter;
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
			const max = member.opts.maxAttempts ?? 5;
			if (p.attempt >= max) {
				const letter: DeadLetter = {
					id: String(++this.letterSeq),
					group: g.name,
					event: p.event,
					error: errorText(err),
					attempts: p.attempt,
					failedAt: new Date().toISOString()
				};
				this.letters.set(letter.id, letter);
				member.opts.onDeadLetter?.(letter);
			} else {
				const t = setTimeout(() => {
					g.timers.delete(t);
					g.queue.push({ ...p, attempt: p.attempt + 1 });
					this.pump(g);
				}, (member.opts.backoffMs ?? 200) * p.attempt);
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
	return String(e?.type ? `${e.type}: ${e.message}` : e?.message ?? err).slice(0, 500);
}
