/**
 * The cluster bus on NATS JetStream, through the `nats` client directly rather than @moleculer/channels 0.1.8.
 * Reasons, all from reading node_modules/@moleculer/channels/src: its NATS adapter creates the durable consumer
 * with a plain subscribe, which races when several nodes start at once (docs/DESIGN.md section 1); it defaults to
 * deliver_policy "new", so a group that starts after an event was published never sees it; it acknowledges a
 * message even when moving it to the dead-letter stream failed (the event is lost); it redelivers without delay;
 * and its in-process Fake adapter has neither retries nor a dead-letter queue. Here:
 *
 * - one events stream and one dead-letter stream per install, named after NAMESPACE (`CRP_<ns>_EVENTS`,
 *   `CRP_<ns>_DLQ`), created idempotently; every node may race to create them and to create a group's durable
 *   consumer: an "already exists" answer is checked with an info call and accepted;
 * - the event id is the JetStream message id (`Nats-Msg-Id`): a relay that publishes a row twice within the
 *   duplicate window stores it once;
 * - one durable pull consumer per group (deliver all, explicit ack): the members of a group share its messages;
 * - a failed handler is retried with `nak(delay)` on the schedule of lib/events/retry.ts (growing delays for
 *   EVENT_RETRY_FOR_SEC, 5 minutes by default); after its last delivery the message is written to the
 *   dead-letter stream and only then acknowledged, so a failure to dead-letter it means another delivery, never a
 *   lost event. An event its handler calls invalid (`InvalidEventError`: the payload does not match the catalog)
 *   goes to the dead-letter stream at once. The consumer has no `max_deliver` (the bus alone decides when to give up: a server-side limit
 *   would drop an event silently) and an `ack_wait` of 30 s that a long handler keeps extending (`working()`);
 *   a nak's delay is its own and does not depend on `ack_wait`;
 * - a replay republishes the dead letter to `<events>._replay.<group>`, which every group's consumer sees and only
 *   the named group handles, and deletes it from the dead-letter stream. It carries the number of automatic
 *   redrives (`Crp-Redrives`), which the next dead letter of that event keeps, so the scheduled redrive
 *   (mixins/event-consumer.mixin.ts) stops at DLQ_REDRIVE_MAX;
 * - on a NATS cluster (several servers in TRANSPORTER), both streams keep JETSTREAM_REPLICAS copies (`replicas`),
 *   an existing stream with another count is scaled to it, and each group's consumer inherits the stream's count
 *   (`num_replicas: 0`), so the loss of one server of three loses neither an event nor a group's position. The
 *   client reconnects to another server of the list (NATS_RECONNECT, shared with the transporter); a consumer
 *   re-sends its pull after a reconnect and whenever the server's idle heartbeats stop (a consumer leader that
 *   moved to another server), and its supervisor takes the consumer again if the message iterator ends. Acks
 *   are confirmed by the consumer's leader and sent again to the new one when lost in an election
 *   (`acknowledge`). A publish during a leader election fails (timeout, 503) and the outbox relay keeps the row
 *   and publishes it again (the message id makes a publish that did get stored count once);
 * - with a signer (cluster mode: CLUSTER_SECRET), every message published here (events, replays, dead letters)
 *   carries a signature, and a consumer acknowledges and drops a message whose signature fails: anyone may be
 *   able to publish on NATS, only the platform's nodes can publish an event the platform acts on
 *   (lib/cluster-auth.ts). A dead letter that fails it is neither listed nor replayed.
 */
import {
	AckPolicy,
	connect,
	DeliverPolicy,
	DiscardPolicy,
	headers as natsHeaders,
	JSONCodec,
	RetentionPolicy,
	StorageType,
	type ConsumerConfig,
	type ConsumerMessages,
	type JetStreamClient,
	type JetStreamManager,
	type JsMsg,
	type NatsConnection,
	type StreamConfig
} from "nats";
import { EventSigner } from "../cluster-auth";
import { errorText } from "./memory-bus";
import { DEFAULT_RETRY, maxAttemptsOf, policyOf, redriveDue, retryDelayMs, type RedrivePolicy, type RetryPolicy } from "./retry";
import {
	isInvalidEvent,
	safeName,
	type BusStats,
	type DeadLetter,
	type EventBus,
	type EventMessage,
	type RedriveResult,
	type SubscribeOptions,
	type Subscription
} from "./types";

export interface JetStreamBusOptions {
	/** `host:port` of the NATS servers (or `url`: comma-separated nats:// URLs without credentials). */
	servers?: string[];
	url?: string;
	user?: string;
	password?: string;
	token?: string;
	tls?: { caFile?: string; certFile?: string; keyFile?: string };
	/** Signs what is published and checks what is consumed; none: unsigned (tests of the bus alone). */
	signer?: EventSigner;
	/** Called for each consumed message dropped by the signature check (a metric, a log line). */
	onForged?: (subject: string) => void;
	/** NAMESPACE: streams, subjects and consumers are all named after it. */
	namespace: string;
	/** Connection name shown by the NATS server (the node id). */
	name?: string;
	/** Publish acknowledgement timeout (ms). */
	publishTimeoutMs?: number;
	/** Retry schedule of every group unless its subscription overrides it (lib/events/retry.ts). */
	retry?: Partial<RetryPolicy>;
	/**
	 * Limits of the dead-letter stream (EVENT_DLQ_MAX_AGE_DAYS, EVENT_DLQ_MAX_MESSAGES): past them the oldest letters
	 * go. Defaults: 30 days, 100,000 letters. Applied to an existing stream too.
	 */
	dlqMaxAgeSec?: number;
	dlqMaxMessages?: number;
	/**
	 * Copies JetStream keeps of each stream (JETSTREAM_REPLICAS: 1 on a single server, 3 on a three-server cluster).
	 * Applied to an existing stream too (JetStream scales it and its consumers). Default 1.
	 */
	replicas?: number;
	/** Told what the bus could not do but carried on without (a stream's limits it could not change). */
	warn?: (message: string) => void;
}

/**
 * Reconnection of every NATS client of a node (the transporter's, through moleculer.config.ts `natsClientOptions`,
 * and the bus's): never give up; after losing its server the client goes on to the next one of the list at once
 * and waits `reconnectTimeWait` only before trying a server it just tried. A server that stops answering without
 * closing the connection (a host gone, a partition) is noticed after `maxPingOut` unanswered pings every
 * `pingInterval` (15-20 s, rather than the client's default 4 minutes). The server list is shuffled per client
 * (the default), which spreads the nodes over the servers.
 */
export const NATS_RECONNECT = { maxReconnectAttempts: -1, reconnectTimeWait: 1000, pingInterval: 5000, maxPingOut: 3 } as const;

/**
 * How long a pull request of a consumer lasts. The server sends idle heartbeats every half of it; two missed ones
 * (a consumer leader that moved to another server, a pull lost in a reconnect) make the client check the consumer
 * and pull again. 5 s: a consumer resumes within about 5 s of a leader change, for one small request per group
 * every 5 s when idle.
 */
export const PULL_EXPIRES_MS = 5000;

/** How long the server waits for an answer to a delivery before it redelivers it; `working()` extends it. */
const ACK_WAIT_MS = 30_000;
const REDRIVES_HEADER = "Crp-Redrives";
/** How long an ack waits for the consumer leader's confirmation before it is sent again. */
const ACK_CONFIRM_MS = 2000;
const ACK_PAYLOAD = new TextEncoder().encode("+ACK");

const codec = JSONCodec<unknown>();
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
const DAY_NS = 24 * 3600 * 1e9;

/** An event type is a subject suffix: lower-case dot-separated words (test/unit/events.catalog.test.ts checks the catalog). */
export const EVENT_TYPE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;

export function streamNames(namespace: string) {
	const ns = safeName(namespace);
	return {
		events: `CRP_${ns}_EVENTS`,
		dlq: `CRP_${ns}_DLQ`,
		eventSubject: (type: string) => `crp.${ns}.ev.${type}`,
		eventsWildcard: `crp.${ns}.ev.>`,
		replaySubject: (group: string) => `crp.${ns}.ev._replay.${safeName(group)}`,
		replayPrefix: `crp.${ns}.ev._replay.`,
		dlqSubject: (group: string) => `crp.${ns}.dlq.${safeName(group)}`,
		dlqWildcard: `crp.${ns}.dlq.>`
	};
}

/** What the bus asks of its streams: the stream configs it creates, and what it applies to existing ones. */
export interface StreamSettings {
	replicas: number;
	dlqMaxAgeSec: number;
	dlqMaxMessages: number;
}

export function streamSettings(opts: Pick<JetStreamBusOptions, "replicas" | "dlqMaxAgeSec" | "dlqMaxMessages">): StreamSettings {
	const replicas = opts.replicas ?? 1;
	if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) throw new Error(`JetStream replicas must be 1 to 5, got ${replicas}`);
	return { replicas, dlqMaxAgeSec: opts.dlqMaxAgeSec ?? 30 * 86400, dlqMaxMessages: opts.dlqMaxMessages ?? 100_000 };
}

/** The configs of the events and dead-letter streams of an install (file storage, limits retention). */
export function streamConfigs(names: ReturnType<typeof streamNames>, settings: StreamSettings): { events: Partial<StreamConfig>; dlq: Partial<StreamConfig> } {
	const base = { retention: RetentionPolicy.Limits, storage: StorageType.File, num_replicas: settings.replicas };
	return {
		events: { ...base, name: names.events, subjects: [names.eventsWildcard], max_age: 7 * DAY_NS },
		dlq: {
			...base,
			name: names.dlq,
			subjects: [names.dlqWildcard],
			max_age: settings.dlqMaxAgeSec * 1e9,
			max_msgs: settings.dlqMaxMessages,
			discard: DiscardPolicy.Old
		}
	};
}

/**
 * What an existing stream must change to match the settings: more copies when it has fewer than asked (both
 * streams), and the dead-letter limits and discard policy (the DLQ only); `null` when it matches. The replica count
 * is only ever raised: a node started with the default (a REPL, a one-off job, a deployment that lost the
 * variable) must not quietly take the copies of a cluster's streams away; fewer copies is an operator's decision
 * (`nats stream edit --replicas`). The rest of its config is left as it is.
 */
export function streamChanges(
	existing: Pick<StreamConfig, "num_replicas" | "max_age" | "max_msgs" | "discard">,
	wanted: Partial<StreamConfig>,
	dlq: boolean
): Partial<StreamConfig> | null {
	const change: Partial<StreamConfig> = {};
	if (wanted.num_replicas !== undefined && (existing.num_replicas || 1) < wanted.num_replicas) change.num_replicas = wanted.num_replicas;
	if (dlq) {
		if (wanted.max_age !== undefined && existing.max_age !== wanted.max_age) change.max_age = wanted.max_age;
		if (wanted.max_msgs !== undefined && existing.max_msgs !== wanted.max_msgs) change.max_msgs = wanted.max_msgs;
		if (wanted.discard !== undefined && existing.discard !== wanted.discard) change.discard = wanted.discard;
	}
	return Object.keys(change).length > 0 ? change : null;
}

export class JetStreamEventBus implements EventBus {
	readonly kind = "jetstream" as const;
	readonly names: ReturnType<typeof streamNames>;
	private nc?: Promise<NatsConnection>;
	private ready?: Promise<{ js: JetStreamClient; jsm: JetStreamManager }>;
	private readonly subs = new Set<Subscription>();

	constructor(private readonly opts: JetStreamBusOptions) {
		this.names = streamNames(opts.namespace);
	}

	async publish(event: EventMessage): Promise<void> {
		if (!EVENT_TYPE.test(event.type)) throw new Error(`bad event type "${event.type}"`);
		const { js } = await this.jetstream();
		const subject = this.names.eventSubject(event.type);
		const data = codec.encode(event);
		await js.publish(subject, data, { msgID: event.id, headers: this.signed(subject, event.id, data), timeout: this.opts.publishTimeoutMs ?? 2000 });
	}

	async subscribe(opts: SubscribeOptions): Promise<Subscription> {
		const { js, jsm } = await this.jetstream();
		const durable = safeName(opts.group);
		const config: Partial<ConsumerConfig> = {
			durable_name: durable,
			ack_policy: AckPolicy.Explicit,
			deliver_policy: DeliverPolicy.All,
			filter_subject: this.names.eventsWildcard,
			ack_wait: ACK_WAIT_MS * 1e6,
			// Unlimited: the bus dead-letters after the retry schedule; the server must never drop an event first.
			max_deliver: -1,
			max_ack_pending: 256,
			// As many copies as the stream (JETSTREAM_REPLICAS), and scaled with it: a group's position survives
			// the loss of a server whenever the stream does.
			num_replicas: 0
		};
		const ensure = () =>
			retryRace(
				() => jsm.consumers.add(this.names.events, config),
				() => jsm.consumers.info(this.names.events, durable)
			);
		// The first subscription must succeed (the service does not start otherwise); later ones are retried.
		await ensure();
		const types = new Set(opts.types);
		const ownReplay = this.names.replaySubject(opts.group);
		let stopped = false;
		// abort_on_missing_resource: end the iterator when the consumer or stream is gone (the loop below recovers).
		// `expires` sets the idle heartbeats too (half of it): missing ones re-send the pull (PULL_EXPIRES_MS).
		const take = async () =>
			(await js.consumers.get(this.names.events, durable)).consume({ max_messages: 32, expires: PULL_EXPIRES_MS, abort_on_missing_resource: true });
		const first = await take();
		let current: ConsumerMessages | undefined = first;
		// Supervisor: if the message iterator ends while we are not stopping (the consumer or the stream vanished,
		// the connection was closed under it), take the durable consumer again after a pause and carry on from
		// its acknowledged position.
		const loop = (async () => {
			let messages: ConsumerMessages | undefined = first;
			while (!stopped) {
				try {
					if (!messages) {
						await ensure();
						messages = await take();
					}
					current = messages;
					for await (const m of messages) {
						try {
							await this.handle(m, opts, types, ownReplay);
						} catch {
							// handle() never throws on purpose; an unexpected fault leaves the message to its ack timeout.
						}
					}
				} catch {
					// fall through to the pause below
				}
				messages = undefined;
				if (!stopped) await sleep(1000);
			}
		})();
		const sub: Subscription = {
			group: opts.group,
			stop: async () => {
				stopped = true;
				this.subs.delete(sub);
				current?.stop();
				await loop;
			}
		};
		this.subs.add(sub);
		return sub;
	}

	async deadLetters(opts: { group?: string; limit?: number } = {}): Promise<DeadLetter[]> {
		const { jsm } = await this.jetstream();
		const info = await jsm.streams.info(this.names.dlq);
		const out: DeadLetter[] = [];
		const limit = opts.limit ?? 100;
		for (let seq = info.state.first_seq; seq <= info.state.last_seq && out.length < limit; seq++) {
			const letter = await this.readLetter(jsm, seq);
			if (letter && (!opts.group || letter.group === opts.group)) out.push(letter);
		}
		return out;
	}

	async replay(id: string, opts: { automatic?: boolean } = {}): Promise<DeadLetter | null> {
		const seq = Number(id);
		if (!Number.isInteger(seq) || seq < 1) return null;
		const { js, jsm } = await this.jetstream();
		const letter = await this.readLetter(jsm, seq);
		if (!letter) return null;
		return this.send(js, jsm, letter, opts.automatic === true);
	}

	async redrive(group: string, policy: RedrivePolicy, now = Date.now()): Promise<RedriveResult> {
		const { js, jsm } = await this.jetstream();
		const info = await jsm.streams.info(this.names.dlq);
		const out: RedriveResult = { redriven: [], exhausted: 0 };
		// Bounded work per round: the oldest 1,000 sequence numbers (the stream's first one moves up as letters go).
		const last = Math.min(info.state.last_seq, info.state.first_seq + 999);
		for (let seq = info.state.first_seq; seq <= last; seq++) {
			const letter = await this.readLetter(jsm, seq);
			if (!letter || letter.group !== group) continue;
			const due = redriveDue(letter, policy, now);
			if (due === "exhausted") out.exhausted++;
			if (due !== "due") continue;
			const sent = await this.send(js, jsm, letter, true);
			if (sent) out.redriven.push(sent);
		}
		return out;
	}

	/** Publishes a dead letter back to its group (once per letter: its message id) and deletes it from the queue. */
	private async send(js: JetStreamClient, jsm: JetStreamManager, letter: DeadLetter, automatic: boolean): Promise<DeadLetter> {
		const id = letter.id;
		const seq = Number(id);
		const subject = this.names.replaySubject(letter.group);
		const data = codec.encode(letter.event);
		const h = this.signed(subject, `replay-${id}`, data);
		h.set("Crp-Replay-Of", id);
		// An operator's replay keeps the count (a poison event does not earn new automatic rounds by it).
		h.set(REDRIVES_HEADER, String((letter.redrives ?? 0) + (automatic ? 1 : 0)));
		// The same replay id twice within the duplicate window is stored once.
		await js.publish(subject, data, { msgID: `replay-${id}`, headers: h, timeout: this.opts.publishTimeoutMs ?? 2000 });
		await jsm.streams.deleteMessage(this.names.dlq, seq, false).catch(() => false);
		return letter;
	}

	async stats(): Promise<BusStats> {
		const { jsm } = await this.jetstream();
		const consumers: BusStats["consumers"] = [];
		for await (const c of jsm.consumers.list(this.names.events)) {
			consumers.push({ group: c.name, pending: c.num_pending, ackPending: c.num_ack_pending });
		}
		const dlq = await jsm.streams.info(this.names.dlq);
		return { consumers, deadLetters: dlq.state.messages };
	}

	async close(): Promise<void> {
		await Promise.all([...this.subs].map(s => s.stop().catch(() => undefined)));
		if (!this.nc) return;
		const nc = await this.nc.catch(() => undefined);
		this.nc = undefined;
		this.ready = undefined;
		if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close());
	}

	/** Deletes this install's streams (tests' cleanup). */
	async destroy(): Promise<void> {
		const { jsm } = await this.jetstream();
		for (const s of [this.names.events, this.names.dlq]) await jsm.streams.delete(s).catch(() => false);
	}

	private async handle(m: JsMsg, opts: SubscribeOptions, types: Set<string>, ownReplay: string): Promise<void> {
		const isReplay = m.subject.startsWith(this.names.replayPrefix);
		if (isReplay ? m.subject !== ownReplay : !types.has(m.subject.slice(this.names.eventsWildcard.length - 1))) {
			// Not this group's: a plain ack, no confirmation (a lost one only brings the message back to be skipped).
			m.ack();
			return;
		}
		if (this.opts.signer && !this.opts.signer.verify(m.subject, m.headers?.get("Nats-Msg-Id") ?? "", m.data, m.headers?.get(EventSigner.HEADER))) {
			// Not from a platform node: nothing to retry, nothing to keep.
			this.opts.onForged?.(m.subject);
			this.acknowledge(m);
			return;
		}
		let event: EventMessage;
		try {
			event = codec.decode(m.data) as EventMessage;
		} catch (err) {
			// Not even JSON: no retry can fix it.
			await this.deadLetter(m, opts, { id: `seq-${m.seq}`, type: "unreadable" } as EventMessage, err, m.info.redeliveryCount);
			return;
		}
		const attempt = m.info.redeliveryCount;
		const policy = policyOf({ ...DEFAULT_RETRY, ...this.opts.retry }, opts);
		// A handler that waits on a slow dependency keeps its delivery: without this the server would hand the
		// same message to another member after ack_wait while this one still works on it.
		m.working();
		const heartbeat = setInterval(() => m.working(), ACK_WAIT_MS / 3);
		try {
			await opts.handler(event, { attempt, replayed: isReplay });
			this.acknowledge(m);
		} catch (err) {
			if (attempt >= maxAttemptsOf(policy) || isInvalidEvent(err)) await this.deadLetter(m, opts, event, err, attempt);
			else m.nak(retryDelayMs(attempt, policy));
		} finally {
			clearInterval(heartbeat);
		}
	}

	private async deadLetter(m: JsMsg, opts: SubscribeOptions, event: EventMessage, err: unknown, attempts: number): Promise<void> {
		const redrives = Number(m.headers?.get(REDRIVES_HEADER) || 0);
		const body = {
			group: opts.group,
			event,
			error: errorText(err),
			attempts,
			failedAt: new Date().toISOString(),
			redrives: Number.isInteger(redrives) && redrives >= 0 ? redrives : 0,
			...(isInvalidEvent(err) ? { invalid: true } : {})
		};
		try {
			const { js } = await this.jetstream();
			const subject = this.names.dlqSubject(opts.group);
			// One dead letter per (group, message) even if the ack below is lost and the message comes back.
			const msgID = `dlq-${safeName(opts.group)}-${m.seq}`;
			const data = codec.encode(body);
			const ack = await js.publish(subject, data, { msgID, headers: this.signed(subject, msgID, data), timeout: this.opts.publishTimeoutMs ?? 2000 });
			this.acknowledge(m);
			opts.onDeadLetter?.({ id: String(ack.seq), ...body });
		} catch {
			// Could not store the dead letter: keep the message; it comes back after the delay.
			m.nak(retryDelayMs(attempts, policyOf({ ...DEFAULT_RETRY, ...this.opts.retry }, opts)));
		}
	}

	/**
	 * Acknowledges a message; with replicated streams (JETSTREAM_REPLICAS > 1), has the consumer's leader confirm it (not awaited: the next message does not wait).
	 * An ack sent while the consumer has no leader (an election after its server died) or through a server that
	 * died is lost; unconfirmed, it is sent again every second to whichever server leads the consumer now (its
	 * replicas know the delivery), for up to ACK_WAIT_MS: the message is not handled a second time after
	 * `ack_wait`, and the group does not look behind meanwhile.
	 */
	private acknowledge(m: JsMsg): void {
		// The ack subject (`$JS.ACK.<stream>.<consumer>.<delivery>...`): the client's message has it, its interface
		// does not declare it. Without it, a plain ack.
		const subject = (m as JsMsg & { reply?: string }).reply;
		// One server: an ack is lost only with the connection, and the delivery then comes back after ack_wait to
		// handlers that are idempotent. The confirmation's round trip is paid only where elections happen.
		if (!subject || (this.opts.replicas ?? 1) <= 1) {
			m.ack();
			return;
		}
		m.ackAck({ timeout: ACK_CONFIRM_MS }).then(
			() => undefined,
			async () => {
				const until = Date.now() + ACK_WAIT_MS;
				while (Date.now() < until) {
					const nc = await this.nc?.catch(() => undefined);
					if (!nc || nc.isClosed()) return;
					try {
						await nc.request(subject, ACK_PAYLOAD, { timeout: ACK_CONFIRM_MS });
						return;
					} catch {
						// Unref'd: a confirmation still being retried never keeps a stopping process alive.
						await new Promise(r => setTimeout(r, 1000).unref());
					}
				}
			}
		);
	}

	/** Headers carrying the signature of a message (empty headers when there is no signer). */
	private signed(subject: string, msgId: string, data: Uint8Array) {
		const h = natsHeaders();
		if (this.opts.signer) h.set(EventSigner.HEADER, this.opts.signer.sign(subject, msgId, data));
		return h;
	}

	private async readLetter(jsm: JetStreamManager, seq: number): Promise<DeadLetter | null> {
		try {
			const sm = await jsm.streams.getMessage(this.names.dlq, { seq });
			// A dead letter someone else wrote would be signed by the replay: only our own are read.
			if (this.opts.signer && !this.opts.signer.verify(sm.subject, sm.header?.get("Nats-Msg-Id") ?? "", sm.data, sm.header?.get(EventSigner.HEADER)))
				return null;
			const body = sm.json<Omit<DeadLetter, "id">>();
			return { id: String(seq), ...body, redrives: Number(body.redrives ?? 0) };
		} catch {
			return null; // deleted (replayed) or never existed
		}
	}

	private connection(): Promise<NatsConnection> {
		this.nc ??= connect({
			servers: this.opts.servers ?? (this.opts.url ?? "").split(",").map(u => new URL(u.trim()).host),
			user: this.opts.user,
			pass: this.opts.password,
			token: this.opts.token,
			tls: this.opts.tls,
			name: this.opts.name,
			...NATS_RECONNECT
		}).catch(err => {
			this.nc = undefined;
			throw err;
		});
		return this.nc;
	}

	private jetstream(): Promise<{ js: JetStreamClient; jsm: JetStreamManager }> {
		this.ready ??= (async () => {
			const nc = await this.connection();
			const jsm = await nc.jetstreamManager();
			const wanted = streamConfigs(this.names, streamSettings(this.opts));
			for (const [config, dlq] of [
				[wanted.events, false],
				[wanted.dlq, true]
			] as const) {
				const name = config.name!;
				await retryRace(
					() => jsm.streams.add(config),
					() => jsm.streams.info(name)
				);
				// A stream made before the limits or the replica count existed (or with other ones) takes the
				// configured ones: JetStream scales a stream and its consumers to a new replica count in place.
				const existing = (await jsm.streams.info(name)).config;
				if ((existing.num_replicas || 1) > (config.num_replicas ?? 1)) {
					this.opts.warn?.(
						`the stream ${name} keeps ${existing.num_replicas} copies, more than JETSTREAM_REPLICAS=${config.num_replicas}: left as it is (set JETSTREAM_REPLICAS=${existing.num_replicas} on every node, or lower it by hand)`
					);
				}
				const change = streamChanges(existing, config, dlq);
				if (change) {
					await jsm.streams
						.update(name, { ...existing, ...change })
						.catch(err =>
							this.opts.warn?.(
								`could not apply ${Object.keys(change).join(", ")} ${JSON.stringify(change)} to the stream ${name}: ${(err as Error).message}`
							)
						);
				}
			}
			return { js: nc.jetstream(), jsm };
		})().catch(err => {
			this.ready = undefined;
			throw err;
		});
		return this.ready;
	}
}

/**
 * Creates something several nodes may create at the same moment: try, and when that fails check whether it exists
 * now (another node won the race); otherwise wait a little and try again.
 */
async function retryRace(create: () => Promise<unknown>, exists: () => Promise<unknown>, attempts = 6): Promise<void> {
	let last: unknown;
	for (let i = 0; i < attempts; i++) {
		try {
			await create();
			return;
		} catch (err) {
			last = err;
			try {
				await exists();
				return;
			} catch {
				await sleep(50 * (i + 1) + Math.random() * 50);
			}
		}
	}
	throw last;
}
