/**
 * Test-only peers of the events contexts: `concert.get` (a catalog that knows ids starting with "c-" and can be
 * switched down) and the two reservation actions the events contexts call (`reservation.hasConfirmed`,
 * `reservation.soldSeatsByConcert`), whose answers a test sets. The real services are other issues'.
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

type ReservationThis = { confirmed: Set<string>; sold: { concertId: string; seats: number }[]; asked: number };

export const FakeReservationService: ServiceSchema<Record<string, never>, Record<string, never>, ReservationThis> = {
	name: "reservation",
	actions: {
		hasConfirmed: {
			params: { userId: "string", concertId: "string" },
			handler(ctx: Context<{ userId: string; concertId: string }>) {
				this.asked++;
				return { confirmed: this.confirmed.has(`${ctx.params.userId}|${ctx.params.concertId}`) };
			}
		},
		soldSeatsByConcert: {
			handler() {
				return this.sold;
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
	created() {
		this.confirmed = new Set();
		this.sold = [];
		this.asked = 0;
	}
};
