import type { Migration } from "../../../lib/db";

/**
 * Venues, concerts (seed 003's "performance"), schedules, their seats, the per-schedule availability counter and
 * the sales. `seat_sales` has (schedule_id, seat_id) as its primary key: the database, not the hold store, is what
 * makes a seat of a schedule sellable once.
 */
export const createCatalog: Migration = {
	name: "001_create_catalog",
	async up(qi, T) {
		await qi.createTable("venues", {
			id: { type: T.STRING(36), primaryKey: true },
			name: { type: T.STRING(200), allowNull: false },
			created_at: { type: T.DATE(3), allowNull: false }
		});
		// Unique names: admin creation reuses a venue by name, and demo seeding on two replicas collides here.
		await qi.addIndex("venues", ["name"], { unique: true, name: "venues_name_unique" });

		await qi.createTable("concerts", {
			id: { type: T.STRING(36), primaryKey: true },
			title: { type: T.STRING(200), allowNull: false },
			artist: { type: T.STRING(200), allowNull: false },
			venue_id: { type: T.STRING(36), allowNull: false, references: { model: "venues", key: "id" } },
			created_at: { type: T.DATE(3), allowNull: false }
		});
		await qi.addIndex("concerts", ["created_at", "id"], { name: "concerts_list_order" });

		await qi.createTable("schedules", {
			id: { type: T.STRING(36), primaryKey: true },
			concert_id: { type: T.STRING(36), allowNull: false, references: { model: "concerts", key: "id" } },
			starts_at: { type: T.DATE(3), allowNull: false },
			total_seats: { type: T.INTEGER, allowNull: false },
			created_at: { type: T.DATE(3), allowNull: false }
		});
		await qi.addIndex("schedules", ["concert_id", "starts_at"], { name: "schedules_concert" });

		await qi.createTable("seats", {
			id: { type: T.STRING(36), primaryKey: true },
			schedule_id: { type: T.STRING(36), allowNull: false, references: { model: "schedules", key: "id" } },
			label: { type: T.STRING(16), allowNull: false },
			grade: { type: T.STRING(16), allowNull: false },
			price: { type: T.INTEGER, allowNull: false },
			row_no: { type: T.INTEGER, allowNull: false },
			col_no: { type: T.INTEGER, allowNull: false }
		});
		await qi.addIndex("seats", ["schedule_id", "label"], { unique: true, name: "seats_schedule_label_unique" });
		await qi.addIndex("seats", ["schedule_id", "row_no", "col_no"], { name: "seats_schedule_order" });

		// One row per schedule, written in the same transaction as every sale and un-sale, so availability is a
		// read of one row plus the live hold count, never a count over the seats. Its row lock also serializes
		// the sales of one schedule (see catalog.repo.ts).
		await qi.createTable("seat_availability", {
			schedule_id: { type: T.STRING(36), primaryKey: true, references: { model: "schedules", key: "id" } },
			total_seats: { type: T.INTEGER, allowNull: false },
			sold_seats: { type: T.INTEGER, allowNull: false, defaultValue: 0 },
			updated_at: { type: T.DATE(3), allowNull: false }
		});

		await qi.createTable("seat_sales", {
			schedule_id: { type: T.STRING(36), primaryKey: true, allowNull: false },
			seat_id: { type: T.STRING(36), primaryKey: true, allowNull: false, references: { model: "seats", key: "id" } },
			reservation_id: { type: T.STRING(64), allowNull: false },
			sold_at: { type: T.DATE(3), allowNull: false }
		});
		await qi.addIndex("seat_sales", ["reservation_id"], { name: "seat_sales_reservation" });
	},
	async down(qi) {
		await qi.dropTable("seat_sales");
		await qi.dropTable("seat_availability");
		await qi.dropTable("seats");
		await qi.dropTable("schedules");
		await qi.dropTable("concerts");
		await qi.dropTable("venues");
	}
};
