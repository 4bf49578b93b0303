import type { Migration } from "../../../lib/db";

/**
 * The consistency check's incremental run reads the payments changed since its last run in change order
 * (`updated_at, id`, payment.audit with `since`); without this index each run scans and sorts every payment.
 */
export const paymentsChangedIndex: Migration = {
	name: "003_payments_changed_index",
	async up(qi) {
		await qi.addIndex("payments", ["updated_at", "id"], { name: "payments_changed" });
	},
	async down(qi) {
		await qi.removeIndex("payments", "payments_changed");
	}
};
