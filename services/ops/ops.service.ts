/**
 * Ops context: the consistency check of seed 000 section 4.3 and the business gauges of the Prometheus endpoint.
 *
 * The check reads only through the owning services' actions (reservation.audit, concert.audit, concert.verify,
 * payment.audit, payment.verify, saga.list, saga.deadLetters, <producer>.outboxStats, ranking.verify), never
 * another context's tables. It runs on demand (GET /api/admin/consistency, the REPL's `consistency`) and every
 * `intervalMs` on one node at a time (a lease in the coordination store). Reads of different services are not
 * one snapshot: the cross-service rules run twice, `settleMs` apart, and only what both runs saw is reported, so a
 * saga between two steps is not mistaken for drift.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import {
	confirmedFindings,
	holdFindings,
	moneyFindings,
	noFindings,
	seatFindings,
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
	intervalMs: number;
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
	leaseOwner: string;
}

interface Methods {
	runCheck(ctx: Context): Promise<ConsistencyReport>;
	gather(ctx: Context): Promise<Snapshot>;
	crossChecks(s: Snapshot): Record<(typeof CROSS)[number], Record<string, unknown>>;
	producers(): string[];
	scheduledCheck(): Promise<void>;
	collectMetrics(ctx: Context): Promise<Record<string, number>>;
	gauge(name: string, labels: Record<string, string>, value: number): void;
}

type This = Service<Settings> & PlatformVars & Vars & Methods;

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

/** The cross-service checks, each named as in API.md's consistency answer. */
const CROSS = ["seats", "money", "holds", "ranking"] as const;

const REPAIRS = ["ranking"] as const;

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
	["ops.sagas.stuck", "Sagas RUNNING or COMPENSATING past the stuck bound", []]
];

/** A call to another context; typed by its answer. */
const call = <T>(ctx: Context, action: string, params: object = {}): Promise<T> => ctx.call<T, object>(action, params);

const errorOf = (err: unknown) => {
	const e = err as { type?: string; message?: string };
	return { error: e?.type ?? "ERROR", message: e?.message ?? String(err) };
};

const OpsService: ServiceSchema<Settings, Methods, PlatformVars & Vars> = {
	name: "ops",

	mixins: [PlatformMixin],

	settings: {
		intervalMs: 5 * 60_000,
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
			params: { $$strict: "remove" },
			async handler(this: This, ctx: Context) {
				return this.runCheck(ctx);
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
				const rebuilt = await call<{ concerts: number; seats: number }>(ctx, "ranking.rebuild", {});
				const after = await call<{ ok: boolean; mismatches: unknown[] }>(ctx, "ranking.verify", {});
				return { check: ctx.params.check, repaired: rebuilt, ok: after.ok, details: { mismatches: after.mismatches } };
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
		async runCheck(this: This, ctx: Context): Promise<ConsistencyReport> {
			const producers = this.producers();
			const [first, wallet, sagas, outbox] = await Promise.all([
				this.gather(ctx),
				call<{ ok: boolean; checks: { name: string; ok: boolean; details: { offenders: number; ids: string[] } }[] }>(ctx, "payment.verify", {}).catch(errorOf),
				(async () => {
					const rows: SagaRow[] = [];
					for (const status of ["RUNNING", "COMPENSATING"]) {
						for (let page = 1; page <= 20; page++) {
							const res = await call<{ rows: SagaRow[]; total: number }>(ctx, "saga.list", { status, page, pageSize: 100 });
							rows.push(...res.rows);
							if (page * 100 >= res.total) break;
						}
					}
					const dead = await call<{ rows: { id: string; sagaId: string }[]; total: number }>(ctx, "saga.deadLetters", { status: "OPEN", pageSize: 100 });
					return {
						stuck: stuckSagas(rows, Date.now(), this.settings.stuckSagaMs),
						openDeadLetters: dead.rows.map(d => ({ id: d.id, sagaId: d.sagaId }))
					};
				})().catch(errorOf),
				Promise.all(
					producers.map(p =>
						call<OutboxStats>(ctx, `${p}.outboxStats`, { staleMs: this.settings.outboxStaleMs }).catch(err => ({ producer: p, ...errorOf(err) }))
					)
				)
			]);

			let cross = this.crossChecks(first);
			if (CROSS.some(n => !noFindings(cross[n]))) {
				await new Promise(r => setTimeout(r, this.settings.settleMs));
				const second = this.crossChecks(await this.gather(ctx));
				cross = { seats: confirmedFindings(cross.seats, second.seats), money: confirmedFindings(cross.money, second.money), holds: confirmedFindings(cross.holds, second.holds), ranking: confirmedFindings(cross.ranking, second.ranking) };
			}

			// payment.verify: the wallet rules inside the payment context (balance = ledger, no negative, chain).
			const walletFailures =
				"checks" in wallet ? wallet.checks.filter(c => !c.ok).map(c => ({ rule: c.name, offenders: c.details.ids })) : [];
			const money: Record<string, unknown> = "checks" in wallet ? { ...cross.money, wallets: walletFailures } : { ...cross.money, wallets: [wallet] };

			const outboxDetails = {
				// An object, not a list: the lists in details are findings, this is the backlog of every producer.
				producers: Object.fromEntries(
					outbox.map(o => [o.producer, "error" in o ? o : { pending: o.pending, oldestAgeMs: o.oldestAgeMs, staleEventIds: o.stale.map(s => s.id) }])
				),
				stale: outbox.flatMap(o => ("stale" in o ? o.stale.map(s => ({ producer: o.producer, eventId: s.id, eventType: s.eventType, aggregateId: s.aggregateId, ageMs: s.ageMs })) : [])),
				unavailable: outbox.filter(o => "error" in o).map(o => o.producer)
			};

			const checks: CheckResult[] = [
				{ name: "seats", ok: noFindings(cross.seats), details: cross.seats },
				{ name: "money", ok: noFindings(money) && (wallet as { ok?: boolean }).ok === true, details: money },
				{ name: "holds", ok: noFindings(cross.holds), details: cross.holds },
				{ name: "sagas", ok: noFindings(sagas as Record<string, unknown>), details: sagas as Record<string, unknown> },
				{ name: "outbox", ok: outboxDetails.stale.length === 0 && outboxDetails.unavailable.length === 0, details: outboxDetails },
				{ name: "ranking", ok: noFindings(cross.ranking), details: cross.ranking }
			];
			const report: ConsistencyReport = { ok: checks.every(c => c.ok), checkedAt: new Date().toISOString(), checks };
			for (const c of checks) {
				this.gauge("ops.consistency.ok", { check: c.name }, c.ok ? 1 : 0);
				const n = Object.values(c.details).reduce<number>((sum, v) => sum + (Array.isArray(v) ? v.length : 0), 0);
				this.gauge("ops.consistency.findings", { check: c.name }, n);
			}
			return report;
		},

		/** One read of every cross-service input, in parallel; a service that does not answer leaves its error. */
		async gather(this: This, ctx: Context): Promise<Snapshot> {
			const soft = <T>(p: Promise<T>) => p.catch(errorOf);
			const [reservations, concert, payments, ranking, concertVerify] = await Promise.all([
				soft(call<AuditReservation[]>(ctx, "reservation.audit", { statuses: ["PENDING", "PAYING", "CONFIRMED", "CANCELLING", "CANCELLED", "EXPIRED"] })),
				soft(call<{ sales: AuditSale[]; holds: AuditHold[] }>(ctx, "concert.audit", {})),
				soft(call<AuditPayment[]>(ctx, "payment.audit", {})),
				soft(call<{ ok: boolean; mismatches: unknown[] }>(ctx, "ranking.verify", {})),
				soft(call<{ checks: CheckResult[] }>(ctx, "concert.verify", {}))
			]);
			return { reservations, concert, payments, ranking, concertVerify };
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
			return [...new Set(list.map(a => a.name).filter(n => n.endsWith(".outboxStats")).map(n => n.slice(0, -".outboxStats".length)))].sort();
		},

		/** The scheduled run: one node per interval (lease), findings logged and on the gauges. */
		async scheduledCheck(this: This) {
			if (!(await this.store.acquireLease("ops:consistency", this.leaseOwner, Math.max(1000, this.settings.intervalMs - 500)))) return;
			const report = await this.runCheck(this.broker.ContextFactory.create(this.broker));
			const bad = report.checks.filter(c => !c.ok);
			if (bad.length > 0) this.logger.warn(`consistency check: ${bad.map(c => `${c.name} ${JSON.stringify(c.details)}`).join("; ")}`);
			else this.logger.info("consistency check: ok");
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
					const d = await soft(call<unknown[] | { rows: unknown[] }>(ctx, "notification.eventDeadLetters", { limit: 500 }));
					if (d) gauge("ops.dead_letters.open", { kind: "events" }, Array.isArray(d) ? d.length : d.rows.length);
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
								call<{ waiting: number; active: number; admittedPerMinute: number; admittedTotal: number }>(ctx, "queue.stats", { concertId: c.id })
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
			const t = setInterval(() => {
				void this.collectMetrics(this.broker.ContextFactory.create(this.broker)).catch(err => this.logger.warn("metrics collection failed:", (err as Error).message));
			}, this.settings.metricsIntervalMs);
			t.unref();
			this.timers.push(t);
		}
		if (this.settings.intervalMs > 0) {
			const t = setInterval(() => {
				if (this.running || this.broker.stopping) return;
				this.running = this.scheduledCheck()
					.catch(err => this.logger.warn("scheduled consistency check failed:", (err as Error).message))
					.finally(() => (this.running = undefined));
			}, this.settings.intervalMs);
			t.unref();
			this.timers.push(t);
		}
	},

	async stopped() {
		for (const t of this.timers) clearInterval(t);
		this.timers = [];
		await this.running;
	}
};

export default OpsService;
