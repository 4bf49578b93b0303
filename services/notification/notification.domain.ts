/** Pure rules of the notification context: which event becomes which message, for whom. */
import type { CatalogEvent, CatalogEventType } from "../../lib/events/catalog";

export type NotificationType =
	"RESERVATION_HELD" | "RESERVATION_CONFIRMED" | "RESERVATION_CANCELLED" | "RESERVATION_EXPIRED" | "PAYMENT_COMPLETED" | "PAYMENT_REFUNDED" | "ADMIN_ALERT";

export interface NotificationDraft {
	/** null for an admin alert. */
	userId: string | null;
	type: NotificationType;
	message: string;
	data: Record<string, unknown>;
	dedupeKey: string;
}

const TYPES = {
	"reservation.held": "RESERVATION_HELD",
	"reservation.confirmed": "RESERVATION_CONFIRMED",
	"reservation.cancelled": "RESERVATION_CANCELLED",
	"reservation.expired": "RESERVATION_EXPIRED",
	"payment.completed": "PAYMENT_COMPLETED",
	"payment.refunded": "PAYMENT_REFUNDED"
} as const satisfies Partial<Record<CatalogEventType, NotificationType>>;

export type InboxEventType = keyof typeof TYPES;

/** Event types the inbox follows. */
export const INBOX_EVENTS = Object.keys(TYPES) as InboxEventType[];

const plural = (n: number) => `${n} seat${n === 1 ? "" : "s"}`;

/**
 * The inbox entry an event produces; its dedupe key is the event id. The payload was checked against the catalog
 * before it got here (the consumer mixin), so its fields are read as the catalog types them.
 */
export function notificationFor(event: CatalogEvent<InboxEventType>): NotificationDraft {
	const data: Record<string, unknown> = { eventType: event.type, reservationId: event.payload.reservationId ?? undefined };
	let message: string;
	switch (event.type) {
		case "reservation.held":
			message = `${plural(event.payload.seatIds.length)} held for you until ${event.payload.expiresAt}. Pay to confirm.`;
			break;
		case "reservation.confirmed":
			message = `Your reservation of ${plural(event.payload.seatIds.length)} is confirmed.`;
			break;
		case "reservation.cancelled": {
			const refund = event.payload.refundAmount ?? 0;
			message = refund > 0 ? `Your reservation was cancelled; ${refund} points are refunded.` : "Your reservation was cancelled.";
			break;
		}
		case "reservation.expired":
			message = "Your reservation expired before payment; the seats were released.";
			break;
		case "payment.completed":
			message = `Payment of ${event.payload.amount} points completed.`;
			data.paymentId = event.payload.paymentId;
			data.amount = event.payload.amount;
			break;
		case "payment.refunded":
			message = `Payment refunded: ${event.payload.amount} points are back in your wallet.`;
			data.paymentId = event.payload.paymentId;
			data.amount = event.payload.amount;
			break;
	}
	if ("concertId" in event.payload) data.concertId = event.payload.concertId;
	if (event.type.startsWith("reservation.")) data.amount = event.payload.amount;
	if (data.reservationId === undefined) delete data.reservationId;
	return { userId: event.payload.userId, type: TYPES[event.type], message, data, dedupeKey: event.id };
}

export interface SagaFailed {
	sagaId: string;
	type?: string;
	step?: string;
	deadLetterId?: string | number | null;
	error?: unknown;
}

export function sagaFailedAlert(e: SagaFailed): NotificationDraft {
	return {
		userId: null,
		type: "ADMIN_ALERT",
		message: `Saga ${e.sagaId} (${e.type ?? "?"}) FAILED at ${e.step ?? "?"}: an operator must retry or resolve dead letter ${e.deadLetterId ?? "?"}.`,
		data: { kind: "saga.failed", sagaId: e.sagaId, sagaType: e.type ?? null, step: e.step ?? null, deadLetterId: e.deadLetterId ?? null },
		dedupeKey: `saga.failed:${e.sagaId}:${e.deadLetterId ?? ""}`
	};
}

export interface EventDeadLettered {
	deadLetterId: string;
	group: string;
	eventId: string;
	eventType: string;
	attempts: number;
	error: string;
}

export function deadLetterAlert(e: EventDeadLettered): NotificationDraft {
	return {
		userId: null,
		type: "ADMIN_ALERT",
		message: `Event ${e.eventType} ${e.eventId} failed ${e.attempts} times in ${e.group} and is in the event dead-letter queue as ${e.deadLetterId}.`,
		data: { kind: "event.deadLettered", ...e },
		dedupeKey: `dlq:${e.group}:${e.eventId}:${e.deadLetterId}`.slice(0, 160)
	};
}
