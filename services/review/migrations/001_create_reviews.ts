import type { Migration } from "../../../lib/db";

export const createReviews: Migration = {
	name: "001_create_reviews",
	async up(qi, T) {
		await qi.createTable("reviews", {
			id: { type: T.STRING(36), primaryKey: true },
			concert_id: { type: T.STRING(64), allowNull: false },
			user_id: { type: T.STRING(64), allowNull: false },
			rating: { type: T.INTEGER, allowNull: false },
			content: { type: T.TEXT, allowNull: false },
			created_at: { type: T.DATE(3), allowNull: false }
		});
		// One review per user and concert: the unique index is the guard, not a lookup before the insert.
		await qi.addIndex("reviews", ["user_id", "concert_id"], { unique: true, name: "reviews_user_concert_unique" });
		await qi.addIndex("reviews", ["concert_id", "created_at"], { name: "reviews_by_concert" });
	},
	async down(qi) {
		await qi.dropTable("reviews");
	}
};
