/**
 * Ops context: the consistency check of seed 000 section 4.3 and the business gauges of the Prometheus endpoint.
 *
 * The check reads only through the owning services' actions (reservation.audit, concert.audit, concert.verify,
 * payment.audit, payment.verify, saga.list, saga.get, saga.deadLetters, <producer>.outboxStats, ranking.verify),
 * never another context's tables. The audits answer keyset pages of at most AUDIT_PAGE_SIZE rows (lib/audit.ts)
 * and the check walks them, so no answer outgrows a NATS message however big the sale.
 *
 * It runs on demand (GET /api/admin/consistency, the REPL's `consistency`: full unless `full=false`) and every
 * `intervalMs` on one node at a time (a lease in the coordination store). A scheduled run is incremental: it
 * reads the rows changed since the previous run's start minus CONSISTENCY_MARGIN_SEC (a write stamped before a
 * run began but committed after it read that far is inside the margin), everything those rows reference, every
 * live hold, and again the reservations the previous run reported (a drift stays reported until fixed). The
 * first run, and one every CONSISTENCY_FULL_EVERY_SEC, is full. The watermark moves only after a run that could
 * read every source.
 *
 * Reads of different services are not one snapshot: the cross-service rules run twice, `settleMs` apart, and only
 * what both runs saw is reported, so a saga between two steps is not mistaken for drift. A source that cannot be
 * read makes its checks "unavailable", never drift.
 */
import { Errors, type Context, type Service, type ServiceSchema } from "moleculer";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import type { AuditPage } from "../../lib/audit";
import { liveFigures } from "./figures";
import { acquireEventBus, releaseEventBus, type EventBus } from "../../lib/events";
import {
	checkStatus,
	confirmedFindings,
	findingReservationIds,
	holdFindings,
	moneyFindings,
	noFindings,
	overallStatus,
	seatFindings,
	stuckReservations,
	stuckSagas,
	type AuditHold,
	type AuditPayment,
	type AuditReservation,
	type AuditSale,
	type CheckResult,
	type ConsistencyReport,
	type SagaRow
} from "./consistency";

interface Settings {
	/** How often one node of the cluster runs the check by itself (ms); 0 turns the schedule off. */
	/** null: CONSISTENCY_INTERVAL_SEC (tests set their own). */
	intervalMs: number | null;
	/** How long apart the two runs of the cross-service rules are (ms). */
	settleMs: number;
	/** A RUNNING or COMPENSATING saga unchanged for longer than this is stuck (ms). */
	stuckSagaMs: number;
	/** An outbox row unpublished for longer than this is stale (ms). */
	outboxStaleMs: number;
	/** How often the business gauges are refreshed when metrics are on (ms). */
	metricsIntervalMs: number;
}

interface Vars {
	timers: NodeJS.Timeout[];
	/** The scheduled run in progress, awaited on stop. */
	running?: Promise<void>;
	/** The retention run in progress, awaited on stop. */
	purging?: Promise<void>;
	leaseOwner: string;
	/** The node's event bus, taken on the first metrics collection (consumer lag, dead-letter stream size). */
	bus?: EventBus;
}

/** What a run reads: everything, or what changed since `since` plus the reservations in `carry`. */
export interface Scope {
	full: boolean;
	since: Date | null;
	carry: string[];
}

interface Methods {
	runCheck(ctx: Context, scope: Scope): Promise<ConsistencyReport>;
	onDemandScope(full: boolean): Promise<Scope>;
	gather(ctx: Context, scope: Scope): Promise<Snapshot>;
	gatherChanged(ctx: Context, since: Date, carry: string[]): Promise<Pick<Snapshot, "reservations" | "concert" | "payments">>;
	walk<T>(ctx: Context, action: string, params: object): Promise<T[]>;
	walkChunks<T>(ctx: Context, action: string, key: string, list: unknown[], params?: object): Promise<T[]>;
	sagaChecks(ctx: Context): Promise<Record<string, unknown>>;
	crossChecks(s: Snapshot): Record<(typeof CROSS)[number], Record<string, unknown>>;
	producers(): string[];
	scheduledCheck(): Promise<ConsistencyReport | null>;
	releaseOrphanHolds(ctx: Context, report: ConsistencyReport): Promise<number>;
	collectMetrics(ctx: Context): Promise<Record<string, number>>;
	runRetention(ctx: Context): Promise<RetentionReport>;
	gauge(name: string, labels: Record<string, string>, value: number): void;
	eventBus(): EventBus;
}

type This = Service<Settings> & PlatformVars & Vars & Methods;

/** What one retention run deleted: rows per service and rule, concerts whose waiting-room keys were dropped. */
interface RetentionReport {
	deleted: Record<string, Record<string, number>>;
	failed: Record<string, string>;
	concertsForgotten: number;
	tookMs: number;
}

const { MoleculerClientError } = Errors;

/**
 * The retention job's run lease: held for the whole run (a run is bounded: 30 s per service, then the concerts) and
 * released at its end, so two runs never overlap, on one node or two, however short RETENTION_INTERVAL_SEC is.
 */
const RETENTION_LEASE = "ops:retention:run";
const RETENTION_LEASE_MS = 15 * 60_000;
/** The scheduled runs' spacing: the node that takes it runs this interval's job; the others skip. */
const RETENTION_SPACING = "ops:retention";
/** The last show time up to which finished concerts' waiting-room keys were dropped (epoch ms). */
const RETENTION_CONCERTS_UNTIL = "ops:retention:concerts-until";

/** A read that failed: the checks that need it report its error instead of findings. */
interface Failed {
	error: string;
	message: string;
}

interface Snapshot {
	reservations: AuditReservation[] | Failed;
	concert: { sales: AuditSale[]; holds: AuditHold[] } | Failed;
	payments: AuditPayment[] | Failed;
	ranking: { ok: boolean; mismatches: unknown[] } | Failed;
	concertVerify: { checks: CheckResult[] } | Failed;
}

const failed = (v: unknown): v is Failed => typeof v === "object" && v !== null && !Array.isArray(v) && typeof (v as Failed).error === "string";

interface OutboxStats {
	producer: string;
	pending: number;
	oldestAgeMs: number;
	stale: { id: string; eventType: string; aggregateId: string; ageMs: number }[];
}

/** The cross-service checks, each named as in docs/API.md's consistency answer. */
const CROSS = ["seats", "money", "holds", "ranking"] as const;

/** The checks whose reads are incremental: the watermark moves only when all three could read their sources. */
const INCREMENTAL = ["seats", "money", "holds"];

/** Coordination-store keys of the scheduled check: where the last run started, the last full run, its findings. */
const WATERMARK = "ops:consistency:watermark";
const LAST_FULL = "ops:consistency:last-full";
const CARRY = "ops:consistency:carry";
/** At most this many reported reservations are read again by the next incremental run (a full run reads all). */
const CARRY_MAX = 10_000;

const REPAIRS = ["ranking", "holds"] as const;

const GAUGES: [string, string, string[]][] = [
	["ops.consistency.ok", "1 when the last consistency check found nothing for this check, else 0", ["check"]],
	["ops.consistency.findings", "Offenders the last consistency check listed, per check", ["check"]],
	["ops.outbox.backlog", "Outbox events waiting to be published, per producer service", ["producer"]],
	["ops.outbox.oldest_age_seconds", "Age of the oldest unpublished outbox event (relay lag), per producer", ["producer"]],
	["ops.dead_letters.open", "Open dead letters: parked sagas (saga) and failed event deliveries (events)", ["kind"]],
	["ops.queue.waiting", "Users waiting in the waiting room, per concert", ["concertId"]],
	["ops.queue.active", "Users admitted and active, per concert", ["concertId"]],
	["ops.queue.admitted_per_minute", "Admissions in the last minute, per concert", ["concertId"]],
	["ops.queue.admitted_total", "Admissions since the queue started, per concert", ["concertId"]],
	["ops.sagas.stuck", "Sagas RUNNING or COMPENSATING past the stuck bound", []],
	["events.consumer.pending", "Durable events not yet delivered to a consumer group (JetStream consumer lag)", ["group"]],
	["events.consumer.ack_pending", "Durable events delivered to a consumer group and not yet acknowledged", ["group"]],
	["events.dlq.messages", "Event dead letters kept in the dead-letter stream", []]
];

/** A call to another context; typed by its answer. */
const call = <T>(ctx: Context, action: string, params: object = {}): Promise<T> => ctx.call<T, object>(action, params);

/** A check's `ok` and `status` from its details. */
const statusOf = (details: Record<string, unknown>) => {
	const status = checkStatus(details);
	return { ok: status === "ok", status, details };
};

const parseCarry = (raw: string | null): string[] => {
	try {
		const ids: unknown = JSON.parse(raw ?? "[]");
		return Array.isArray(ids) ? ids.filter((id): id is string => typeof id === "string") : [];
	} catch {
		return [];
	}
};

const errorOf = (err: unknown) => {
	const e = err as { type?: string; message?: string };
	return { error: e?.type ?? "ERROR", message: e?.message ?? String(err) };
};

const OpsService: ServiceSchema<Settings, Methods, PlatformVars & Vars> = {
	name: "ops",

	mixins: [PlatformMixin],

	settings: {
		intervalMs: null,
		settleMs: 750,
		stuckSagaMs: 5 * 60_000,
		outboxStaleMs: 60_000,
		metricsIntervalMs: 15_000
	},

	actions: {
		/** GET /api/admin/consistency (and the REPL's `consistency`): `{ok, checkedAt, checks: [{name, ok, details}]}`. */
		consistency: {
			visibility: "published",
			auth: "admin",
			params: {
				/** true (default): every row; false: only what changed since the last scheduled run (as it would read it). */
				full: { type: "boolean", convert: true, optional: true, default: true },
				$$strict: "remove"
			},
			async handler(this: This, ctx: Context<{ full?: boolean }>) {
				return this.runCheck(ctx, await this.onDemandScope(ctx.params.full !== false));
			}
		},

		/**
		 * POST /api/admin/consistency/repair `{check: "ranking"}`: the one drift with a mechanical fix, the ranking,
		 * is rebuilt from the reservations' truth; answers the rebuild and the ranking check run again.
		 */
		repair: {
			visibility: "published",
			auth: "admin",
			params: { check: { type: "enum", values: [...REPAIRS] }, $$strict: "remove" },
			async handler(this: This, ctx: Context<{ check: (typeof REPAIRS)[number] }>) {
				if (ctx.params.check === "holds") {
					const report = await this.runCheck(ctx, { full: true, since: null, carry: [] });
					const released = await this.releaseOrphanHolds(ctx, report);
					return { check: "holds", repaired: { released }, ok: true, details: {} };
				}
				const rebuilt = await call<{ concerts: number; seats: number }>(ctx, "ranking.rebuild", {});
				const after = await call<{ ok: boolean; mismatches: unknown[] }>(ctx, "ranking.verify", {});
				return { check: ctx.params.check, repaired: rebuilt, ok: after.ok, details: { mismatches: after.mismatches } };
			}
		},

		/** GET /api/admin/figures: the operator console's live figures, read from their owners (services/ops/figures.ts). */
		figures: {
			visibility: "published",
			auth: "admin",
			params: { windowSec: { type: "number", integer: true, min: 10, max: 3600, convert: true, optional: true }, $$strict: "remove" },
			async handler(this: This, ctx: Context<{ windowSec?: number }>) {
				return liveFigures(ctx, this.producers(), ctx.params.windowSec ?? 60, async () => (await this.eventBus().stats()).deadLetters);
			}
		},

		/**
		 * POST /api/admin/retention/run: the retention job now (it also runs every RETENTION_INTERVAL_SEC on one node):
		 * every service's `purge`, then the waiting-room keys of concerts whose last show is past their age.
		 */
		retention: {
			visibility: "published",
			auth: "admin",
			params: { $$strict: "remove" },
			async handler(this: This) {
				// Never two runs at once, on this node or another (the run lease): a second one answers 409. Its calls
				// get a context of their own: a purge may take longer than the request that started it.
				if (this.purging || !(await this.store.acquireLease(RETENTION_LEASE, this.leaseOwner, RETENTION_LEASE_MS))) {
					throw new MoleculerClientError("A retention run is already going; try again when it has finished", 409, "RETENTION_RUNNING");
				}
				const run = this.runRetention(this.broker.ContextFactory.create(this.broker));
				this.purging = run.then(
					() => undefined,
					() => undefined
				);
				try {
					return await run;
				} finally {
					this.purging = undefined;
					await this.store.releaseLease(RETENTION_LEASE, this.leaseOwner).catch(() => false);
				}
			}
		},

		/** Refreshes the business gauges now (the timer does it every `metricsIntervalMs`); answers what it set. */
		collectMetrics: {
			visibility: "public",
			params: {},
			async handler(this: This, ctx: Context) {
				return this.collectMetrics(ctx);
			}
		}
	},

	methods: {
		async runCheck(this: This, ctx: Context, scope: Scope): Promise<ConsistencyReport> {
			const producers = this.producers();
			const [first, wallet, sagas, outbox] = await Promise.all([
				this.gather(ctx, scope),
				call<{ ok: boolean; checks: { name: string; ok: boolean; details: { offenders: number; ids: string[] } }[] }>(ctx, "payment.verify", {}).catch(
					errorOf
				),
				this.sagaChecks(ctx).catch(errorOf),
				Promise.all(
					producers.map(p =>
						call<OutboxStats>(ctx, `${p}.outboxStats`, { staleMs: this.settings.outboxStaleMs }).catch(err => ({ producer: p, ...errorOf(err) }))
					)
				)
			]);

			let cross = this.crossChecks(first);
			if (CROSS.some(n => !noFindings(cross[n]))) {
				await new Promise(r => setTimeout(r, this.settings.settleMs));
				const second = this.crossChecks(await this.gather(ctx, scope));
				cross = {
					seats: confirmedFindings(cross.seats, second.seats),
					money: confirmedFindings(cross.money, second.money),
					holds: confirmedFindings(cross.holds, second.holds),
					ranking: confirmedFindings(cross.ranking, second.ranking)
				};
			}

			// payment.verify: the wallet rules inside the payment context (balance = ledger, no negative, chain).
			const walletFailures = "checks" in wallet ? wallet.checks.filter(c => !c.ok).map(c => ({ rule: c.name, offenders: c.details.ids })) : [];
			// A wallet check that could not run makes money unavailable (its error), not a finding.
			const money: Record<string, unknown> =
				"checks" in wallet ? { ...cross.money, wallets: walletFailures } : failed(cross.money) ? cross.money : { ...wallet, ...cross.money };

			const outboxDetails = {
				// An object, not a list: the lists in details are findings, this is the backlog of every producer.
				producers: Object.fromEntries(
					outbox.map(o => [o.producer, "error" in o ? o : { pending: o.pending, oldestAgeMs: o.oldestAgeMs, staleEventIds: o.stale.map(s => s.id) }])
				),
				stale: outbox.flatMap(o =>
					"stale" in o
						? o.stale.map(s => ({ producer: o.producer, eventId: s.id, eventType: s.eventType, aggregateId: s.aggregateId, ageMs: s.ageMs }))
						: []
				),
				unavailable: outbox.filter(o => "error" in o).map(o => o.producer)
			};

			// No producer in the registry at all: nothing could be read, which is not "ok" either.
			const noProducer = producers.length === 0 ? { error: "NO_PRODUCERS", message: "no service with an outbox (<name>.outboxStats) is available" } : {};
			const outboxStatus =
				outboxDetails.stale.length > 0 ? "drift" : outboxDetails.unavailable.length > 0 || producers.length === 0 ? "unavailable" : "ok";
			const checks: CheckResult[] = [
				{ name: "seats", ...statusOf(cross.seats) },
				{ name: "money", ...statusOf(money) },
				{ name: "holds", ...statusOf(cross.holds) },
				{ name: "sagas", ...statusOf(sagas as Record<string, unknown>) },
				{ name: "outbox", ok: outboxStatus === "ok", status: outboxStatus, details: { ...noProducer, ...outboxDetails } },
				{ name: "ranking", ...statusOf(cross.ranking) }
			];
			const report: ConsistencyReport = {
				ok: checks.every(c => c.ok),
				status: overallStatus(checks.map(c => c.status ?? "drift")),
				checkedAt: new Date().toISOString(),
				scope: { full: scope.full, since: scope.since?.toISOString() ?? null },
				checks
			};
			for (const c of checks) {
				// An unavailable check is neither ok nor drift: its gauge keeps the last value it could measure.
				if (c.status === "unavailable") continue;
				this.gauge("ops.consistency.ok", { check: c.name }, c.ok ? 1 : 0);
				const n = Object.values(c.details).reduce<number>((sum, v) => sum + (Array.isArray(v) ? v.length : 0), 0);
				this.gauge("ops.consistency.findings", { check: c.name }, n);
			}
			return report;
		},

		/** The scope of an on-demand run: full, or incremental from the scheduled runs' watermark (full without one). */
		async onDemandScope(this: This, full: boolean): Promise<Scope> {
			if (full) return { full: true, since: null, carry: [] };
			const [mark, carry] = await Promise.all([this.store.get(WATERMARK), this.store.get(CARRY)]);
			if (mark === null) return { full: true, since: null, carry: [] };
			return { full: false, since: new Date(Date.parse(mark) - this.config.consistency.marginSec * 1000), carry: parseCarry(carry) };
		},

		/**
		 * One read of every cross-service input, in parallel, page by page; a service that does not answer (or fails
		 * half way through its pages) leaves its error, and the checks that need it say unavailable.
		 */
		async gather(this: This, ctx: Context, scope: Scope): Promise<Snapshot> {
			const soft = <T>(p: Promise<T>) => p.catch(errorOf);
			const [rows, ranking, concertVerify] = await Promise.all([
				scope.full || scope.since === null
					? (async () => {
							const [reservations, sales, holds, payments] = await Promise.all([
								soft(this.walk<AuditReservation>(ctx, "reservation.audit", {})),
								soft(this.walk<AuditSale>(ctx, "concert.audit", { part: "sales" })),
								soft(this.walk<AuditHold>(ctx, "concert.audit", { part: "holds" })),
								soft(this.walk<AuditPayment>(ctx, "payment.audit", {}))
							]);
							const concert = failed(sales) ? sales : failed(holds) ? holds : { sales, holds };
							return { reservations, concert, payments };
						})()
					: this.gatherChanged(ctx, scope.since, scope.carry),
				soft(call<{ ok: boolean; mismatches: unknown[] }>(ctx, "ranking.verify", {})),
				soft(call<{ checks: CheckResult[] }>(ctx, "concert.verify", {}))
			]);
			return { ...rows, ranking, concertVerify };
		},

		/**
		 * The incremental read: reservations, payments and sales changed since `since`, every live hold, and the
		 * `carry` reservations; then, until nothing new turns up, every reservation any of them names, and for every
		 * reservation its payments, its sales and the sales on its seats (which may name another reservation). So
		 * each rule sees, for every row it judges, every row that rule compares it with.
		 */
		async gatherChanged(this: This, ctx: Context, since: Date, carry: string[]) {
			const errors: Partial<Record<"reservation" | "concert" | "payment", Failed>> = {};
			const guard = async <T>(source: keyof typeof errors, read: () => Promise<T[]>): Promise<T[]> => {
				if (errors[source]) return [];
				try {
					return await read();
				} catch (err) {
					errors[source] ??= errorOf(err);
					return [];
				}
			};
			const [changed, changedPayments, changedSales, holds] = await Promise.all([
				guard("reservation", () => this.walk<AuditReservation>(ctx, "reservation.audit", { since })),
				guard("payment", () => this.walk<AuditPayment>(ctx, "payment.audit", { since })),
				guard("concert", () => this.walk<AuditSale>(ctx, "concert.audit", { part: "sales", since })),
				guard("concert", () => this.walk<AuditHold>(ctx, "concert.audit", { part: "holds" }))
			]);
			const reservations = new Map(changed.map(r => [r.id, r]));
			const payments = new Map(changedPayments.map(p => [p.id, p]));
			const sales = new Map(changedSales.map(x => [`${x.scheduleId}\u0000${x.seatId}`, x]));
			const wanted = new Set<string>([...carry, ...reservations.keys(), ...holds.map(h => h.owner)]);
			for (const p of payments.values()) if (p.reservationId) wanted.add(p.reservationId);
			for (const x of sales.values()) wanted.add(x.reservationId);
			const looked = new Set<string>(reservations.keys());
			const expanded = new Set<string>();
			for (;;) {
				const load = [...wanted].filter(id => !looked.has(id));
				for (const id of load) looked.add(id);
				for (const r of await guard("reservation", () => this.walkChunks<AuditReservation>(ctx, "reservation.audit", "ids", load))) {
					reservations.set(r.id, r);
				}
				const expand = [...wanted].filter(id => !expanded.has(id));
				if (expand.length === 0) break;
				for (const id of expand) expanded.add(id);
				const [ps, owned] = await Promise.all([
					guard("payment", () => this.walkChunks<AuditPayment>(ctx, "payment.audit", "reservationIds", expand)),
					guard("concert", () => this.walkChunks<AuditSale>(ctx, "concert.audit", "reservationIds", expand, { part: "sales" }))
				]);
				for (const p of ps) {
					payments.set(p.id, p);
					if (p.reservationId) wanted.add(p.reservationId);
				}
				for (const x of owned) sales.set(`${x.scheduleId}\u0000${x.seatId}`, x);
				// The seats whose sale is not known yet (normally those of reservations that are not CONFIRMED): who has them?
				const seats = expand.flatMap(id => {
					const r = reservations.get(id);
					return r ? r.seatIds.map(seatId => ({ scheduleId: r.scheduleId, seatId })).filter(x => !sales.has(`${x.scheduleId}\u0000${x.seatId}`)) : [];
				});
				for (const x of await guard("concert", () => this.walkChunks<AuditSale>(ctx, "concert.audit", "seats", seats, { part: "sales" }))) {
					sales.set(`${x.scheduleId}\u0000${x.seatId}`, x);
				}
				for (const x of sales.values()) wanted.add(x.reservationId);
			}
			return {
				reservations: errors.reservation ?? [...reservations.values()],
				concert: errors.concert ?? { sales: [...sales.values()], holds },
				payments: errors.payment ?? [...payments.values()]
			};
		},

		/** Every row of an audit, page after page (each answer at most AUDIT_PAGE_SIZE rows). */
		async walk<T>(this: This, ctx: Context, action: string, params: object): Promise<T[]> {
			const rows: T[] = [];
			let after: string[] | null = null;
			for (;;) {
				const page: AuditPage<T> = await call<AuditPage<T>>(ctx, action, {
					...params,
					...(after ? { after } : {}),
					limit: this.config.consistency.auditPageSize
				});
				rows.push(...page.rows);
				if (page.next === null) return rows;
				if (after !== null && JSON.stringify(page.next) === JSON.stringify(after)) throw new Error(`${action} did not move its cursor`);
				after = page.next;
			}
		},

		/** `walk` for a list too long for one request (ids, seats): one page of the list per request. */
		async walkChunks<T>(this: This, ctx: Context, action: string, key: string, list: unknown[], params: object = {}): Promise<T[]> {
			const size = this.config.consistency.auditPageSize;
			const chunks: unknown[][] = [];
			for (let i = 0; i < list.length; i += size) chunks.push(list.slice(i, i + size));
			const rows: T[] = [];
			// A few requests at a time: quicker than one by one, without flooding the owning service.
			for (let i = 0; i < chunks.length; i += 4) {
				for (const part of await Promise.all(chunks.slice(i, i + 4).map(chunk => this.walk<T>(ctx, action, { ...params, [key]: chunk }))))
					rows.push(...part);
			}
			return rows;
		},

		/**
		 * Sagas RUNNING or COMPENSATING past the bound, open dead letters, and reservations a saga left PAYING or
		 * CANCELLING (its saga FAILED, or none of theirs running for longer than the bound): those are always read
		 * whole, an incremental run included, since a stuck row is one that stopped changing.
		 */
		async sagaChecks(this: This, ctx: Context) {
			const rows: SagaRow[] = [];
			for (const status of ["RUNNING", "COMPENSATING"]) {
				for (let page = 1; page <= 20; page++) {
					const res = await call<{ rows: SagaRow[]; total: number }>(ctx, "saga.list", { status, page, pageSize: 100 });
					rows.push(...res.rows);
					if (page * 100 >= res.total) break;
				}
			}
			const dead = await call<{ rows: { id: string; sagaId: string }[]; total: number }>(ctx, "saga.deadLetters", { status: "OPEN", pageSize: 100 });
			const inFlight = await this.walk<AuditReservation>(ctx, "reservation.audit", { statuses: ["PAYING", "CANCELLING"] });
			const sagaStatus = new Map<string, string | null>(rows.map(s => [s.id, s.status]));
			const unknown = [...new Set(inFlight.map(r => r.sagaId).filter((id): id is string => typeof id === "string" && !sagaStatus.has(id)))];
			for (let i = 0; i < unknown.length; i += 8) {
				await Promise.all(
					unknown.slice(i, i + 8).map(async id => {
						try {
							sagaStatus.set(id, (await call<{ status: string }>(ctx, "saga.get", { id })).status);
						} catch (err) {
							if ((err as { type?: string }).type !== "NOT_FOUND") throw err;
							sagaStatus.set(id, null);
						}
					})
				);
			}
			const now = Date.now();
			return {
				stuck: stuckSagas(rows, now, this.settings.stuckSagaMs),
				openDeadLetters: dead.rows.map(d => ({ id: d.id, sagaId: d.sagaId })),
				stuckReservations: stuckReservations(inFlight, sagaStatus, now, this.settings.stuckSagaMs)
			};
		},

		crossChecks(this: This, s: Snapshot) {
			const { reservations: rs, concert, payments, ranking, concertVerify } = s;
			const concertCheck = (name: string) => (failed(concertVerify) ? undefined : concertVerify.checks.find(c => c.name === name));
			const counters = (concertCheck("seats")?.details as { counters?: unknown[] } | undefined)?.counters ?? [];
			const foreign = (concertCheck("holds")?.details as { heldButSoldToOthers?: unknown[] } | undefined)?.heldButSoldToOthers ?? [];
			return {
				seats: failed(rs) ? rs : failed(concert) ? concert : { ...seatFindings(concert.sales, rs), soldCounterDrift: counters },
				money: failed(rs) ? rs : failed(payments) ? payments : moneyFindings(rs, payments),
				holds: failed(rs) ? rs : failed(concert) ? concert : { ...holdFindings(concert.holds, rs), heldButSoldToOthers: foreign },
				ranking: failed(ranking) ? ranking : { mismatches: ranking.mismatches }
			} as Record<(typeof CROSS)[number], Record<string, unknown>>;
		},

		/** Services that run an outbox relay (they answer `<name>.outboxStats`), from the registry. */
		producers(this: This) {
			const list = this.broker.registry.getActionList({ onlyAvailable: true, skipInternal: true }) as { name: string }[];
			return [
				...new Set(
					list
						.map(a => a.name)
						.filter(n => n.endsWith(".outboxStats"))
						.map(n => n.slice(0, -".outboxStats".length))
				)
			].sort();
		},

		/**
		 * The scheduled run: one node per interval (lease), incremental from the watermark (full the first time and
		 * every CONSISTENCY_FULL_EVERY_SEC), findings logged and on the gauges. Answers the report (null: another
		 * node holds the lease).
		 */
		async scheduledCheck(this: This) {
			const intervalMs = this.settings.intervalMs ?? this.config.consistency.intervalSec * 1000;
			if (!(await this.store.acquireLease("ops:consistency", this.leaseOwner, Math.max(1000, intervalMs - 500)))) return null;
			const startedAt = new Date();
			const [mark, lastFull, carry] = await Promise.all([this.store.get(WATERMARK), this.store.get(LAST_FULL), this.store.get(CARRY)]);
			const fullEveryMs = this.config.consistency.fullEverySec * 1000;
			const full = mark === null || (fullEveryMs > 0 && (lastFull === null || startedAt.getTime() - Date.parse(lastFull) >= fullEveryMs));
			const scope: Scope = full
				? { full: true, since: null, carry: [] }
				: { full: false, since: new Date(Date.parse(mark) - this.config.consistency.marginSec * 1000), carry: parseCarry(carry) };
			const report = await this.runCheck(this.broker.ContextFactory.create(this.broker), scope);
			const incremental = report.checks.filter(c => INCREMENTAL.includes(c.name));
			if (incremental.every(c => c.status !== "unavailable")) {
				// Everything up to startedAt (less the margin) has been read: the next run starts there.
				const ids = [...new Set(incremental.flatMap(c => findingReservationIds(c.details)))].slice(0, CARRY_MAX);
				await this.store.set(CARRY, JSON.stringify(ids));
				if (full) await this.store.set(LAST_FULL, startedAt.toISOString());
				await this.store.set(WATERMARK, startedAt.toISOString());
			}
			// Orphan holds (seen twice, settleMs apart) have a mechanical fix that needs no operator: release them,
			// fenced by their owner, so a seat is not blocked until the hold's expiry. They come from a hold whose
			// give-up could not reach the store, or from a Redis restarted from an AOF without its last second.
			await this.releaseOrphanHolds(this.broker.ContextFactory.create(this.broker), report).catch(err =>
				this.logger.warn("releasing orphan holds failed:", (err as Error).message)
			);
			const bad = report.checks.filter(c => !c.ok);
			const what = `consistency check (${full ? "full" : `since ${scope.since?.toISOString()}`})`;
			if (bad.length > 0) this.logger.warn(`${what}: ${bad.map(c => `${c.name} ${c.status} ${JSON.stringify(c.details)}`).join("; ")}`);
			else this.logger.info(`${what}: ok`);
			return report;
		},

		/** Releases the orphan holds a report lists (each by its owner: a seat held by anyone else is untouched). */
		async releaseOrphanHolds(this: This, ctx: Context, report: ConsistencyReport) {
			const holds = report.checks.find(c => c.name === "holds");
			const orphans = (
				(holds?.details as { orphanHolds?: { scheduleId: string; seatId: string; owner: string }[] } | undefined)?.orphanHolds ?? []
			).slice(0, 1000);
			const groups = new Map<string, { scheduleId: string; owner: string; seatIds: string[] }>();
			for (const o of orphans) {
				const k = `${o.scheduleId} ${o.owner}`;
				const g = groups.get(k) ?? { scheduleId: o.scheduleId, owner: o.owner, seatIds: [] };
				g.seatIds.push(o.seatId);
				groups.set(k, g);
			}
			let released = 0;
			for (const g of groups.values()) {
				// A hold is 1..4 seats: release in slices of four.
				for (let i = 0; i < g.seatIds.length; i += 4) {
					const r = await call<{ released: number }>(ctx, "concert.release", { ...g, seatIds: g.seatIds.slice(i, i + 4) });
					released += Number(r?.released ?? 0);
				}
			}
			if (released > 0) this.logger.warn(`consistency check: released ${released} orphan hold(s) of ${groups.size} owner(s)`);
			return released;
		},

		/** Business gauges that live in other contexts' stores: outbox backlog and lag, dead letters, waiting rooms. */
		async collectMetrics(this: This, ctx: Context) {
			const set: Record<string, number> = {};
			const gauge = (name: string, labels: Record<string, string>, value: number) => {
				this.gauge(name, labels, value);
				set[`${name}${Object.keys(labels).length ? JSON.stringify(labels) : ""}`] = value;
			};
			const soft = <T>(p: Promise<T>) => p.catch(() => undefined);
			await Promise.all([
				...this.producers().map(async p => {
					const o = await soft(call<{ pending: number; oldestAgeMs: number }>(ctx, `${p}.outboxStats`, { staleMs: this.settings.outboxStaleMs }));
					if (!o) return;
					gauge("ops.outbox.backlog", { producer: p }, o.pending);
					gauge("ops.outbox.oldest_age_seconds", { producer: p }, o.oldestAgeMs / 1000);
				}),
				(async () => {
					const d = await soft(call<{ total: number }>(ctx, "saga.deadLetters", { status: "OPEN", pageSize: 1 }));
					if (d) gauge("ops.dead_letters.open", { kind: "saga" }, d.total);
				})(),
				(async () => {
					const b = await soft(this.eventBus().stats());
					if (!b) return;
					for (const c of b.consumers) {
						gauge("events.consumer.pending", { group: c.group }, c.pending);
						gauge("events.consumer.ack_pending", { group: c.group }, c.ackPending);
					}
					gauge("events.dlq.messages", {}, b.deadLetters);
					// The same count as the operators' dead letters of kind events: the stream's own size, one request.
					gauge("ops.dead_letters.open", { kind: "events" }, b.deadLetters);
				})(),
				(async () => {
					const stuck: SagaRow[] = [];
					for (const status of ["RUNNING", "COMPENSATING"]) {
						const r = await soft(call<{ rows: SagaRow[] }>(ctx, "saga.list", { status, pageSize: 100 }));
						if (r) stuck.push(...stuckSagas(r.rows, Date.now(), this.settings.stuckSagaMs).map(s => ({ ...s })));
					}
					gauge("ops.sagas.stuck", {}, stuck.length);
				})(),
				(async () => {
					for (let page = 1; page <= 10; page++) {
						const list = await soft(call<{ rows: { id: string }[]; total: number }>(ctx, "concert.list", { page, pageSize: 100 }));
						if (!list) return;
						for (const c of list.rows) {
							const q = await soft(
								call<{ waiting: number; active: number; admittedPerMinute: number; admittedTotal: number }>(ctx, "queue.stats", {
									concertId: c.id
								})
							);
							if (!q) continue;
							gauge("ops.queue.waiting", { concertId: c.id }, q.waiting);
							gauge("ops.queue.active", { concertId: c.id }, q.active);
							gauge("ops.queue.admitted_per_minute", { concertId: c.id }, q.admittedPerMinute);
							gauge("ops.queue.admitted_total", { concertId: c.id }, q.admittedTotal);
						}
						if (page * 100 >= list.total) return;
					}
				})()
			]);
			return set;
		},

		/** Retention (mixins/retention.mixin.ts): each service purges its own rows, one service after another. */
		async runRetention(this: This, ctx: Context) {
			const started = Date.now();
			const report: RetentionReport = { deleted: {}, failed: {}, concertsForgotten: 0, tookMs: 0 };
			const list = this.broker.registry.getActionList({ onlyAvailable: true, skipInternal: true }) as { name: string }[];
			const services = [...new Set(list.map(a => a.name).filter(n => n.endsWith(".purge")))].map(n => n.slice(0, -".purge".length)).sort();
			for (const svc of services) {
				try {
					report.deleted[svc] = await ctx.call<Record<string, number>, object>(`${svc}.purge`, {}, { timeout: 120_000, retries: 0 });
					for (const [table, n] of Object.entries(report.deleted[svc])) {
						if (n > 0 && this.broker.isMetricsEnabled()) this.broker.metrics.increment("ops.retention.deleted", { table }, n);
					}
				} catch (err) {
					report.failed[svc] = (err as Error).message;
				}
			}
			const days = this.config.retention.finishedConcertDays;
			if (days > 0) {
				try {
					// Only the concerts that finished since the previous run: each is forgotten once.
					const since = Number((await this.store.get(RETENTION_CONCERTS_UNTIL)) ?? 0);
					const before = Date.now() - days * 86_400_000;
					let after: string | undefined;
					do {
						const page: { ids: string[]; next: string | null } = await call(ctx, "concert.finished", { since, before, after });
						for (const concertId of page.ids) {
							await call(ctx, "queue.forget", { concertId });
							report.concertsForgotten++;
						}
						after = page.next ?? undefined;
					} while (after);
					await this.store.set(RETENTION_CONCERTS_UNTIL, String(before));
				} catch (err) {
					report.failed.queue = (err as Error).message;
				}
			}
			report.tookMs = Date.now() - started;
			const total = Object.values(report.deleted).reduce((n, r) => n + Object.values(r).reduce((a, b) => a + b, 0), 0);
			const failed = Object.keys(report.failed);
			this.logger.info(
				`retention: deleted ${total} row(s) ${JSON.stringify(report.deleted)}, forgot ${report.concertsForgotten} finished concert(s)` +
					(failed.length ? `; failed: ${failed.join(", ")}` : "")
			);
			return report;
		},

		/** The node's event bus, taken the first time the gauges or the figures need it (released on stop). */
		eventBus(this: This) {
			this.bus ??= acquireEventBus(this.broker);
			return this.bus;
		},

		gauge(this: This, name: string, labels: Record<string, string>, value: number) {
			if (this.broker.isMetricsEnabled()) this.broker.metrics.set(name, value, labels);
		}
	},

	created() {
		this.timers = [];
		this.leaseOwner = `${this.broker.nodeID}:ops`;
	},

	started() {
		if (this.broker.isMetricsEnabled()) {
			for (const [name, description, labelNames] of GAUGES) {
				if (!this.broker.metrics.hasMetric(name)) this.broker.metrics.register({ type: "gauge", name, description, labelNames });
			}
			if (!this.broker.metrics.hasMetric("ops.retention.deleted"))
				this.broker.metrics.register({
					type: "counter",
					name: "ops.retention.deleted",
					description: "Rows deleted by the retention job, per table",
					labelNames: ["table"]
				});
			const t = setInterval(() => {
				void this.collectMetrics(this.broker.ContextFactory.create(this.broker)).catch(err =>
					this.logger.warn("metrics collection failed:", (err as Error).message)
				);
			}, this.settings.metricsIntervalMs);
			t.unref();
			this.timers.push(t);
		}
		// Retention: one node per interval (the lease outlives the run's spacing), never two runs at once here.
		const retentionMs = this.config.retention.intervalSec * 1000;
		if (retentionMs > 0) {
			const t = setInterval(() => {
				if (this.purging || this.broker.stopping) return;
				// One node per interval (the spacing lease, left to expire), and never two runs at once (the run lease).
				this.purging = (async () => {
					if (!(await this.store.acquireLease(RETENTION_SPACING, this.leaseOwner, Math.max(1000, retentionMs - 500)))) return;
					if (!(await this.store.acquireLease(RETENTION_LEASE, this.leaseOwner, RETENTION_LEASE_MS))) return;
					try {
						await this.runRetention(this.broker.ContextFactory.create(this.broker));
					} finally {
						await this.store.releaseLease(RETENTION_LEASE, this.leaseOwner).catch(() => false);
					}
				})()
					.catch(err => this.logger.warn("retention run failed:", (err as Error).message))
					.finally(() => (this.purging = undefined));
			}, retentionMs);
			t.unref();
			this.timers.push(t);
		}
		const intervalMs = this.settings.intervalMs ?? this.config.consistency.intervalSec * 1000;
		if (intervalMs > 0) {
			const t = setInterval(() => {
				if (this.running || this.broker.stopping) return;
				this.running = this.scheduledCheck()
					.then(() => undefined)
					.catch(err => this.logger.warn("scheduled consistency check failed:", (err as Error).message))
					.finally(() => (this.running = undefined));
			}, intervalMs);
			t.unref();
			this.timers.push(t);
		}
	},

	async stopped() {
		for (const t of this.timers) clearInterval(t);
		this.timers = [];
		await this.running;
		await this.purging;
		if (this.bus) {
			this.bus = undefined;
			await releaseEventBus(this.broker);
		}
	}
};

export default OpsService;
