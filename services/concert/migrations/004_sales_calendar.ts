import type { Migration } from "../../../lib/db";

/**
 * When a concert's sales open and close (null: open since the concert was created; closed at each show's start).
 * Each schedule also closes at its own `starts_at` whatever these say (concert.domain.ts `saleState`).
 */
export const salesCalendar: Migration = {
	name: "004_concert_sales_calendar",
	async up(qi, T) {
		await qi.addColumn("concerts", "sales_open_at", { type: T.DATE(3), allowNull: true });
		await qi.addColumn("concerts", "sales_close_at", { type: T.DATE(3), allowNull: true });
	},
	async down(qi) {
		await qi.removeColumn("concerts", "sales_close_at");
		await qi.removeColumn("concerts", "sales_open_at");
	}
};
