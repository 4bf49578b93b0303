/**
 * Events test helpers: in-process nodes built from schemas or service names (the harness's `env.broker` loads
 * services/<name> only), tokens signed with the run's secret, raw publishing to the run's JetStream subjects
 * (to deliver an event several times or out of order, bypassing the relay), and cleanup of the run's streams.
 */
import crypto from "crypto";
import path from "path";
import { connect, headers, JSONCodec } from "nats";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { brokerOptions } from "../../moleculer.config";
import { signAccessToken } from "../../lib/auth";
import { streamNames, type CatalogEvent, type CatalogEventType, type EventCatalog, type EventMessage } from "../../lib/events";
import { EventSigner } from "../../lib/cluster-auth";
import { TEST_CLUSTER_SECRET, type TestEnv } from "./harness";
import { mintUser } from "./queue";
import { NATS_URL } from "./isolation";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnySchema = ServiceSchema<any, any, any>;

export class EventNodes {
	private readonly brokers: ServiceBroker[] = [];

	constructor(private readonly env: TestEnv) {}

	/** A started broker of this run with the given schemas or real services (by name under services/). */
	async node(services: (AnySchema | string)[], nodeID = `${this.env.id}-e${this.brokers.length}`): Promise<ServiceBroker> {
		const config = { ...this.env.config, nodeID };
		const broker = new ServiceBroker({ ...brokerOptions(config), nodeID });
		for (const s of services) {
			if (typeof s === "string") broker.loadService(path.resolve(__dirname, "../../services", s, `${s}.service.ts`));
			else broker.createService(s);
		}
		this.brokers.push(broker);
		await broker.start();
		return broker;
	}

	async stop(): Promise<void> {
		await Promise.all(this.brokers.map(b => b.stop().catch(() => undefined)));
	}
}

/** A token for a user the `userDirectory()` stand-in knows (test/support/queue.ts). */
export function tokenFor(env: TestEnv, role: "user" | "admin" = "user", id: string = crypto.randomUUID()): { id: string; token: string } {
	const token = signAccessToken(mintUser(id, role), env.config.jwt.secret!, 600);
	return { id, token };
}

let seq = 0;
/** An event as a relay would publish it. */
export function makeEvent(type: string, aggregateId: string, version: number, payload: Record<string, unknown>): EventMessage {
	const id = crypto.randomUUID();
	return {
		id,
		type,
		aggregateType: "reservation",
		aggregateId,
		version,
		createdAt: new Date(Date.now() + seq++).toISOString(),
		payload: { ...payload, eventId: id, version }
	};
}

/** `makeEvent` for a catalog event, its payload typed (and so checked by the compiler) by the event's name. */
export function catalogEvent<T extends CatalogEventType>(
	type: T,
	aggregateId: string,
	version: number,
	payload: EventCatalog[T]
): CatalogEvent<T> & EventMessage {
	return makeEvent(type, aggregateId, version, payload as unknown as Record<string, unknown>) as CatalogEvent<T> & EventMessage;
}

/**
 * Publishes straight to the run's stream, each time under a fresh message id: what a redelivery after the broker's
 * dedupe window (or a relay that lost its mark) looks like to the consumers. Signed with the run's cluster secret
 * as a node signs, unless `secret` is null (what a process without the secret can publish) or another secret.
 */
export async function publishRaw(
	namespace: string,
	events: EventMessage[],
	secret: string | null = TEST_CLUSTER_SECRET,
	nats: { servers: string; user?: string; pass?: string } = { servers: new URL(NATS_URL).host }
): Promise<void> {
	const names = streamNames(namespace);
	const signer = secret ? new EventSigner({ secret }) : undefined;
	const nc = await connect(nats);
	try {
		const js = nc.jetstream();
		const codec = JSONCodec();
		for (const e of events) {
			const subject = names.eventSubject(e.type);
			const data = codec.encode(e);
			const msgID = crypto.randomUUID();
			const h = headers();
			if (signer) h.set(EventSigner.HEADER, signer.sign(subject, msgID, data));
			await js.publish(subject, data, { msgID, headers: h });
		}
	} finally {
		await nc.close();
	}
}

/** `host:port` of the shared NATS server, or of the given nats:// URLs (a private server or cluster). */
const hostsOf = (urls: string[] = [NATS_URL]) => urls.map(u => new URL(u).host);

/** Every event of the run's stream in stream order (replays excluded); on the shared NATS unless `urls` say otherwise. */
export async function streamEvents(namespace: string, urls?: string[]): Promise<EventMessage[]> {
	const names = streamNames(namespace);
	const nc = await connect({ servers: hostsOf(urls) });
	try {
		const jsm = await nc.jetstreamManager();
		const info = await jsm.streams.info(names.events);
		const out: EventMessage[] = [];
		for (let s = info.state.first_seq; s <= info.state.last_seq; s++) {
			try {
				const m = await jsm.streams.getMessage(names.events, { seq: s });
				if (!m.subject.startsWith(names.replayPrefix)) out.push(m.json<EventMessage>());
			} catch {
				/* deleted */
			}
		}
		return out;
	} finally {
		await nc.close();
	}
}

/**
 * Deletes the run's event and dead-letter streams (afterAll), on the shared NATS unless `urls` name another server
 * or cluster. Deletes only: a stream that is not there is not created first (nor scaled to another replica count).
 */
export async function deleteEventStreams(namespace: string, urls?: string[]): Promise<void> {
	const names = streamNames(namespace);
	const nc = await connect({ servers: hostsOf(urls) });
	try {
		const jsm = await nc.jetstreamManager();
		for (const s of [names.events, names.dlq]) {
			await jsm.streams.delete(s).catch((err: Error) => {
				if (!/not found/i.test(err.message)) throw err;
			});
		}
	} finally {
		await nc.close();
	}
}

/** Names of streams of this run still on the server (cleanup check); on the shared NATS unless `urls` say otherwise. */
export async function runStreams(namespace: string, urls?: string[]): Promise<string[]> {
	const nc = await connect({ servers: hostsOf(urls) });
	try {
		const jsm = await nc.jetstreamManager();
		const names: string[] = [];
		for await (const s of jsm.streams.list()) if (s.config.name.includes(namespace)) names.push(s.config.name);
		return names;
	} finally {
		await nc.close();
	}
}
