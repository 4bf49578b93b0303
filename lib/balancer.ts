/**
 * Failover between replicas without waiting for the heartbeat.
 *
 * A node killed with SIGKILL says no goodbye: until the heartbeat timeout removes it from the registry (Moleculer
 * checks every `heartbeatTimeout` seconds, so 15 to 30 s here), plain round-robin keeps sending it every n-th
 * request, each of which waits for the request timeout (10 s). With two booking replicas that took payments from
 * ~17/s to 0-2/s for 18 and 28 s (issue 15): clients that retry wait behind those timeouts one after the other.
 *
 * Two pieces, sharing one list of suspect nodes per broker:
 * - `NodeWatchMiddleware` watches every call this node sends to another node. A node that has calls in flight
 *   and has answered nothing for `silenceMs`, or that let a call time out or refused one, becomes suspect and is
 *   probed with a ping (answered by the transit layer, not by a service, so a busy node answers it too). A pong
 *   clears the mark. A dead node is told apart from a slow one by NATS itself: the probe's ping goes out as a NATS
 *   request, and a process that is gone has no subscription left on its ping subject, so the server answers "no
 *   responders" at once. Such a node is removed from the registry then, exactly as the heartbeat check would remove
 *   it, which fails its in-flight calls at once (retryable, so reads retry on another replica and clients retry their
 *   writes). A node that is still connected but does not pong within `probeTimeoutMs` (overloaded, or frozen) stays
 *   avoided and is pinged again, and is removed only once it has answered nothing for `removeAfterMs`; a frozen node
 *   rejoins with its next heartbeat. Removing throws the work in flight away: when a missed 3 s ping was enough (the
 *   earlier rule), live nodes on a saturated machine removed each other 11-26 times a minute in a long chaos run and
 *   the retried work collapsed throughput to 1-2 confirmations/s.
 * - `FailoverRoundRobinStrategy`: round-robin over the replicas that are not suspect (all of them again if every
 *   one is). A call the retry policy retries also marks the node the previous attempt went to.
 *
 * So losing one replica fails the calls in flight on it, and from about `silenceMs` after the first unanswered
 * call the others take its share; the heartbeat settles the registry long after.
 */
import { Strategies, type Context, type Middleware, type ServiceBroker } from "moleculer";

type Endpoint = Parameters<InstanceType<typeof Strategies.RoundRobin>["select"]>[0][number];

export interface NodeWatchOptions {
	/** A node with calls in flight that answered nothing for this long is probed. */
	silenceMs: number;
	/** A probe's ping is given up after this long (the node stays avoided and is pinged again). */
	probeTimeoutMs: number;
	/** A node that has answered nothing (no call, no ping) for this long is removed from the registry. */
	removeAfterMs: number;
}

interface Watched {
	/** Calls sent to the node and not settled yet. */
	inFlight: number;
	/** Last time a call to it settled with an answer (or its first call went out after a quiet spell). */
	lastHeard: number;
}

/** Per broker: nodeID -> suspect until (epoch ms), and what the watch knows of each remote node. */
interface BrokerState {
	suspects: Map<string, number>;
	watched: Map<string, Watched>;
	probing: Set<string>;
	/** Ping topics whose next send goes out as a NATS request, to learn whether anyone still listens (nodeID by topic). */
	deadChecks: Map<string, string>;
}

const stateByBroker = new WeakMap<ServiceBroker, BrokerState>();

function stateOf(broker: ServiceBroker): BrokerState {
	let state = stateByBroker.get(broker);
	if (!state) {
		state = { suspects: new Map(), watched: new Map(), probing: new Set(), deadChecks: new Map() };
		stateByBroker.set(broker, state);
	}
	return state;
}

/** The node IDs this broker routes around right now (tests and the REPL read it). */
export function suspectNodes(broker: ServiceBroker): string[] {
	const now = Date.now();
	return [...stateOf(broker).suspects].filter(([, until]) => until > now).map(([id]) => id);
}

/** How long a mark set by a retry lasts when no probe settles it sooner. */
const RETRY_MARK_MS = 5_000;

export class FailoverRoundRobinStrategy extends Strategies.RoundRobin {
	override select(list: Endpoint[], ctx?: Context): Endpoint {
		const broker = (this as unknown as { broker: ServiceBroker }).broker;
		const { suspects } = stateOf(broker);
		const now = Date.now();
		const retry = ctx as (Context & { _retryAttempts?: number }) | undefined;
		// On a retry, ctx.nodeID is the node the previous attempt went to.
		if (retry && (retry._retryAttempts ?? 0) > 0 && retry.nodeID && retry.nodeID !== broker.nodeID) {
			suspects.set(retry.nodeID, Math.max(suspects.get(retry.nodeID) ?? 0, now + RETRY_MARK_MS));
		}
		if (suspects.size === 0) return super.select(list);
		const healthy = list.filter(ep => {
			const until = suspects.get(ep.id);
			if (until === undefined) return true;
			if (until <= now) {
				suspects.delete(ep.id);
				return true;
			}
			return false;
		});
		return super.select(healthy.length > 0 ? healthy : list);
	}
}

/** Errors that say the node may be gone (as opposed to an answer from it, even an error answer). */
const NODE_FAULTS = new Set(["REQUEST_TIMEOUT", "REQUEST_REJECTED"]);

export function NodeWatchMiddleware(opts: NodeWatchOptions): Middleware {
	let broker: ServiceBroker;
	let state: BrokerState;
	let sweep: NodeJS.Timeout | undefined;

	/** Removes the node from the registry (unless it is the last replica of a service: then it stays avoided). */
	const remove = (nodeID: string, why: string): boolean => {
		const still = broker.registry.nodes.get(nodeID);
		if (!still || !still.available) return true;
		// Never the last replica of a service: a node can look gone for a moment (a NATS reconnect, a saturated
		// machine), and removing every replica of a group turns that moment into an outage. It stays avoided
		// (suspect) while it is the only one left, and is probed again.
		if (lastReplicaOf(broker, nodeID)) {
			state.suspects.set(nodeID, Date.now() + opts.probeTimeoutMs + opts.silenceMs);
			return false;
		}
		broker.logger.warn(
			`Node '${nodeID}' ${why}: removed from the registry (its calls in flight fail, new ones go to the other replicas; it rejoins with its next heartbeat).`
		);
		broker.registry.nodes.disconnected(nodeID, true);
		state.watched.delete(nodeID);
		return true;
	};

	const probe = (nodeID: string, why: string) => {
		if (state.probing.has(nodeID)) return;
		const node = broker.registry.nodes.get(nodeID);
		if (!node || !node.available || node.local) return;
		const tx = (broker.transit as unknown as { tx?: { getTopicName?(cmd: string, nodeID: string): string } } | undefined)?.tx;
		if (tx?.getTopicName) state.deadChecks.set(tx.getTopicName("PING", nodeID), nodeID);
		state.probing.add(nodeID);
		const startedAt = Date.now();
		// Suspect while the probe runs: new calls go to the other replicas meanwhile.
		state.suspects.set(nodeID, startedAt + opts.probeTimeoutMs + opts.silenceMs);
		let again = false;
		broker
			.ping(nodeID, opts.probeTimeoutMs)
			.then(pong => {
				if (pong) {
					state.suspects.delete(nodeID);
					const w = state.watched.get(nodeID);
					if (w) w.lastHeard = Date.now();
					return;
				}
				const still = broker.registry.nodes.get(nodeID);
				if (!still || !still.available) return;
				// Still connected (no "no responders"), silent since the last answer to any call: not long enough yet to
				// give its work in flight up; it stays avoided and is pinged again.
				const lastHeard = state.watched.get(nodeID)?.lastHeard ?? startedAt - opts.silenceMs;
				if (Date.now() - lastHeard < opts.removeAfterMs) {
					state.suspects.set(nodeID, Date.now() + opts.probeTimeoutMs + opts.silenceMs);
					again = true;
					return;
				}
				remove(nodeID, `${why} and answered no ping for ${opts.removeAfterMs} ms`);
			})
			.catch(() => undefined)
			.finally(() => {
				state.probing.delete(nodeID);
				if (again) probe(nodeID, why);
			});
	};

	return {
		name: "NodeWatch",

		created(b: ServiceBroker) {
			broker = b;
			state = stateOf(b);
		},

		started() {
			if (!broker.transit) return;
			sweep = setInterval(
				() => {
					const now = Date.now();
					for (const [nodeID, w] of state.watched) {
						if (w.inFlight > 0 && now - w.lastHeard > opts.silenceMs) probe(nodeID, `answered nothing for ${now - w.lastHeard} ms`);
						else if (w.inFlight === 0 && now - w.lastHeard > 60_000) state.watched.delete(nodeID);
					}
				},
				Math.max(50, Math.floor(opts.silenceMs / 4))
			);
			sweep.unref();
		},

		stopped() {
			if (sweep) clearInterval(sweep);
		},

		/**
		 * The probe's ping, already sealed by the packet middleware (this one is registered first, so it is the
		 * innermost wrapper of the transporter's send), goes out as a NATS request instead of a publish: a live node
		 * receives the same packet and pongs as usual, while for a process that is gone the server answers "no
		 * responders" at once.
		 */
		transporterSend(next: (topic: string, data: Buffer, meta: unknown) => Promise<void>) {
			return function sendOrAskWhoListens(topic: string, data: Buffer, meta: unknown) {
				const nodeID = state.deadChecks.get(topic);
				// The outer middlewares call this without `this`: the client is the broker's transporter's.
				const client = (broker.transit as unknown as { tx?: { client?: NatsLike } } | undefined)?.tx?.client;
				if (nodeID === undefined || typeof client?.request !== "function") return next(topic, data, meta);
				state.deadChecks.delete(topic);
				client.request(topic, data, { timeout: opts.probeTimeoutMs, noMux: true }).then(
					() => undefined,
					(err: { code?: string }) => {
						if (err?.code === "503") remove(nodeID, "is gone (NATS: no responders on its ping subject)");
					}
				);
				return Promise.resolve();
			};
		},

		remoteAction(next: (ctx: Context) => Promise<unknown>) {
			return function watchRemoteCall(ctx: Context) {
				const nodeID = ctx.nodeID;
				if (!nodeID) return next(ctx);
				let w = state.watched.get(nodeID);
				if (!w) {
					w = { inFlight: 0, lastHeard: Date.now() };
					state.watched.set(nodeID, w);
				}
				// After a quiet spell the silence counts from this call, not from the last answer minutes ago.
				if (w.inFlight === 0) w.lastHeard = Date.now();
				w.inFlight++;
				const watched = w;
				return next(ctx).then(
					res => {
						watched.inFlight--;
						watched.lastHeard = Date.now();
						return res;
					},
					(err: { type?: string }) => {
						watched.inFlight--;
						if (err && NODE_FAULTS.has(err.type ?? "")) probe(nodeID, `failed a call (${err.type})`);
						else watched.lastHeard = Date.now();
						throw err;
					}
				);
			};
		}
	} as unknown as Middleware;
}

/** The part of the NATS client (nats.js 2) the dead check uses. */
interface NatsLike {
	request(subject: string, data: Uint8Array, opts: { timeout: number; noMux: boolean }): Promise<unknown>;
}

/** A service of `nodeID` that no other available node offers (the node is then not removed), or undefined. */
function lastReplicaOf(broker: ServiceBroker, nodeID: string): string | undefined {
	const list = broker.registry.getServiceList({ onlyAvailable: true, skipInternal: true }) as { name: string; nodeID: string }[];
	const mine = list.filter(s => s.nodeID === nodeID).map(s => s.name);
	return mine.find(name => !list.some(s => s.name === name && s.nodeID !== nodeID));
}
