/** The payment service's actions as other contexts call them (type-only; see lib/actions.ts). */
import type { PublicPayment } from "./payment.domain";

export interface PaymentApi {
	/** The payment a saga made, or null when it made none. */
	"payment.getBySaga": { params: { sagaId: string }; result: PublicPayment | null };
}
