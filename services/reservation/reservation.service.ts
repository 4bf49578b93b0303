/**
 * Reservation context: reservations and their seats, the booking routes of docs/API.md (Reservations and payments),
 * the reads other contexts ask for, and the expiry sweeper (docs/DESIGN.md section 4). The participant steps of the
 * booking sagas are mixed in from reservation.steps.ts; the state machine is reservation.domain.ts `TRANSITIONS`,
 * and all SQL is in reservation.repo.ts.
 *
 * Every state change is a conditional UPDATE whose affected-row count says who won: the sweeper and a payment
 * racing for the same reservation cannot both succeed.
 */
import crypto from "crypto";
import { LRUCache } from "lru-cache";
import { Errors, type Context, type ServiceBroker, type ServiceSchema } from "moleculer";
import { DataTypes, type Transaction } from "sequelize";
import { callerOf } from "../../lib/actions";
import { auditLimit, auditPageParams, type AuditPageParams } from "../../lib/audit";
import { FieldValidationError, NotFoundError } from "../../lib/errors";
import { outboxMigration } from "../../lib/outbox";
import { pageParams, pageWindow, signedInUser, type PageParams, type RequestMeta } from "../../lib/request";
import { DbMixin, type DbVars } from "../../mixins/db.mixin";
import { OutboxRelayMixin } from "../../mixins/outbox.mixin";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import type { ConcertApi, HoldView } from "../concert/concert.api";
import type { PaymentApi } from "../payment/payment.api";
import type { QueueApi } from "../queue/queue.api";
import type { SagaApi, SagaView } from "../saga/saga.api";
import {
	CancellationClosedError,
	OpenReservationExistsError,
	QueueTokenRequiredError,
	ReservationNotCancellableError,
	ReservationNotPayableError,
	SeatLimitExceededError,
	ShowSalesClosedError
} from "./errors";
import { RESERVATION_MIGRATIONS } from "./migrations";
import {
	buyerVerdict,
	cancelCutoff,
	cancelSagaType,
	iso,
	payable,
	sagaKeyOf,
	seatIdProblems,
	toView,
	type ReservationRow,
	type ReservationStatus
} from "./reservation.domain";
import type { ReservationApi } from "./reservation.api";
import { ReservationRepo } from "./reservation.repo";
import { idParam, ReservationSteps } from "./reservation.steps";
import { outboxRetention, RetentionMixin } from "../../mixins/retention.mixin";

/** The contexts a reservation calls, by their contracts. */
type Peers = ConcertApi & SagaApi & PaymentApi & QueueApi;
const peers = (via: Context | ServiceBroker) => callerOf<Peers>(via);

interface ReservationVars {
	repo: ReservationRepo;
	sweeper?: NodeJS.Timeout;
	/** scheduleId -> concertId, for schedules known to exist: a schedule never moves to another concert. */
	scheduleConcerts: LRUCache<string, string>;
	/** Timers of work retried after a request gave up on it (abandoning a hold), cleared at stop. */
	backgroundRetries: Set<NodeJS.Timeout>;
}

/** Bound on the per-node schedule -> concert cache (least recently used go first, like the other caches). */
const SCHEDULE_CACHE_MAX = 10_000;

interface ReservationMethods {
	releaseSeatsOf(via: Context | ServiceBroker, row: Pick<ReservationRow, "id" | "schedule_id">, why: string): Promise<void>;
	createdAnswer(ctx: Context<unknown, RequestMeta>, row: ReservationRow): Promise<Record<string, unknown>>;
	retryInBackground(what: string, attempt: () => Promise<unknown>, until: number): void;
	findSaga(ctx: Context<unknown, RequestMeta>, key: string): Promise<(SagaView & { type: string }) | null>;
	loadOwned(ctx: Context<unknown, RequestMeta>, id: string): Promise<ReservationRow>;
	requireActiveToken(ctx: Context<unknown, RequestMeta>, userId: string, concertId: string): Promise<void>;
	concertOf(ctx: Context<unknown, RequestMeta>, scheduleId: string): Promise<string>;
	requireWithinLimits(userId: string, scheduleId: string, wanted: number, t?: Transaction): Promise<void>;
	showStartOf(ctx: Context<unknown, RequestMeta>, row: Pick<ReservationRow, "starts_at" | "schedule_id">): Promise<string>;
	sweepExpired(): Promise<number>;
	waitMs(): number;
}

type This = PlatformVars &
	DbVars &
	ReservationVars &
	ReservationMethods & { logger: { warn(...a: unknown[]): void; info(...a: unknown[]): void } } & { broker: import("moleculer").ServiceBroker };

/**
 * How many reservations one keyed create may try: each attempt that finds its predecessor's hold given up
 * (HOLD_ABANDONED) moves to the next generation's id. Eight is far more than a shopper's retries produce.
 */
export const KEY_GENERATIONS = 8;

/**
 * The id of the reservation a create makes: random without an Idempotency-Key, else a UUID-shaped digest of the
 * user, the key and the generation, so every attempt of one keyed request names one of the same few reservations
 * (and hold owners) and a retry can always find what an earlier attempt made. Generation 0 is the id older
 * versions derived.
 */
/** The unique request key of a keyed create: one reservation per (user, Idempotency-Key), whatever its generation. */
export function requestKeyOf(userId: string, idempotencyKey: string): string {
	return crypto.createHash("sha256").update(`reservation.request\0${userId}\0${idempotencyKey}`).digest("hex");
}

export function reservationIdFor(userId: string, idempotencyKey: string | undefined, generation = 0): string {
	if (!idempotencyKey) return crypto.randomUUID();
	const h = crypto
		.createHash("sha256")
		.update(`reservation.create\0${userId}\0${idempotencyKey}${generation > 0 ? `\0${generation}` : ""}`)
		.digest("hex");
	return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h[16], 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Has the request's deadline (its timeout, counted from when this node started it) passed? */
function pastDeadline(ctx: Context): boolean {
	const timeout = ctx.options?.timeout ?? 0;
	const started = (ctx as unknown as { startHrTime?: [number, number] | null }).startHrTime;
	if (!(timeout > 0) || !started) return false;
	const [sec, nano] = process.hrtime(started);
	return sec * 1e3 + nano / 1e6 >= timeout;
}

/** A refusal (non-retryable 4xx) rather than a fault or a timeout. */
function isClientError(err: unknown): boolean {
	const e = err as { code?: number; retryable?: boolean };
	return typeof e?.code === "number" && e.code >= 400 && e.code < 500 && !e.retryable;
}

/**
 * What a client is told when a saga rolled back because a participant refused, by the refusal's type: our own
 * words, never the participant's message (which may name internals) and only the ids its data carries.
 */
const REJECTION_MESSAGES: Record<string, string> = {
	INSUFFICIENT_POINTS: "Not enough points to pay for this reservation",
	SEAT_UNAVAILABLE: "Some of the seats are no longer available",
	SALES_CLOSED: "Sales for this show are closed",
	SALES_NOT_OPEN: "Sales for this concert have not opened yet",
	RESERVATION_NOT_PAYABLE: "This reservation can no longer be paid",
	RESERVATION_NOT_CANCELLABLE: "This reservation can no longer be cancelled",
	QUEUE_TOKEN_NOT_ACTIVE: "Your waiting-room turn is not active",
	RESERVATION_STATE_CONFLICT: "The reservation changed while this was in progress"
};

/** Only ids and names go back to the client from a participant's error data. */
function safeData(data: unknown): Record<string, unknown> {
	const out: Record<string, unknown> = {};
	if (!data || typeof data !== "object") return out;
	for (const [k, v] of Object.entries(data as Record<string, unknown>)) {
		if (
			/(Id|Ids|^status|^limit|^amount|^required|^balance)$/.test(k) &&
			(typeof v === "string" || typeof v === "number" || (Array.isArray(v) && v.every(x => typeof x === "string")))
		)
			out[k] = v;
	}
	return out;
}

/** A saga that ended in compensation answers with the type of the participant refusal that rolled it back. */
function rejection(saga: SagaView): Error {
	const e = saga.error;
	const known = e && e.code >= 400 && e.code < 500 ? REJECTION_MESSAGES[e.type] : undefined;
	if (!e || !known)
		return new Errors.MoleculerClientError("The operation was rolled back", 409, e && e.code >= 400 && e.code < 500 ? e.type : "ROLLED_BACK", {
			sagaId: saga.id
		});
	const err = new Errors.MoleculerClientError(known, e.code, e.type, { ...safeData(e.data), sagaId: saga.id });
	err.name = "SagaRejectedError";
	return err;
}

const ReservationService: ServiceSchema<Record<string, never>, ReservationMethods, PlatformVars & DbVars & ReservationVars> = {
	name: "reservation",

	mixins: [
		PlatformMixin,
		// Published outbox rows (each aggregate's latest stays) and the void tombstones, past their age.
		RetentionMixin([
			outboxRetention,
			{
				name: "reservation_saga_voids",
				days: c => c.retention.voidDays,
				select: "SELECT reservation_id, saga_id FROM reservation_saga_voids WHERE created_at < ? LIMIT ?",
				delete: [{ table: "reservation_saga_voids", columns: ["reservation_id", "saga_id"] }]
			}
		]),
		// Publishes reservation.held/confirmed/cancelled/expired from outbox_events; before DbMixin so it starts
		// after the migrations and stops before the database closes.
		OutboxRelayMixin,
		DbMixin({
			database: "reservation",
			migrations: [outboxMigration, ...RESERVATION_MIGRATIONS],
			model: {
				name: "reservations",
				define: {
					id: { type: DataTypes.STRING(36), primaryKey: true },
					user_id: { type: DataTypes.STRING(64), allowNull: false },
					status: { type: DataTypes.STRING(12), allowNull: false }
				},
				options: { tableName: "reservations", timestamps: false }
			}
		}),
		// The saga participants: markPaying, revertPaying, confirm, voidConfirmation, beginCancel, abortCancel, finishCancel.
		ReservationSteps
	],

	actions: {
		/**
		 * POST /api/reservations: holds 1..4 seats of one schedule (all or nothing) and creates a PENDING
		 * reservation that expires with the hold. Needs an ACTIVE waiting-room token for the concert.
		 */
		create: {
			visibility: "published",
			params: {
				scheduleId: idParam,
				seatIds: { type: "array", min: 1, max: 4, items: { type: "string", min: 1, max: 64 } },
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<{ scheduleId: string; seatIds: string[] }, RequestMeta>) {
				const user = signedInUser(ctx);
				const { scheduleId, seatIds } = ctx.params;
				const problems = seatIdProblems(seatIds);
				if (problems.length > 0) throw new FieldValidationError(problems.map(message => ({ field: "seatIds", type: "arrayUnique", message })));
				// With an Idempotency-Key the reservation's id is derived from (user, key): a retry whose first attempt
				// did the work but lost its answer (503 or a timeout at the gateway, which stores no answer) finds that
				// reservation instead of failing against its own hold (409 SEAT_UNAVAILABLE) and leaving a reservation
				// the client never heard of. It answers before the token check, as a replay does: the token may be gone
				// by now (a Redis restart took every waiting-room token with it).
				const key = ctx.meta.idempotencyKey;
				const ids = key ? Array.from({ length: KEY_GENERATIONS }, (_, g) => reservationIdFor(user.id, key, g)) : [crypto.randomUUID()];
				const earlier = key ? await this.repo.loadNewest(ids) : null;
				if (earlier) return this.createdAnswer(ctx, earlier);
				await this.requireActiveToken(ctx, user.id, await this.concertOf(ctx, scheduleId));
				// The per-buyer limits, first without a lock (most refusals cost no hold), then for good below, in the
				// transaction that inserts the reservation.
				try {
					await this.requireWithinLimits(user.id, scheduleId, seatIds.length);
				} catch (err) {
					// The open reservation in the way may be this key's own, committed by an attempt still running
					// when this retry looked for it above.
					const mine = key ? await this.repo.loadNewest(ids) : null;
					if (mine) return this.createdAnswer(ctx, mine);
					throw err;
				}
				let generation = 0;
				let id = ids[0];
				// Giving the hold up: it is released, and a hold for this owner that is still on its way (queued on a
				// slow catalog node) is refused when it arrives (concert.release `abandon`). Called outside the request's
				// deadline, which has usually just run out (a timeout is what brings us here): a ctx.call would be
				// skipped without being sent.
				const abandon = () => {
					const release = { scheduleId, seatIds, owner: id, abandon: true };
					return peers(this.broker)("concert.release", release, { parentCtx: ctx }).catch((err: Error) => {
						// The catalog could not be reached (NATS or its node down: often the very fault that failed the
						// hold). Left alone, the seats would stay held by nobody for HOLD_TTL; keep trying meanwhile.
						this.logger.warn(`abandoning hold ${id} failed (${err.message}); retrying in the background`);
						this.retryInBackground(
							`abandon hold ${id}`,
							() => peers(this.broker)("concert.release", release),
							Date.now() + this.config.holdTtlSec * 1000
						);
					});
				};
				let hold: HoldView;
				try {
					for (;;) {
						try {
							hold = await peers(ctx)("concert.hold", { scheduleId, seatIds, owner: id });
							break;
						} catch (err) {
							// This key's earlier attempt gave this generation's hold up (and so made no reservation under it):
							// that owner stays refused for a while, so this attempt holds under the next generation's id
							// (derived, not random, so that a retry after this attempt's answer is lost finds what it made).
							if (!(key && (err as { type?: string }).type === "HOLD_ABANDONED" && generation + 1 < ids.length)) throw err;
							// Unless that attempt's reservation did land after all (a commit reported lost): then it is the answer.
							const landed = await this.repo.load(id);
							if (landed) return this.createdAnswer(ctx, landed);
							id = ids[++generation];
						}
					}
				} catch (err) {
					// A timeout leaves the hold in doubt (it may have been taken, or still be queued): give it up rather
					// than let it block the seats until it expires. A refusal (4xx) took nothing.
					if (!isClientError(err)) await abandon();
					throw err;
				}
				// The caller's deadline passed while the hold was being taken (a slow store, a stalled node; the broker
				// retries a timed-out hold): the client was answered 504 and retries with the same key, and a retry that
				// meets a refusal meanwhile (a waiting-room token lost with Redis) answers it for good. A reservation
				// inserted now would be one the shopper never hears of: give the hold up instead and let the retry work.
				if (pastDeadline(ctx)) {
					await abandon();
					throw new Errors.RequestTimeoutError({ action: "reservation.create", nodeID: this.broker.nodeID });
				}
				const now = new Date();
				try {
					await this.repo.transaction(async t => {
						await this.requireWithinLimits(user.id, scheduleId, seatIds.length, t);
						await this.repo.insertHeld(
							{
								id,
								userId: user.id,
								concertId: hold.concertId,
								scheduleId,
								amount: hold.amount,
								expiresAt: hold.expiresAt,
								startsAt: hold.startsAt,
								requestKey: key ? requestKeyOf(user.id, key) : null,
								seats: hold.seats,
								now
							},
							t
						);
					});
				} catch (err) {
					// Another attempt of the same key, still running when this one started, inserted first (under this id:
					// its hold is this one, same owner; or under another generation's id: the request key is unique), or
					// the commit landed though its answer was lost (a database crash): answer that reservation. A hold of
					// this attempt that backs no reservation is given up. If the database cannot say, the hold is given up.
					const twin = await (key ? this.repo.loadNewest(ids) : this.repo.load(id)).catch(() => null);
					if (twin) {
						if (twin.id !== id) await abandon();
						return this.createdAnswer(ctx, twin);
					}
					// No reservation, so no hold either: give the seats back at once rather than at expiry.
					await abandon();
					throw err;
				}
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/reservations/${id}`;
				return {
					id,
					status: "PENDING",
					concertId: hold.concertId,
					scheduleId,
					seats: hold.seats.map(s => ({ id: s.id, label: s.label, grade: s.grade, price: s.price })),
					amount: hold.amount,
					expiresAt: hold.expiresAt
				};
			}
		},

		/** GET /api/reservations: mine, newest first, paginated. */
		list: {
			visibility: "published",
			params: { ...pageParams, $$strict: "remove" },
			async handler(this: This, ctx: Context<PageParams, RequestMeta>) {
				const user = signedInUser(ctx);
				const { page, pageSize } = pageWindow(ctx.params);
				const { rows, total } = await this.repo.listOf(user.id, page, pageSize);
				const seats = await this.repo.seatsOf(rows.map(r => r.id));
				return { rows: rows.map(r => toView(r, seats)), page, pageSize, total };
			}
		},

		/** GET /api/reservations/:id: the owner's reservation with its payment and saga; anyone else's is 404. */
		get: {
			visibility: "published",
			params: { id: idParam, $$strict: "remove" },
			async handler(this: This, ctx: Context<{ id: string }, RequestMeta>) {
				const row = await this.loadOwned(ctx, ctx.params.id);
				const view: Record<string, unknown> = { ...toView(row, await this.repo.seatsOf([row.id])) };
				// Payment and saga come from their owners; if one of them is down the reservation still answers.
				const paySaga = row.paid_saga_id ?? (row.status === "PAYING" ? row.saga_id : null);
				const [payment, saga] = await Promise.all([
					paySaga ? peers(ctx)("payment.getBySaga", { sagaId: paySaga }).catch(() => undefined) : undefined,
					row.saga_id ? peers(ctx)("saga.find", { id: row.saga_id }).catch(() => undefined) : undefined
				]);
				if (payment && payment.status !== "VOIDED") view.payment = { id: payment.id, amount: Number(payment.amount), status: payment.status };
				if (saga) view.saga = { id: saga.id, status: saga.status };
				return view;
			}
		},

		/**
		 * POST /api/payments: runs the ConfirmReservation saga and waits for it up to a deadline: 201 with the
		 * payment and the CONFIRMED reservation, the rejecting error (402 INSUFFICIENT_POINTS: the reservation is
		 * PENDING again with its seats held), or 202 with the saga id while it still runs.
		 */
		pay: {
			visibility: "published",
			params: { reservationId: idParam, $$strict: "remove" },
			async handler(this: This, ctx: Context<{ reservationId: string }, RequestMeta>) {
				const user = signedInUser(ctx);
				const row = await this.loadOwned(ctx, ctx.params.reservationId);
				// One saga per reservation and Idempotency-Key: a double click joins the first saga; another key
				// starts a saga that step 0 turns away while the first one owns the reservation. A retry of a
				// request whose answer was lost finds its saga and answers from it, whatever the reservation's state.
				// The saga is looked up only when the preconditions fail (a first request passes them, and saga.start
				// joins an existing saga of the same key anyway): one call and one read fewer per payment.
				const key = sagaKeyOf("confirm", row.id, ctx.meta.idempotencyKey ?? crypto.randomUUID());
				try {
					if (!payable(row, new Date())) {
						throw new ReservationNotPayableError(row.id, row.status === "PENDING" ? "EXPIRED" : row.status);
					}
					// The show's start closes its sale (the catalog checks the concert's own close again at the sale step).
					if (row.starts_at && Date.now() >= new Date(iso(row.starts_at)).getTime()) throw new ShowSalesClosedError(row.id);
					await this.requireActiveToken(ctx, user.id, row.concert_id);
				} catch (err) {
					if (!(ctx.meta.idempotencyKey && (await this.findSaga(ctx, key)))) throw err;
				}
				const seats = await this.repo.seatsOf([row.id]);
				const saga = await peers(ctx)("saga.start", {
					type: "ConfirmReservation",
					key,
					data: {
						reservationId: row.id,
						userId: user.id,
						concertId: row.concert_id,
						scheduleId: row.schedule_id,
						seatIds: seats.map(s => s.seat_id),
						amount: Number(row.amount),
						queueToken: ctx.meta.queueToken
					},
					waitMs: this.waitMs()
				});
				if (saga.status === "COMPLETED") {
					const payment = (saga.result as { payment: { id: string; amount: number } }).payment;
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/api/payments/${payment.id}`;
					return {
						id: payment.id,
						reservationId: row.id,
						amount: Number(payment.amount),
						status: "COMPLETED",
						reservation: { id: row.id, status: "CONFIRMED" }
					};
				}
				if (saga.status === "COMPENSATED") throw rejection(saga);
				ctx.meta.$statusCode = 202;
				return { sagaId: saga.id, status: saga.status };
			}
		},

		/**
		 * POST /api/reservations/:id/cancel: a PENDING reservation frees its seats; a CONFIRMED one is refunded
		 * and its sold seats return to AVAILABLE. Anything else is 409 RESERVATION_NOT_CANCELLABLE.
		 */
		cancel: {
			visibility: "published",
			params: { id: idParam, $$strict: "remove" },
			async handler(this: This, ctx: Context<{ id: string }, RequestMeta>) {
				const row = await this.loadOwned(ctx, ctx.params.id);
				const key = sagaKeyOf("cancel", row.id, ctx.meta.idempotencyKey ?? crypto.randomUUID());
				// A retried request answers from the saga it started (its key), not from the changed status.
				const earlier = ctx.meta.idempotencyKey ? await this.findSaga(ctx, key) : null;
				const type = earlier?.type ?? cancelSagaType(row.status);
				if (!type) throw new ReservationNotCancellableError(row.id, row.status);
				if (!earlier && type === "CancelConfirmedReservation") {
					// The policy: a full refund until CANCEL_CUTOFF_HOURS before the show, no cancellation after.
					const cutoff = cancelCutoff(await this.showStartOf(ctx, row), this.config.cancelCutoffHours);
					if (Date.now() >= cutoff.getTime()) throw new CancellationClosedError(row.id, cutoff.toISOString());
					// CONFIRMED shows after step 2, while the seats may still be being sold (step 3): cancelling then
					// could refund and release before a late sale lands. Only a finished booking is cancelled.
					const paid = row.paid_saga_id ? await peers(ctx)("saga.find", { id: row.paid_saga_id }) : null;
					if (paid?.status !== "COMPLETED") throw new ReservationNotCancellableError(row.id, "CONFIRMING");
				}
				const seats = await this.repo.seatsOf([row.id]);
				const saga = await peers(ctx)("saga.start", {
					type,
					key,
					data: {
						reservationId: row.id,
						expect: type === "CancelConfirmedReservation" ? "CONFIRMED" : "PENDING",
						scheduleId: row.schedule_id,
						seatIds: seats.map(s => s.seat_id),
						paidSagaId: row.paid_saga_id
					},
					waitMs: this.waitMs()
				});
				if (saga.status === "COMPLETED") {
					const done = (await this.repo.load(row.id))!;
					const body: Record<string, unknown> = { id: row.id, status: "CANCELLED" };
					if (done.refund_amount !== null) body.refund = { amount: Number(done.refund_amount) };
					return body;
				}
				if (saga.status === "COMPENSATED") throw rejection(saga);
				ctx.meta.$statusCode = 202;
				return { sagaId: saga.id, status: saga.status };
			}
		},

		// Reads for other contexts

		/** Review rule: has this user a CONFIRMED reservation for this concert? */
		hasConfirmed: {
			visibility: "public",
			params: { userId: idParam, concertId: idParam },
			async handler(
				this: This,
				ctx: Context<ReservationApi["reservation.hasConfirmed"]["params"]>
			): Promise<ReservationApi["reservation.hasConfirmed"]["result"]> {
				const rows = await this.repo.confirmedOf(ctx.params.userId, ctx.params.concertId);
				// `attended`: a confirmed booking of a show that has started (a review needs one).
				const now = Date.now();
				let attended = false;
				for (const r of rows) {
					if (Date.parse(await this.showStartOf(ctx, r)) <= now) {
						attended = true;
						break;
					}
				}
				return { confirmed: rows.length > 0, attended };
			}
		},

		/**
		 * For the ops consistency check (read only), one keyset page at a time (lib/audit.ts): reservations with
		 * their seats, amount and the payment and saga ids that moved them. By id order; with `since`, those changed
		 * since then in change order; with `ids`, those reservations (at most a page of ids, no paging).
		 */
		audit: {
			visibility: "public",
			params: {
				statuses: {
					type: "array",
					min: 1,
					optional: true,
					items: { type: "enum", values: ["PENDING", "PAYING", "CONFIRMED", "CANCELLING", "CANCELLED", "EXPIRED"] }
				},
				ids: { type: "array", items: { type: "string", max: 64 }, max: 1000, optional: true },
				...auditPageParams
			},
			async handler(this: This, ctx: Context<AuditPageParams & { statuses?: ReservationStatus[]; ids?: string[] }>) {
				const { statuses, ids, since, after } = ctx.params;
				return this.repo.auditPage({ statuses, ids, since, after, limit: auditLimit(this.config, ctx.params.limit) });
			}
		},

		/** Seats sold per concert (CONFIRMED reservations): the truth the ranking is rebuilt from. */
		soldSeatsByConcert: {
			visibility: "public",
			async handler(this: This): Promise<ReservationApi["reservation.soldSeatsByConcert"]["result"]> {
				return this.repo.soldSeatsByConcert();
			}
		},

		/** Runs the expiry sweep now (operations and tests); the sweeper also runs on its own. */
		sweep: {
			visibility: "public",
			async handler(this: This) {
				return { expired: await this.sweepExpired() };
			}
		}
	},

	methods: {
		/**
		 * Lets the seats of a reservation that ended (expired, confirmation rolled back) go at once. A failure only
		 * logs: the hold expires by itself at its TTL.
		 */
		async releaseSeatsOf(this: This, via: Context | ServiceBroker, row: Pick<ReservationRow, "id" | "schedule_id">, why: string) {
			const seats = await this.repo.seatsOf([row.id]);
			await peers(via)("concert.release", { scheduleId: row.schedule_id, seatIds: seats.map(s => s.seat_id), owner: row.id }).catch((err: Error) =>
				this.logger.warn(`release of ${why} ${row.id} failed; the hold expires by itself`, err.message)
			);
		},

		/** POST /api/reservations' 201 for a reservation that exists already (a retry of the same key), owner checked. */
		async createdAnswer(this: This, ctx: Context<unknown, RequestMeta>, row: ReservationRow) {
			if (row.user_id !== signedInUser(ctx).id) throw new NotFoundError("reservation", row.id);
			const view = toView(row, await this.repo.seatsOf([row.id]));
			ctx.meta.$statusCode = 201;
			ctx.meta.$location = `/api/reservations/${row.id}`;
			return { ...view } as Record<string, unknown>;
		},

		/**
		 * Retries `attempt` (idempotent) 0.5 s, 1 s, 2 s... (at most 10 s) apart until it succeeds or `until` passes,
		 * after which there is nothing left to repair (a hold expires by itself).
		 */
		retryInBackground(this: This, what: string, attempt: () => Promise<unknown>, until: number) {
			let delay = 500;
			const next = () => {
				if (Date.now() + delay > until) {
					this.logger.warn(`${what}: gave up retrying; it expires by itself`);
					return;
				}
				const timer = setTimeout(() => {
					this.backgroundRetries.delete(timer);
					attempt().then(
						() => this.logger.info(`${what}: done on a later attempt`),
						() => {
							delay = Math.min(10_000, delay * 2);
							next();
						}
					);
				}, delay);
				timer.unref();
				this.backgroundRetries.add(timer);
			};
			next();
		},

		/** The saga started under `key`, or null when there is none. */
		async findSaga(this: This, ctx: Context<unknown, RequestMeta>, key: string) {
			try {
				return await peers(ctx)("saga.find", { key });
			} catch (err) {
				if ((err as { code?: number }).code === 404) return null;
				throw err;
			}
		},

		async loadOwned(this: This, ctx: Context<unknown, RequestMeta>, id: string) {
			const user = signedInUser(ctx);
			const row = await this.repo.load(id);
			// Someone else's reservation reads exactly like a missing one.
			if (!row || row.user_id !== user.id) throw new NotFoundError("reservation", id);
			return row;
		},

		/**
		 * The concert of a schedule (404 from the catalog for an unknown one). Known schedules are cached per node:
		 * the mapping never changes, and asking the catalog on every hold cost a call, a query and a store read
		 * per attempt, which in a flash sale is mostly attempts that lose the seat race.
		 */
		async concertOf(this: This, ctx: Context<unknown, RequestMeta>, scheduleId: string) {
			const known = this.scheduleConcerts.get(scheduleId);
			if (known !== undefined) return known;
			const schedule = await peers(ctx)("concert.getSchedule", { id: scheduleId });
			this.scheduleConcerts.set(scheduleId, schedule.concertId);
			return schedule.concertId;
		},

		/**
		 * The per-buyer limits for a new reservation of `wanted` seats (reservation.domain.ts `buyerVerdict`). In a
		 * transaction it first writes the buyer's row of reservation_buyers: that row lock (SQLite: the one writer)
		 * serializes one buyer's inserts for one schedule, so concurrent attempts end at exactly the limit.
		 */
		async requireWithinLimits(this: This, userId: string, scheduleId: string, wanted: number, t?: Transaction) {
			if (t) await this.repo.lockBuyer(userId, scheduleId, t);
			const rows = await this.repo.buyerReservations(userId, scheduleId, t);
			const verdict = buyerVerdict(rows, wanted, this.config.maxSeatsPerBuyer, new Date());
			if (verdict.ok) return;
			if ("open" in verdict) throw new OpenReservationExistsError(scheduleId, verdict.open);
			throw new SeatLimitExceededError(scheduleId, this.config.maxSeatsPerBuyer, verdict.taken);
		},

		/** The show's start: from the row, or (rows older than the calendar) from the catalog. */
		async showStartOf(this: This, ctx: Context<unknown, RequestMeta>, row: Pick<ReservationRow, "starts_at" | "schedule_id">) {
			if (row.starts_at) return iso(row.starts_at);
			const s = await peers(ctx)("concert.getSchedule", { id: row.schedule_id });
			return s.startsAt;
		},

		async requireActiveToken(this: This, ctx: Context<unknown, RequestMeta>, userId: string, concertId: string) {
			const token = ctx.meta.queueToken;
			if (!token) throw new QueueTokenRequiredError();
			await peers(ctx)("queue.validate", { token, userId, concertId });
		},

		/**
		 * PENDING reservations past their hold become EXPIRED (one conditional UPDATE each: a payment that moved
		 * one to PAYING first wins and the sweeper leaves it alone), then their seats are released.
		 */
		async sweepExpired(this: This) {
			const now = new Date();
			let expired = 0;
			for (const candidate of await this.repo.dueForExpiry(now)) {
				const row = await this.repo.expire(candidate.id, now);
				if (!row) continue;
				expired++;
				await this.releaseSeatsOf(this.broker, row, "expired");
			}
			return expired;
		},

		/** How long POST /api/payments and cancel wait for their saga before answering 202. */
		waitMs(this: This) {
			return Math.max(1000, Math.min(8000, this.config.requestTimeoutMs - 2000));
		}
	},

	created(this: This) {
		this.scheduleConcerts = new LRUCache({ max: SCHEDULE_CACHE_MAX });
		this.backgroundRetries = new Set();
	},

	started(this: This) {
		this.repo = new ReservationRepo(this.sql);
		// Sweep about four times per hold lifetime (at least every 5 s); every node may run it: the conditional
		// update makes each expiry happen once.
		const every = Math.max(200, Math.min(5000, (this.config.holdTtlSec * 1000) / 4));
		this.sweeper = setInterval(() => {
			this.sweepExpired().catch((err: Error) => this.logger.warn("expiry sweep failed", err.message));
		}, every);
		this.sweeper.unref();
	},

	stopped(this: This) {
		if (this.sweeper) clearInterval(this.sweeper);
		for (const t of this.backgroundRetries) clearTimeout(t);
		this.backgroundRetries.clear();
	}
};

export default ReservationService;
