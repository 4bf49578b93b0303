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
	type NatsConnection
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
	/** Told what the bus could not do but carried on without (a stream's limits it could not change). */
	warn?: (message: string) => void;
}

/** How long the server waits for an answer to a delivery before it redelivers it; `working()` extends it. */
const ACK_WAIT_MS = 30_000;
const REDRIVES_HEADER = "Crp-Redrives";

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
			max_ack_pending: 256
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
		const take = async () => (await js.consumers.get(this.names.events, durable)).consume({ max_messages: 32, abort_on_missing_resource: true });
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
			m.ack();
			return;
		}
		if (this.opts.signer && !this.opts.signer.verify(m.subject, m.headers?.get("Nats-Msg-Id") ?? "", m.data, m.headers?.get(EventSigner.HEADER))) {
			// Not from a platform node: nothing to retry, nothing to keep.
			this.opts.onForged?.(m.subject);
			m.ack();
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
			m.ack();
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
			m.ack();
			opts.onDeadLetter?.({ id: String(ack.seq), ...body });
		} catch {
			// Could not store the dead letter: keep the message; it comes back after the delay.
			m.nak(retryDelayMs(attempts, policyOf({ ...DEFAULT_RETRY, ...this.opts.retry }, opts)));
		}
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
			maxReconnectAttempts: -1,
			reconnectTimeWait: 1000
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
			const base = { retention: RetentionPolicy.Limits, storage: StorageType.File, num_replicas: 1 };
			await retryRace(
				() => jsm.streams.add({ ...base, name: this.names.events, subjects: [this.names.eventsWildcard], max_age: 7 * DAY_NS }),
				() => jsm.streams.info(this.names.events)
			);
			const dlqLimits = {
				max_age: (this.opts.dlqMaxAgeSec ?? 30 * 86400) * 1e9,
				max_msgs: this.opts.dlqMaxMessages ?? 100_000,
				discard: DiscardPolicy.Old
			};
			await retryRace(
				() => jsm.streams.add({ ...base, ...dlqLimits, name: this.names.dlq, subjects: [this.names.dlqWildcard] }),
				() => jsm.streams.info(this.names.dlq)
			);
			// A stream made before the limits existed (or with other ones) takes the configured limits.
			const dlq = await jsm.streams.info(this.names.dlq);
			if (dlq.config.max_age !== dlqLimits.max_age || dlq.config.max_msgs !== dlqLimits.max_msgs) {
				await jsm.streams
					.update(this.names.dlq, { ...dlq.config, ...dlqLimits })
					.catch(err => this.opts.warn?.(`could not apply the dead-letter stream's limits to ${this.names.dlq}: ${(err as Error).message}`));
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
