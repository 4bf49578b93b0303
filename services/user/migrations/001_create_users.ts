import type { Migration } from "../../../lib/db";

export const createUsers: Migration = {
	name: "001_create_users",
	async up(qi, T) {
		await qi.createTable("users", {
			id: { type: T.STRING(36), primaryKey: true },
			email: { type: T.STRING(254), allowNull: false },
			name: { type: T.STRING(100), allowNull: false },
			password_hash: { type: T.STRING(200), allowNull: false },
			role: { type: T.STRING(16), allowNull: false, defaultValue: "user" },
			created_at: { type: T.DATE, allowNull: false },
			updated_at: { type: T.DATE, allowNull: false }
		});
		// The unique index, not a lookup before insert, is what makes an email register once under concurrency.
		await qi.addIndex("users", ["email"], { unique: true, name: "users_email_unique" });
	},
	async down(qi) {
		await qi.dropTable("users");
	}
};
