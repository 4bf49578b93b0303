/**
 * SQL of the reservation context: reservations and their seats, the buyer's row lock, the state transitions, the
 * saga voids, the reservation events (outbox), the sweeper's queries and the reads for other contexts. Raw SQL that
 * runs on MariaDB and SQLite (lib/sql.ts); the handlers in reservation.service.ts and reservation.steps.ts stay thin.
 *
 * Every state change is a conditional UPDATE on the states of its row of reservation.domain.ts `TRANSITIONS`
 * (`... WHERE status IN (from) AND saga_id = ?`) and answers the rows it changed: that count says who won, so the
 * sweeper and a payment racing for the same reservation cannot both succeed, and a step repeated under the same saga
 * changes nothing the second time. The statuses come from the table as replacements, never written out here.
 */
import type { Transaction } from "sequelize";
import { isoTime, keysetAfter, pageOf, type AuditPage } from "../../lib/audit";
import type { CatalogEventType, EventCatalog, ReservationConfirmed } from "../../lib/events/catalog";
import { appendOutbox } from "../../lib/outbox";
import { sqlTime, type Sql } from "../../lib/db";
import { COUNTED_STATUSES, TRANSITIONS, type ReservationRow, type ReservationStatus, type SeatRow } from "./reservation.domain";

/** The catalog's reservation events (the ones this repository writes). */
type ReservationEventType = Extract<CatalogEventType, `reservation.${string}`>;

/** The fields of a reservation its events carry. */
type EventRow = Pick<ReservationRow, "id" | "user_id" | "concert_id" | "schedule_id" | "amount">;

/** A reservation as a keyed create inserts it, from the hold it took. */
export interface NewReservation {
	id: string;
	userId: string;
	concertId: string;
	scheduleId: string;
	amount: number;
	/** The hold's expiry and the show's start as the catalog answered them (ISO 8601). */
	expiresAt: string;
	startsAt?: string | null;
	/** One reservation per (user, Idempotency-Key): null without a key. */
	requestKey: string | null;
	seats: { id: string; label: string; grade: string; price: number }[];
	now: Date;
}

/** A buyer's reservation of a schedule that counts against the per-buyer limits, with its number of seats. */
export interface BuyerReservation {
	id: string;
	status: string;
	expires_at: Date | string;
	seats: number;
}

/** A reservation as the ops consistency check reads it. */
export interface AuditReservation {
	expiresAt: string;
	updatedAt: string;
	id: string;
	status: ReservationStatus;
	userId: string;
	concertId: string;
	scheduleId: string;
	amount: number;
	seatIds: string[];
	paymentId: string | null;
	paidSagaId: string | null;
	sagaId: string | null;
}

export interface AuditQuery {
	statuses?: ReservationStatus[];
	ids?: string[];
	since?: Date;
	after?: string[];
	limit: number;
}

/** A forward step of a saga whose compensation already ran here changes nothing (see migrations/002). */
const NOT_VOIDED = " AND NOT EXISTS (SELECT 1 FROM reservation_saga_voids v WHERE v.reservation_id = reservations.id AND v.saga_id = ?)";

const T = TRANSITIONS;

export class ReservationRepo {
	/** The reservation database: conditional updates, deadlock retries and (on SQLite) the per-file writer queue (lib/db). */
	constructor(private readonly sql: Sql) {}

	/** One transaction (retried whole after a deadlock), for work that spans a domain rule and several writes. */
	transaction<R>(fn: (t: Transaction) => Promise<R>): Promise<R> {
		return this.sql.transaction(fn);
	}

	// Reads

	async load(id: string, t?: Transaction): Promise<ReservationRow | null> {
		const rows = await this.sql.select<ReservationRow>("SELECT * FROM reservations WHERE id = ?", [id], t);
		return rows[0] ?? null;
	}

	/** The newest of these reservations that exists (the generations of one keyed create), or null. */
	async loadNewest(ids: string[]): Promise<ReservationRow | null> {
		const rows = await this.sql.select<ReservationRow>(
			`SELECT * FROM reservations WHERE id IN (${ids.map(() => "?").join(", ")}) ORDER BY created_at DESC LIMIT 1`,
			ids
		);
		return rows[0] ?? null;
	}

	/** The seats of these reservations, by label. */
	async seatsOf(ids: string[]): Promise<SeatRow[]> {
		if (ids.length === 0) return [];
		return this.sql.select<SeatRow>(`SELECT * FROM reservation_seats WHERE reservation_id IN (${ids.map(() => "?").join(",")}) ORDER BY label`, ids);
	}

	/** A user's reservations, newest first, one page of them, and how many there are in all. */
	async listOf(userId: string, page: number, pageSize: number): Promise<{ rows: ReservationRow[]; total: number }> {
		const [rows, count] = await Promise.all([
			this.sql.select<ReservationRow>("SELECT * FROM reservations WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?", [
				userId,
				pageSize,
				(page - 1) * pageSize
			]),
			this.sql.select<{ n: number }>("SELECT COUNT(*) AS n FROM reservations WHERE user_id = ?", [userId])
		]);
		return { rows, total: Number(count[0]?.n ?? 0) };
	}

	/** The user's CONFIRMED reservations of a concert: the show of each (its start, or its schedule to ask for it). */
	async confirmedOf(userId: string, concertId: string): Promise<{ starts_at: Date | string | null; schedule_id: string }[]> {
		return this.sql.select<{ starts_at: Date | string | null; schedule_id: string }>(
			"SELECT starts_at, schedule_id FROM reservations WHERE user_id = ? AND concert_id = ? AND status = 'CONFIRMED'",
			[userId, concertId]
		);
	}

	/** Seats sold per concert (CONFIRMED reservations). */
	async soldSeatsByConcert(): Promise<{ concertId: string; seats: number }[]> {
		const rows = await this.sql.select<{ concert_id: string; seats: number }>(
			"SELECT r.concert_id, COUNT(*) AS seats FROM reservations r JOIN reservation_seats s ON s.reservation_id = r.id WHERE r.status = 'CONFIRMED' GROUP BY r.concert_id"
		);
		return rows.map(r => ({ concertId: r.concert_id, seats: Number(r.seats) }));
	}

	/**
	 * One keyset page (lib/audit.ts) of reservations with their seats: by id; with `since`, those changed since then
	 * in change order; with `ids`, those reservations (the first `limit` of them, no paging).
	 */
	async auditPage(q: AuditQuery): Promise<AuditPage<AuditReservation>> {
		const { statuses, ids, since, after, limit } = q;
		const where: string[] = [];
		const params: unknown[] = [];
		if (statuses) {
			where.push(`status IN (${statuses.map(() => "?").join(",")})`);
			params.push(...statuses);
		}
		if (ids) {
			// A list of ids is one page: the caller sends at most a page of them.
			const page = ids.slice(0, limit);
			if (page.length === 0) return { rows: [], next: null };
			where.push(`id IN (${page.map(() => "?").join(",")})`);
			params.push(...page);
		}
		if (since) {
			where.push("updated_at >= ?");
			params.push(sqlTime(since));
		}
		const keys = since ? ["updated_at", "id"] : ["id"];
		if (after) {
			const k = keysetAfter(keys, since ? [sqlTime(new Date(after[0])), after[1] ?? ""] : [after[0]]);
			where.push(k.sql);
			params.push(...k.params);
		}
		const rows = await this.sql.select<ReservationRow>(
			`SELECT * FROM reservations${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY ${keys.join(", ")} LIMIT ${limit + 1}`,
			params
		);
		const seats = new Map<string, string[]>();
		for (const s of await this.seatsOf(rows.slice(0, limit).map(r => r.id))) {
			const list = seats.get(s.reservation_id) ?? [];
			list.push(s.seat_id);
			seats.set(s.reservation_id, list);
		}
		return pageOf(
			rows,
			limit,
			r => ({
				expiresAt: isoTime(r.expires_at),
				updatedAt: isoTime(r.updated_at),
				id: r.id,
				status: r.status,
				userId: r.user_id,
				concertId: r.concert_id,
				scheduleId: r.schedule_id,
				amount: Number(r.amount),
				seatIds: (seats.get(r.id) ?? []).sort(),
				paymentId: r.payment_id ?? null,
				paidSagaId: r.paid_saga_id ?? null,
				sagaId: r.saga_id ?? null
			}),
			r => (since ? [isoTime(r.updated_at), r.id] : [r.id])
		);
	}

	// Creation

	/**
	 * Writes the buyer's row of reservation_buyers (see migrations/005): its row lock (SQLite: the one writer)
	 * serializes one buyer's inserts for one schedule until `t` ends.
	 */
	async lockBuyer(userId: string, scheduleId: string, t: Transaction): Promise<void> {
		const upsert = this.sql.mysql
			? "INSERT INTO reservation_buyers (user_id, schedule_id, updated_at) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE updated_at = VALUES(updated_at)"
			: "INSERT INTO reservation_buyers (user_id, schedule_id, updated_at) VALUES (?, ?, ?) ON CONFLICT (user_id, schedule_id) DO UPDATE SET updated_at = excluded.updated_at";
		await this.sql.insert(upsert, [userId, scheduleId, sqlTime()], t);
	}

	/** The buyer's reservations of the schedule in COUNTED_STATUSES, with their seat counts. */
	async buyerReservations(userId: string, scheduleId: string, t?: Transaction): Promise<BuyerReservation[]> {
		return this.sql.select<BuyerReservation>(
			`SELECT r.id, r.status, r.expires_at, (SELECT COUNT(*) FROM reservation_seats s WHERE s.reservation_id = r.id) AS seats
			 FROM reservations r WHERE r.user_id = ? AND r.schedule_id = ? AND r.status IN (${COUNTED_STATUSES.map(() => "?").join(", ")})`,
			[userId, scheduleId, ...COUNTED_STATUSES],
			t
		);
	}

	/** Inserts a PENDING reservation, its seats and its reservation.held event (version 1) in `t`. */
	async insertHeld(r: NewReservation, t: Transaction): Promise<void> {
		await this.sql.insert(
			"INSERT INTO reservations (id, user_id, concert_id, schedule_id, status, amount, expires_at, starts_at, request_key, created_at, updated_at) VALUES (?, ?, ?, ?, 'PENDING', ?, ?, ?, ?, ?, ?)",
			[
				r.id,
				r.userId,
				r.concertId,
				r.scheduleId,
				r.amount,
				sqlTime(new Date(r.expiresAt)),
				r.startsAt ? sqlTime(new Date(r.startsAt)) : null,
				r.requestKey,
				sqlTime(r.now),
				sqlTime(r.now)
			],
			t
		);
		for (const s of r.seats) {
			await this.sql.insert(
				"INSERT INTO reservation_seats (reservation_id, seat_id, label, grade, price) VALUES (?, ?, ?, ?, ?)",
				[r.id, s.id, s.label, s.grade, s.price],
				t
			);
		}
		// The reservation's first event; its row and seats are what was just inserted (not read back).
		const row = { id: r.id, user_id: r.userId, concert_id: r.concertId, schedule_id: r.scheduleId, amount: r.amount };
		await this.appendEvent(
			t,
			row,
			"reservation.held",
			{ reservedAt: r.now.toISOString(), expiresAt: r.expiresAt },
			{
				version: 1,
				seatIds: [...r.seats].sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0)).map(s => s.id)
			}
		);
	}

	// Saga transitions (TRANSITIONS); each answers the rows it changed

	/** markPaying: the saga takes a PENDING reservation whose hold runs at `now`, unless it was voided here. */
	async markPaying(id: string, sagaId: string, now: Date): Promise<number> {
		return this.sql.update(
			`UPDATE reservations SET status = ?, saga_id = ?, updated_at = ? WHERE id = ? AND status IN (?) AND expires_at > ?${NOT_VOIDED}`,
			[T.markPaying.to, sagaId, sqlTime(now), id, T.markPaying.from, sqlTime(now), sagaId]
		);
	}

	/**
	 * confirm, with its reservation.confirmed event, in one transaction. Answers the rows changed and the
	 * reservation as it is after (read in the same transaction).
	 */
	async confirm(id: string, sagaId: string, paymentId: string): Promise<{ changed: number; row: ReservationRow | null }> {
		return this.sql.transaction(async t => {
			const changed = await this.sql.update(
				`UPDATE reservations SET status = ?, paid_saga_id = saga_id, payment_id = ?, updated_at = ? WHERE id = ? AND status IN (?) AND saga_id = ?${NOT_VOIDED}`,
				[T.confirm.to, paymentId, sqlTime(), id, T.confirm.from, sagaId, sagaId],
				t
			);
			const row = await this.load(id, t);
			if (changed === 1 && row) await this.appendEvent(t, row, "reservation.confirmed", {});
			return { changed, row };
		});
	}

	/** beginCancel: from the status the saga expects (one of the transition's `from`), which is kept to go back to. */
	async beginCancel(id: string, sagaId: string, expect: (typeof T.beginCancel.from)[number]): Promise<number> {
		return this.sql.update(
			`UPDATE reservations SET status = ?, previous_status = ?, saga_id = ?, updated_at = ? WHERE id = ? AND status = ?${NOT_VOIDED}`,
			[T.beginCancel.to, expect, sagaId, sqlTime(), id, expect, sagaId]
		);
	}

	/** finishCancel, with its reservation.cancelled event, in one transaction; answers as `confirm` does. */
	async finishCancel(id: string, sagaId: string, refundAmount: number | null): Promise<{ changed: number; row: ReservationRow | null }> {
		return this.sql.transaction(async t => {
			const changed = await this.sql.update(
				"UPDATE reservations SET status = ?, refund_amount = ?, updated_at = ? WHERE id = ? AND status IN (?) AND saga_id = ?",
				[T.finishCancel.to, refundAmount, sqlTime(), id, T.finishCancel.from, sagaId],
				t
			);
			const row = await this.load(id, t);
			if (changed === 1 && row) {
				await this.appendEvent(t, row, "reservation.cancelled", {
					wasConfirmed: row.previous_status === "CONFIRMED",
					refundAmount: refundAmount ?? 0,
					reason: "cancelled by user"
				});
			}
			return { changed, row };
		});
	}

	/** Compensation of markPaying: records the saga as voided here, then back to PENDING if this saga set PAYING. */
	async revertPaying(id: string, sagaId: string): Promise<void> {
		await this.sql.transaction(async t => {
			await this.voidSaga(id, sagaId, t);
			if ((await this.revertPayingIn(id, sagaId, t)) !== 1) return;
			// seed 003 OrderRollbackEvent: the reservation is PENDING again (its payment did not go through).
			const row = await this.load(id, t);
			if (row) await this.appendEvent(t, row, "reservation.rolled_back", { status: "PENDING", reason: "payment did not go through" });
		});
	}

	/** Compensation of beginCancel: records the saga as voided here, then back to the status the cancel left. */
	async abortCancel(id: string, sagaId: string): Promise<void> {
		await this.sql.transaction(async t => {
			await this.voidSaga(id, sagaId, t);
			await this.sql.update(
				"UPDATE reservations SET status = previous_status, previous_status = NULL, updated_at = ? WHERE id = ? AND status IN (?) AND saga_id = ?",
				[sqlTime(), id, T.abortCancel.from, sagaId],
				t
			);
		});
	}

	/**
	 * Compensation of confirm, in one transaction: records the saga as voided here and cancels the reservation this
	 * saga paid, with its reservation.cancelled event. Answers the reservation as it is after.
	 */
	async voidConfirmation(id: string, sagaId: string): Promise<ReservationRow | null> {
		return this.sql.transaction(async t => {
			await this.voidSaga(id, sagaId, t);
			const changed = await this.sql.update(
				"UPDATE reservations SET status = ?, updated_at = ? WHERE id = ? AND status IN (?) AND paid_saga_id = ?",
				[T.voidConfirmation.to, sqlTime(), id, T.voidConfirmation.from, sagaId],
				t
			);
			// Not confirmed (the confirm step was in doubt and never applied): give the reservation back to PENDING
			// now; the void above turns a late confirm of this saga away.
			const reverted = changed === 0 ? await this.revertPayingIn(id, sagaId, t) : 0;
			const current = await this.load(id, t);
			if (changed === 1 && current) {
				await this.appendEvent(t, current, "reservation.cancelled", { wasConfirmed: true, reason: "confirmation rolled back" });
			}
			if (reverted === 1 && current)
				await this.appendEvent(t, current, "reservation.rolled_back", { status: "PENDING", reason: "payment did not go through" });
			return current;
		});
	}

	/** PAYING -> PENDING, only for the saga that set it. */
	private async revertPayingIn(id: string, sagaId: string, t: Transaction): Promise<number> {
		return this.sql.update(
			"UPDATE reservations SET status = ?, saga_id = NULL, updated_at = ? WHERE id = ? AND status IN (?) AND saga_id = ?",
			[T.revertPaying.to, sqlTime(), id, T.revertPaying.from, sagaId],
			t
		);
	}

	/** Records that `sagaId`'s compensation ran on this reservation (idempotent). */
	private async voidSaga(id: string, sagaId: string, t: Transaction): Promise<void> {
		const ignore = this.sql.mysql ? "INSERT IGNORE" : "INSERT OR IGNORE";
		await this.sql.insert(`${ignore} INTO reservation_saga_voids (reservation_id, saga_id, created_at) VALUES (?, ?, ?)`, [id, sagaId, sqlTime()], t);
	}

	// The expiry sweep

	/** Up to 200 reservations whose hold ran out by `now` and that nothing took, oldest expiry first. */
	async dueForExpiry(now: Date): Promise<ReservationRow[]> {
		return this.sql.select<ReservationRow>("SELECT * FROM reservations WHERE status IN (?) AND expires_at <= ? ORDER BY expires_at LIMIT 200", [
			T.expire.from,
			sqlTime(now)
		]);
	}

	/**
	 * expire, with its reservation.expired event, in one transaction: the reservation as it is after, or null when a
	 * payment (or another sweeper) got to it first.
	 */
	async expire(id: string, now: Date): Promise<ReservationRow | null> {
		return this.sql.transaction(async t => {
			const changed = await this.sql.update(
				"UPDATE reservations SET status = ?, updated_at = ? WHERE id = ? AND status IN (?) AND expires_at <= ?",
				[T.expire.to, sqlTime(), id, T.expire.from, sqlTime(now)],
				t
			);
			if (changed !== 1) return null;
			const current = (await this.load(id, t))!;
			await this.appendEvent(t, current, "reservation.expired", {});
			return current;
		});
	}

	// Events

	/**
	 * Writes a reservation event to the outbox in the caller's transaction (seed 003's payload fields). `known`:
	 * the seat ids and event version when the caller has them (the creating transaction), else they are read.
	 */
	private async appendEvent<T extends ReservationEventType>(
		t: Transaction,
		row: EventRow,
		eventType: T,
		extra: Omit<EventCatalog[T], keyof ReservationConfirmed>,
		known: { version?: number; seatIds?: string[] } = {}
	): Promise<void> {
		const seatIds =
			known.seatIds ??
			(await this.sql.select<SeatRow>("SELECT * FROM reservation_seats WHERE reservation_id = ? ORDER BY label", [row.id], t)).map(s => s.seat_id);
		const base: ReservationConfirmed = {
			reservationId: row.id,
			userId: row.user_id,
			concertId: row.concert_id,
			scheduleId: row.schedule_id,
			seatIds,
			amount: Number(row.amount)
		};
		await appendOutbox(this.sql, t, {
			aggregateType: "reservation",
			aggregateId: row.id,
			version: known.version,
			eventType,
			// The common fields are a ReservationConfirmed's; the compiler checks `extra` against the rest of T's.
			payload: { ...base, ...extra } as EventCatalog[T]
		});
	}
}
