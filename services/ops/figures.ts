/**
 * The operator console's live figures (GET /api/admin/figures, ops.figures), refreshed by the console every few
 * seconds: bookings per second, saga outcomes, the payment step's p99, the outbox's age and the dead letters.
 *
 * Why read through actions and not the ops node's own metrics registry: in a cluster the sagas run on the booking
 * nodes and each broker keeps its own counters, so the gateway's registry knows nothing of them. Each figure comes
 * from the context that owns it, as the consistency check reads it: the saga service answers from the database its
 * replicas share (`saga.figures`), each producer its outbox backlog (`<producer>.outboxStats`), the saga service
 * and the notification service their dead letters. Any node answers the same. A source that does not answer
 * leaves its part null with an `unavailable` entry, and the rest is still shown.
 */
import type { Context } from "moleculer";

export interface SagaFigures {
	windowSec: number;
	outcomes: Record<string, number>;
	bookings: number;
	bookingsPerSec: number;
	payment: { samples: number; p50Ms: number | null; p99Ms: number | null };
}

export interface LiveFigures {
	at: string;
	windowSec: number;
	sagas: SagaFigures | null;
	outbox: { producers: Record<string, { pending: number; oldestAgeMs: number }>; pending: number; oldestAgeMs: number } | null;
	deadLetters: { sagas: number | null; events: number | null };
	/** The sources that did not answer (e.g. "saga", "outbox:payment"). */
	unavailable: string[];
}

/**
 * `countEventLetters`: the size of the event dead-letter stream (the bus's own count, one request), so a console
 * refreshing every few seconds does not read up to 500 letters each time.
 */
export async function liveFigures(ctx: Context, producers: string[], windowSec: number, countEventLetters: () => Promise<number>): Promise<LiveFigures> {
	const unavailable: string[] = [];
	const soft = async <T>(source: string, p: Promise<T>): Promise<T | null> => {
		try {
			return await p;
		} catch {
			unavailable.push(source);
			return null;
		}
	};
	const call = <T>(action: string, params: object) => ctx.call<T, object>(action, params, { timeout: 4000, retries: 0 });
	const [sagas, outboxes, sagaLetters, eventLetters] = await Promise.all([
		soft("saga", call<SagaFigures>("saga.figures", { windowSec })),
		Promise.all(
			producers.map(async p => ({
				producer: p,
				stats: await soft(`outbox:${p}`, call<{ pending: number; oldestAgeMs: number }>(`${p}.outboxStats`, {}))
			}))
		),
		soft("saga", call<{ total: number }>("saga.deadLetters", { status: "OPEN", pageSize: 1 })),
		soft("events", countEventLetters())
	]);
	const answered = outboxes.filter((o): o is { producer: string; stats: { pending: number; oldestAgeMs: number } } => o.stats !== null);
	const outbox =
		answered.length === 0
			? null
			: {
					producers: Object.fromEntries(answered.map(o => [o.producer, { pending: o.stats.pending, oldestAgeMs: o.stats.oldestAgeMs }])),
					pending: answered.reduce((n, o) => n + o.stats.pending, 0),
					oldestAgeMs: Math.max(0, ...answered.map(o => o.stats.oldestAgeMs))
				};
	return {
		at: new Date().toISOString(),
		windowSec,
		sagas,
		outbox,
		deadLetters: {
			sagas: sagaLetters?.total ?? null,
			events: eventLetters
		},
		unavailable: [...new Set(unavailable)]
	};
}
