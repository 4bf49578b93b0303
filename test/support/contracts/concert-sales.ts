/**
 * The sale guard below the holds (services/concert/catalog.repo.ts), with no hold store in front of it: whatever the
 * leases say, the database sells each seat of a schedule once and keeps the sold counter equal to its sale rows. Run
 * on SQLite (embedded) by the unit tier and on the real MariaDB by the integration tier.
 */
import type { Sequelize } from "sequelize";
import type { SqlConfig } from "../../../lib/config";
import { createSequelize, migrate, physicalDatabaseName, Sql } from "../../../lib/db";
import { CatalogRepo } from "../../../services/concert/catalog.repo";
import { DEMO_CATALOG } from "../../../services/concert/demo-data";
import { CONCERT_MIGRATIONS } from "../../../services/concert/migrations";

export function concertSalesSuite(name: string, sql: SqlConfig): void {
	describe(`concert sales on ${name}`, () => {
		let sequelize: Sequelize;
		let repo: CatalogRepo;
		let counter = 0;

		beforeAll(async () => {
			const db = physicalDatabaseName(sql, "concert");
			sequelize = createSequelize(sql, db);
			if (sql.dialect === "sqlite") await sequelize.query("PRAGMA journal_mode=WAL");
			await migrate(sql, db, sequelize, CONCERT_MIGRATIONS, () => undefined);
			repo = new CatalogRepo(new Sql(sequelize));
		}, 30_000);

		afterAll(async () => {
			await sequelize.close();
		});

		async function schedule(): Promise<{ scheduleId: string; seatIds: string[] }> {
			const id = await repo.createConcert({
				title: `c${++counter}`,
				artist: "a",
				venue: { name: "Repo Hall" },
				schedules: [{ startsAt: new Date("2030-01-01T00:00:00Z") }],
				seats: { rows: 1, perRow: 8, price: 10 }
			});
			const [s] = await repo.schedulesOf(id);
			return { scheduleId: s.id, seatIds: (await repo.seatsOf(s.id)).map(x => x.id) };
		}

		const sold = async (scheduleId: string) => (await repo.getSchedule(scheduleId))!.soldSeats;
		const outcome = (p: Promise<unknown>) =>
			p.then(
				() => "sold",
				(e: { type?: string }) => e.type ?? String(e)
			);

		it("when 20 reservations buy the same seat at once, then exactly one gets it and the counter moves by one", async () => {
			const { scheduleId, seatIds } = await schedule();
			const results = await Promise.all(
				Array.from({ length: 20 }, (_, i) => outcome(repo.sell({ reservationId: `r${i}`, scheduleId, seatIds: [seatIds[0]] })))
			);
			expect(results.filter(r => r === "sold")).toHaveLength(1);
			expect(results.filter(r => r === "SEAT_UNAVAILABLE")).toHaveLength(19);
			expect(await sold(scheduleId)).toBe(1);
			expect(await repo.counterDrift()).toEqual({ counters: [], misplaced: 0 });
		});

		it("when overlapping multi-seat sales race in opposite order, then one buys all its seats and the other none", async () => {
			const { scheduleId, seatIds } = await schedule();
			const [a, b] = await Promise.all([
				outcome(repo.sell({ reservationId: "ra", scheduleId, seatIds: seatIds.slice(0, 3) })),
				outcome(repo.sell({ reservationId: "rb", scheduleId, seatIds: seatIds.slice(0, 3).reverse() }))
			]);
			expect([a, b].sort()).toEqual(["SEAT_UNAVAILABLE", "sold"]);
			const owners = await repo.salesOf(scheduleId, seatIds.slice(0, 3));
			expect(new Set(owners.values()).size).toBe(1);
			expect(owners.size).toBe(3);
			expect(await sold(scheduleId)).toBe(3);
		});

		it("when the same reservation's sale and un-sale repeat concurrently, then each takes effect once", async () => {
			const { scheduleId, seatIds } = await schedule();
			const req = { reservationId: "rs", scheduleId, seatIds: seatIds.slice(0, 4) };
			const sells = await Promise.all(Array.from({ length: 10 }, () => repo.sell(req)));
			expect(sells.reduce((n, r) => n + r.sold, 0)).toBe(4);
			expect(await sold(scheduleId)).toBe(4);
			// Another reservation's un-sale touches nothing.
			expect(await repo.unsell({ ...req, reservationId: "other" })).toEqual({ unsold: 0 });
			const unsells = await Promise.all(Array.from({ length: 10 }, () => repo.unsell(req)));
			expect(unsells.reduce((n, r) => n + r.unsold, 0)).toBe(4);
			expect(await sold(scheduleId)).toBe(0);
			expect(await repo.counterDrift()).toEqual({ counters: [], misplaced: 0 });
		});

		it("when a sale names an unknown seat or schedule, then it is refused whole", async () => {
			const { scheduleId, seatIds } = await schedule();
			expect(await outcome(repo.sell({ reservationId: "ru", scheduleId, seatIds: [seatIds[0], "nope"] }))).toBe("NOT_FOUND");
			expect(await outcome(repo.sell({ reservationId: "ru", scheduleId: "nope", seatIds: [seatIds[0]] }))).toBe("NOT_FOUND");
			expect(await sold(scheduleId)).toBe(0);
		});

		it("when a duplicate sale row is written around the repository, then the primary key refuses it", async () => {
			const { scheduleId, seatIds } = await schedule();
			await repo.sell({ reservationId: "rk", scheduleId, seatIds: [seatIds[0]] });
			await expect(
				sequelize.query("INSERT INTO seat_sales (schedule_id, seat_id, reservation_id, sold_at) VALUES (?, ?, ?, ?)", {
					replacements: [scheduleId, seatIds[0], "intruder", new Date()]
				})
			).rejects.toThrow();
			expect((await repo.salesOf(scheduleId, [seatIds[0]])).get(seatIds[0])).toBe("rk");
		});

		it("when several replicas seed an empty catalog at once, then exactly one does", async () => {
			const db = physicalDatabaseName(sql, `seed${counter}`);
			const seqs = Array.from({ length: 3 }, () => createSequelize(sql, db));
			try {
				await migrate(sql, db, seqs[0], CONCERT_MIGRATIONS, () => undefined);
				const results = await Promise.all(seqs.map(s => new CatalogRepo(new Sql(s)).seedIfEmpty(DEMO_CATALOG)));
				expect(results.filter(Boolean)).toHaveLength(1);
				expect(await new CatalogRepo(new Sql(seqs[0])).countConcerts()).toBe(DEMO_CATALOG.length);
			} finally {
				await Promise.all(seqs.map(s => s.close()));
			}
		});
	});
}
