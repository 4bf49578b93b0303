/**
 * Test-only consumer group. Its effect is idempotent by event id, made atomic by the coordination store's SET NX
 * (Redis in a cluster, so several sink nodes of one group share it): `delivered:<id>` counts every delivery,
 * `applied:<id>` counts the applications (must never pass 1). An event whose payload says `poison: true` fails
 * until a test "fixes the cause" with `fix()`.
 */
import type { Context, ServiceSchema } from "moleculer";
import { EventConsumerMixin, type EventConsumerVars } from "../../../mixins/event-consumer.mixin";
import type { DeliveryInfo, EventMessage } from "../../../lib/events/types";
import { PlatformMixin, type PlatformVars } from "../../../mixins/platform.mixin";

export const SINK_TYPES = ["test.happened", "reservation.held", "reservation.confirmed", "reservation.cancelled"];

export interface SinkStats {
	delivered: Record<string, number>;
	applied: Record<string, number>;
	appliedTotal: number;
}

type Vars = PlatformVars & EventConsumerVars;
interface Methods {
	key(k: string): string;
	onEvent(event: EventMessage, info: DeliveryInfo): Promise<void>;
}

export function sinkSchema(group = "sink", opts: { maxAttempts?: number; backoffMs?: number } = {}): ServiceSchema<Record<string, never>, Methods, Vars> {
	return {
		name: `sink-${group}`,
		mixins: [
			PlatformMixin,
			EventConsumerMixin({
				group,
				handlers: Object.fromEntries(SINK_TYPES.map(t => [t, "onEvent"])),
				maxAttempts: opts.maxAttempts ?? 3,
				backoffMs: opts.backoffMs ?? 30
			})
		],
		actions: {
			stats: {
				params: { ids: { type: "array", items: "string" } },
				async handler(ctx: Context<{ ids: string[] }>): Promise<SinkStats> {
					const delivered: Record<string, number> = {};
					const applied: Record<string, number> = {};
					for (const id of ctx.params.ids) {
						delivered[id] = Number((await this.store.get(this.key(`delivered:${id}`))) ?? 0);
						applied[id] = Number((await this.store.get(this.key(`applied:${id}`))) ?? 0);
					}
					return { delivered, applied, appliedTotal: Number((await this.store.get(this.key("appliedTotal"))) ?? 0) };
				}
			},
			fix: {
				async handler() {
					await this.store.set(this.key("fixed"), "1");
					return true;
				}
			}
		},
		methods: {
			key(k: string) {
				return `evtest:${this.name}:${k}`;
			},
			async onEvent(event: EventMessage, _info: DeliveryInfo) {
				await this.store.incr(this.key(`delivered:${event.id}`));
				if (event.payload.poison === true && (await this.store.get(this.key("fixed"))) !== "1") {
					throw new Error(`poison event ${event.id}`);
				}
				// The dedupe and the effect: only the first delivery of an id gets past SET NX.
				if (!(await this.store.set(this.key(`seen:${event.id}`), "1", { ifAbsent: true }))) return;
				await this.store.incr(this.key(`applied:${event.id}`));
				await this.store.incr(this.key("appliedTotal"));
			}
		}
	};
}
