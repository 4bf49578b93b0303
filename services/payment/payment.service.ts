/**
 * Payment context: wallets of points, the append-only ledger, payments keyed by saga id (docs/API.md, Points and
 * payments; docs/DESIGN.md section 4 step 1). Money moves live in ledger.ts; this file validates, checks who is asking,
 * and hands over.
 */
import type { Context, ServiceSchema } from "moleculer";
import { DataTypes } from "sequelize";
import { auditLimit, auditPageParams, type AuditPageParams } from "../../lib/audit";
import { NotFoundError } from "../../lib/errors";
import { outboxMigration } from "../../lib/outbox";
import { pageParams, pageWindow, signedInUser, type PageParams, type RequestMeta } from "../../lib/request";
import { DbMixin, type DbVars } from "../../mixins/db.mixin";
import { OutboxRelayMixin } from "../../mixins/outbox.mixin";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import { IdempotencyKeyInvalidError, IdempotencyKeyRequiredError } from "./errors";
import type { StepParams } from "../../sagas/participants.api";
import { PaymentLedger } from "./ledger";
import type { PaymentApi } from "./payment.api";
import { PAYMENT_MIGRATIONS } from "./migrations";
import { CHARGE_MAX, CHARGE_MIN, isValidIdempotencyKey, PAY_MAX } from "./payment.domain";
import { outboxRetention, RetentionMixin } from "../../mixins/retention.mixin";

const id = (max: number) => ({ type: "string", min: 1, max }) as const;

interface PaymentVars {
	ledger: PaymentLedger;
}

const PaymentService: ServiceSchema<Record<string, never>, Record<string, never>, PlatformVars & DbVars & PaymentVars> = {
	name: "payment",

	mixins: [
		PlatformMixin,
		// Published outbox rows (each aggregate's latest stays) and VOIDED payments (the tombstone of a saga
		// compensated before it paid: no money, no ledger row) past their age.
		RetentionMixin([
			outboxRetention,
			{
				name: "payments_voided",
				days: c => c.retention.voidDays,
				select: "SELECT id FROM payments WHERE user_id IS NULL AND status = 'VOIDED' AND created_at < ? LIMIT ?",
				delete: [{ table: "payments", columns: ["id"] }]
			}
		]),
		// Publishes points.charged, points.deducted, payment.completed and payment.refunded from outbox_events.
		// Listed before DbMixin on purpose: moleculer runs the `started` of later mixins first, and the relay must
		// start after the migrations (and stop before the database closes, which this order also gives).
		OutboxRelayMixin,
		DbMixin({
			database: "payment",
			migrations: [outboxMigration, ...PAYMENT_MIGRATIONS],
			model: {
				name: "payments",
				define: {
					id: { type: DataTypes.STRING(36), primaryKey: true },
					saga_id: { type: DataTypes.STRING(100), allowNull: false },
					reservation_id: { type: DataTypes.STRING(100), allowNull: true },
					user_id: { type: DataTypes.STRING(64), allowNull: true },
					amount: { type: DataTypes.BIGINT, allowNull: false },
					status: { type: DataTypes.STRING(10), allowNull: false }
				},
				options: { tableName: "payments", timestamps: true, underscored: true }
			}
		})
	],

	actions: {
		/** GET /api/points: the caller's balance (0 before the first charge). */
		balance: {
			visibility: "published",
			params: { $$strict: "remove" },
			async handler(ctx: Context<unknown, RequestMeta>) {
				return this.ledger.balance(signedInUser(ctx).id);
			}
		},

		/**
		 * POST /api/points/charge: credits the caller's wallet once per Idempotency-Key. The same key again answers
		 * the first result without a second credit; with another amount it is 422 IDEMPOTENCY_KEY_REUSED.
		 */
		charge: {
			visibility: "published",
			params: {
				amount: { type: "number", integer: true, min: CHARGE_MIN, max: CHARGE_MAX },
				$$strict: "remove"
			},
			async handler(ctx: Context<{ amount: number }, RequestMeta>) {
				const user = signedInUser(ctx);
				const key = ctx.meta.idempotencyKey;
				if (key === undefined || key === null || key === "") throw new IdempotencyKeyRequiredError();
				if (!isValidIdempotencyKey(key)) throw new IdempotencyKeyInvalidError();
				return this.ledger.charge(user.id, key, ctx.params.amount);
			}
		},

		/** GET /api/points/transactions: the caller's ledger, newest first. */
		transactions: {
			visibility: "published",
			params: { ...pageParams, $$strict: "remove" },
			async handler(ctx: Context<PageParams, RequestMeta>) {
				const { page, pageSize } = pageWindow(ctx.params);
				return this.ledger.transactions(signedInUser(ctx).id, page, pageSize);
			}
		},

		/** GET /api/payments: the caller's payments, newest first. */
		list: {
			visibility: "published",
			params: { ...pageParams, $$strict: "remove" },
			async handler(ctx: Context<PageParams, RequestMeta>) {
				const { page, pageSize } = pageWindow(ctx.params);
				return this.ledger.paymentsOf(signedInUser(ctx).id, page, pageSize);
			}
		},

		/** GET /api/payments/:id: one of the caller's payments; someone else's reads exactly like a missing one. */
		get: {
			visibility: "published",
			params: { id: id(36), $$strict: "remove" },
			async handler(ctx: Context<{ id: string }, RequestMeta>) {
				const payment = await this.ledger.paymentOf(signedInUser(ctx).id, ctx.params.id);
				if (!payment) throw new NotFoundError("payment", ctx.params.id);
				return payment;
			}
		},

		/**
		 * Saga step 1 (ConfirmReservation): debits `amount` from the user's wallet once per `sagaId`. Retries and
		 * concurrent duplicates answer the same payment; 402 INSUFFICIENT_POINTS changes nothing; 409
		 * PAYMENT_VOIDED when the saga's refund already ran; 422 IDEMPOTENCY_KEY_REUSED for another request under
		 * the same saga id.
		 */
		pay: {
			visibility: "public",
			params: {
				sagaId: id(100),
				reservationId: id(100),
				userId: id(64),
				amount: { type: "number", integer: true, min: 0, max: PAY_MAX }
			},
			async handler(ctx: Context<StepParams<"payment.pay">>) {
				const { sagaId, reservationId, userId, amount } = ctx.params;
				return this.ledger.pay({ sagaId, reservationId, userId, amount });
			}
		},

		/**
		 * Compensation of step 1 and the cancellation refund: refunds the saga's payment once, however often it is
		 * asked. Without a payment it voids the saga id (a late pay is then refused) and answers refunded: false.
		 * The circuit breaker is off: a compensation must get through as soon as the database answers again.
		 */
		refund: {
			visibility: "public",
			circuitBreaker: { enabled: false },
			// A long reason is cut, not refused: a compensation must not fail on its wording.
			params: { sagaId: id(100), reason: { type: "string", optional: true } },
			async handler(ctx: Context<StepParams<"payment.refund">>) {
				return this.ledger.refund(ctx.params.sagaId, ctx.params.reason?.slice(0, 200));
			}
		},

		/** The payment of a saga (any status, VOIDED included), or null when the saga never paid nor voided. */
		getBySaga: {
			visibility: "public",
			params: { sagaId: id(100) },
			async handler(ctx: Context<PaymentApi["payment.getBySaga"]["params"]>): Promise<PaymentApi["payment.getBySaga"]["result"]> {
				return this.ledger.paymentBySaga(ctx.params.sagaId);
			}
		},

		/**
		 * For the ops consistency check (read only), one keyset page at a time (lib/audit.ts): payments with their
		 * saga, reservation, amount and status, so the check can match them with the reservations without reading
		 * this context's tables. By id; with `since`, changed since then; with `reservationIds`, theirs.
		 */
		audit: {
			visibility: "public",
			params: { reservationIds: { type: "array", items: { type: "string", max: 100 }, max: 1000, optional: true }, ...auditPageParams },
			async handler(ctx: Context<AuditPageParams & { reservationIds?: string[] }>) {
				return this.ledger.auditPayments({ ...ctx.params, limit: auditLimit(this.config, ctx.params.limit) });
			}
		},

		/**
		 * Consistency check (seed 000 section 4.3): every balance equals the sum of its ledger, none is negative,
		 * the ledger's running balance is unbroken, every payment has its ledger rows. Offenders are listed by id.
		 */
		verify: {
			visibility: "public",
			params: {},
			async handler() {
				return this.ledger.verify();
			}
		}
	},

	created() {
		this.ledger = new PaymentLedger({ sql: this.sql });
	}
};

export default PaymentService;
