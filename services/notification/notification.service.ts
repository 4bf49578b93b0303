/**
 * Notification context: a per-user inbox fed by the durable events (reservation held / confirmed / cancelled /
 * expired, payment completed / refunded; seed 003's notification steps), and admin alerts (user_id NULL, type
 * ADMIN_ALERT) for sagas parked as FAILED and for events that landed in the event dead-letter queue. It also hosts
 * the operator actions on that queue (list, replay), over HTTP and from the REPL.
 *
 * A redelivered event inserts nothing: the row's dedupe key is the event id, under a unique index.
 */
import crypto from "crypto";
import type { Context, ServiceSchema } from "moleculer";
import { QueryTypes, UniqueConstraintError } from "sequelize";
import { DataTypes } from "sequelize";
import { NotFoundError } from "../../lib/errors";
import { EventConsumerMixin, DEAD_LETTERED, type EventConsumerVars } from "../../mixins/event-consumer.mixin";
import type { CatalogEvent } from "../../lib/events/catalog";
import { pageParams, pageWindow, signedInUser, type PageParams, type RequestMeta } from "../../lib/request";
import { DbMixin, type DbVars } from "../../mixins/db.mixin";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import { createNotifications } from "./migrations/001_create_notifications";
import { notificationsCreatedIndex } from "./migrations/002_created_index";
import { RetentionMixin } from "../../mixins/retention.mixin";
import {
	deadLetterAlert,
	INBOX_EVENTS,
	notificationFor,
	sagaFailedAlert,
	type EventDeadLettered,
	type InboxEventType,
	type NotificationDraft,
	type SagaFailed
} from "./notification.domain";

interface Row {
	id: string;
	user_id: string | null;
	type: string;
	message: string;
	data: string | null;
	created_at: Date | string;
	read_at: Date | string | null;
}
interface NotificationMethods {
	saveNotification(draft: NotificationDraft): Promise<boolean>;
	fromEvent(event: CatalogEvent<InboxEventType>): Promise<void>;
	fromSagaFailed(event: CatalogEvent<"saga.failed">): Promise<void>;
	page(where: string, args: unknown[], p: PageParams, withData: boolean): Promise<unknown>;
}
type This = PlatformVars & DbVars & EventConsumerVars & NotificationMethods;

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());

const NotificationService: ServiceSchema<Record<string, never>, NotificationMethods, PlatformVars & DbVars & EventConsumerVars> = {
	name: "notification",

	mixins: [
		PlatformMixin,
		// Notifications past RETENTION_NOTIFICATION_DAYS, read or not.
		RetentionMixin([
			{
				name: "notifications",
				days: c => c.retention.notificationDays,
				select: "SELECT id FROM notifications WHERE created_at < ? ORDER BY created_at LIMIT ?",
				delete: [{ table: "notifications", columns: ["id"] }]
			}
		]),
		// Before DbMixin on purpose: moleculer runs later mixins' `started` first and `stopped` in reverse, so the
		// group subscribes after the migrations ran and unsubscribes before the database closes.
		EventConsumerMixin({ handlers: { ...Object.fromEntries(INBOX_EVENTS.map(t => [t, "fromEvent"])), "saga.failed": "fromSagaFailed" } }),
		DbMixin({
			database: "notification",
			migrations: [createNotifications, notificationsCreatedIndex],
			model: {
				name: "notifications",
				define: {
					id: { type: DataTypes.STRING(36), primaryKey: true },
					user_id: { type: DataTypes.STRING(64), allowNull: true },
					type: { type: DataTypes.STRING(40), allowNull: false },
					message: { type: DataTypes.STRING(500), allowNull: false }
				},
				options: { tableName: "notifications", timestamps: false, underscored: true }
			}
		})
	],

	events: {
		/**
		 * The saga engine parked a saga as FAILED with a dead letter: alert the operators. The saga service emits this
		 * at once and also writes it to its outbox (durable); both carry the saga and dead-letter ids, which are the
		 * alert's dedupe key, so the operators see it once.
		 */
		"saga.failed": {
			async handler(this: This, ctx: Context<SagaFailed>) {
				if (typeof ctx.params?.sagaId !== "string") return;
				await this.saveNotification(sagaFailedAlert(ctx.params));
			}
		},
		/** A consumer group gave up on an event: alert the operators. */
		[DEAD_LETTERED]: {
			async handler(this: This, ctx: Context<EventDeadLettered>) {
				if (typeof ctx.params?.deadLetterId !== "string") return;
				await this.saveNotification(deadLetterAlert(ctx.params));
			}
		}
	},

	actions: {
		/** GET /api/notifications: the caller's inbox, newest first, paginated. */
		list: {
			visibility: "published",
			params: { ...pageParams, $$strict: "remove" },
			async handler(this: This, ctx: Context<PageParams, RequestMeta>) {
				return this.page("user_id = ?", [signedInUser(ctx).id], ctx.params, false);
			}
		},

		/**
		 * POST /api/notifications/:id/read: marks one of mine read (200 with it; idempotent: the first read time
		 * stays). Anyone else's, or an unknown id, is 404.
		 */
		markRead: {
			visibility: "published",
			params: { id: { type: "string", min: 1, max: 64 }, $$strict: "remove" },
			async handler(this: This, ctx: Context<{ id: string }, RequestMeta>) {
				const user = signedInUser(ctx);
				await this.sequelize.query("UPDATE notifications SET read_at = ? WHERE id = ? AND user_id = ? AND read_at IS NULL", {
					replacements: [new Date(), ctx.params.id, user.id]
				});
				const [row] = await this.sequelize.query<Row>(
					"SELECT id, user_id, type, message, data, created_at, read_at FROM notifications WHERE id = ? AND user_id = ?",
					{
						replacements: [ctx.params.id, user.id],
						type: QueryTypes.SELECT
					}
				);
				if (!row) throw new NotFoundError("notification", ctx.params.id);
				return { id: row.id, type: row.type, message: row.message, createdAt: iso(row.created_at), readAt: iso(row.read_at) };
			}
		},

		/** POST /api/notifications/read-all: marks every unread one of mine read; answers how many changed. */
		markAllRead: {
			visibility: "published",
			params: { $$strict: "remove" },
			async handler(this: This, ctx: Context<Record<string, never>, RequestMeta>) {
				const [, meta] = (await this.sequelize.query("UPDATE notifications SET read_at = ? WHERE user_id = ? AND read_at IS NULL", {
					replacements: [new Date(), signedInUser(ctx).id],
					type: QueryTypes.UPDATE
				})) as unknown as [unknown, number];
				return { marked: Number(meta) };
			}
		},

		/** GET /api/admin/alerts: admin alerts (failed sagas, event dead letters), newest first. */
		alerts: {
			visibility: "published",
			auth: "admin",
			params: { ...pageParams, $$strict: "remove" },
			async handler(this: This, ctx: Context<PageParams>) {
				return this.page("user_id IS NULL", [], ctx.params, true);
			}
		},

		/** GET /api/admin/event-dead-letters: events a consumer group gave up on, oldest first. REPL: same name. */
		eventDeadLetters: {
			visibility: "published",
			auth: "admin",
			params: {
				group: { type: "string", min: 1, max: 64, pattern: /^[A-Za-z0-9_-]+$/, optional: true },
				limit: { type: "number", integer: true, min: 1, max: 500, convert: true, optional: true },
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<{ group?: string; limit?: number }>) {
				return this.eventBus.deadLetters({ group: ctx.params.group, limit: ctx.params.limit ?? 100 });
			}
		},

		/**
		 * POST /api/admin/event-dead-letters/:id/replay: sends the event back to the group that failed it, once, and
		 * removes it from the queue (202). The group's dedupe makes the replay apply at most once; a second replay of
		 * the same id answers 404.
		 */
		replayEventDeadLetter: {
			visibility: "published",
			auth: "admin",
			params: { id: { type: "string", min: 1, max: 20, pattern: /^[0-9]+$/ }, $$strict: "remove" },
			async handler(this: This, ctx: Context<{ id: string }, RequestMeta>) {
				const letter = await this.eventBus.replay(ctx.params.id);
				if (!letter) throw new NotFoundError("event dead letter", ctx.params.id);
				ctx.meta.$statusCode = 202;
				return { id: letter.id, group: letter.group, eventId: letter.event.id, eventType: letter.event.type, replayed: true };
			}
		},

		/**
		 * POST /api/admin/event-dead-letters/replay `{eventType, group?}`: replays every dead letter of that event type
		 * (of one consumer group, or of all), oldest first, at most 500 per call, each as the single replay does (202
		 * `{eventType, group, replayed, ids}`). A letter another operator replayed meanwhile is skipped, not an error.
		 */
		replayEventDeadLetters: {
			visibility: "published",
			auth: "admin",
			params: {
				eventType: { type: "string", min: 1, max: 64, pattern: /^[A-Za-z0-9_.-]+$/ },
				group: { type: "string", min: 1, max: 64, pattern: /^[A-Za-z0-9_-]+$/, optional: true },
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<{ eventType: string; group?: string }, RequestMeta>) {
				const { eventType, group } = ctx.params;
				const letters = (await this.eventBus.deadLetters({ group, limit: 500 })).filter(l => l.event.type === eventType);
				const ids: string[] = [];
				for (const l of letters) if (await this.eventBus.replay(l.id)) ids.push(l.id);
				ctx.meta.$statusCode = 202;
				return { eventType, group: group ?? null, replayed: ids.length, ids };
			}
		}
	},

	methods: {
		async fromEvent(this: This, event: CatalogEvent<InboxEventType>) {
			await this.saveNotification(notificationFor(event));
		},

		/** saga.failed from the saga service's outbox (the durable copy of the broker event above). */
		async fromSagaFailed(this: This, event: CatalogEvent<"saga.failed">) {
			await this.saveNotification(sagaFailedAlert(event.payload));
		},

		/** Inserts once per dedupe key; answers false when it was already there. */
		async saveNotification(this: This, d: NotificationDraft) {
			try {
				await this.sequelize.query(
					"INSERT INTO notifications (id, user_id, type, message, data, dedupe_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
					{ replacements: [crypto.randomUUID(), d.userId, d.type, d.message.slice(0, 500), JSON.stringify(d.data), d.dedupeKey, new Date()] }
				);
				return true;
			} catch (err) {
				if (err instanceof UniqueConstraintError) return false;
				throw err;
			}
		},

		async page(this: This, where: string, args: unknown[], p: PageParams, withData: boolean) {
			const { page, pageSize, offset } = pageWindow(p);
			const [rows, count] = await Promise.all([
				this.sequelize.query<Row>(
					`SELECT id, user_id, type, message, data, created_at, read_at FROM notifications WHERE ${where} ORDER BY created_at DESC, id LIMIT ? OFFSET ?`,
					{ replacements: [...args, pageSize, offset], type: QueryTypes.SELECT }
				),
				this.sequelize.query<{ n: number }>(`SELECT COUNT(*) AS n FROM notifications WHERE ${where}`, {
					replacements: args,
					type: QueryTypes.SELECT
				})
			]);
			return {
				rows: rows.map(r => ({
					id: r.id,
					type: r.type,
					message: r.message,
					createdAt: iso(r.created_at),
					readAt: iso(r.read_at),
					...(withData ? { data: r.data ? JSON.parse(r.data) : null } : {})
				})),
				page,
				pageSize,
				total: Number(count[0]?.n ?? 0)
			};
		}
	}
};

export default NotificationService;
