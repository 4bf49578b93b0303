import { createWalletLedgerPayments } from "./001_create_wallet_ledger_payments";
import { ledgerUserSeqIndex } from "./002_ledger_user_seq_index";
import { paymentsChangedIndex } from "./003_changed_since_index";

/** The payment database's migrations, in order (the service and the ledger tests run the same list). */
export const PAYMENT_MIGRATIONS = [createWalletLedgerPayments, ledgerUserSeqIndex, paymentsChangedIndex];
