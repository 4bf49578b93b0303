import type { Migration } from "../../../lib/db";

/**
 * The per-buyer limits (MAX_SEATS_PER_BUYER seats and one open reservation per user and schedule) are enforced in
 * the transaction that inserts a reservation: it first writes the buyer's row here, which serializes that buyer's
 * inserts for that schedule (a row lock on MariaDB; SQLite has one writer), then counts what the buyer already has.
 * Concurrent attempts of one buyer therefore end at exactly the limit. The index makes that count a range read.
 *
 * `starts_at`: the show's time, copied from the hold, so a payment or a cancellation knows the calendar without a
 * call to the catalog (null on rows older than this migration: those ask the catalog).
 */
export const createBuyerLimits: Migration = {
	name: "005_buyer_limits",
	async up(qi, T) {
		await qi.createTable("reservation_buyers", {
			user_id: { type: T.STRING(64), allowNull: false, primaryKey: true },
			schedule_id: { type: T.STRING(64), allowNull: false, primaryKey: true },
			updated_at: { type: T.DATE(3), allowNull: false }
		});
		await qi.addIndex("reservations", ["user_id", "schedule_id", "status"], { name: "reservations_buyer" });
		await qi.addColumn("reservations", "starts_at", { type: T.DATE(3), allowNull: true });
	},
	async down(qi) {
		await qi.removeColumn("reservations", "starts_at");
		await qi.removeIndex("reservations", "reservations_buyer");
		await qi.dropTable("reservation_buyers");
	}
};
