import type { Migration } from "../../../lib/db";

export const createNotifications: Migration = {
	name: "001_create_notifications",
	async up(qi, T) {
		await qi.createTable("notifications", {
			id: { type: T.STRING(36), primaryKey: true },
			// NULL: an admin alert (type ADMIN_ALERT), listed to admins only.
			user_id: { type: T.STRING(64), allowNull: true },
			type: { type: T.STRING(40), allowNull: false },
			message: { type: T.STRING(500), allowNull: false },
			data: { type: T.TEXT, allowNull: true },
			// The event id (or alert key) the row came from: a redelivered event inserts nothing the second time.
			dedupe_key: { type: T.STRING(160), allowNull: true },
			created_at: { type: T.DATE(3), allowNull: false },
			read_at: { type: T.DATE(3), allowNull: true }
		});
		await qi.addIndex("notifications", ["dedupe_key"], { unique: true, name: "notifications_dedupe_unique" });
		await qi.addIndex("notifications", ["user_id", "created_at"], { name: "notifications_inbox" });
	},
	async down(qi) {
		await qi.dropTable("notifications");
	}
};
