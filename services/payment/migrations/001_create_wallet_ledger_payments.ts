import type { Migration } from "../../../lib/db";

/**
 * Wallets, the append-only points ledger and payments. The unique indexes are the guards that make money moves
 * happen once under concurrency: a saga id pays once, a charge key credits once per wallet, a payment has at most
 * one PAYMENT and one REFUND row.
 */
export const createWalletLedgerPayments: Migration = {
	name: "001_create_wallet_ledger_payments",
	async up(qi, T) {
		await qi.createTable("wallets", {
			user_id: { type: T.STRING(64), primaryKey: true },
			balance: { type: T.BIGINT, allowNull: false, defaultValue: 0 },
			// Bumped by every balance change: a cheap "did anything move" marker for readers and caches.
			version: { type: T.INTEGER, allowNull: false, defaultValue: 0 },
			created_at: { type: T.DATE(3), allowNull: false },
			updated_at: { type: T.DATE(3), allowNull: false }
		});

		await qi.createTable("point_transactions", {
			// Order of the ledger per wallet (rows of one wallet are written under its row lock, so seq follows it).
			seq: { type: T.BIGINT, autoIncrement: true, primaryKey: true },
			id: { type: T.STRING(36), allowNull: false },
			user_id: { type: T.STRING(64), allowNull: false },
			type: { type: T.STRING(8), allowNull: false },
			amount: { type: T.BIGINT, allowNull: false },
			balance_after: { type: T.BIGINT, allowNull: false },
			// CHARGE: the client's idempotency key; PAYMENT and REFUND: the payment id.
			ref: { type: T.STRING(255), allowNull: false },
			payment_id: { type: T.STRING(36), allowNull: true },
			created_at: { type: T.DATE(3), allowNull: false }
		});
		await qi.addIndex("point_transactions", ["id"], { unique: true, name: "point_transactions_id_unique" });
		await qi.addIndex("point_transactions", ["user_id", "type", "ref"], { unique: true, name: "point_transactions_once" });
		await qi.addIndex("point_transactions", ["payment_id"], { name: "point_transactions_payment" });

		await qi.createTable("payments", {
			id: { type: T.STRING(36), primaryKey: true },
			saga_id: { type: T.STRING(100), allowNull: false },
			// Null on a VOIDED row: it only records that the saga's compensation ran before any payment.
			reservation_id: { type: T.STRING(100), allowNull: true },
			user_id: { type: T.STRING(64), allowNull: true },
			amount: { type: T.BIGINT, allowNull: false },
			status: { type: T.STRING(10), allowNull: false },
			refund_reason: { type: T.STRING(200), allowNull: true },
			created_at: { type: T.DATE(3), allowNull: false },
			updated_at: { type: T.DATE(3), allowNull: false },
			refunded_at: { type: T.DATE(3), allowNull: true }
		});
		await qi.addIndex("payments", ["saga_id"], { unique: true, name: "payments_saga_unique" });
		await qi.addIndex("payments", ["user_id", "created_at"], { name: "payments_user" });
		await qi.addIndex("payments", ["reservation_id"], { name: "payments_reservation" });
	},
	async down(qi) {
		await qi.dropTable("payments");
		await qi.dropTable("point_transactions");
		await qi.dropTable("wallets");
	}
};
