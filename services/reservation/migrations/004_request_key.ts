import type { Migration } from "../../../lib/db";

/**
 * One reservation per keyed request, whatever generation of its id an attempt used. The attempts of one
 * Idempotency-Key hold under derived ids (generation 0, then 1, 2... after a give-up), and during a database stall
 * two of them could each wait on their insert and both commit: two reservations for one request, one of which the
 * shopper never heard of (chaos harness, MariaDB stalled 10 s). `request_key` (a digest of user and key; null
 * without a key) is unique, so the second insert fails and answers the first one's reservation.
 */
export const reservationRequestKey: Migration = {
	name: "004_reservations_request_key",
	async up(qi, T) {
		await qi.addColumn("reservations", "request_key", { type: T.STRING(64), allowNull: true });
		await qi.addIndex("reservations", ["request_key"], { unique: true, name: "reservations_request_key_unique" });
	},
	async down(qi) {
		await qi.removeIndex("reservations", "reservations_request_key_unique");
		await qi.removeColumn("reservations", "request_key");
	}
};
