/**
 * Test-only event producer: a service with its own database, the outbox table and the relay mixin, exactly as a
 * real producer (payment, reservation) has them. `append` changes an aggregate row and appends its event in one
 * transaction. `setPublishing({up: false})` makes this node's relay find the broker unreachable (its publish
 * rejects), so a test can stop publishing while producers keep committing; `{up: true, hang: true}` makes it
 * hang in the middle of a batch (a node about to be killed); `relayState` tells a test where the relay is. Every real publish is counted per
 * event id in the coordination store (`published:<id>`), so a test can tell a relay's double publish from a
 * consumer's double apply.
 */
import type { Context, ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import { QueryTypes } from "sequelize";
import { DataTypes } from "sequelize";
import type { EventMessage } from "../../../lib/events/types";
import { appendAnyOutbox, outboxMigration } from "../../../lib/outbox";
import type { Migration } from "../../../lib/db";
import { DbMixin, type DbVars } from "../../../mixins/db.mixin";
import { OutboxRelayMixin, type OutboxRelayVars } from "../../../mixins/outbox.mixin";
import { PlatformMixin, type PlatformVars } from "../../../mixins/platform.mixin";

const createAggregates: Migration = {
	name: "001_ev_aggregates",
	async up(qi, T) {
		await qi.createTable("ev_aggregates", {
			id: { type: T.STRING(64), primaryKey: true },
			version: { type: T.INTEGER, allowNull: false }
		});
	}
};

interface AppendParams {
	aggregateId: string;
	eventType: string;
	payload: Record<string, unknown>;
}
type This = PlatformVars & DbVars & OutboxRelayVars & ProducerVars;
type ProducerVars = { publishUp: boolean; publishHangs: boolean; hanging: number };

export const PRODUCER_PREFIX = "evtest:";

export const ProducerService: ServiceSchema<Record<string, never>, Record<string, never>, PlatformVars & DbVars & OutboxRelayVars & ProducerVars> = {
	name: "evproducer",
	mixins: [
		PlatformMixin,
		// Before DbMixin, as in a real producer: the relay starts after the migrations ran.
		OutboxRelayMixin,
		DbMixin({
			database: "evproducer",
			migrations: [outboxMigration, createAggregates],
			model: {
				name: "ev_aggregates",
				define: { id: { type: DataTypes.STRING(64), primaryKey: true }, version: { type: DataTypes.INTEGER } },
				options: { tableName: "ev_aggregates", timestamps: false }
			}
		})
	],

	actions: {
		append: {
			params: {
				aggregateId: "string",
				eventType: "string",
				payload: "object"
			},
			async handler(this: This, ctx: Context<AppendParams>) {
				const { aggregateId, eventType, payload } = ctx.params;
				const upsert =
					this.sequelize.getDialect() === "sqlite"
						? "INSERT INTO ev_aggregates (id, version) VALUES (?, 1) ON CONFLICT(id) DO UPDATE SET version = version + 1"
						: "INSERT INTO ev_aggregates (id, version) VALUES (?, 1) ON DUPLICATE KEY UPDATE version = version + 1";
				return this.sequelize.transaction(async t => {
					await this.sequelize.query(upsert, { replacements: [aggregateId], transaction: t });
					return appendAnyOutbox(this.sequelize, t, { aggregateType: "reservation", aggregateId, eventType, payload });
				});
			}
		},

		/** `hang: true`: publishing never answers, so the relay sits in its round holding the rows it claimed. */
		setPublishing: {
			params: { up: "boolean", hang: { type: "boolean", optional: true } },
			async handler(this: This, ctx: Context<{ up: boolean; hang?: boolean }>) {
				this.publishUp = ctx.params.up;
				this.publishHangs = ctx.params.hang === true;
				return { up: this.publishUp, backingOff: this.outboxRelay?.backingOff ?? false };
			}
		},

		/**
		 * What the relay is doing, for a test to wait on instead of sleeping: `backingOff` once a round failed to
		 * publish, `hanging` the publishes stuck in an open batch (its claimed rows stay locked meanwhile).
		 */
		relayState: {
			async handler(this: This) {
				return { up: this.publishUp, backingOff: this.outboxRelay?.backingOff ?? false, hanging: this.hanging };
			}
		},

		/** Rows not yet marked processed. */
		pending: {
			async handler(this: This) {
				const [row] = await this.sequelize.query<{ n: number }>("SELECT COUNT(*) AS n FROM outbox_events WHERE processed = 0", {
					type: QueryTypes.SELECT
				});
				return Number(row.n);
			}
		}
	},

	methods: {
		async outboxPublish(this: This, event: EventMessage) {
			if (this.publishHangs) {
				this.hanging++;
				await new Promise(() => undefined);
			}
			if (!this.publishUp) throw new Errors.MoleculerRetryableError("event broker unreachable (test)", 503, "BROKER_UNREACHABLE");
			await this.outboxBus!.publish(event);
			await this.store.incr(`${PRODUCER_PREFIX}published:${event.id}`);
		}
	},

	created() {
		this.publishUp = true;
		this.publishHangs = false;
		this.hanging = 0;
	}
};
