import type { Migration } from "../../../lib/db";

/** The retention job deletes notifications by age (RETENTION_NOTIFICATION_DAYS): an index so it does not scan. */
export const notificationsCreatedIndex: Migration = {
	name: "002_notifications_created_index",
	async up(qi) {
		await qi.addIndex("notifications", ["created_at"], { name: "notifications_created" });
	},
	async down(qi) {
		await qi.removeIndex("notifications", "notifications_created");
	}
};
