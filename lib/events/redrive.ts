/**
 * The automatic redrive of the event dead-letter queue (issue 15 item 2): a dead letter is an event its group
 * failed on for the whole retry schedule (EVENT_RETRY_FOR_SEC), usually because a dependency was down longer than
 * that. Once it has waited DLQ_REDRIVE_SEC it goes back to its group, with its redrive count + 1; a poison event
 * (one no retry will fix) comes back at most DLQ_REDRIVE_MAX times and then stays for an operator, whose admin
 * alert says so. The manual replay (`notification.replayEventDeadLetter`) stays as it was.
 *
 * Every node of a group runs a redriver; a lease in the coordination store (`events:redrive:<group>`) lets one
 * of them work at a time. The lease only saves work: a redrive is idempotent anyway (the bus publishes a letter's
 * replay under one message id and deletes the letter, so two nodes redriving it at once deliver it once).
 */
import type { CoordinationStore } from "../store";
import type { RedrivePolicy } from "./retry";
import type { EventBus, RedriveResult } from "./types";

export interface RedriverOptions {
	bus: EventBus;
	group: string;
	policy: RedrivePolicy;
	store: CoordinationStore;
	/** This node (the lease owner). */
	owner: string;
	log?: (level: "info" | "warn", msg: string) => void;
	/** Between two rounds; a quarter of `policy.afterMs` between 1 s and 60 s by default. */
	intervalMs?: number;
}

export class DeadLetterRedriver {
	private timer?: NodeJS.Timeout;
	private running?: Promise<unknown>;
	private stopped = true;
	private lastExhausted = 0;
	readonly intervalMs: number;

	constructor(private readonly opts: RedriverOptions) {
		this.intervalMs = opts.intervalMs ?? Math.min(60_000, Math.max(1000, Math.floor(opts.policy.afterMs / 4)));
	}

	get leaseKey(): string {
		return `events:redrive:${this.opts.group}`;
	}

	start(): void {
		if (this.opts.policy.afterMs <= 0) return;
		this.stopped = false;
		this.schedule();
	}

	async stop(): Promise<void> {
		this.stopped = true;
		if (this.timer) clearTimeout(this.timer);
		await this.running?.catch(() => undefined);
	}

	/** One round now: null when another node holds the lease (or the redrive is off). */
	async round(): Promise<RedriveResult | null> {
		if (this.opts.policy.afterMs <= 0) return null;
		const { store, bus, group, policy, owner } = this.opts;
		if (!(await store.acquireLease(this.leaseKey, owner, Math.max(30_000, this.intervalMs * 2)))) return null;
		try {
			const result = await bus.redrive(group, policy);
			if (result.redriven.length > 0) {
				this.opts.log?.("info", `event dead letters of ${group}: ${result.redriven.length} sent back (${result.redriven.map(l => l.id).join(", ")})`);
			}
			if (result.exhausted !== this.lastExhausted && result.exhausted > 0) {
				this.opts.log?.(
					"warn",
					`event dead letters of ${group}: ${result.exhausted} had their ${policy.maxRedrives} automatic redrive(s) and wait for an operator`
				);
			}
			this.lastExhausted = result.exhausted;
			return result;
		} finally {
			await store.releaseLease(this.leaseKey, owner).catch(() => false);
		}
	}

	private schedule(): void {
		if (this.stopped) return;
		this.timer = setTimeout(() => {
			this.running = this.round()
				.catch((err: Error) => this.opts.log?.("warn", `event dead-letter redrive of ${this.opts.group} failed: ${err.message}`))
				.finally(() => {
					this.running = undefined;
					this.schedule();
				});
		}, this.intervalMs);
		this.timer.unref();
	}
}
