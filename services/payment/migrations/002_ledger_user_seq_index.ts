import type { Migration } from "../../../lib/db";

/** A wallet's ledger in order: the transactions list (newest first) and verify's running-balance check read it so. */
export const ledgerUserSeqIndex: Migration = {
	name: "002_ledger_user_seq_index",
	async up(qi) {
		await qi.addIndex("point_transactions", ["user_id", "seq"], { name: "point_transactions_user_seq" });
	},
	async down(qi) {
		await qi.removeIndex("point_transactions", "point_transactions_user_seq");
	}
};
