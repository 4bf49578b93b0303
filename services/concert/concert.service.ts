/**
 * Concert context: the catalog (venues, concerts, schedules, seat maps, availability; docs/API.md "Catalog") and seat
 * holds, the contention point of a flash sale (docs/DESIGN.md section 4 step 2 and saga step 3).
 *
 * A seat's truth has two layers: the database says SOLD (a primary key on (schedule_id, seat_id) makes each seat
 * of a schedule sellable once), the hold store says HELD (a lease that expires by itself). Holds make contention
 * cheap; they are never what prevents a double sale, and losing every hold (Redis keeps nothing on disk) can free
 * held seats but never a sold one.
 */
import { CONCERT_MIGRATIONS } from "./migrations";
import { LRUCache } from "lru-cache";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes } from "sequelize";
import { FieldValidationError, NotFoundError } from "../../lib/errors";
import { auditLimit, auditPageParams, pageOf, type AuditPageParams } from "../../lib/audit";
import type { RequestMeta } from "../../lib/request";
import { DbMixin, type DbVars } from "../../mixins/db.mixin";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import { CatalogRepo, type ScheduleRecord, type SeatRecord } from "./catalog.repo";
import type { StepParams } from "../../sagas/participants.api";
import type { ConcertApi, ConcertView, HoldView, ScheduleView, SeatStatusView, SeatView } from "./concert.api";
import {
	availableSeats,
	ID_PATTERN,
	MAX_PER_ROW,
	MAX_ROWS,
	MAX_SCHEDULES,
	concertSaleState,
	pageWindow,
	parseStartsAt,
	requestedSeatIds,
	saleState,
	salesWindowProblems,
	seatMapProblems,
	seatStatus,
	totalPrice,
	type GradeSpec,
	type SalesWindow
} from "./concert.domain";
import { DEMO_CATALOG } from "./demo-data";
import { HoldAbandonedError, SalesClosedError, SalesNotOpenError, SeatNotFoundError, SeatsBusyError, SeatUnavailableError } from "./errors";
import { createHoldStore, LateReleases, type HoldKey, type HoldStore } from "./holds.store";
import { RetentionMixin } from "../../mixins/retention.mixin";

interface Settings {
	/** Seed the demo catalog into an empty database at start. */
	seedDemoData: boolean;
	/** How long confirmSeats fences seats it did not already hold while it writes the sale (ms). */
	saleFenceMs: number;
	/** How often, and how long apart, rehold retries seats another caller holds for a moment. */
	reholdAttempts: number;
	reholdBackoffMs: number;
}

/** What never changes about a schedule once created: its concert, its show time and its seats' labels, grades and prices. */
interface SeatMap {
	concertId: string;
	startsAt: string;
	seats: Map<string, SeatView>;
}

interface Vars {
	repo: CatalogRepo;
	holds: HoldStore;
	/** Releases done after a commit or a refusal, retried in the background when the store is down. */
	lateReleases: LateReleases;
	/** Per-node cache of seat maps (immutable data), so a hold costs one SQL read: the sold check. */
	seatMaps: LRUCache<string, SeatMap>;
	/** Per-node cache of sale windows (concertId -> window and when it was read): an admin's change is seen within WINDOW_CACHE_MS. */
	windows: LRUCache<string, { window: SalesWindow; at: number }>;
	/** Schedules whose seats changed since the last `concert.seatsChanged` broadcast, and its timer. */
	changedSchedules: Set<string>;
	changedTimer?: NodeJS.Timeout;
}

/**
 * Seat changes of this node are broadcast at most this often, as one `concert.seatsChanged {scheduleIds}`: the
 * gateways' live seat maps (services/api/seat-feed.ts) read a changed schedule once per broadcast, however many
 * holds a flash sale makes in between.
 */
const SEATS_CHANGED_EVERY_MS = 100;

/** How long a node trusts a sale window it read (ms): the calendar is checked on every hold and sale. */
const WINDOW_CACHE_MS = 2000;

/** Seat maps and sale windows cached per node; the least recently used go past this many. */
const SEAT_MAP_CACHE_MAX = 500;

interface CreateParams {
	title: string;
	artist: string;
	venue: { name: string };
	schedules: { startsAt: string }[];
	seats: { rows: number; perRow: number; price: number; grades?: GradeSpec[] };
	sales?: { opensAt?: string | null; closesAt?: string | null };
}

interface Methods {
	concertView(id: string): Promise<ConcertView>;
	scheduleViews(schedules: ScheduleRecord[]): Promise<ScheduleView[]>;
	requireSchedule(id: string): Promise<ScheduleRecord>;
	seatMapOf(scheduleId: string): Promise<SeatMap>;
	windowOf(concertId: string): Promise<SalesWindow>;
	requireOnSale(map: SeatMap, scheduleId: string): Promise<void>;
	parseWindow(
		sales: { opensAt?: string | null; closesAt?: string | null } | undefined,
		shows: Date[],
		problems: { field: string; type: string; message: string }[]
	): { opensAt: Date | null; closesAt: Date | null };
	ttlMs(): number;
	releaseLater(req: HoldKey & { owner: string }, wanted?: () => Promise<boolean>): Promise<boolean>;
	countHold(outcome: "held" | "conflict" | "sold", seats: number): void;
	seatsChanged(ctx: Context<{ scheduleId: string }>, res: unknown): unknown;
}

type This = Service<Settings> & PlatformVars & DbVars & Vars & Methods;

// Public ids (catalog routes) are only bounded here: a malformed id reads as unknown (404, see the methods), not
// as a 422 that tells a prober which shapes exist.
const publicId = { type: "string", min: 1, max: 1000 } as const;
// Internal ids end up in store keys: restricted to a key-safe alphabet.
const internalId = { type: "string", min: 1, max: 64, pattern: ID_PATTERN } as const;
// Length and shape of the list are checked here; distinct ids by `requestedSeatIds`, with the same 422.
const seatIdsParam = { type: "array", min: 1, max: 4, items: { type: "string", min: 1, max: 64 } } as const;
const saleParams = { reservationId: internalId, scheduleId: internalId, seatIds: seatIdsParam } as const;
// A sale window's ends: ISO-8601 times with a zone (checked by parseWindow), or null for "no bound".
const salesProps = {
	opensAt: { type: "string", min: 1, max: 40, optional: true, nullable: true },
	closesAt: { type: "string", min: 1, max: 40, optional: true, nullable: true }
} as const;

const ConcertService: ServiceSchema<Settings, Methods, PlatformVars & DbVars & Vars> = {
	name: "concert",

	mixins: [
		PlatformMixin,
		// The void tombstones (un-sold reservations) past RETENTION_VOID_DAYS.
		RetentionMixin([
			{
				name: "seat_sale_voids",
				days: c => c.retention.voidDays,
				select: "SELECT schedule_id, reservation_id FROM seat_sale_voids WHERE created_at < ? LIMIT ?",
				delete: [{ table: "seat_sale_voids", columns: ["schedule_id", "reservation_id"] }]
			}
		]),
		DbMixin({
			database: "concert",
			migrations: CONCERT_MIGRATIONS,
			model: {
				name: "concerts",
				define: {
					id: { type: DataTypes.STRING(36), primaryKey: true },
					title: { type: DataTypes.STRING(200), allowNull: false },
					artist: { type: DataTypes.STRING(200), allowNull: false },
					venue_id: { type: DataTypes.STRING(36), allowNull: false },
					created_at: { type: DataTypes.DATE(3), allowNull: false }
				},
				options: { tableName: "concerts", timestamps: false, underscored: true }
			}
		})
	],

	settings: {
		seedDemoData: true,
		saleFenceMs: 30_000,
		reholdAttempts: 5,
		reholdBackoffMs: 25
	},

	actions: {
		/** GET /api/concerts: a page of the catalog, oldest first. */
		list: {
			visibility: "published",
			auth: false,
			params: {
				page: { type: "number", integer: true, min: 1, max: 100_000, convert: true, optional: true, default: 1 },
				pageSize: { type: "number", integer: true, min: 1, max: 100, convert: true, optional: true, default: 20 },
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<{ page: number; pageSize: number }>) {
				const { page, pageSize } = ctx.params;
				const { offset, limit } = pageWindow({ page, pageSize });
				const [rows, total] = await Promise.all([this.repo.listConcerts(offset, limit), this.repo.countConcerts()]);
				return { rows, page, pageSize, total };
			}
		},

		/** GET /api/concerts/:id, and for other services (the queue checks a concert exists): one concert with its schedules. */
		get: {
			visibility: "published",
			auth: false,
			params: { id: publicId, $$strict: "remove" },
			async handler(this: This, ctx: Context<ConcertApi["concert.get"]["params"]>): Promise<ConcertApi["concert.get"]["result"]> {
				return this.concertView(ctx.params.id);
			}
		},

		/** GET /api/concerts/:id/schedules: the schedules with live availability. */
		schedules: {
			visibility: "published",
			auth: false,
			params: { id: publicId, $$strict: "remove" },
			async handler(this: This, ctx: Context<{ id: string }>) {
				const concert = ID_PATTERN.test(ctx.params.id) ? await this.repo.getConcert(ctx.params.id) : null;
				if (!concert) throw new NotFoundError("concert", ctx.params.id);
				return this.scheduleViews(await this.repo.schedulesOf(concert.id));
			}
		},

		/** GET /api/schedules/:id/seats: the seat map; SOLD from the database wins over HELD from the live holds. */
		seats: {
			visibility: "published",
			auth: false,
			params: { id: publicId, $$strict: "remove" },
			async handler(this: This, ctx: Context<{ id: string }>): Promise<SeatStatusView[]> {
				const schedule = await this.requireSchedule(ctx.params.id);
				const [seats, held] = await Promise.all([this.repo.seatsOf(schedule.id), this.holds.heldSeatIds(schedule.id)]);
				const sold = new Set(seats.filter(s => s.soldTo !== null).map(s => s.id));
				const heldSet = new Set(held);
				return seats.map(s => ({ ...seatView(s), status: seatStatus(s.id, sold, heldSet) }));
			}
		},

		/**
		 * POST /api/admin/concerts: a concert with its venue (reused by name), schedules and a generated seat map
		 * (`rows` x `perRow`, row A first; optional `grades` claim rows from the front, the rest cost `price`).
		 */
		create: {
			visibility: "published",
			auth: "admin",
			params: {
				title: { type: "string", min: 1, max: 200, trim: true },
				artist: { type: "string", min: 1, max: 200, trim: true },
				venue: { type: "object", strict: "remove", props: { name: { type: "string", min: 1, max: 200, trim: true } } },
				schedules: {
					type: "array",
					min: 1,
					max: MAX_SCHEDULES,
					items: { type: "object", strict: "remove", props: { startsAt: { type: "string", min: 1, max: 40 } } }
				},
				seats: {
					type: "object",
					strict: "remove",
					props: {
						rows: { type: "number", integer: true, min: 1, max: MAX_ROWS },
						perRow: { type: "number", integer: true, min: 1, max: MAX_PER_ROW },
						price: { type: "number", integer: true, min: 0, max: 10_000_000 },
						grades: {
							type: "array",
							optional: true,
							max: 5,
							items: {
								type: "object",
								strict: "remove",
								props: {
									grade: { type: "string", pattern: /^[A-Z][A-Z0-9_]{0,15}$/ },
									rows: { type: "number", integer: true, min: 1, max: MAX_ROWS },
									price: { type: "number", integer: true, min: 0, max: 10_000_000 }
								}
							}
						}
					}
				},
				sales: { type: "object", optional: true, strict: "remove", props: salesProps },
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<CreateParams, RequestMeta>) {
				const p = ctx.params;
				const problems = seatMapProblems(p.seats);
				const schedules = p.schedules.map((s, i) => {
					const startsAt = parseStartsAt(s.startsAt);
					if (!startsAt) problems.push({ field: `schedules[${i}].startsAt`, type: "date", message: "an ISO-8601 time with a zone" });
					return { startsAt: startsAt ?? new Date(0) };
				});
				const sales = this.parseWindow(
					p.sales,
					schedules.map(s => s.startsAt),
					problems
				);
				if (problems.length > 0) throw new FieldValidationError(problems);
				const id = await this.repo.createConcert({
					title: p.title,
					artist: p.artist,
					venue: { name: p.venue.name },
					schedules,
					seats: p.seats,
					sales
				});
				Object.assign(ctx.meta, { $statusCode: 201, $location: `/api/concerts/${id}` });
				return this.concertView(id);
			}
		},

		/**
		 * PUT /api/admin/concerts/:id/sales: when sales open and close (null: open now; until each show starts), with
		 * open < close <= the last show. Nodes see the change within WINDOW_CACHE_MS.
		 */
		setSales: {
			visibility: "published",
			auth: "admin",
			params: { id: publicId, ...salesProps, $$strict: "remove" },
			async handler(this: This, ctx: Context<{ id: string; opensAt?: string | null; closesAt?: string | null }>) {
				const concert = ID_PATTERN.test(ctx.params.id) ? await this.repo.getConcert(ctx.params.id) : null;
				if (!concert) throw new NotFoundError("concert", ctx.params.id);
				const shows = (await this.repo.schedulesOf(concert.id)).map(s => new Date(s.startsAt));
				const problems: { field: string; type: string; message: string }[] = [];
				const w = this.parseWindow(ctx.params, shows, problems);
				if (problems.length > 0) throw new FieldValidationError(problems.map(p => ({ ...p, field: p.field.replace(/^sales\./, "") })));
				await this.repo.setSalesWindow(concert.id, w.opensAt, w.closesAt);
				this.windows.delete(concert.id);
				return this.concertView(concert.id);
			}
		},

		/**
		 * For the retention job: concerts whose last show started in [`since`, `before`) (epoch ms), at most 500
		 * per call in id order after `after`.
		 */
		finished: {
			visibility: "public",
			params: {
				since: { type: "number", integer: true, min: 0, optional: true },
				before: { type: "number", integer: true, min: 0 },
				after: { type: "string", optional: true, max: 64 },
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<{ since?: number; before: number; after?: string }>) {
				const rows = await this.sql.select<{ id: string }>(
					"SELECT concert_id AS id FROM schedules WHERE concert_id > ? GROUP BY concert_id HAVING MAX(starts_at) >= ? AND MAX(starts_at) < ? ORDER BY concert_id LIMIT 500",
					[ctx.params.after ?? "", new Date(ctx.params.since ?? 0), new Date(ctx.params.before)]
				);
				return { ids: rows.map(r => r.id), next: rows.length === 500 ? rows[rows.length - 1].id : null };
			}
		},

		/**
		 * For the waiting room: where a concert's sale stands (NOT_OPEN, OPEN, CLOSED), its window, and whether
		 * anything is left to sell (a seat neither sold nor held in a schedule still on sale).
		 */
		saleStatus: {
			visibility: "public",
			params: { id: internalId },
			async handler(this: This, ctx: Context<ConcertApi["concert.saleStatus"]["params"]>): Promise<ConcertApi["concert.saleStatus"]["result"]> {
				const concert = await this.repo.getConcert(ctx.params.id);
				if (!concert) throw new NotFoundError("concert", ctx.params.id);
				const schedules = await this.repo.schedulesOf(concert.id);
				const now = Date.now();
				const state = concertSaleState(
					concert.sales,
					schedules.map(s => s.startsAt),
					now
				);
				const onSale = schedules.filter(s => saleState(concert.sales, s.startsAt, now) !== "CLOSED");
				// One read of the live holds serves both figures (scheduleViews would read them again).
				const held = await this.holds.heldCounts(onSale.map(s => s.id));
				const available = onSale.reduce((n, s, i) => n + availableSeats(s.totalSeats, s.soldSeats, held[i]), 0);
				const heldSeats = held.reduce((n, h) => n + h, 0);
				return { concertId: concert.id, state, ...concert.sales, availableSeats: available, heldSeats, soldOut: available === 0 && heldSeats === 0 };
			}
		},

		/** For other services: one schedule with its concert id and live availability. */
		getSchedule: {
			visibility: "public",
			params: { id: publicId },
			async handler(this: This, ctx: Context<ConcertApi["concert.getSchedule"]["params"]>): Promise<ConcertApi["concert.getSchedule"]["result"]> {
				const s = await this.requireSchedule(ctx.params.id);
				const [view] = await this.scheduleViews([s]);
				return { ...view, concertId: s.concertId };
			}
		},

		/**
		 * Reservation step: holds 1..4 seats of one schedule for `owner` (the reservation id) for HOLD_TTL_SEC,
		 * all or nothing. Idempotent for the same owner and seats (the expiry does not move). 409 SEAT_UNAVAILABLE
		 * names the seats held by others or sold; 404 for an unknown schedule or seat; 422 for a bad request.
		 */
		hold: {
			visibility: "public",
			params: { scheduleId: internalId, seatIds: seatIdsParam, owner: internalId },
			async handler(this: This, ctx: Context<ConcertApi["concert.hold"]["params"]>): Promise<HoldView> {
				const seatIds = requestedSeatIds(ctx.params.seatIds);
				const { scheduleId, owner } = ctx.params;
				const map = await this.seatMapOf(scheduleId);
				const unknown = seatIds.filter(id => !map.seats.has(id));
				if (unknown.length > 0) throw new SeatNotFoundError(unknown);
				await this.requireOnSale(map, scheduleId);
				// Copies: in-process callers get the result by reference, and the map is the node's cache.
				const seats = seatIds.map(id => ({ ...map.seats.get(id)! }));

				const outcome = await this.holds.hold({ scheduleId, seatIds, owner, ttlMs: this.ttlMs() });
				if (!outcome.ok) {
					if (outcome.abandoned) throw new HoldAbandonedError(owner);
					this.countHold("conflict", seatIds.length);
					throw new SeatUnavailableError(outcome.conflicts);
				}

				// The database decides what is sold, whatever the store remembers (it may have lost every key). The
				// check runs after taking the hold, not before: a sale that commits after this read had to get past
				// our hold (confirmSeats fences with the holds), and one that committed before it is seen here.
				const sold = await this.repo.salesOf(scheduleId, seatIds);
				if (sold.size > 0) {
					// The answer is "sold" whether or not the store lets go now; a release it refuses is retried.
					await this.releaseLater({ scheduleId, seatIds, owner });
					this.countHold("sold", seatIds.length);
					throw new SeatUnavailableError(seatIds.filter(id => sold.has(id)));
				}
				this.countHold("held", seatIds.length);
				return {
					concertId: map.concertId,
					scheduleId,
					owner,
					seats,
					amount: totalPrice(seats),
					expiresAt: new Date(outcome.expiresAt).toISOString(),
					startsAt: map.startsAt
				};
			}
		},

		/**
		 * Releases the seats `owner` holds (fencing: another owner's hold is untouched); idempotent. `abandon`: the
		 * caller gave up on a hold whose outcome it does not know (a timeout), so the owner is also refused any hold
		 * that arrives later: a `hold` for it still queued here (a busy bulkhead, a slow node) would otherwise land
		 * after this release and block the seats for HOLD_TTL_SEC with no reservation behind it. The refusal is a
		 * tombstone in the store, checked by the hold script in the same atomic step that would take the hold, so no
		 * ordering of the two calls leaves a hold; a deadline carried by the request could not promise that (a hold
		 * that starts just before it and writes just after). Owners are fresh ids per attempt, so a tombstone never
		 * refuses anyone else. It lives twice the hold time: a hold that waits longer than that on a node finds it
		 * gone, and then lasts its own TTL at most.
		 */
		release: {
			visibility: "public",
			params: { scheduleId: internalId, seatIds: seatIdsParam, owner: internalId, abandon: { type: "boolean", optional: true } },
			async handler(this: This, ctx: Context<ConcertApi["concert.release"]["params"]>): Promise<ConcertApi["concert.release"]["result"]> {
				const seatIds = requestedSeatIds(ctx.params.seatIds);
				const req = { scheduleId: ctx.params.scheduleId, seatIds, owner: ctx.params.owner };
				const released = ctx.params.abandon ? await this.holds.abandon({ ...req, ttlMs: 2 * this.ttlMs() }) : await this.holds.release(req);
				return { scheduleId: ctx.params.scheduleId, owner: ctx.params.owner, released };
			}
		},

		/**
		 * Saga step 3: the seats become SOLD to the reservation in the database, then its holds are dropped.
		 * Idempotent per reservation (a repeat, or a retry after a timeout, sells nothing twice). 409
		 * SEAT_UNAVAILABLE when a seat is sold to another reservation or held by another owner right now.
		 *
		 * Once the sale is written the step has succeeded, whatever happens to the hold: dropping it is cleanup, and a
		 * store outage at that moment must not fail the step (its retries would run out and the saga would undo a
		 * paid booking). A release the store refuses is retried in the background until the hold expires; meanwhile
		 * the lingering hold only makes the seat look taken, which it is: SOLD wins in the seat map, and `hold`
		 * refuses a sold seat whoever holds it.
		 */
		confirmSeats: {
			visibility: "public",
			params: saleParams,
			async handler(this: This, ctx: Context<StepParams<"concert.confirmSeats">>) {
				const seatIds = requestedSeatIds(ctx.params.seatIds);
				const { reservationId, scheduleId } = ctx.params;
				await this.requireSchedule(scheduleId);
				const sales = await this.repo.salesOf(scheduleId, seatIds);
				const alreadyMine = seatIds.every(id => sales.get(id) === reservationId);
				if (!alreadyMine) {
					// The calendar is checked where the sale is written: a payment that reaches this step after the
					// close or the show's start is refused (the saga refunds it), a repeat of a done sale is not.
					await this.requireOnSale(await this.seatMapOf(scheduleId), scheduleId);
					const foreign = seatIds.filter(id => sales.has(id) && sales.get(id) !== reservationId);
					if (foreign.length > 0) throw new SeatUnavailableError(foreign);
					// Fence: the reservation's own hold (or free seats, if its hold lapsed) and no one else's. A seat
					// another reservation holds now is not sold from under it.
					const fence = await this.holds.hold({ scheduleId, seatIds, owner: reservationId, ttlMs: this.settings.saleFenceMs });
					if (!fence.ok) throw new SeatUnavailableError(fence.abandoned ? seatIds : fence.conflicts);
					try {
						await this.repo.sell({ reservationId, scheduleId, seatIds });
					} catch (err) {
						// Refused for good (sold to someone else meanwhile): a hold on those seats is worth nothing, and
						// left in place it would count them twice. A transient failure keeps it for the retry.
						if ((err as { type?: string }).type === "SEAT_UNAVAILABLE") {
							await this.releaseLater({ scheduleId, seatIds, owner: reservationId });
						}
						throw err;
					}
				}
				// Retried only while the seats are still sold to this reservation: once a compensation has un-sold them,
				// the hold (a re-hold's) is not ours to drop any more.
				await this.releaseLater({ scheduleId, seatIds, owner: reservationId }, async () => {
					const sales = await this.repo.salesOf(scheduleId, seatIds);
					return seatIds.every(id => sales.get(id) === reservationId);
				});
				return { reservationId, scheduleId, seatIds, status: "SOLD" };
			}
		},

		/**
		 * Compensation of confirmSeats: the seats go back from SOLD to HELD by the same reservation (for
		 * HOLD_TTL_SEC), with no moment in which they are free. Idempotent.
		 */
		rehold: {
			visibility: "public",
			params: saleParams,
			async handler(this: This, ctx: Context<StepParams<"concert.rehold">>) {
				const seatIds = requestedSeatIds(ctx.params.seatIds);
				const { reservationId, scheduleId } = ctx.params;
				await this.requireSchedule(scheduleId);
				// Nothing sold to this reservation (the sale never applied): nothing to undo. The un-sell still
				// runs, to record that a late sale for it must be refused.
				const sold = await this.repo.salesOf(scheduleId, seatIds);
				if (!seatIds.some(id => sold.get(id) === reservationId)) {
					await this.repo.unsell({ reservationId, scheduleId, seatIds });
					// A repeat after an earlier re-hold answers as that one did.
					const owners = await this.holds.owners({ scheduleId, seatIds });
					if (owners.every(o => o === reservationId)) return { reservationId, scheduleId, seatIds, status: "HELD" };
					return { reservationId, scheduleId, seatIds, status: "NOT_SOLD" };
				}
				for (let attempt = 1; ; attempt++) {
					const outcome = await this.holds.hold({ scheduleId, seatIds, owner: reservationId, ttlMs: this.ttlMs() });
					if (outcome.ok) {
						await this.repo.unsell({ reservationId, scheduleId, seatIds });
						return { reservationId, scheduleId, seatIds, status: "HELD", expiresAt: new Date(outcome.expiresAt).toISOString() };
					}
					// Seats still sold to us can be held by someone else only for a moment (their hold's own check sees
					// the sale and lets go): wait and retry. Seats no longer ours went to someone else for good.
					if (outcome.abandoned) throw new SeatUnavailableError(seatIds);
					const sales = await this.repo.salesOf(scheduleId, outcome.conflicts);
					const lost = outcome.conflicts.filter(id => sales.get(id) !== reservationId);
					if (lost.length > 0) throw new SeatUnavailableError(lost);
					if (attempt >= this.settings.reholdAttempts) throw new SeatsBusyError(outcome.conflicts);
					await new Promise(r => setTimeout(r, this.settings.reholdBackoffMs * attempt));
				}
			}
		},

		/**
		 * Cancellation of a confirmed reservation: its seats stop being SOLD (and any hold it has goes). Idempotent.
		 * As in confirmSeats, the hold's release is cleanup after the commit and never fails the step.
		 */
		releaseSold: {
			visibility: "public",
			params: saleParams,
			async handler(this: This, ctx: Context<StepParams<"concert.releaseSold">>) {
				const seatIds = requestedSeatIds(ctx.params.seatIds);
				const { reservationId, scheduleId } = ctx.params;
				await this.requireSchedule(scheduleId);
				const { unsold } = await this.repo.unsell({ reservationId, scheduleId, seatIds });
				await this.releaseLater({ scheduleId, seatIds, owner: reservationId });
				return { reservationId, scheduleId, seatIds, released: unsold };
			}
		},

		/**
		 * For the ops consistency check (read only), one keyset page at a time (lib/audit.ts): `part: "sales"`, sale
		 * rows (all, `since` a time, of `reservationIds` or on `seats`); `part: "holds"`, live holds with their
		 * owners, by (schedule, seat). The check compares them with the reservations without reading these tables.
		 */
		audit: {
			visibility: "public",
			params: {
				part: { type: "enum", values: ["sales", "holds"] },
				reservationIds: { type: "array", items: { type: "string", max: 64 }, max: 1000, optional: true },
				seats: {
					type: "array",
					max: 1000,
					optional: true,
					items: { type: "object", strict: "remove", props: { scheduleId: { type: "string", max: 64 }, seatId: { type: "string", max: 64 } } }
				},
				...auditPageParams
			},
			async handler(
				this: This,
				ctx: Context<AuditPageParams & { part: "sales" | "holds"; reservationIds?: string[]; seats?: { scheduleId: string; seatId: string }[] }>
			) {
				const limit = auditLimit(this.config, ctx.params.limit);
				if (ctx.params.part === "sales") return this.repo.auditSales({ ...ctx.params, limit });
				const [afterSchedule, afterSeat] = ctx.params.after ?? [];
				const holds: { scheduleId: string; seatId: string; owner: string }[] = [];
				for (const scheduleId of await this.repo.allScheduleIds()) {
					if (afterSchedule !== undefined && scheduleId < afterSchedule) continue;
					let held = [...(await this.holds.heldSeatIds(scheduleId))].sort();
					if (scheduleId === afterSchedule && afterSeat !== undefined) held = held.filter(seatId => seatId > afterSeat);
					held = held.slice(0, limit + 1 - holds.length);
					if (held.length === 0) continue;
					const owners = await this.holds.owners({ scheduleId, seatIds: held });
					held.forEach((seatId, i) => {
						const owner = owners[i];
						// A hold that lapsed between the two reads keeps its place in the page (owner null): the cursor moves on.
						holds.push({ scheduleId, seatId, owner: owner ?? "" });
					});
					if (holds.length > limit) break;
				}
				const page = pageOf(
					holds,
					limit,
					h => h,
					h => [h.scheduleId, h.seatId]
				);
				return { rows: page.rows.filter(h => h.owner !== ""), next: page.next };
			}
		},

		/**
		 * Consistency check for the admin report: "seats", every sold counter equals its sale rows; "holds", no live
		 * hold sits on a seat the database sold to another reservation (possible for a moment while a hold's own
		 * sold check runs; lasting, it would mean a hold path skipped that check).
		 */
		verify: {
			visibility: "public",
			async handler(this: This) {
				const drift = await this.repo.counterDrift();
				const seatsOk = drift.counters.length === 0 && drift.misplaced === 0;
				const foreign: { scheduleId: string; seatId: string; heldBy: string; soldTo: string }[] = [];
				for (const scheduleId of await this.repo.allScheduleIds()) {
					const held = await this.holds.heldSeatIds(scheduleId);
					if (held.length === 0) continue;
					const [owners, sales] = await Promise.all([this.holds.owners({ scheduleId, seatIds: held }), this.repo.salesOf(scheduleId, held)]);
					held.forEach((seatId, i) => {
						const soldTo = sales.get(seatId);
						const heldBy = owners[i];
						if (soldTo !== undefined && heldBy !== null && heldBy !== soldTo) foreign.push({ scheduleId, seatId, heldBy, soldTo });
					});
				}
				const holdsOk = foreign.length === 0;
				return {
					ok: seatsOk && holdsOk,
					checks: [
						{ name: "seats", ok: seatsOk, details: drift },
						{ name: "holds", ok: holdsOk, details: { heldButSoldToOthers: foreign } }
					]
				};
			}
		}
	},

	// Every action that can change what a seat map shows tells the gateways' live maps (seatsChanged below).
	hooks: {
		after: {
			hold: "seatsChanged",
			release: "seatsChanged",
			confirmSeats: "seatsChanged",
			rehold: "seatsChanged",
			releaseSold: "seatsChanged"
		}
	},

	methods: {
		/** After a seat-changing action: its schedule joins the next coalesced broadcast. Answers the result as is. */
		seatsChanged(this: This, ctx: Context<{ scheduleId: string }>, res: unknown) {
			this.changedSchedules.add(ctx.params.scheduleId);
			if (!this.changedTimer) {
				this.changedTimer = setTimeout(() => {
					this.changedTimer = undefined;
					const scheduleIds = [...this.changedSchedules];
					this.changedSchedules.clear();
					this.broker.broadcast("concert.seatsChanged", { scheduleIds }).catch(() => undefined);
				}, SEATS_CHANGED_EVERY_MS);
				this.changedTimer.unref();
			}
			return res;
		},

		async concertView(this: This, id: string): Promise<ConcertView> {
			const concert = ID_PATTERN.test(id) ? await this.repo.getConcert(id) : null;
			if (!concert) throw new NotFoundError("concert", id);
			const schedules = await this.repo.schedulesOf(id);
			const state = concertSaleState(
				concert.sales,
				schedules.map(s => s.startsAt),
				Date.now()
			);
			return { ...concert, sales: { ...concert.sales, state }, schedules: await this.scheduleViews(schedules) };
		},

		/** The concert's sale window, from the node's short cache. */
		async windowOf(this: This, concertId: string): Promise<SalesWindow> {
			const hit = this.windows.get(concertId);
			if (hit && Date.now() - hit.at < WINDOW_CACHE_MS) return hit.window;
			const concert = await this.repo.getConcert(concertId);
			const window = concert?.sales ?? { opensAt: null, closesAt: null };
			this.windows.set(concertId, { window, at: Date.now() });
			return window;
		},

		/** 409 SALES_NOT_OPEN before the window, SALES_CLOSED after its close or the show's start. */
		async requireOnSale(this: This, map: SeatMap, scheduleId: string) {
			const window = await this.windowOf(map.concertId);
			const state = saleState(window, map.startsAt, Date.now());
			if (state === "NOT_OPEN") throw new SalesNotOpenError(map.concertId, window.opensAt);
			if (state === "CLOSED") throw new SalesClosedError(map.concertId, scheduleId);
		},

		/** An admin's sale window: ISO times with a zone, or null; problems are added to `problems`. */
		parseWindow(this: This, sales, shows, problems) {
			const parse = (field: "opensAt" | "closesAt"): Date | null => {
				const v = sales?.[field];
				if (v === undefined || v === null) return null;
				const d = parseStartsAt(v);
				if (!d) problems.push({ field: `sales.${field}`, type: "date", message: "an ISO-8601 time with a zone, or null" });
				return d ?? null;
			};
			const opensAt = parse("opensAt");
			const closesAt = parse("closesAt");
			if (problems.length === 0 && shows.length > 0) problems.push(...salesWindowProblems(opensAt, closesAt, shows));
			return { opensAt, closesAt };
		},

		/** Availability = total - sold (a counter row kept by every sale) - held (one count per schedule). */
		async scheduleViews(this: This, schedules: ScheduleRecord[]): Promise<ScheduleView[]> {
			const held = await this.holds.heldCounts(schedules.map(s => s.id));
			return schedules.map((s, i) => ({
				id: s.id,
				startsAt: s.startsAt,
				totalSeats: s.totalSeats,
				availableSeats: availableSeats(s.totalSeats, s.soldSeats, held[i])
			}));
		},

		async requireSchedule(this: This, id: string): Promise<ScheduleRecord> {
			const s = ID_PATTERN.test(id) ? await this.repo.getSchedule(id) : null;
			if (!s) throw new NotFoundError("schedule", id);
			return s;
		},

		/** The schedule's immutable seat map, from the node's cache; 404 for an unknown schedule (never cached). */
		async seatMapOf(this: This, scheduleId: string): Promise<SeatMap> {
			const cached = this.seatMaps.get(scheduleId);
			if (cached) return cached;
			const schedule = await this.requireSchedule(scheduleId);
			const seats = await this.repo.seatMetaOf(scheduleId);
			const map: SeatMap = { concertId: schedule.concertId, startsAt: schedule.startsAt, seats: new Map(seats.map(s => [s.id, s])) };
			this.seatMaps.set(scheduleId, map);
			return map;
		},

		ttlMs(this: This): number {
			return this.config.holdTtlSec * 1000;
		},

		/** A release that never throws: refused by the store, it is retried in the background until the hold expires. */
		releaseLater(this: This, req: HoldKey & { owner: string }, wanted?: () => Promise<boolean>): Promise<boolean> {
			const until = Date.now() + Math.max(this.ttlMs(), this.settings.saleFenceMs);
			return this.lateReleases.release(req, { until, wanted });
		},

		/** Business metrics: hold requests and their seats by outcome (held, conflict with a hold, already sold). */
		countHold(this: This, outcome: "held" | "conflict" | "sold", seats: number) {
			if (!this.broker.isMetricsEnabled()) return;
			this.broker.metrics.increment("concert.hold.requests", { outcome });
			this.broker.metrics.increment("concert.hold.seats", { outcome }, seats);
		}
	},

	async started(this: This) {
		// The DbMixin has migrated by now (moleculer-db connects in its own `started`, which runs first).
		this.repo = new CatalogRepo(this.sql);
		this.holds = createHoldStore(this.store);
		this.lateReleases = new LateReleases(this.holds, { log: msg => this.logger.warn(msg) });
		this.seatMaps = new LRUCache({ max: SEAT_MAP_CACHE_MAX });
		this.changedSchedules = new Set();
		this.windows = new LRUCache({ max: SEAT_MAP_CACHE_MAX });
		if (this.broker.isMetricsEnabled()) {
			const m = this.broker.metrics;
			if (!m.hasMetric("concert.hold.requests")) {
				m.register({ type: "counter", name: "concert.hold.requests", description: "Seat hold requests by outcome", labelNames: ["outcome"] });
			}
			if (!m.hasMetric("concert.hold.seats")) {
				m.register({
					type: "counter",
					name: "concert.hold.seats",
					description: "Seats asked for in hold requests, by outcome",
					labelNames: ["outcome"]
				});
			}
		}
		if (this.settings.seedDemoData && (await this.repo.seedIfEmpty(DEMO_CATALOG))) {
			this.logger.info(`Seeded the demo catalog: ${DEMO_CATALOG.length} concerts`);
		}
	},

	stopped(this: This) {
		// Pending late releases are dropped: the holds' own TTL frees those seats.
		this.lateReleases?.stop();
		if (this.changedTimer) clearTimeout(this.changedTimer);
	}
};

function seatView(s: SeatRecord): SeatView {
	return { id: s.id, label: s.label, grade: s.grade, price: s.price };
}

export default ConcertService;
