import type { Migration } from "../../../lib/db";

/**
 * Seed 003's order side: a reservation (our order) and its seats (seat_reservation / reservation_item, one row
 * per seat with the price it was held at).
 */
export const createReservations: Migration = {
	name: "001_create_reservations",
	async up(qi, T) {
		await qi.createTable("reservations", {
			id: { type: T.STRING(36), primaryKey: true },
			user_id: { type: T.STRING(64), allowNull: false },
			concert_id: { type: T.STRING(64), allowNull: false },
			schedule_id: { type: T.STRING(64), allowNull: false },
			// PENDING, PAYING, CONFIRMED, CANCELLING, CANCELLED, EXPIRED
			status: { type: T.STRING(12), allowNull: false },
			amount: { type: T.BIGINT, allowNull: false },
			expires_at: { type: T.DATE(3), allowNull: false },
			// The saga that owns the current transition (ConfirmReservation while PAYING/CONFIRMED, Cancel*
			// while CANCELLING): participant steps are fenced by it.
			saga_id: { type: T.STRING(36), allowNull: true },
			// The ConfirmReservation saga whose payment paid for this reservation (the refund key on cancel).
			paid_saga_id: { type: T.STRING(36), allowNull: true },
			payment_id: { type: T.STRING(36), allowNull: true },
			// Status before CANCELLING, to go back if the cancellation is compensated.
			previous_status: { type: T.STRING(12), allowNull: true },
			refund_amount: { type: T.BIGINT, allowNull: true },
			created_at: { type: T.DATE(3), allowNull: false },
			updated_at: { type: T.DATE(3), allowNull: false }
		});
		await qi.addIndex("reservations", ["user_id", "created_at"], { name: "reservations_user" });
		await qi.addIndex("reservations", ["status", "expires_at"], { name: "reservations_expiry" });
		await qi.addIndex("reservations", ["concert_id", "status"], { name: "reservations_concert_status" });

		await qi.createTable("reservation_seats", {
			reservation_id: { type: T.STRING(36), allowNull: false, primaryKey: true },
			seat_id: { type: T.STRING(64), allowNull: false, primaryKey: true },
			label: { type: T.STRING(16), allowNull: false },
			grade: { type: T.STRING(16), allowNull: false },
			price: { type: T.BIGINT, allowNull: false }
		});
	},
	async down(qi) {
		await qi.dropTable("reservation_seats");
		await qi.dropTable("reservations");
	}
};
