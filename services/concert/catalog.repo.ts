/**
 * SQL of the concert context: catalog reads, catalog creation (admin and demo seeding) and seat sales. Raw SQL
 * that runs on both MariaDB and SQLite; the handlers in concert.service.ts stay thin.
 *
 * Sales: every write to `seat_sales` first locks the schedule's `seat_availability` row (SELECT ... FOR UPDATE on
 * MariaDB; SQLite's IMMEDIATE transactions already serialize writers). Under that lock a read-then-write of the
 * schedule's sales is safe, the sold counter moves in the same transaction as the rows it counts, and two sales of
 * one schedule never deadlock on gap locks. The primary key of `seat_sales` stays the last guard regardless.
 */
import { isLockContention, isTransientDbError, sqlTime, type Sql } from "../../lib/db";
import { isoTime, keysetAfter, pageOf, type AuditPage } from "../../lib/audit";
import crypto from "crypto";
import { UniqueConstraintError, type Transaction } from "sequelize";
import { NotFoundError } from "../../lib/errors";
import { generateSeatMap, toIso, type SalesWindow } from "./concert.domain";
import type { CatalogInput } from "./demo-data";
import { SaleContentionError, SeatNotFoundError, SeatUnavailableError } from "./errors";

export interface VenueView {
	id: string;
	name: string;
}

export interface ConcertSummary {
	id: string;
	title: string;
	artist: string;
	venue: VenueView;
	/** When sales open and close (null: open since creation; until each show starts). */
	sales: SalesWindow;
}

export interface ScheduleRecord {
	id: string;
	concertId: string;
	startsAt: string;
	totalSeats: number;
	soldSeats: number;
}

export interface SeatRecord {
	id: string;
	label: string;
	grade: string;
	price: number;
	/** The reservation that bought it, or null. */
	soldTo: string | null;
}

export interface SaleRequest {
	reservationId: string;
	scheduleId: string;
	seatIds: string[];
}

interface ConcertJoinRow {
	id: string;
	title: string;
	artist: string;
	venue_id: string;
	venue_name: string;
	sales_open_at: Date | string | null;
	sales_close_at: Date | string | null;
}

interface ScheduleJoinRow {
	id: string;
	concert_id: string;
	starts_at: Date | string;
	total_seats: number | string;
	sold_seats: number | string | null;
}

interface SeatJoinRow {
	id: string;
	label: string;
	grade: string;
	price: number | string;
	sold_to: string | null;
}

const SEAT_INSERT_CHUNK = 500;

export class CatalogRepo {
	/** The concert database: transactions queued per SQLite file and retried after an InnoDB deadlock (lib/db). */
	constructor(private readonly sql: Sql) {}

	// --- reads --------------------------------------------------------------------------------------------------

	async countConcerts(): Promise<number> {
		const [row] = await this.sql.select<{ n: number | string }>("SELECT COUNT(*) AS n FROM concerts", []);
		return Number(row?.n ?? 0);
	}

	async listConcerts(offset: number, limit: number): Promise<ConcertSummary[]> {
		const rows = await this.sql.select<ConcertJoinRow>(
			`SELECT c.id, c.title, c.artist, c.sales_open_at, c.sales_close_at, v.id AS venue_id, v.name AS venue_name
			 FROM concerts c JOIN venues v ON v.id = c.venue_id
			 ORDER BY c.created_at, c.id LIMIT ? OFFSET ?`,
			[limit, offset]
		);
		return rows.map(toConcert);
	}

	async getConcert(id: string): Promise<ConcertSummary | null> {
		const [row] = await this.sql.select<ConcertJoinRow>(
			`SELECT c.id, c.title, c.artist, c.sales_open_at, c.sales_close_at, v.id AS venue_id, v.name AS venue_name
			 FROM concerts c JOIN venues v ON v.id = c.venue_id WHERE c.id = ?`,
			[id]
		);
		return row ? toConcert(row) : null;
	}

	async allScheduleIds(): Promise<string[]> {
		return (await this.sql.select<{ id: string }>("SELECT id FROM schedules ORDER BY id", [])).map(r => r.id);
	}

	async schedulesOf(concertId: string): Promise<ScheduleRecord[]> {
		const rows = await this.sql.select<ScheduleJoinRow>(
			`SELECT s.id, s.concert_id, s.starts_at, s.total_seats, a.sold_seats
			 FROM schedules s LEFT JOIN seat_availability a ON a.schedule_id = s.id
			 WHERE s.concert_id = ? ORDER BY s.starts_at, s.id`,
			[concertId]
		);
		return rows.map(toSchedule);
	}

	async getSchedule(id: string): Promise<ScheduleRecord | null> {
		const [row] = await this.sql.select<ScheduleJoinRow>(
			`SELECT s.id, s.concert_id, s.starts_at, s.total_seats, a.sold_seats
			 FROM schedules s LEFT JOIN seat_availability a ON a.schedule_id = s.id WHERE s.id = ?`,
			[id]
		);
		return row ? toSchedule(row) : null;
	}

	/** The whole seat map of a schedule with what is sold (the seat-map read). */
	async seatsOf(scheduleId: string): Promise<SeatRecord[]> {
		const rows = await this.sql.select<SeatJoinRow>(
			`SELECT s.id, s.label, s.grade, s.price, ss.reservation_id AS sold_to
			 FROM seats s LEFT JOIN seat_sales ss ON ss.schedule_id = s.schedule_id AND ss.seat_id = s.id
			 WHERE s.schedule_id = ? ORDER BY s.row_no, s.col_no`,
			[scheduleId]
		);
		return rows.map(toSeat);
	}

	/** Seat metadata of a schedule (label, grade, price; never changes once created), without sale state. */
	async seatMetaOf(scheduleId: string): Promise<Omit<SeatRecord, "soldTo">[]> {
		const rows = await this.sql.select<Omit<SeatJoinRow, "sold_to">>(
			"SELECT id, label, grade, price FROM seats WHERE schedule_id = ? ORDER BY row_no, col_no",
			[scheduleId]
		);
		return rows.map(r => ({ id: r.id, label: r.label, grade: r.grade, price: Number(r.price) }));
	}

	/** seatId -> reservation, for the asked seats that are sold. */
	async salesOf(scheduleId: string, seatIds: string[], transaction?: Transaction): Promise<Map<string, string>> {
		const rows = await this.sql.select<{ seat_id: string; reservation_id: string }>(
			`SELECT seat_id, reservation_id FROM seat_sales WHERE schedule_id = ? AND seat_id IN (?)${transaction ? this.sql.forUpdate : ""}`,
			[scheduleId, seatIds],
			transaction
		);
		return new Map(rows.map(r => [r.seat_id, r.reservation_id]));
	}

	// --- catalog creation ---------------------------------------------------------------------------------------

	/** The venue with this name, created if missing; two admins creating it at once end up with the same row. */
	async findOrCreateVenue(name: string): Promise<VenueView> {
		const find = async () => (await this.sql.select<VenueView>("SELECT id, name FROM venues WHERE name = ?", [name]))[0] as VenueView | undefined;
		const existing = await find();
		if (existing) return existing;
		const id = crypto.randomUUID();
		try {
			await this.sql.insert("INSERT INTO venues (id, name, created_at) VALUES (?, ?, ?)", [id, name, new Date()]);
			return { id, name };
		} catch (err) {
			if (!(err instanceof UniqueConstraintError)) throw err;
			const raced = await find();
			if (!raced) throw err;
			return raced;
		}
	}

	/** A concert with its schedules, their generated seat maps and availability rows, in one transaction. */
	async insertConcert(input: CatalogInput, venue: VenueView, transaction: Transaction): Promise<string> {
		const concertId = crypto.randomUUID();
		const createdAt = new Date();
		await this.sql.insert(
			"INSERT INTO concerts (id, title, artist, venue_id, sales_open_at, sales_close_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
			[concertId, input.title, input.artist, venue.id, input.sales?.opensAt ?? null, input.sales?.closesAt ?? null, createdAt],
			transaction
		);
		const seatMap = generateSeatMap(input.seats);
		for (const schedule of input.schedules) {
			const scheduleId = crypto.randomUUID();
			await this.sql.insert(
				"INSERT INTO schedules (id, concert_id, starts_at, total_seats, created_at) VALUES (?, ?, ?, ?, ?)",
				[scheduleId, concertId, schedule.startsAt, seatMap.length, createdAt],
				transaction
			);
			await this.sql.insert(
				"INSERT INTO seat_availability (schedule_id, total_seats, sold_seats, updated_at) VALUES (?, ?, 0, ?)",
				[scheduleId, seatMap.length, createdAt],
				transaction
			);
			for (let i = 0; i < seatMap.length; i += SEAT_INSERT_CHUNK) {
				const chunk = seatMap.slice(i, i + SEAT_INSERT_CHUNK);
				await this.sql.insert(
					`INSERT INTO seats (id, schedule_id, label, grade, price, row_no, col_no) VALUES ${chunk.map(() => "(?, ?, ?, ?, ?, ?, ?)").join(", ")}`,
					chunk.flatMap(s => [crypto.randomUUID(), scheduleId, s.label, s.grade, s.price, s.row, s.col]),
					transaction
				);
			}
		}
		return concertId;
	}

	/** Sets a concert's sale window (the caller has checked the concert exists). */
	async setSalesWindow(concertId: string, opensAt: Date | null, closesAt: Date | null): Promise<void> {
		await this.sql.update("UPDATE concerts SET sales_open_at = ?, sales_close_at = ? WHERE id = ?", [opensAt, closesAt, concertId]);
	}

	async createConcert(input: CatalogInput): Promise<string> {
		const venue = await this.findOrCreateVenue(input.venue.name);
		return this.sql.transaction(tx => this.insertConcert(input, venue, tx));
	}

	/**
	 * Seeds the catalog when it is empty; returns whether this call did. Replicas starting together both see an
	 * empty catalog: the unique venue name makes the second one's insert fail (on MariaDB it waits for the first
	 * transaction, then collides), and it backs off with nothing written. On MariaDB the loser may instead be a
	 * deadlock victim or time out waiting (its transaction rolled back whole): it looks again shortly, and a start
	 * fails only when the catalog is still empty after three tries.
	 */
	async seedIfEmpty(catalog: CatalogInput[]): Promise<boolean> {
		for (let attempt = 1; ; attempt++) {
			if ((await this.countConcerts()) > 0) return false;
			try {
				await this.sql.transaction(async tx => {
					const venues = new Map<string, VenueView>();
					for (const c of catalog) {
						if (venues.has(c.venue.name)) continue;
						const venue = { id: crypto.randomUUID(), name: c.venue.name };
						await this.sql.insert("INSERT INTO venues (id, name, created_at) VALUES (?, ?, ?)", [venue.id, venue.name, new Date()], tx);
						venues.set(venue.name, venue);
					}
					for (const c of catalog) await this.insertConcert(c, venues.get(c.venue.name)!, tx);
				});
				return true;
			} catch (err) {
				if (err instanceof UniqueConstraintError) return false;
				if (attempt >= 3 || !isTransientDbError(err)) throw err;
				await new Promise(resolve => setTimeout(resolve, 100 + Math.random() * 200 * attempt));
			}
		}
	}

	// --- sales ----------------------------------------------------------------------------------------------------

	/**
	 * Marks the seats SOLD to the reservation; idempotent per reservation (seats it already bought are skipped).
	 * Refuses as a whole (nothing written) when a seat is unknown or sold to another reservation.
	 */
	async sell(req: SaleRequest): Promise<{ sold: number }> {
		return this.guard(() =>
			this.sql.transaction(async tx => {
				await this.lockSchedule(req.scheduleId, tx);
				const known = await this.sql.select<{ id: string }>(
					"SELECT id FROM seats WHERE schedule_id = ? AND id IN (?)",
					[req.scheduleId, req.seatIds],
					tx
				);
				const knownIds = new Set(known.map(r => r.id));
				const unknown = req.seatIds.filter(id => !knownIds.has(id));
				if (unknown.length > 0) throw new SeatNotFoundError(unknown);
				// Un-sold before (cancelled or compensated): this sale arrived late and must not apply.
				const voided = await this.sql.select<{ n: number }>(
					"SELECT COUNT(*) AS n FROM seat_sale_voids WHERE schedule_id = ? AND reservation_id = ?",
					[req.scheduleId, req.reservationId],
					tx
				);
				if (Number(voided[0]?.n ?? 0) > 0) throw new SeatUnavailableError(req.seatIds);
				const sales = await this.salesOf(req.scheduleId, req.seatIds, tx);
				const foreign = req.seatIds.filter(id => sales.has(id) && sales.get(id) !== req.reservationId);
				if (foreign.length > 0) throw new SeatUnavailableError(foreign);
				const todo = req.seatIds.filter(id => !sales.has(id));
				if (todo.length > 0) {
					const now = new Date();
					await this.sql.insert(
						`INSERT INTO seat_sales (schedule_id, seat_id, reservation_id, sold_at) VALUES ${todo.map(() => "(?, ?, ?, ?)").join(", ")}`,
						todo.flatMap(id => [req.scheduleId, id, req.reservationId, now]),
						tx
					);
					await this.sql.update(
						"UPDATE seat_availability SET sold_seats = sold_seats + ?, updated_at = ? WHERE schedule_id = ?",
						[todo.length, now, req.scheduleId],
						tx
					);
				}
				return { sold: todo.length };
			})
		);
	}

	/** Un-sells the seats this reservation bought among those given; idempotent; returns how many. */
	async unsell(req: SaleRequest): Promise<{ unsold: number }> {
		return this.guard(() =>
			this.sql.transaction(async tx => {
				await this.lockSchedule(req.scheduleId, tx);
				// From now on no sale for this reservation applies, even one still on its way (see `sell`).
				await this.sql.insert(
					`${this.sql.insertIgnore} INTO seat_sale_voids (schedule_id, reservation_id, created_at) VALUES (?, ?, ?)`,
					[req.scheduleId, req.reservationId, sqlTime()],
					tx
				);
				const sales = await this.salesOf(req.scheduleId, req.seatIds, tx);
				const mine = req.seatIds.filter(id => sales.get(id) === req.reservationId);
				if (mine.length > 0) {
					await this.sql.update(
						"DELETE FROM seat_sales WHERE schedule_id = ? AND reservation_id = ? AND seat_id IN (?)",
						[req.scheduleId, req.reservationId, mine],
						tx
					);
					await this.sql.update(
						"UPDATE seat_availability SET sold_seats = sold_seats - ?, updated_at = ? WHERE schedule_id = ?",
						[mine.length, new Date(), req.scheduleId],
						tx
					);
				}
				return { unsold: mine.length };
			})
		);
	}

	/**
	 * Consistency check: schedules whose sold counter differs from their sale rows, and sales whose seat belongs
	 * to another schedule. Both lists are empty when the invariants hold.
	 */
	async counterDrift(): Promise<{ counters: { scheduleId: string; counter: number; rows: number }[]; misplaced: number }> {
		const counters = await this.sql.select<{ schedule_id: string; sold_seats: number | string; n: number | string }>(
			`SELECT a.schedule_id, a.sold_seats, COUNT(ss.seat_id) AS n
			 FROM seat_availability a LEFT JOIN seat_sales ss ON ss.schedule_id = a.schedule_id
			 GROUP BY a.schedule_id, a.sold_seats HAVING a.sold_seats <> COUNT(ss.seat_id)`,
			[]
		);
		const [misplaced] = await this.sql.select<{ n: number | string }>(
			"SELECT COUNT(*) AS n FROM seat_sales ss JOIN seats s ON s.id = ss.seat_id WHERE s.schedule_id <> ss.schedule_id",
			[]
		);
		return {
			counters: counters.map(r => ({ scheduleId: r.schedule_id, counter: Number(r.sold_seats), rows: Number(r.n) })),
			misplaced: Number(misplaced?.n ?? 0)
		};
	}

	/**
	 * One keyset page of sale rows for the ops consistency check (lib/audit.ts), which compares them with the
	 * reservations: by (schedule, seat); with `since`, sold since then in sale order; with `reservationIds` or
	 * `seats`, the sales of those reservations or on those seats (one page of them).
	 */
	async auditSales(q: {
		limit: number;
		after?: string[];
		since?: Date;
		reservationIds?: string[];
		seats?: { scheduleId: string; seatId: string }[];
	}): Promise<AuditPage<{ scheduleId: string; seatId: string; reservationId: string }>> {
		const where: string[] = [];
		const params: unknown[] = [];
		if (q.reservationIds) {
			const ids = q.reservationIds.slice(0, q.limit);
			if (ids.length === 0) return { rows: [], next: null };
			where.push(`reservation_id IN (${ids.map(() => "?").join(",")})`);
			params.push(...ids);
		}
		if (q.seats) {
			const seats = q.seats.slice(0, q.limit);
			if (seats.length === 0) return { rows: [], next: null };
			where.push(`(${seats.map(() => "(schedule_id = ? AND seat_id = ?)").join(" OR ")})`);
			params.push(...seats.flatMap(x => [x.scheduleId, x.seatId]));
		}
		if (q.since) {
			where.push("sold_at >= ?");
			params.push(sqlTime(q.since));
		}
		const keys = q.since ? ["sold_at", "schedule_id", "seat_id"] : ["schedule_id", "seat_id"];
		if (q.after) {
			const values = q.since ? [sqlTime(new Date(q.after[0])), q.after[1] ?? "", q.after[2] ?? ""] : [q.after[0], q.after[1] ?? ""];
			const k = keysetAfter(keys, values);
			where.push(k.sql);
			params.push(...k.params);
		}
		const rows = await this.sql.select<{ schedule_id: string; seat_id: string; reservation_id: string; sold_at: Date | string }>(
			`SELECT schedule_id, seat_id, reservation_id, sold_at FROM seat_sales${where.length ? ` WHERE ${where.join(" AND ")}` : ""}
			 ORDER BY ${keys.join(", ")} LIMIT ${q.limit + 1}`,
			params
		);
		return pageOf(
			rows,
			q.limit,
			r => ({ scheduleId: r.schedule_id, seatId: r.seat_id, reservationId: r.reservation_id }),
			r => (q.since ? [isoTime(r.sold_at), r.schedule_id, r.seat_id] : [r.schedule_id, r.seat_id])
		);
	}

	private async lockSchedule(scheduleId: string, tx: Transaction): Promise<void> {
		const rows = await this.sql.select<{ schedule_id: string }>(
			`SELECT schedule_id FROM seat_availability WHERE schedule_id = ?${this.sql.forUpdate}`,
			[scheduleId],
			tx
		);
		if (rows.length === 0) throw new NotFoundError("schedule", scheduleId);
	}

	/**
	 * A deadlock (past the Sql's own retries), a lock-wait timeout or a busy file rolled the transaction back: say so
	 * as a retryable error, not a 500.
	 */
	private async guard<T>(fn: () => Promise<T>): Promise<T> {
		try {
			return await fn();
		} catch (err) {
			if (isLockContention(err)) throw new SaleContentionError();
			throw err;
		}
	}
}

function toConcert(r: ConcertJoinRow): ConcertSummary {
	return {
		id: r.id,
		title: r.title,
		artist: r.artist,
		venue: { id: r.venue_id, name: r.venue_name },
		sales: { opensAt: r.sales_open_at ? toIso(r.sales_open_at) : null, closesAt: r.sales_close_at ? toIso(r.sales_close_at) : null }
	};
}

function toSchedule(r: ScheduleJoinRow): ScheduleRecord {
	return {
		id: r.id,
		concertId: r.concert_id,
		startsAt: toIso(r.starts_at),
		totalSeats: Number(r.total_seats),
		soldSeats: Number(r.sold_seats ?? 0)
	};
}

function toSeat(r: SeatJoinRow): SeatRecord {
	return { id: r.id, label: r.label, grade: r.grade, price: Number(r.price), soldTo: r.sold_to ?? null };
}
