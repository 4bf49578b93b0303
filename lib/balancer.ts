/**
 * Round-robin that steps around a replica that just failed a call.
 *
 * A node killed with SIGKILL says no goodbye: until the heartbeat timeout removes it from the registry, plain
 * round-robin keeps sending it every n-th request, each of which waits for the request timeout. When the retry
 * policy retries a call, the node that failed it is marked suspect for one heartbeat timeout: the retry and every
 * other call in that window go to the remaining replicas (all of them again if every one is suspect). A healthy
 * node that only had a slow moment comes back on its own when the mark expires.
 */
import { Strategies, type Context, type ServiceBroker } from "moleculer";

type Endpoint = Parameters<InstanceType<typeof Strategies.RoundRobin>["select"]>[0][number];

/** nodeID -> suspect until (epoch ms), shared by every action's endpoint list of one broker. */
const suspectsByBroker = new WeakMap<ServiceBroker, Map<string, number>>();

export class FailoverRoundRobinStrategy extends Strategies.RoundRobin {
	override select(list: Endpoint[], ctx?: Context): Endpoint {
		const broker = (this as unknown as { broker: ServiceBroker }).broker;
		let suspects = suspectsByBroker.get(broker);
		if (!suspects) {
			suspects = new Map();
			suspectsByBroker.set(broker, suspects);
		}
		const now = Date.now();
		const retry = ctx as (Context & { _retryAttempts?: number }) | undefined;
		// On a retry, ctx.nodeID is the node the previous attempt went to.
		if (retry && (retry._retryAttempts ?? 0) > 0 && retry.nodeID && retry.nodeID !== broker.nodeID) {
			suspects.set(retry.nodeID, now + broker.options.heartbeatTimeout! * 1000);
		}
		if (suspects.size === 0) return super.select(list);
		const healthy = list.filter(ep => {
			const until = suspects!.get(ep.id);
			if (until === undefined) return true;
			if (until <= now) {
				suspects!.delete(ep.id);
				return true;
			}
			return false;
		});
		return super.select(healthy.length > 0 ? healthy : list);
	}
}
