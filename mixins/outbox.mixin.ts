/**
 * The outbox relay for a producer service (docs/DESIGN.md section 7): list `OutboxRelayMixin` before `DbMixin` (whose
 * database holds `outbox_events`): moleculer runs later mixins' `started` first and `stopped` in reverse, so the
 * relay starts after the migrations and stops before the database closes. Every replica runs a relay;
 * lib/outbox.ts's `OutboxRelay` explains how they share the rows safely and keep order per aggregate. It polls
 * every OUTBOX_POLL_MS, wakes right after a commit that appended an event (appendOutbox signals it), and backs off
 * while the broker is unreachable.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import { acquireEventBus, releaseEventBus, type EventBus, type EventMessage } from "../lib/events";
import { latestOutboxEvents, OutboxRelay, outboxStats } from "../lib/outbox";
import type { DbVars } from "./db.mixin";
import type { PlatformVars } from "./platform.mixin";

export interface OutboxRelayVars {
	outboxBus?: EventBus;
	outboxRelay?: OutboxRelay;
}

type RelayService = Service & PlatformVars & DbVars & OutboxRelayVars & { outboxPublish(event: EventMessage): Promise<void> };

export const OutboxRelayMixin: Partial<ServiceSchema> = {
	actions: {
		/**
		 * For the ops consistency check and metrics (read only): how many events wait to be published, how old the
		 * oldest is, and the ids of those older than `staleMs`.
		 */
		outboxStats: {
			visibility: "public",
			params: { staleMs: { type: "number", integer: true, min: 0, optional: true } },
			async handler(ctx: Context<{ staleMs?: number }>) {
				const self = this as unknown as RelayService;
				// COUNT(*) for the backlog (not capped), the stale rows filtered in SQL (at most 100, oldest first).
				return { producer: self.name, ...(await outboxStats(self.sql, ctx.params.staleMs ?? 60_000)) };
			}
		},

		/**
		 * For a consumer that rebuilds its view (read only): the latest event of each aggregate among `eventTypes`,
		 * paged by aggregate id (lib/outbox.ts latestOutboxEvents). The ranking's rebuild reads the reservations'.
		 */
		outboxLatest: {
			visibility: "public",
			params: {
				aggregateType: { type: "string", min: 1, max: 40 },
				eventTypes: { type: "array", min: 1, max: 20, items: { type: "string", min: 1, max: 64 } },
				after: { type: "string", max: 64, optional: true },
				limit: { type: "number", integer: true, min: 1, max: 1000, optional: true }
			},
			async handler(ctx: Context<{ aggregateType: string; eventTypes: string[]; after?: string; limit?: number }>) {
				const self = this as unknown as RelayService;
				return latestOutboxEvents(self.sql, { ...ctx.params, limit: ctx.params.limit ?? 500 });
			}
		}
	},

	methods: {
		/** Publishes one outbox event on the node's bus (a test's producer may override it to simulate an outage). */
		async outboxPublish(this: RelayService, event: EventMessage): Promise<void> {
			await this.outboxBus!.publish(event);
		},

		/** Publish now rather than at the next poll (appendOutbox already does this after each commit). */
		flushOutbox(this: RelayService): void {
			this.outboxRelay?.kick();
		}
	},

	async started() {
		const self = this as unknown as RelayService;
		self.outboxBus = acquireEventBus(self.broker);
		self.outboxRelay = new OutboxRelay({
			sql: self.sql,
			publish: event => self.outboxPublish(event),
			pollMs: self.config.outboxPollMs,
			log: (level, msg) => self.logger[level](msg)
		});
		self.outboxRelay.start();
	},

	async stopped() {
		const self = this as unknown as RelayService;
		await self.outboxRelay?.stop();
		if (self.outboxBus) await releaseEventBus(self.broker);
	}
};
