/**
 * Test-only peers of the events contexts: `concert.get` (a catalog that knows ids starting with "c-" and can be
 * switched down) and the reservation actions the events contexts call (`reservation.hasConfirmed`,
 * `reservation.soldSeatsByConcert`, `reservation.outboxLatest`: the truth the ranking is verified against and
 * rebuilt from), whose answers a test sets. `fakeHoldTruth` makes the truth wait until released, to put an event
 * in flight in the middle of a rebuild. The real services are other issues'.
 */
import type { Context, ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import { NotFoundError } from "../../../lib/errors";

type ConcertThis = { down: boolean };

export const FakeConcertService: ServiceSchema<Record<string, never>, Record<string, never>, ConcertThis> = {
	name: "concert",
	actions: {
		get: {
			params: { id: "string" },
			handler(ctx: Context<{ id: string }>) {
				if (this.down) throw new Errors.MoleculerRetryableError("catalog down (test)", 503, "SERVICE_UNAVAILABLE");
				if (!ctx.params.id.startsWith("c-")) throw new NotFoundError("concert", ctx.params.id);
				return { id: ctx.params.id, title: `Title of ${ctx.params.id}`, artist: "A", venue: { id: "v1", name: "Hall" }, schedules: [] };
			}
		},
		fakeDown: {
			params: { down: "boolean" },
			handler(ctx: Context<{ down: boolean }>) {
				this.down = ctx.params.down;
				return this.down;
			}
		}
	},
	created() {
		this.down = false;
	}
};

/** A reservation as the truth knows it: its latest ranked event. */
export interface FakeReservation {
	reservationId: string;
	concertId: string;
	version: number;
	type: "reservation.confirmed" | "reservation.cancelled" | "reservation.expired";
	seats: number;
}

type ReservationThis = {
	confirmed: Set<string>;
	sold: { concertId: string; seats: number }[];
	reservations: FakeReservation[];
	asked: number;
	truthGate?: Promise<void>;
	openGate?: () => void;
	truthWaiting: number;
	/** Pages of the truth served by outboxLatest. */
	truthReads: number;
	truth(): FakeReservation[];
	gate(): Promise<void>;
};

export const FakeReservationService: ServiceSchema<Record<string, never>, Record<string, never>, ReservationThis> = {
	name: "reservation",
	actions: {
		hasConfirmed: {
			params: { userId: "string", concertId: "string" },
			handler(ctx: Context<{ userId: string; concertId: string }>) {
				this.asked++;
				// A confirmed booking here is one of a show that has taken place (`attended`): the review tests' case.
				const confirmed = this.confirmed.has(`${ctx.params.userId}|${ctx.params.concertId}`);
				return { confirmed, attended: confirmed };
			}
		},
		async soldSeatsByConcert() {
			await this.gate();
			const sums = new Map<string, number>();
			for (const r of this.truth()) if (r.type === "reservation.confirmed") sums.set(r.concertId, (sums.get(r.concertId) ?? 0) + r.seats);
			return [...sums].map(([concertId, seats]) => ({ concertId, seats }));
		},
		outboxLatest: {
			params: {
				aggregateType: "string",
				eventTypes: { type: "array", items: "string" },
				after: { type: "string", optional: true },
				limit: { type: "number", optional: true }
			},
			async handler(ctx: Context<{ after?: string; limit?: number }>) {
				this.truthReads++;
				await this.gate();
				const limit = ctx.params.limit ?? 500;
				const after = ctx.params.after ?? "";
				const page = this.truth()
					.filter(r => r.reservationId > after)
					.sort((a, b) => (a.reservationId < b.reservationId ? -1 : 1))
					.slice(0, limit);
				const rows = page.map(r => ({
					id: `truth-${r.reservationId}-${r.version}`,
					type: r.type,
					aggregateType: "reservation",
					aggregateId: r.reservationId,
					version: r.version,
					createdAt: new Date().toISOString(),
					// As the real producer writes it (the ranking checks it against the catalog).
					payload: {
						reservationId: r.reservationId,
						userId: "u",
						concertId: r.concertId,
						scheduleId: "s",
						seatIds: Array.from({ length: r.type === "reservation.confirmed" ? r.seats : Math.max(1, r.seats) }, (_, i) => `seat-${i}`),
						amount: 100 * r.seats,
						...(r.type === "reservation.cancelled" ? { wasConfirmed: true, reason: "USER" } : {})
					}
				}));
				return { rows, next: page.length === limit ? page[page.length - 1].reservationId : null };
			}
		},
		fakeReservations: {
			params: { reservations: { type: "array", items: "object" } },
			handler(ctx: Context<{ reservations: FakeReservation[] }>) {
				this.reservations = ctx.params.reservations;
				return true;
			}
		},
		/** hold: the truth's answers wait; release: they go on. `waiting` says how many wait now. */
		fakeHoldTruth: {
			params: { hold: "boolean" },
			handler(ctx: Context<{ hold: boolean }>) {
				if (ctx.params.hold && !this.truthGate) this.truthGate = new Promise<void>(r => (this.openGate = r));
				if (!ctx.params.hold && this.openGate) {
					this.openGate();
					this.truthGate = undefined;
					this.openGate = undefined;
				}
				return { waiting: this.truthWaiting, reads: this.truthReads };
			}
		},
		fakeConfirm: {
			params: { userId: "string", concertId: "string" },
			handler(ctx: Context<{ userId: string; concertId: string }>) {
				this.confirmed.add(`${ctx.params.userId}|${ctx.params.concertId}`);
				return true;
			}
		},
		fakeSold: {
			params: { sold: { type: "array", items: "object" } },
			handler(ctx: Context<{ sold: { concertId: string; seats: number }[] }>) {
				this.sold = ctx.params.sold;
				return true;
			}
		}
	},
	methods: {
		/** The reservations set by a test, plus one confirmed reservation per `fakeSold` entry. */
		truth(): FakeReservation[] {
			const fromSold = this.sold.map(s => ({
				reservationId: `sold-${s.concertId}`,
				concertId: s.concertId,
				version: 2,
				type: "reservation.confirmed" as const,
				seats: s.seats
			}));
			return [...this.reservations, ...fromSold];
		},
		async gate() {
			if (!this.truthGate) return;
			this.truthWaiting++;
			try {
				await this.truthGate;
			} finally {
				this.truthWaiting--;
			}
		}
	},
	created() {
		this.confirmed = new Set();
		this.sold = [];
		this.reservations = [];
		this.asked = 0;
		this.truthWaiting = 0;
		this.truthReads = 0;
	}
};
