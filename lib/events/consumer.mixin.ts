/**
 * Makes a service a consumer group of the durable events: `EventConsumerMixin({handlers: {"reservation.confirmed":
 * "onConfirmed"}})` subscribes when the service starts (the group is the service name unless given), calls the
 * named method with each event, retries failures with backoff and dead-letters an event after `maxAttempts`.
 *
 * A service with its own database lists this mixin before `DbMixin`: moleculer runs later mixins' `started` first
 * and `stopped` in reverse, so the group subscribes after the migrations and unsubscribes before the database closes.
 *
 * Handlers must be idempotent: delivery is at least once. Dedupe by `event.id` or by `event.version` per
 * aggregate, in the same atomic step as the effect (a unique key, a Lua script), never check-then-act.
 */
import type { Service, ServiceSchema } from "moleculer";
import { acquireEventBus, releaseEventBus } from "./index";
import type { DeadLetter, EventBus, EventHandler, Subscription } from "./types";

export interface EventConsumerOptions {
	/** Consumer group; the service name by default. */
	group?: string;
	/** Event type -> name of the service method that handles it. */
	handlers: Record<string, string>;
	maxAttempts?: number;
	backoffMs?: number;
}

export interface EventConsumerVars {
	eventBus: EventBus;
	eventSubscription?: Subscription;
}

/** Broker event raised when an event is dead-lettered; the notification service turns it into an admin alert. */
export const DEAD_LETTERED = "events.deadLettered";

export function deadLetterAlert(letter: DeadLetter) {
	return {
		deadLetterId: letter.id,
		group: letter.group,
		eventId: letter.event.id,
		eventType: letter.event.type,
		attempts: letter.attempts,
		error: letter.error
	};
}

export function EventConsumerMixin(opts: EventConsumerOptions): Partial<ServiceSchema> {
	return {
		async started() {
			const self = this as unknown as Service & EventConsumerVars;
			const group = opts.group ?? self.name;
			const methods = self as unknown as Record<string, EventHandler | undefined>;
			for (const [type, method] of Object.entries(opts.handlers)) {
				if (typeof methods[method] !== "function") throw new Error(`${self.name}: no method ${method} for ${type}`);
			}
			self.eventBus = acquireEventBus(self.broker);
			self.eventSubscription = await self.eventBus.subscribe({
				group,
				types: Object.keys(opts.handlers),
				maxAttempts: opts.maxAttempts,
				backoffMs: opts.backoffMs,
				handler: (event, info) => methods[opts.handlers[event.type]]!.call(self, event, info),
				onDeadLetter: letter => {
					self.logger.error(`event ${letter.event.id} (${letter.event.type}) dead-lettered for ${group} after ${letter.attempts} attempts: ${letter.error}`);
					void self.broker.emit(DEAD_LETTERED, deadLetterAlert(letter));
				}
			});
		},

		async stopped() {
			const self = this as unknown as Service & EventConsumerVars;
			await self.eventSubscription?.stop();
			if (self.eventBus) await releaseEventBus(self.broker);
		}
	};
}
