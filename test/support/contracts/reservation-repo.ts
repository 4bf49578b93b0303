/**
 * The reservation's transitions in SQL (services/reservation/reservation.repo.ts) without the service in front:
 * each conditional UPDATE changes a row once, only from the states of its row of TRANSITIONS and only for its saga,
 * a voided saga's late step changes nothing, and each change writes its event in the same transaction. Run on
 * SQLite (embedded) by the unit tier and on the real MariaDB by the integration tier.
 */
import crypto from "crypto";
import { QueryTypes, type Sequelize } from "sequelize";
import type { SqlConfig } from "../../../lib/config";
import { outboxMigration } from "../../../lib/outbox";
import { createSequelize, migrate, physicalDatabaseName, Sql } from "../../../lib/db";
import { RESERVATION_MIGRATIONS } from "../../../services/reservation/migrations";
import { ReservationRepo } from "../../../services/reservation/reservation.repo";

export function reservationRepoSuite(name: string, sql: SqlConfig): void {
	describe(`reservation repository on ${name}`, () => {
		let sequelize: Sequelize;
		let repo: ReservationRepo;

		beforeAll(async () => {
			const db = physicalDatabaseName(sql, "reservation");
			sequelize = createSequelize(sql, db);
			if (sql.dialect === "sqlite") await sequelize.query("PRAGMA journal_mode=WAL");
			await migrate(sql, db, sequelize, [outboxMigration, ...RESERVATION_MIGRATIONS], () => undefined);
			repo = new ReservationRepo(new Sql(sequelize));
		}, 30_000);

		afterAll(async () => {
			await sequelize.close();
		});

		/** A PENDING reservation of two seats (inserted B1 then A1) whose hold ends `expiresInMs` from now. */
		async function held(expiresInMs = 60_000, userId = crypto.randomUUID(), scheduleId = "s-1"): Promise<string> {
			const id = crypto.randomUUID();
			const now = new Date();
			const seats = [
				{ id: `${id}-b`, label: "B1", grade: "R", price: 70 },
				{ id: `${id}-a`, label: "A1", grade: "R", price: 30 }
			];
			const reservation = { id, userId, concertId: "c-1", scheduleId, amount: 100, requestKey: null, seats, now };
			await repo.transaction(t => repo.insertHeld({ ...reservation, expiresAt: new Date(now.getTime() + expiresInMs).toISOString() }, t));
			return id;
		}

		const row = async (id: string) => (await repo.load(id))!;

		async function events(id: string): Promise<{ type: string; payload: Record<string, unknown> }[]> {
			const rows = await sequelize.query<{ event_type: string; payload: string }>(
				"SELECT event_type, payload FROM outbox_events WHERE aggregate_id = ? ORDER BY version",
				{ replacements: [id], type: QueryTypes.SELECT }
			);
			return rows.map(r => ({ type: r.event_type, payload: JSON.parse(r.payload) as Record<string, unknown> }));
		}

		async function paying(saga: string): Promise<string> {
			const id = await held();
			expect(await repo.markPaying(id, saga, new Date())).toBe(1);
			return id;
		}

		async function confirmed(saga: string): Promise<string> {
			const id = await paying(saga);
			expect((await repo.confirm(id, saga, "pay-1")).changed).toBe(1);
			return id;
		}

		it("when a reservation is held, then it reads back PENDING with its seats by label and its reservation.held event", async () => {
			const id = await held();
			expect((await row(id)).status).toBe("PENDING");
			expect((await repo.seatsOf([id])).map(s => s.label)).toEqual(["A1", "B1"]);
			expect(await events(id)).toEqual([
				{ type: "reservation.held", payload: expect.objectContaining({ reservationId: id, seatIds: [`${id}-a`, `${id}-b`], amount: 100, version: 1 }) }
			]);
		});

		it("when ten sagas take the same PENDING reservation at once, then exactly one does", async () => {
			const id = await held();
			const sagas = Array.from({ length: 10 }, () => crypto.randomUUID());
			const changed = await Promise.all(sagas.map(s => repo.markPaying(id, s, new Date())));
			expect(changed.reduce((n, c) => n + c, 0)).toBe(1);
			const r = await row(id);
			expect(r.status).toBe("PAYING");
			expect(r.saga_id).toBe(sagas[changed.indexOf(1)]);
		});

		it("when markPaying repeats, then the second changes nothing; after its saga's revertPaying, that saga's late markPaying changes nothing and another's does", async () => {
			const saga = crypto.randomUUID();
			const id = await paying(saga);
			expect(await repo.markPaying(id, saga, new Date())).toBe(0);
			await repo.revertPaying(id, saga);
			await repo.revertPaying(id, saga);
			expect(await row(id)).toMatchObject({ status: "PENDING", saga_id: null });
			// One reservation.rolled_back (OrderRollbackEvent) for the one revert that changed something.
			expect((await events(id)).map(e => e.type)).toEqual(["reservation.held", "reservation.rolled_back"]);
			expect(await repo.markPaying(id, saga, new Date())).toBe(0);
			expect(await repo.markPaying(id, crypto.randomUUID(), new Date())).toBe(1);
		});

		it("when a hold has run out, then no saga takes it and the sweeper expires it once, with its reservation.expired event", async () => {
			const id = await held(-1000);
			expect(await repo.markPaying(id, crypto.randomUUID(), new Date())).toBe(0);
			const now = new Date();
			expect((await repo.dueForExpiry(now)).map(r => r.id)).toContain(id);
			expect((await repo.expire(id, now))?.status).toBe("EXPIRED");
			expect(await repo.expire(id, now)).toBeNull();
			expect((await events(id)).map(e => e.type)).toEqual(["reservation.held", "reservation.expired"]);
		});

		it("when a payment took the reservation before its hold ran out, then the sweeper leaves it alone", async () => {
			const id = await held(300);
			expect(await repo.markPaying(id, crypto.randomUUID(), new Date())).toBe(1);
			await new Promise(r => setTimeout(r, 400));
			const now = new Date();
			expect((await repo.dueForExpiry(now)).map(r => r.id)).not.toContain(id);
			expect(await repo.expire(id, now)).toBeNull();
			expect((await row(id)).status).toBe("PAYING");
		});

		it("when confirm comes from another saga than the paying one, then nothing changes; from its own, then it confirms once with its event", async () => {
			const saga = crypto.randomUUID();
			const id = await paying(saga);
			expect(await repo.confirm(id, crypto.randomUUID(), "pay-x")).toMatchObject({ changed: 0, row: { status: "PAYING" } });
			expect(await repo.confirm(id, saga, "pay-1")).toMatchObject({ changed: 1, row: { status: "CONFIRMED", paid_saga_id: saga, payment_id: "pay-1" } });
			expect((await repo.confirm(id, saga, "pay-1")).changed).toBe(0);
			expect((await events(id)).map(e => e.type)).toEqual(["reservation.held", "reservation.confirmed"]);
		});

		it("when a confirmation is voided, then the reservation is CANCELLED with its event, once", async () => {
			const saga = crypto.randomUUID();
			const id = await confirmed(saga);
			expect((await repo.voidConfirmation(id, saga))?.status).toBe("CANCELLED");
			expect((await repo.voidConfirmation(id, saga))?.status).toBe("CANCELLED");
			const all = await events(id);
			expect(all.map(e => e.type)).toEqual(["reservation.held", "reservation.confirmed", "reservation.cancelled"]);
			expect(all[2].payload).toMatchObject({ wasConfirmed: true, reason: "confirmation rolled back" });
		});

		it("when the confirm step never landed and its compensation runs, then the reservation is PENDING again and the late confirm changes nothing", async () => {
			const saga = crypto.randomUUID();
			const id = await paying(saga);
			expect((await repo.voidConfirmation(id, saga))?.status).toBe("PENDING");
			expect((await repo.confirm(id, saga, "pay-1")).changed).toBe(0);
			expect((await events(id)).map(e => e.type)).toEqual(["reservation.held", "reservation.rolled_back"]);
		});

		it("when a cancellation of a CONFIRMED reservation is aborted, then it is CONFIRMED again and that saga's late beginCancel changes nothing", async () => {
			const id = await confirmed(crypto.randomUUID());
			const cancel = crypto.randomUUID();
			expect(await repo.beginCancel(id, cancel, "PENDING")).toBe(0);
			expect(await repo.beginCancel(id, cancel, "CONFIRMED")).toBe(1);
			expect(await row(id)).toMatchObject({ status: "CANCELLING", previous_status: "CONFIRMED", saga_id: cancel });
			await repo.abortCancel(id, cancel);
			expect(await row(id)).toMatchObject({ status: "CONFIRMED", previous_status: null });
			expect(await repo.beginCancel(id, cancel, "CONFIRMED")).toBe(0);
			expect(await repo.beginCancel(id, crypto.randomUUID(), "CONFIRMED")).toBe(1);
		});

		it("when a cancellation finishes, then the reservation is CANCELLED with its refund and its event, once, and only for its saga", async () => {
			const id = await confirmed(crypto.randomUUID());
			const cancel = crypto.randomUUID();
			expect(await repo.beginCancel(id, cancel, "CONFIRMED")).toBe(1);
			expect((await repo.finishCancel(id, crypto.randomUUID(), 100)).changed).toBe(0);
			expect(await repo.finishCancel(id, cancel, 100)).toMatchObject({ changed: 1, row: { status: "CANCELLED", refund_amount: expect.anything() } });
			expect(Number((await row(id)).refund_amount)).toBe(100);
			expect((await repo.finishCancel(id, cancel, 100)).changed).toBe(0);
			const last = (await events(id)).pop()!;
			expect(last).toMatchObject({ type: "reservation.cancelled", payload: { wasConfirmed: true, refundAmount: 100, reason: "cancelled by user" } });
		});

		it("when a buyer's reservations are counted, then the open and confirmed ones count with their seats and an expired one does not", async () => {
			const userId = crypto.randomUUID();
			const open = await held(60_000, userId, "s-buyer");
			const gone = await held(-1000, userId, "s-buyer");
			await repo.expire(gone, new Date());
			await repo.transaction(async t => {
				await repo.lockBuyer(userId, "s-buyer", t);
				await repo.lockBuyer(userId, "s-buyer", t);
				const mine = await repo.buyerReservations(userId, "s-buyer", t);
				expect(mine.map(r => ({ id: r.id, status: r.status, seats: Number(r.seats) }))).toEqual([{ id: open, status: "PENDING", seats: 2 }]);
			});
		});
	});
}
