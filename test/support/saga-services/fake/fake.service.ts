/**
 * Test-only saga participant. `fake.do` and `fake.undo` apply an effect at most once per idempotency key (a row
 * in its own database, guarded by the primary key), so a test can assert "exactly once" whatever the engine
 * retries; they count every call per key and keep the order of calls per saga, so a test can assert what the
 * engine did. Misbehaviour comes from the `plan` in the params (see ../definitions.ts).
 */
import type { Context, ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import { DataTypes, QueryTypes, UniqueConstraintError } from "sequelize";
import type { Migration } from "../../../../lib/db";
import { DbMixin, type DbVars } from "../../../../mixins/db.mixin";
import { PlatformMixin, type PlatformVars } from "../../../../mixins/platform.mixin";
import type { FakePlan } from "../definitions";

interface Meta {
	sagaId?: string;
	idempotencyKey?: string;
}

export interface FakeStats {
	/** Calls per idempotency key (forward and compensate keys differ). */
	calls: Record<string, number>;
	/** Of those, the calls that have answered (or failed): a late call is counted once it is over. */
	finished: Record<string, number>;
	/** `do:<step>` / `undo:<step>` in call order, for one saga. */
	trace: string[];
	/** Applied effects (one row per key at most). */
	effects: { key: string; kind: string; step: string }[];
	/** saga.failed events seen for this saga. */
	alerts: unknown[];
}

interface Vars {
	calls: Map<string, number>;
	finished: Map<string, number>;
	traces: Map<string, string[]>;
	gates: Map<string, () => void>;
	alerts: { sagaId: string }[];
	healed: Set<string>;
}

interface Methods {
	apply(ctx: Context<{ step: string; plan?: FakePlan }, Meta>, kind: "do" | "undo"): Promise<unknown>;
	finish<T>(ctx: Context<unknown, Meta>, call: Promise<T>): Promise<T>;
}

const createEffects: Migration = {
	name: "001_fake_effects",
	async up(qi, T) {
		await qi.createTable("fake_effects", {
			key: { type: T.STRING(191), primaryKey: true },
			kind: { type: T.STRING(8), allowNull: false },
			saga_id: { type: T.STRING(36), allowNull: false },
			step: { type: T.STRING(64), allowNull: false },
			created_at: { type: T.BIGINT, allowNull: false }
		});
	}
};

const stepParams = { step: { type: "string" }, plan: { type: "object", optional: true } } as const;
// The fake fails on purpose, many times per test file: the broker-wide circuit breaker must not open on it and
// turn later tests' failures into "service not available".
const noBreaker = { enabled: false };

const FakeService: ServiceSchema<Record<string, never>, Methods, PlatformVars & DbVars & Vars> = {
	name: "fake",
	mixins: [
		PlatformMixin,
		DbMixin({
			database: "sagafake",
			migrations: [createEffects],
			model: {
				name: "fake_effects",
				define: { key: { type: DataTypes.STRING(191), primaryKey: true } },
				options: { tableName: "fake_effects", timestamps: false }
			}
		})
	],

	events: {
		"saga.failed"(ctx: Context<{ sagaId: string }>) {
			this.alerts.push(ctx.params);
		}
	},

	actions: {
		do: {
			visibility: "public",
			params: stepParams,
			circuitBreaker: noBreaker,
			handler(ctx: Context<{ step: string; plan?: FakePlan }, Meta>) {
				return this.finish(ctx, this.apply(ctx, "do"));
			}
		},
		undo: {
			visibility: "public",
			params: stepParams,
			circuitBreaker: noBreaker,
			handler(ctx: Context<{ step: string; plan?: FakePlan }, Meta>) {
				return this.finish(ctx, this.apply(ctx, "undo"));
			}
		},
		noop: { visibility: "public", handler: () => ({ ok: true }) },

		/** Lets the gated first call of `key` proceed. */
		open: {
			params: { key: { type: "string" } },
			handler(ctx: Context<{ key: string }>) {
				const open = this.gates.get(ctx.params.key);
				this.gates.delete(ctx.params.key);
				open?.();
				return { opened: !!open };
			}
		},
		/** Keys whose gated first call is waiting. */
		waiting: {
			handler() {
				return [...this.gates.keys()];
			}
		},
		/** From now on, `fail: -1` plans of this saga succeed: the participant recovered. */
		heal: {
			params: { sagaId: { type: "string" } },
			handler(ctx: Context<{ sagaId: string }>) {
				this.healed.add(ctx.params.sagaId);
				return { healed: true };
			}
		},

		stats: {
			params: { sagaId: { type: "string" } },
			async handler(ctx: Context<{ sagaId: string }>): Promise<FakeStats> {
				const { sagaId } = ctx.params;
				const calls: Record<string, number> = {};
				for (const [k, n] of this.calls) if (k.startsWith(`${sagaId}:`)) calls[k] = n;
				const finished: Record<string, number> = {};
				for (const [k, n] of this.finished) if (k.startsWith(`${sagaId}:`)) finished[k] = n;
				const effects = await this.sequelize.query<{ key: string; kind: string; step: string }>(
					"SELECT `key`, kind, step FROM fake_effects WHERE saga_id = ? ORDER BY created_at, `key`",
					{ replacements: [sagaId], type: QueryTypes.SELECT }
				);
				return { calls, finished, trace: this.traces.get(sagaId) ?? [], effects, alerts: this.alerts.filter(a => a.sagaId === sagaId) };
			}
		}
	},

	methods: {
		/** Counts the call as finished once it answered or failed, so a test can wait for a late one. */
		finish<T>(ctx: Context<unknown, Meta>, call: Promise<T>): Promise<T> {
			const key = ctx.meta.idempotencyKey;
			return call.finally(() => {
				if (key) this.finished.set(key, (this.finished.get(key) ?? 0) + 1);
			});
		},

		async apply(ctx: Context<{ step: string; plan?: FakePlan }, Meta>, kind: "do" | "undo") {
			const { sagaId, idempotencyKey: key } = ctx.meta;
			if (!sagaId || !key) throw new Errors.MoleculerClientError("idempotency key missing", 422, "KEY_REQUIRED");
			const n = (this.calls.get(key) ?? 0) + 1;
			this.calls.set(key, n);
			const trace = this.traces.get(sagaId) ?? [];
			trace.push(`${kind}:${ctx.params.step}`);
			this.traces.set(sagaId, trace);

			const plan = ctx.params.plan ?? {};
			if (plan.gate && n === 1) await new Promise<void>(resolve => this.gates.set(key, resolve));
			const failing = plan.fail !== undefined && (plan.fail < 0 ? !this.healed.has(sagaId) : n <= plan.fail);
			if (failing) {
				if (plan.error === "reject") throw new Errors.MoleculerClientError("the fake says no", 409, "FAKE_REJECTED", { step: ctx.params.step });
				if (plan.error === "server") throw new Errors.MoleculerError("the fake is broken", 500, "FAKE_BROKEN");
				throw new Errors.MoleculerRetryableError("the fake is busy", 503, "FAKE_UNAVAILABLE");
			}
			if (plan.thenReject && n === (plan.fail ?? 0) + 1) {
				throw new Errors.MoleculerClientError("the fake says no", 409, "FAKE_REJECTED", { step: ctx.params.step });
			}
			if (plan.lateMs && n === 1) await new Promise(r => setTimeout(r, plan.lateMs));
			try {
				await this.sequelize.query("INSERT INTO fake_effects (`key`, kind, saga_id, step, created_at) VALUES (?, ?, ?, ?, ?)", {
					replacements: [key, kind, sagaId, ctx.params.step, Date.now()],
					type: QueryTypes.INSERT
				});
			} catch (err) {
				// Same key again: the effect exists; answer as the first call did.
				if (!(err instanceof UniqueConstraintError)) throw err;
			}
			return { key, step: ctx.params.step, kind };
		}
	},

	created() {
		this.calls = new Map();
		this.finished = new Map();
		this.traces = new Map();
		this.gates = new Map();
		this.alerts = [];
		this.healed = new Set();
	}
};

export default FakeService;
