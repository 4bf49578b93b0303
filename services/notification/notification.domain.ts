/** Pure rules of the notification context: which event becomes which message, for whom. */
import type { EventMessage } from "../../lib/events/types";

export type NotificationType =
	| "RESERVATION_HELD"
	| "RESERVATION_CONFIRMED"
	| "RESERVATION_CANCELLED"
	| "RESERVATION_EXPIRED"
	| "PAYMENT_COMPLETED"
	| "PAYMENT_REFUNDED"
	| "ADMIN_ALERT";

export interface NotificationDraft {
	/** null for an admin alert. */
	userId: string | null;
	type: NotificationType;
	message: string;
	data: Record<string, unknown>;
	dedupeKey: string;
}

const TYPES: Record<string, NotificationType> = {
	"reservation.held": "RESERVATION_HELD",
	"reservation.confirmed": "RESERVATION_CONFIRMED",
	"reservation.cancelled": "RESERVATION_CANCELLED",
	"reservation.expired": "RESERVATION_EXPIRED",
	"payment.completed": "PAYMENT_COMPLETED",
	"payment.refunded": "PAYMENT_REFUNDED"
};

/** Event types the inbox follows. */
export const INBOX_EVENTS = Object.keys(TYPES);

export class UnusableEventError extends Error {
	constructor(eventId: string, field: string) {
		super(`event ${eventId}: missing or invalid ${field}`);
		this.name = "UnusableEventError";
	}
}

const seatCount = (p: Record<string, unknown>) => (Array.isArray(p.seatIds) ? p.seatIds.length : 0);
const plural = (n: number) => `${n} seat${n === 1 ? "" : "s"}`;

/** The inbox entry an event produces; its dedupe key is the event id. */
export function notificationFor(event: EventMessage): NotificationDraft {
	const type = TYPES[event.type];
	if (!type) throw new UnusableEventError(event.id, "type");
	const p = event.payload;
	const userId = p.userId;
	if (typeof userId !== "string" || userId.length === 0) throw new UnusableEventError(event.id, "userId");
	const amount = typeof p.amount === "number" ? p.amount : undefined;
	const reservationId = typeof p.reservationId === "string" ? p.reservationId : undefined;
	let message: string;
	switch (type) {
		case "RESERVATION_HELD":
			message = `${plural(seatCount(p))} held for you until ${String(p.expiresAt ?? "the hold expires")}. Pay to confirm.`;
			break;
		case "RESERVATION_CONFIRMED":
			message = `Your reservation of ${plural(seatCount(p))} is confirmed.`;
			break;
		case "RESERVATION_CANCELLED":
			message =
				typeof p.refundAmount === "number" && p.refundAmount > 0
					? `Your reservation was cancelled; ${p.refundAmount} points are refunded.`
					: "Your reservation was cancelled.";
			break;
		case "RESERVATION_EXPIRED":
			message = "Your reservation expired before payment; the seats were released.";
			break;
		case "PAYMENT_COMPLETED":
			message = `Payment of ${amount ?? "?"} points completed.`;
			break;
		case "PAYMENT_REFUNDED":
			message = `Payment refunded: ${amount ?? "?"} points are back in your wallet.`;
			break;
		default:
			message = event.type;
	}
	const data: Record<string, unknown> = { eventType: event.type };
	if (reservationId) data.reservationId = reservationId;
	if (typeof p.paymentId === "string") data.paymentId = p.paymentId;
	if (typeof p.concertId === "string") data.concertId = p.concertId;
	if (amount !== undefined) data.amount = amount;
	return { userId, type, message, data, dedupeKey: event.id };
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
