/**
 * Saga context: runs the definitions of sagas/registry.ts durably (docs/DESIGN.md section 5). It owns saga instances,
 * the step journal and dead letters in its own database; it calls the participants through the broker; any
 * replica can resume a saga whose node died (leases + a recovery scan). Admin actions back the operations routes
 * of docs/API.md and are callable from the REPL (`call saga.list --status FAILED`, `call saga.retry --id ...`).
 *
 * A saga parked FAILED (a compensation, or a step past the point of no return, kept failing) usually failed on a
 * fault that passes: a store or database outage longer than its retries. Left alone it would hold its reservation
 * in PAYING or CANCELLING until an operator retried it. So every node also retries FAILED sagas by itself, as an
 * operator's retry does (same step, same idempotency keys: nothing runs twice), after SAGA_FAILED_RETRY_SEC and
 * then twice as long each time the saga fails again, up to an hour. A dead letter an operator RESOLVED means "settled
 * by hand": that saga is left FAILED, as the record.
 */
import crypto from "crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes } from "sequelize";
import { FieldValidationError, NotFoundError } from "../../lib/errors";
import { outboxMigration } from "../../lib/outbox";
import { pageParams, pageWindow, type PageParams } from "../../lib/request";
import { OutboxRelayMixin } from "../../mixins/outbox.mixin";
import { DbMixin, type DbVars } from "../../mixins/db.mixin";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import { SagaExecutor, type ExecutorSettings } from "../../sagas/executor";
import { SAGA_DEFINITIONS } from "../../sagas/registry";
import { SagaStore } from "../../sagas/store";
import { TERMINAL_STATUSES, type DeadLetter, type SagaDefinition, type SagaState, type SagaStatus } from "../../sagas/types";
import type { SagaApi, SagaView } from "./saga.api";
import { DeadLetterClosedError, SagaKeyConflictError, SagaNotRetryableError, UnknownSagaTypeError } from "./errors";
import { createSagaTables } from "./migrations/001_create_saga_tables";
import { outboxRetention, RetentionMixin } from "../../mixins/retention.mixin";

/** The longest wait between two automatic retries of a saga that keeps failing. */
const MAX_FAILED_RETRY_MS = 3600_000;

export interface SagaSettings extends ExecutorSettings {
	/** How often this node looks for sagas whose lease expired (their node died). */
	recoveryIntervalMs: number;
	/** Sagas taken over per scan. */
	recoveryBatch: number;
	/** Poll interval of `saga.start` waiting for a saga another node drives. */
	waitPollMs: number;
}

type StartParams = SagaApi["saga.start"]["params"];
interface ListParams extends PageParams {
	status?: SagaStatus;
	type?: string;
	olderThanSec?: number;
	since?: string;
}

/** An ISO-8601 UTC time or one with an offset, e.g. 2026-05-01T12:00:00Z (`since` of the admin list). */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

/** The saga that is a booking, and its payment step: the console's bookings/s and payment p99. */
const BOOKING_SAGA = "ConfirmReservation";
const PAYMENT_STEP = "pay";

/** The p-th percentile (0..1) of ascending values, nearest rank; null without values. */
const percentile = (sorted: number[], p: number): number | null => (sorted.length === 0 ? null : sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]);
interface IdParams {
	id: string;
}

interface SagaMethods {
	sagaDefinitions(): SagaDefinition<unknown>[];
	launch(id: string, created?: SagaState): void;
	waitTerminal(id: string, waitMs: number): Promise<SagaState | undefined>;
	recover(): Promise<number>;
	renewLeases(): Promise<void>;
	resume(id: string): Promise<SagaState>;
	retryParked(id: string, note: string | null): Promise<SagaState>;
	retryFailed(): Promise<number>;
	registerMetrics(): void;
	metric(name: string, labels: Record<string, string>, value?: number): void;
}

interface SagaVars {
	sagaStore: SagaStore;
	executor: SagaExecutor;
	owner: string;
	driving: Map<string, Promise<unknown>>;
	/** The span of the request that started a saga here: its steps join that trace (ops: one trace per payment). */
	traceParents: Map<string, { id: string; traceID: string; sampled: boolean }>;
	waiters: Map<string, Set<(s: SagaState) => void>>;
	timers: NodeJS.Timeout[];
}

type This = Service<SagaSettings> & PlatformVars & DbVars & SagaVars & SagaMethods;

const STATUSES: SagaStatus[] = ["RUNNING", "COMPENSATING", "COMPLETED", "COMPENSATED", "FAILED"];

export function toView(s: SagaState): SagaView {
	const v: SagaView = { id: s.id, type: s.type, key: s.key, status: s.status };
	if (s.result !== undefined) v.result = s.result;
	if (s.error !== undefined) v.error = s.error;
	return v;
}

const isTerminal = (s: SagaState) => TERMINAL_STATUSES.includes(s.status);

const SagaService: ServiceSchema<SagaSettings, SagaMethods, This> = {
	name: "saga",

	mixins: [
		PlatformMixin,
		// Past their age: published outbox rows, finished sagas (COMPLETED, COMPENSATED) with their journals and
		// dead letters when none is open, and resolved or retried dead letters. A FAILED saga stays for an operator.
		RetentionMixin([
			outboxRetention,
			{
				name: "saga_instances",
				days: c => c.retention.sagaDays,
				cutoff: "epochMs",
				select: `SELECT s.id FROM saga_instances s
					WHERE s.created_at < ? AND s.updated_at < ? AND s.status IN ('COMPLETED', 'COMPENSATED')
					  AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.saga_id = s.id AND d.status = 'OPEN')
					LIMIT ?`,
				delete: [
					{ table: "saga_steps", columns: ["saga_id"] },
					{ table: "dead_letters", columns: ["saga_id"] },
					{ table: "saga_instances", columns: ["id"] }
				]
			},
			{
				name: "dead_letters",
				days: c => c.retention.deadLetterDays,
				cutoff: "epochMs",
				// Not while the saga is FAILED or still running: its retry backoff counts its letters.
				select: `SELECT d.id FROM dead_letters d
					WHERE d.status IN ('RESOLVED', 'RETRIED') AND d.created_at < ? AND d.updated_at < ?
					  AND NOT EXISTS (SELECT 1 FROM saga_instances s WHERE s.id = d.saga_id AND s.status IN ('FAILED', 'RUNNING', 'COMPENSATING'))
					LIMIT ?`,
				delete: [{ table: "dead_letters", columns: ["id"] }]
			}
		]),
		// Publishes the durable copy of saga.failed (written with the dead letter) from outbox_events; before
		// DbMixin so it starts after the migrations.
		OutboxRelayMixin,
		DbMixin({
			database: "saga",
			migrations: [outboxMigration, createSagaTables],
			model: {
				name: "saga_instances",
				define: {
					id: { type: DataTypes.STRING(36), primaryKey: true },
					type: { type: DataTypes.STRING(64), allowNull: false },
					saga_key: { type: DataTypes.STRING(191), allowNull: false },
					status: { type: DataTypes.STRING(16), allowNull: false }
				},
				options: { tableName: "saga_instances", timestamps: false }
			}
		})
	],

	settings: {
		// A lease outlives a few missed renewals (renewed every leaseMs/3) but not a dead node for long.
		leaseMs: 10_000,
		recoveryIntervalMs: 3_000,
		recoveryBatch: 20,
		stepTimeoutMs: 5_000,
		maxBackoffMs: 5_000,
		compensationAttempts: 8,
		compensationBackoffMs: 250,
		waitPollMs: 200
	},

	actions: {
		/**
		 * Starts a saga of a registered type for a business key, or returns the saga that key already has (one
		 * saga per reservation, however often the caller retries; 409 SAGA_KEY_CONFLICT if it is of another type). With `waitMs`, waits up to that long for a
		 * terminal state and otherwise answers the current one (RUNNING/COMPENSATING: the gateway answers 202).
		 */
		start: {
			visibility: "public",
			params: {
				type: { type: "string", min: 1, max: 64 },
				key: { type: "string", min: 1, max: 191 },
				data: { type: "object", optional: true },
				waitMs: { type: "number", integer: true, min: 0, max: 120_000, optional: true }
			},
			async handler(this: This, ctx: Context<StartParams>): Promise<SagaView> {
				const { type, key, data = {}, waitMs = 0 } = ctx.params;
				const def = this.sagaDefinitions().find(d => d.type === type);
				if (!def) throw new UnknownSagaTypeError(type);
				const { created, saga } = await this.sagaStore.create({
					id: crypto.randomUUID(),
					type,
					key,
					data,
					owner: this.owner,
					leaseMs: this.settings.leaseMs,
					firstStep: def.steps[0]?.name
				});
				if (created) {
					this.metric("saga.started", { type });
					if (ctx.span) this.traceParents.set(saga.id, { id: ctx.span.id, traceID: ctx.span.traceID, sampled: ctx.span.sampled });
					this.launch(saga.id, saga);
				} else if (saga.type !== type) {
					// Never answer a Cancel with the Confirm saga of the same reservation: keys are per business
					// operation (e.g. "confirm:<reservationId>").
					throw new SagaKeyConflictError(key, saga.type);
				}
				if (waitMs > 0 && !isTerminal(saga)) {
					const done = await this.waitTerminal(saga.id, waitMs);
					if (done) return toView(done);
					return toView((await this.sagaStore.get(saga.id)) ?? saga);
				}
				return toView(saga);
			}
		},

		/**
		 * For other services: a saga's current state by id or by business key, without the journal (e.g. the
		 * reservation view shows `saga: {id, status}`).
		 */
		find: {
			visibility: "public",
			params: { id: { type: "string", min: 1, max: 36, optional: true }, key: { type: "string", min: 1, max: 191, optional: true } },
			async handler(this: This, ctx: Context<SagaApi["saga.find"]["params"]>): Promise<SagaView> {
				const { id, key } = ctx.params;
				const saga = id ? await this.sagaStore.get(id) : key ? await this.sagaStore.getByKey(key) : undefined;
				if (!saga || (id && key && saga.key !== key)) throw new NotFoundError("saga", id ?? key);
				return toView(saga);
			}
		},

		/** GET /api/admin/sagas/:id: the saga with its step journal and dead letters. */
		get: {
			visibility: "published",
			auth: "admin",
			params: { id: { type: "string", min: 1, max: 36 }, $$strict: "remove" },
			async handler(this: This, ctx: Context<IdParams>) {
				const saga = await this.sagaStore.get(ctx.params.id);
				if (!saga) throw new NotFoundError("saga", ctx.params.id);
				const [journal, deadLetters] = await Promise.all([
					this.sagaStore.journal(saga.id),
					this.sagaStore.deadLetters({ sagaId: saga.id, offset: 0, limit: 100 })
				]);
				// durationMs: from the entry's start to its end over all its attempts (null while it runs).
				const timed = journal.map(j => ({ ...j, durationMs: j.finishedAt ? Date.parse(j.finishedAt) - Date.parse(j.startedAt) : null }));
				return { ...saga, journal: timed, deadLetters: deadLetters.rows };
			}
		},

		/**
		 * GET /api/admin/sagas?status=&type=&olderThanSec=&since=&page=&pageSize=: newest first. `olderThanSec`: created
		 * at least that long ago; `since`: created at or after that time (ISO-8601); both: the window between.
		 */
		list: {
			visibility: "published",
			auth: "admin",
			params: {
				status: { type: "enum", values: STATUSES, optional: true },
				type: { type: "string", min: 1, max: 64, pattern: /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/, optional: true },
				olderThanSec: { type: "number", integer: true, min: 0, max: 315_360_000, convert: true, optional: true },
				since: { type: "string", min: 10, max: 40, pattern: ISO_TIME, optional: true },
				...pageParams,
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<ListParams>) {
				const { page, pageSize, offset, limit } = pageWindow(ctx.params);
				const since = ctx.params.since === undefined ? undefined : Date.parse(ctx.params.since);
				if (since !== undefined && !Number.isFinite(since)) {
					throw new FieldValidationError([{ field: "since", type: "date", message: "The 'since' field must be a valid ISO-8601 time." }]);
				}
				const { rows, total } = await this.sagaStore.list({
					status: ctx.params.status,
					type: ctx.params.type,
					createdBefore: ctx.params.olderThanSec === undefined ? undefined : this.sagaStore.now() - ctx.params.olderThanSec * 1000,
					createdSince: since,
					offset,
					limit
				});
				return {
					rows: rows.map(s => ({
						id: s.id,
						type: s.type,
						key: s.key,
						status: s.status,
						step: s.stepName,
						createdAt: s.createdAt,
						updatedAt: s.updatedAt
					})),
					page,
					pageSize,
					total
				};
			}
		},

		/**
		 * POST /api/admin/sagas/:id/retry (202): resumes a FAILED saga where it stopped (the compensation, or the
		 * retriable step, that failed), with a fresh attempt count, on this node. Its open dead letters are marked
		 * RETRIED.
		 */
		retry: {
			visibility: "published",
			auth: "admin",
			params: { id: { type: "string", min: 1, max: 36 }, $$strict: "remove" },
			async handler(this: This, ctx: Context<IdParams, { $statusCode?: number }>) {
				const saga = await this.retryParked(ctx.params.id, null);
				ctx.meta.$statusCode = 202;
				return toView(saga);
			}
		},

		/**
		 * For the operator console's figures (ops.figures): the sagas created in the last `windowSec` seconds by
		 * outcome, bookings (ConfirmReservation COMPLETED) per second, and the payment step's p50/p99 over the newest
		 * 2,000 of its calls. Read from the database every replica shares: the same answer on any node.
		 */
		figures: {
			visibility: "public",
			params: { windowSec: { type: "number", integer: true, min: 10, max: 3600, optional: true, convert: true }, $$strict: "remove" },
			async handler(this: This, ctx: Context<{ windowSec?: number }>) {
				const windowSec = ctx.params.windowSec ?? 60;
				const { counts, durations } = await this.sagaStore.figures(this.sagaStore.now() - windowSec * 1000, PAYMENT_STEP, 2000);
				const outcomes: Record<SagaStatus, number> = { RUNNING: 0, COMPENSATING: 0, COMPLETED: 0, COMPENSATED: 0, FAILED: 0 };
				let bookings = 0;
				for (const c of counts) {
					outcomes[c.status] = (outcomes[c.status] ?? 0) + c.n;
					if (c.type === BOOKING_SAGA && c.status === "COMPLETED") bookings += c.n;
				}
				const sorted = durations.filter(d => Number.isFinite(d)).sort((a, b) => a - b);
				return {
					windowSec,
					outcomes,
					bookings,
					bookingsPerSec: Math.round((bookings / windowSec) * 100) / 100,
					payment: { samples: sorted.length, p50Ms: percentile(sorted, 0.5), p99Ms: percentile(sorted, 0.99) }
				};
			}
		},

		/** GET /api/admin/dead-letters?status=OPEN: parked sagas waiting for an operator. */
		deadLetters: {
			visibility: "published",
			auth: "admin",
			params: {
				status: { type: "enum", values: ["OPEN", "RETRIED", "RESOLVED"], optional: true },
				...pageParams,
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<{ status?: DeadLetter["status"] } & PageParams>) {
				const { page, pageSize, offset, limit } = pageWindow(ctx.params);
				const { rows, total } = await this.sagaStore.deadLetters({ status: ctx.params.status, offset, limit });
				return { rows, page, pageSize, total };
			}
		},

		/** POST /api/admin/dead-letters/:id/retry (202): retries the saga of an OPEN dead letter. */
		retryDeadLetter: {
			visibility: "published",
			auth: "admin",
			params: { id: { type: "string", min: 1, max: 36 }, $$strict: "remove" },
			async handler(this: This, ctx: Context<IdParams, { $statusCode?: number }>) {
				const dl = await this.sagaStore.deadLetter(ctx.params.id);
				if (!dl) throw new NotFoundError("dead letter", ctx.params.id);
				if (dl.status !== "OPEN") throw new DeadLetterClosedError(dl.id, dl.status);
				const saga = await this.resume(dl.sagaId);
				await this.sagaStore.closeDeadLetter(dl.id, "RETRIED", null);
				ctx.meta.$statusCode = 202;
				return { id: dl.id, status: "RETRIED", saga: toView(saga) };
			}
		},

		/**
		 * POST /api/admin/dead-letters/:id/resolve: an operator settled it by hand. The saga stays FAILED (what
		 * happened is kept); the dead letter leaves the open list.
		 */
		resolveDeadLetter: {
			visibility: "published",
			auth: "admin",
			params: { id: { type: "string", min: 1, max: 36 }, note: { type: "string", max: 500, optional: true }, $$strict: "remove" },
			async handler(this: This, ctx: Context<IdParams & { note?: string }>) {
				const dl = await this.sagaStore.deadLetter(ctx.params.id);
				if (!dl) throw new NotFoundError("dead letter", ctx.params.id);
				if (!(await this.sagaStore.closeDeadLetter(dl.id, "RESOLVED", ctx.params.note ?? null))) {
					const now = await this.sagaStore.deadLetter(dl.id);
					throw new DeadLetterClosedError(dl.id, now?.status ?? dl.status);
				}
				return (await this.sagaStore.deadLetter(dl.id))!;
			}
		}
	},

	methods: {
		/** The definitions this node runs; a test node overrides this to add test-only sagas. */
		sagaDefinitions() {
			return SAGA_DEFINITIONS;
		},

		/**
		 * Drives a saga this node holds, in the background, once per node at a time. `created`: the state of a
		 * saga this node just created (its first step already journalled RUNNING).
		 */
		launch(this: This, id: string, created?: SagaState) {
			if (this.driving.has(id)) return;
			const p = this.executor
				.drive(id, { fresh: created !== undefined, saga: created })
				.catch(err => this.logger.error(`saga ${id}: driving failed; it resumes after its lease expires`, err))
				.finally(() => this.driving.delete(id));
			this.driving.set(id, p);
		},

		/**
		 * Resolves with the saga once it is terminal, or undefined at the deadline. Sagas driven here wake the
		 * waiter in-process; sagas driven by another node are polled.
		 */
		async waitTerminal(this: This, id: string, waitMs: number) {
			const deadline = Date.now() + waitMs;
			return new Promise<SagaState | undefined>(resolve => {
				let done = false;
				let poll: NodeJS.Timeout | undefined;
				const finish = (s: SagaState | undefined) => {
					if (done) return;
					done = true;
					clearTimeout(timer);
					if (poll) clearTimeout(poll);
					this.waiters.get(id)?.delete(finish);
					if (this.waiters.get(id)?.size === 0) this.waiters.delete(id);
					resolve(s);
				};
				const timer = setTimeout(() => finish(undefined), waitMs);
				if (!this.waiters.has(id)) this.waiters.set(id, new Set());
				this.waiters.get(id)!.add(finish);
				const check = async () => {
					if (done) return;
					if (!this.driving.has(id)) {
						const s = await this.sagaStore.get(id).catch(() => undefined);
						if (s && isTerminal(s)) return finish(s);
					}
					if (!done && Date.now() < deadline) poll = setTimeout(check, this.settings.waitPollMs);
				};
				void check();
			});
		},

		/** Takes over active sagas whose lease expired (their node died) and resumes them from the journal. */
		async recover(this: This) {
			const ids = await this.sagaStore.findOrphans(this.settings.recoveryBatch);
			let taken = 0;
			for (const id of ids) {
				if (this.driving.has(id)) continue;
				if (await this.sagaStore.claim(id, this.owner, this.settings.leaseMs)) {
					taken++;
					this.metric("saga.recovered", {});
					this.launch(id);
				}
			}
			return taken;
		},

		/** Renews the lease of every saga this node drives; the executor notices a lost one at its next write. */
		async renewLeases(this: This) {
			const ids = [...this.driving.keys()];
			for (let i = 0; i < ids.length; i += 500) {
				const batch = ids.slice(i, i + 500);
				const held = await this.sagaStore.renew(batch, this.owner, this.settings.leaseMs);
				// Finished sagas leave `driving` a moment after their last write, so fewer can be fine.
				if (held < batch.length) this.logger.debug(`renewed ${held} of ${batch.length} saga leases`);
			}
		},

		/** Operator retry: FAILED -> COMPENSATING or RUNNING, leased here, driven here. */
		async resume(this: This, id: string) {
			const saga = await this.sagaStore.get(id);
			if (!saga) throw new NotFoundError("saga", id);
			if (!(await this.sagaStore.resumeFailed(id, this.owner, this.settings.leaseMs))) {
				throw new SagaNotRetryableError(id, (await this.sagaStore.get(id))?.status ?? saga.status);
			}
			this.metric("saga.retried", { type: saga.type });
			this.launch(id);
			return (await this.sagaStore.get(id))!;
		},

		/** `resume`, and its open dead letters are marked RETRIED (with `note`). */
		async retryParked(this: This, id: string, note: string | null) {
			const saga = await this.resume(id);
			const open = await this.sagaStore.deadLetters({ sagaId: saga.id, status: "OPEN", offset: 0, limit: 100 });
			for (const dl of open.rows) await this.sagaStore.closeDeadLetter(dl.id, "RETRIED", note);
			return saga;
		},

		/**
		 * Automatic retry: resumes the FAILED sagas with an open dead letter whose wait is over (SAGA_FAILED_RETRY_SEC
		 * after they parked, doubled per earlier park). Every node runs it; the conditional resume lets one win.
		 */
		async retryFailed(this: This) {
			const baseMs = this.config.sagaFailedRetrySec * 1000;
			if (baseMs <= 0) return 0;
			const now = this.sagaStore.now();
			let resumed = 0;
			for (const p of await this.sagaStore.parkedSagas(100)) {
				const waitMs = Math.min(MAX_FAILED_RETRY_MS, baseMs * 2 ** Math.min(p.parked - 1, 20));
				if (now < p.parkedAt + waitMs || this.driving.has(p.sagaId)) continue;
				try {
					await this.retryParked(p.sagaId, `automatic retry ${p.parked}`);
					resumed++;
					this.logger.info(`saga ${p.sagaId}: FAILED ${p.parked} time(s); retried by itself`);
				} catch (err) {
					// Another node resumed it first (SAGA_NOT_RETRYABLE), or the database is down: the next scan sees.
					if ((err as { type?: string }).type !== "SAGA_NOT_RETRYABLE") throw err;
				}
			}
			return resumed;
		},

		registerMetrics(this: This) {
			const m = this.broker.metrics;
			if (!this.broker.isMetricsEnabled()) return;
			for (const [name, description] of [
				["saga.started", "Sagas started"],
				["saga.completed", "Sagas completed"],
				["saga.compensated", "Sagas compensated after a rejection or a failed step"],
				["saga.failed", "Sagas parked as FAILED with a dead letter"],
				["saga.retried", "FAILED sagas resumed, by an operator or by the automatic retry"],
				["saga.recovered", "Sagas taken over from a dead node"]
			]) {
				if (!m.hasMetric(name)) m.register({ type: "counter", name, description, labelNames: name === "saga.recovered" ? [] : ["type"] });
			}
			if (!m.hasMetric("saga.step.duration")) {
				m.register({
					type: "histogram",
					name: "saga.step.duration",
					description: "Latency of saga step calls in ms",
					labelNames: ["type", "step", "phase", "outcome"],
					unit: "millisecond",
					buckets: [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]
				});
			}
		},

		metric(this: This, name: string, labels: Record<string, string>, value = 1) {
			if (!this.broker.isMetricsEnabled()) return;
			if (name === "saga.step.duration") this.broker.metrics.observe(name, value, labels);
			else this.broker.metrics.increment(name, labels, value);
		}
	},

	created() {
		this.owner = `${this.broker.nodeID}:${crypto.randomBytes(3).toString("hex")}`;
		this.driving = new Map();
		this.traceParents = new Map();
		this.waiters = new Map();
		this.timers = [];
	},

	async started() {
		const definitions = new Map<string, SagaDefinition<unknown>>();
		for (const def of this.sagaDefinitions()) definitions.set(def.type, def);
		this.sagaStore = new SagaStore(this.sql, Date.now, this.config.sagaGroupCommitMax);
		this.registerMetrics();
		this.executor = new SagaExecutor({
			store: this.sagaStore,
			owner: this.owner,
			definitions,
			settings: this.settings,
			newId: () => crypto.randomUUID(),
			// The broker raises `stopping` before it waits for in-flight calls and long before `stopped`: a saga
			// between two calls then stops and gives its lease up while the database is still open.
			stopRequested: () => this.broker.stopping === true,
			// A fresh root context per call: the saga outlives the request that started it, so it must not
			// inherit that request's remaining timeout; the step's own timeout and key travel in the options.
			// The saga's first driver keeps the starting request's trace (parentSpan: ids only, not its timeout).
			call: (action, params, opts) => {
				const ctx = this.broker.ContextFactory.create(this.broker);
				const parentSpan = this.traceParents.get(opts.meta.sagaId);
				return ctx.call(action, params, { timeout: opts.timeout, retries: 0, meta: opts.meta, ...(parentSpan ? { parentSpan } : {}) });
			},
			hooks: {
				step: (type, step, phase, ms, outcome) => this.metric("saga.step.duration", { type, step, phase, outcome }, ms),
				terminal: (saga, alert) => {
					this.traceParents.delete(saga.id);
					const name = saga.status === "COMPLETED" ? "saga.completed" : saga.status === "COMPENSATED" ? "saga.compensated" : "saga.failed";
					this.metric(name, { type: saga.type });
					if (saga.status === "FAILED" && alert) {
						this.logger.error(`saga ${saga.id} (${saga.type}) FAILED at ${alert.phase} step ${alert.step}; dead letter ${alert.deadLetterId}`);
						// The admin alert, at once. The same event (same eventId) is in this service's outbox, written
						// with the dead letter, for the relay's durable delivery; consumers dedupe by eventId.
						void this.broker.emit("saga.failed", alert);
					}
					for (const wake of [...(this.waiters.get(saga.id) ?? [])]) wake(saga);
				},
				lost: id => this.logger.warn(`saga ${id}: another node holds its lease now; stopped driving it here`),
				log: (level, msg) => this.logger[level](msg)
			}
		});
		const every = (ms: number, fn: () => Promise<unknown>) => {
			const t = setInterval(() => void fn().catch(err => this.logger.warn("saga background task failed:", (err as Error).message)), ms);
			t.unref();
			this.timers.push(t);
		};
		every(Math.max(100, Math.floor(this.settings.leaseMs / 3)), () => this.renewLeases());
		every(this.settings.recoveryIntervalMs, () => this.recover());
		if (this.config.sagaFailedRetrySec > 0) {
			every(Math.max(200, Math.min(this.config.sagaFailedRetrySec * 1000, 10_000) / 2), () => this.retryFailed());
		}
		void this.recover().catch(err => this.logger.warn("saga recovery failed:", (err as Error).message));
	},

	async stopped() {
		for (const t of this.timers) clearInterval(t);
		this.timers = [];
		// Stop before the next call; sagas that stop give their lease up, so another node resumes them at once.
		// One still inside a call keeps its lease until it expires.
		this.executor?.stop();
		const inFlight = [...this.driving.values()];
		if (inFlight.length > 0) {
			await Promise.race([Promise.allSettled(inFlight), new Promise(r => setTimeout(r, 2_000).unref())]);
		}
	}
};

export default SagaService;
