import type { Migration } from "../../../lib/db";

/**
 * Reservations whose seats were un-sold (a cancellation, or the compensation of a sale). A sale for such a
 * reservation that arrives late (a timed-out confirmSeats still queued here) is refused, so a cancelled and
 * refunded reservation can never end up owning seats again.
 */
export const createSaleVoids: Migration = {
	name: "002_seat_sale_voids",
	async up(qi, T) {
		await qi.createTable("seat_sale_voids", {
			schedule_id: { type: T.STRING(64), allowNull: false, primaryKey: true },
			reservation_id: { type: T.STRING(64), allowNull: false, primaryKey: true },
			created_at: { type: T.DATE(3), allowNull: false }
		});
	},
	async down(qi) {
		await qi.dropTable("seat_sale_voids");
	}
};
