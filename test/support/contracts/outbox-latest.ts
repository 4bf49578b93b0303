/**
 * `latestOutboxEvents` (lib/outbox.ts), what `<producer>.outboxLatest` answers and the ranking rebuilds from: the
 * latest event of each aggregate among the given types, with its version, paged by aggregate id. Run on SQLite by
 * the unit tier and on the real MariaDB by the integration tier.
 */
import type { Sequelize } from "sequelize";
import { Sql } from "../../../lib/db";
import { appendAnyOutbox, latestOutboxEvents } from "../../../lib/outbox";

export function latestContract(name: string, make: () => Promise<{ db: Sequelize; close(): Promise<void> }>): void {
	describe(`latest outbox events: ${name}`, () => {
		let db: Sequelize;
		let close: () => Promise<void>;
		beforeAll(async () => {
			({ db, close } = await make());
			const write = (aggregateId: string, eventType: string, aggregateType = "reservation") =>
				db.transaction(t => appendAnyOutbox(db, t, { aggregateType, aggregateId, eventType, payload: { aggregateId, eventType } }));
			// r1: held, confirmed; r2: held, confirmed, cancelled; r3: held only; r4: held, expired; r5..r9: confirmed.
			for (const [id, types] of Object.entries({
				r1: ["reservation.held", "reservation.confirmed"],
				r2: ["reservation.held", "reservation.confirmed", "reservation.cancelled"],
				r3: ["reservation.held"],
				r4: ["reservation.held", "reservation.expired"]
			})) {
				for (const t of types) await write(id, t);
			}
			for (let i = 5; i <= 9; i++) await write(`r${i}`, "reservation.confirmed");
			// Another aggregate type with the same id: not a reservation's.
			await write("r1", "reservation.cancelled", "payment");
		}, 60_000);
		afterAll(() => close());

		const ranked = ["reservation.confirmed", "reservation.cancelled", "reservation.expired"];

		it("when asked for the ranked events, then each reservation answers its latest one with its version, by id", async () => {
			const { rows, next } = await latestOutboxEvents(new Sql(db), { aggregateType: "reservation", eventTypes: ranked, limit: 100 });
			expect(next).toBeNull();
			expect(rows.map(r => [r.aggregateId, r.type, r.version])).toEqual([
				["r1", "reservation.confirmed", 2],
				["r2", "reservation.cancelled", 3],
				["r4", "reservation.expired", 2],
				["r5", "reservation.confirmed", 1],
				["r6", "reservation.confirmed", 1],
				["r7", "reservation.confirmed", 1],
				["r8", "reservation.confirmed", 1],
				["r9", "reservation.confirmed", 1]
			]);
			expect(rows[0]).toMatchObject({ aggregateType: "reservation", payload: { aggregateId: "r1", eventType: "reservation.confirmed", version: 2 } });
		});

		it("when the answer is paged, then the pages join up to the whole list with nothing twice", async () => {
			const ids: string[] = [];
			let after: string | undefined;
			let pages = 0;
			for (;;) {
				const page = await latestOutboxEvents(new Sql(db), { aggregateType: "reservation", eventTypes: ranked, after, limit: 3 });
				ids.push(...page.rows.map(r => r.aggregateId));
				pages++;
				if (!page.next) break;
				after = page.next;
			}
			expect(ids).toEqual(["r1", "r2", "r4", "r5", "r6", "r7", "r8", "r9"]);
			expect(pages).toBe(3);
		});
	});
}
