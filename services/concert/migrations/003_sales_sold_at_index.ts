import type { Migration } from "../../../lib/db";

/**
 * The consistency check's incremental run reads the seats sold since its last run in sale order
 * (`sold_at, schedule_id, seat_id`, concert.audit sales with `since`); without this index each run scans and sorts
 * every sale ever made.
 */
export const salesSoldAtIndex: Migration = {
	name: "003_seat_sales_sold_at_index",
	async up(qi) {
		await qi.addIndex("seat_sales", ["sold_at", "schedule_id", "seat_id"], { name: "seat_sales_sold_at" });
	},
	async down(qi) {
		await qi.removeIndex("seat_sales", "seat_sales_sold_at");
	}
};
