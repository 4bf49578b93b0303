import type { Migration } from "../../../lib/db";

/**
 * The consistency check's incremental run reads the reservations changed since its last run in change order
 * (`updated_at, id`, reservation.audit with `since`). Without this index every scheduled run scans and sorts the
 * whole history, and its cost grows with every sale.
 */
export const reservationsChangedIndex: Migration = {
	name: "003_reservations_changed_index",
	async up(qi) {
		await qi.addIndex("reservations", ["updated_at", "id"], { name: "reservations_changed" });
	},
	async down(qi) {
		await qi.removeIndex("reservations", "reservations_changed");
	}
};
