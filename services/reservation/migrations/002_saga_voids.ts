import type { Migration } from "../../../lib/db";

/**
 * Sagas whose compensation already ran on a reservation. A forward step of such a saga that arrives late (a
 * timed-out attempt still queued at this service) finds its saga here and changes nothing.
 */
export const createSagaVoids: Migration = {
	name: "002_reservation_saga_voids",
	async up(qi, T) {
		await qi.createTable("reservation_saga_voids", {
			reservation_id: { type: T.STRING(36), allowNull: false, primaryKey: true },
			saga_id: { type: T.STRING(36), allowNull: false, primaryKey: true },
			created_at: { type: T.DATE(3), allowNull: false }
		});
	},
	async down(qi) {
		await qi.dropTable("reservation_saga_voids");
	}
};
