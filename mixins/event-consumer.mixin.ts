/**
 * Makes a service a consumer group of the durable events: `EventConsumerMixin({handlers: {"reservation.confirmed":
 * "onConfirmed"}})` subscribes when the service starts (the group is the service name unless given), calls the
 * named method with each event once its payload passed the catalog's schema (lib/events/catalog.ts: an event
 * that fails it is dead-lettered at once with the reason), retries failures with growing delays for
 * EVENT_RETRY_FOR_SEC (lib/events/retry.ts) and then dead-letters the event; a redriver (lib/events/redrive.ts) sends the group's dead letters back after
 * DLQ_REDRIVE_SEC, at most DLQ_REDRIVE_MAX times each.
 *
 * A service with its own database lists this mixin before `DbMixin`: moleculer runs later mixins' `started` first
 * and `stopped` in reverse, so the group subscribes after the migrations and unsubscribes before the database closes.
 *
 * Handlers must be idempotent: delivery is at least once. Dedupe by `event.id` or by `event.version` per
 * aggregate, in the same atomic step as the effect (a unique key, a Lua script), never check-then-act.
 */
import type { Service, ServiceSchema } from "moleculer";
import { platformOf } from "../lib/platform";
import { acquireEventBus, redrivePolicyOf, releaseEventBus } from "../lib/events";
import { DeadLetterRedriver } from "../lib/events/redrive";
import type { RedrivePolicy, RetryPolicy } from "../lib/events/retry";
import { isCatalogEvent, payloadProblems } from "../lib/events/catalog";
import { InvalidEventError, type DeadLetter, type EventBus, type EventHandler, type Subscription } from "../lib/events/types";

export interface EventConsumerOptions {
	/** Consumer group; the service name by default. */
	group?: string;
	/** Event type -> name of the service method that handles it (typed `(event: CatalogEvent<T>) => Promise<void>`). */
	handlers: Record<string, string>;
	/** Overrides of the retry schedule (tests); EVENT_RETRY_* otherwise. */
	retry?: Partial<RetryPolicy>;
	maxAttempts?: number;
	backoffMs?: number;
}

export interface EventConsumerVars {
	eventBus: EventBus;
	eventSubscription?: Subscription;
	eventRedriver?: DeadLetterRedriver;
}

/** Broker event raised when an event is dead-lettered; the notification service turns it into an admin alert. */
export const DEAD_LETTERED = "events.deadLettered";

export function deadLetterAlert(letter: DeadLetter, redrive?: RedrivePolicy) {
	return {
		deadLetterId: letter.id,
		group: letter.group,
		eventId: letter.event.id,
		eventType: letter.event.type,
		attempts: letter.attempts,
		error: letter.error,
		redrives: letter.redrives ?? 0,
		/** Whether the redrive will send it back by itself; false: an operator must replay it. */
		autoRedrive: !!redrive && !letter.invalid && redrive.afterMs > 0 && (letter.redrives ?? 0) < redrive.maxRedrives
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
			const platform = platformOf(self.broker);
			const redrive = redrivePolicyOf(platform.config);
			self.eventBus = acquireEventBus(self.broker);
			self.eventSubscription = await self.eventBus.subscribe({
				group,
				types: Object.keys(opts.handlers),
				retry: opts.retry,
				maxAttempts: opts.maxAttempts,
				backoffMs: opts.backoffMs,
				handler: (event, info) => {
					// The catalog is the contract: a payload that does not match it is dead-lettered at once, with the
					// reason, before the handler sees it; the handler may take its fields as typed (CatalogEvent).
					if (isCatalogEvent(event.type)) {
						const problems = payloadProblems(event.type, event.payload);
						if (problems.length > 0) throw new InvalidEventError(event.id, event.type, problems);
					}
					return methods[opts.handlers[event.type]]!.call(self, event, info);
				},
				onDeadLetter: letter => {
					const alert = deadLetterAlert(letter, redrive);
					const next = alert.autoRedrive ? `; it is sent back by itself in ${redrive.afterMs / 1000} s` : "; an operator must replay it";
					self.logger.error(
						`event ${letter.event.id} (${letter.event.type}) dead-lettered for ${group} after ${letter.attempts} attempts and ${alert.redrives} redrive(s): ${letter.error}${next}`
					);
					void self.broker.emit(DEAD_LETTERED, alert);
				}
			});
			self.eventRedriver = new DeadLetterRedriver({
				bus: self.eventBus,
				group,
				policy: redrive,
				store: platform.store,
				owner: self.broker.nodeID,
				log: (level, msg) => self.logger[level](msg)
			});
			self.eventRedriver.start();
		},

		async stopped() {
			const self = this as unknown as Service & EventConsumerVars;
			await self.eventRedriver?.stop();
			await self.eventSubscription?.stop();
			if (self.eventBus) await releaseEventBus(self.broker);
		}
	};
}
