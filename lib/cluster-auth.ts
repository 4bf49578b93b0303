/**
 * Who is a member of the cluster: whoever holds CLUSTER_SECRET. NATS credentials only let a process onto the
 * NATS server; without this secret it can neither call, answer, emit nor announce a service.
 *
 * Packets (`PacketAuthMiddleware`): Moleculer's transit hooks, `transporterSend` and `transporterReceive`, which
 * its own Encryption middleware uses. That middleware is not enough here (AES-CBC with a fixed IV: no integrity,
 * no protection against a replayed packet), so every packet (INFO, REQ, RES, EVENT, DISCOVER, HEARTBEAT, ...) is
 * sealed with AES-256-GCM instead, which encrypts and authenticates at once:
 *
 *   version | key id (4) | sender salt (16) | counter (6) | time ms (6) | sender id | target id | GCM tag (16) | ciphertext
 *
 * - Each process derives its own key from the cluster key and a random salt it picks at start (HKDF), and numbers
 *   its packets; the counter and the time form the GCM nonce, so a nonce is never used twice under one key.
 * - The header is authenticated with the packet type (REQ, INFO...), so a packet cannot be replayed as another
 *   type, nor sent to another node than its target (a node drops a packet addressed to someone else).
 * - A packet older than 30 s (or from 30 s in the future) is dropped; within that time each sender's counters are
 *   remembered in a sliding window, so a captured packet replayed on the wire is dropped too. That memory is the
 *   process's, so a node also drops what was sealed more than a second before it started: NATS delivers nothing
 *   published before a node subscribed, so such a packet can only be a replay aimed at a node that restarted
 *   under the same NODE_ID (node clocks are expected to agree within that second: NTP).
 * - Packets also hide their content from whoever can read NATS (passwords of logins travel in them).
 * - A packet that fails is dropped, logged once per (claimed) sender and reason, and counted in
 *   `cluster_packets_rejected_total{reason}`.
 * - Rotation: CLUSTER_SECRET seals and opens; CLUSTER_SECRET_ACCEPT only opens. README, Security, has the steps.
 *
 * Events through JetStream (`EventSigner`): the same secret (another derived key) signs each message with
 * HMAC-SHA256 over subject, message id and body, in a `Crp-Sig` header; consumers drop what fails. Events are not
 * time-checked (a consumer may catch up days later); a replayed event is a duplicate, and every consumer
 * dedupes by event id.
 */
import crypto from "crypto";
import type { Middleware, ServiceBroker } from "moleculer";

const VERSION = 1;
/** Packets older (or newer) than this are dropped; the replay window covers three times as long. */
export const PACKET_MAX_AGE_MS = 30_000;
/** A packet sealed this long before the receiving process started is a replay (see the header). */
const START_SKEW_MS = 1_000;
/** Counters of one sender remembered behind its highest: reordering up to this many packets is tolerated. */
const WINDOW = 16_384;
const HEADER_FIXED = 1 + 4 + 16 + 6 + 6;
const TAG_BYTES = 16;

interface ClusterKey {
	id: Buffer;
	packets: Buffer;
	events: Buffer;
}

function deriveKey(secret: string): ClusterKey {
	const master = Buffer.from(secret, "utf8");
	const derive = (info: string, len: number) => Buffer.from(crypto.hkdfSync("sha256", master, "crp-cluster", info, len));
	return { id: derive("key id v1", 4), packets: derive("packets v1", 32), events: derive("events v1", 32) };
}

/** The sealing key first, then any key that is only accepted. */
function keyring(secrets: { secret: string; accept?: string }): ClusterKey[] {
	return [secrets.secret, secrets.accept].filter((s): s is string => !!s).map(deriveKey);
}

const senderKey = (clusterKey: Buffer, salt: Buffer) => Buffer.from(crypto.hkdfSync("sha256", clusterKey, salt, "sender v1", 32));

export type RejectReason = "malformed" | "unknown-key" | "stale" | "misdirected" | "forged" | "replayed";

/** A sender process's key and the counters already seen from it. */
class Sender {
	private highest = -1;
	private readonly seen = new Uint32Array(WINDOW / 32);
	lastSeen = 0;

	constructor(readonly key: Buffer) {}

	/** True the first time a counter is presented; false for a repeat or one too far behind. */
	accept(counter: number): boolean {
		if (counter > this.highest) {
			if (counter - this.highest >= WINDOW) this.seen.fill(0);
			else for (let n = this.highest + 1; n < counter; n++) this.seen[(n % WINDOW) >>> 5] &= ~(1 << ((n % WINDOW) & 31));
			this.highest = counter;
		} else if (this.highest - counter >= WINDOW) {
			return false;
		}
		const word = (counter % WINDOW) >>> 5;
		const mask = 1 << ((counter % WINDOW) & 31);
		if (this.seen[word] & mask) return false;
		this.seen[word] |= mask;
		return true;
	}
}

export interface PacketSealer {
	seal(cmd: string, target: string | null | undefined, data: Buffer): Buffer;
	open(cmd: string, data: Buffer): { ok: true; data: Buffer } | { ok: false; reason: RejectReason; sender: string };
	/** Forgets senders not heard from for three packet lifetimes (their packets are stale by then anyway). */
	prune(): void;
}

/** The sealing and opening of packets, apart from Moleculer (unit tests use it directly). */
export function packetSealer(opts: { secret: string; accept?: string; nodeID: string; now?: () => number }): PacketSealer {
	const keys = keyring(opts);
	const now = opts.now ?? Date.now;
	const own = Buffer.from(opts.nodeID, "utf8");
	if (own.length > 255) throw new Error("NODE_ID is longer than 255 bytes");
	const salt = crypto.randomBytes(16);
	const sealKey = senderKey(keys[0].packets, salt);
	const notBefore = now() - START_SKEW_MS;
	let counter = 0;
	const senders = new Map<string, Sender>();

	return {
		seal(cmd, target, data) {
			const to = Buffer.from(target ?? "", "utf8");
			const header = Buffer.allocUnsafe(HEADER_FIXED + 1 + own.length + 1 + to.length);
			header[0] = VERSION;
			keys[0].id.copy(header, 1);
			salt.copy(header, 5);
			header.writeUIntBE(counter++, 21, 6);
			header.writeUIntBE(now(), 27, 6);
			header[33] = own.length;
			own.copy(header, 34);
			header[34 + own.length] = to.length;
			to.copy(header, 35 + own.length);
			const cipher = crypto.createCipheriv("aes-256-gcm", sealKey, header.subarray(21, 33));
			cipher.setAAD(header);
			cipher.setAAD(Buffer.from(cmd, "utf8"));
			const body = Buffer.concat([cipher.update(data), cipher.final()]);
			return Buffer.concat([header, cipher.getAuthTag(), body]);
		},

		open(cmd, data) {
			let sender = "";
			if (data.length < HEADER_FIXED + 2 + TAG_BYTES || data[0] !== VERSION) return { ok: false, reason: "malformed", sender };
			const senderLen = data[33];
			const targetAt = 34 + senderLen;
			if (data.length < targetAt + 1 + TAG_BYTES) return { ok: false, reason: "malformed", sender };
			sender = data.toString("utf8", 34, targetAt);
			const targetLen = data[targetAt];
			const headerEnd = targetAt + 1 + targetLen;
			if (data.length < headerEnd + TAG_BYTES) return { ok: false, reason: "malformed", sender };
			const keyIndex = keys.findIndex(k => k.id.equals(data.subarray(1, 5)));
			if (keyIndex < 0) return { ok: false, reason: "unknown-key", sender };
			const sentAt = data.readUIntBE(27, 6);
			const t = now();
			if (Math.abs(t - sentAt) > PACKET_MAX_AGE_MS || sentAt < notBefore) return { ok: false, reason: "stale", sender };
			if (targetLen > 0 && !own.equals(data.subarray(targetAt + 1, headerEnd))) return { ok: false, reason: "misdirected", sender };

			const senderSalt = data.subarray(5, 21);
			const id = `${keyIndex}:${senderSalt.toString("hex")}`;
			const known = senders.get(id);
			const key = known?.key ?? senderKey(keys[keyIndex].packets, senderSalt);
			let plain: Buffer;
			try {
				const decipher = crypto.createDecipheriv("aes-256-gcm", key, data.subarray(21, 33));
				decipher.setAAD(data.subarray(0, headerEnd));
				decipher.setAAD(Buffer.from(cmd, "utf8"));
				decipher.setAuthTag(data.subarray(headerEnd, headerEnd + TAG_BYTES));
				plain = Buffer.concat([decipher.update(data.subarray(headerEnd + TAG_BYTES)), decipher.final()]);
			} catch {
				return { ok: false, reason: "forged", sender };
			}
			// Only an authentic packet makes the sender known: forgeries cannot grow this map.
			let s = known;
			if (!s) {
				s = new Sender(key);
				senders.set(id, s);
			}
			if (!s.accept(data.readUIntBE(21, 6))) return { ok: false, reason: "replayed", sender };
			s.lastSeen = t;
			return { ok: true, data: plain };
		},

		prune() {
			const before = now() - 3 * PACKET_MAX_AGE_MS;
			for (const [id, s] of senders) if (s.lastSeen < before) senders.delete(id);
		}
	};
}

const REASONS: Record<RejectReason, string> = {
	malformed: "not a sealed packet",
	"unknown-key": "sealed with a key this node does not have (another CLUSTER_SECRET)",
	stale: "older than 30 s or than this node, or from the future (check the clocks)",
	misdirected: "addressed to another node",
	forged: "failed authentication",
	replayed: "a copy of a packet already received"
};

/** At most this many distinct (sender, reason) pairs are logged; after that only the metric counts. */
const MAX_LOGGED = 1000;

/** The broker middleware: every packet sealed on the way out, opened and checked on the way in. */
export function PacketAuthMiddleware(secrets: { secret: string; accept?: string }): Middleware {
	let sealer: PacketSealer;
	let broker: ServiceBroker;
	let pruner: NodeJS.Timeout | undefined;
	const logged = new Set<string>();

	const reject = (cmd: string, reason: RejectReason, sender: string) => {
		if (broker.isMetricsEnabled()) broker.metrics.increment("cluster_packets_rejected_total", { reason });
		// Once a flood of invented sender names has filled the set, each reason is still said once more.
		const key = logged.size < MAX_LOGGED ? `${sender}\u0000${reason}` : `\u0000${reason}`;
		if (logged.has(key)) return;
		logged.add(key);
		broker.logger.warn(
			`Dropped a ${cmd} packet from "${sender.replace(/[^\x20-\x7e]/g, "?").slice(0, 80)}": ${REASONS[reason]}. ` +
				"Further ones like it are counted in cluster_packets_rejected_total, not logged."
		);
	};

	return {
		name: "PacketAuth",

		created(this: ServiceBroker, b: ServiceBroker) {
			broker = b;
			sealer = packetSealer({ ...secrets, nodeID: b.nodeID });
			if (b.isMetricsEnabled()) {
				b.metrics.register({
					name: "cluster_packets_rejected_total",
					type: "counter",
					labelNames: ["reason"],
					description: "Packets from the transporter dropped by the cluster-secret check"
				});
			}
			pruner = setInterval(() => sealer.prune(), PACKET_MAX_AGE_MS);
			pruner.unref();
			b.logger.info("Packets between nodes are sealed with the cluster secret (AES-256-GCM).");
		},

		async stopped() {
			if (pruner) clearInterval(pruner);
		},

		transporterSend(next: (topic: string, data: Buffer, meta: unknown) => Promise<void>) {
			return (topic: string, data: Buffer, meta: { packet?: { type?: string; target?: string | null } }) => {
				const type = meta?.packet?.type;
				if (!type) throw new Error(`a packet to ${topic} has no type to seal it with`);
				return next(topic, sealer.seal(type, meta.packet!.target, data), meta);
			};
		},

		transporterReceive(next: (cmd: string, data: Buffer, s: unknown) => Promise<void>) {
			return (cmd: string, data: Buffer, s: unknown) => {
				const opened = sealer.open(cmd, data);
				if (!opened.ok) {
					reject(cmd, opened.reason, opened.sender);
					return Promise.resolve();
				}
				return next(cmd, opened.data, s);
			};
		}
		// moleculer 0.15's typings declare the transit hooks as returning what `send`/`receive` return; at run time
		// (and in its own Encryption middleware) they return the wrapped function, as here.
	} as unknown as Middleware;
}

/** Signs and checks events that travel through JetStream (header `Crp-Sig: v1.<key id>.<mac>`). */
export class EventSigner {
	static readonly HEADER = "Crp-Sig";
	private readonly keys: ClusterKey[];

	constructor(secrets: { secret: string; accept?: string }) {
		this.keys = keyring(secrets);
	}

	sign(subject: string, msgId: string, data: Uint8Array): string {
		const k = this.keys[0];
		return `v1.${k.id.toString("hex")}.${this.mac(k, subject, msgId, data).toString("base64url")}`;
	}

	verify(subject: string, msgId: string, data: Uint8Array, signature: string | undefined): boolean {
		const m = /^v1\.([0-9a-f]{8})\.([A-Za-z0-9_-]{43})$/.exec(signature ?? "");
		if (!m) return false;
		const k = this.keys.find(key => key.id.toString("hex") === m[1]);
		if (!k) return false;
		return crypto.timingSafeEqual(this.mac(k, subject, msgId, data), Buffer.from(m[2], "base64url"));
	}

	private mac(k: ClusterKey, subject: string, msgId: string, data: Uint8Array): Buffer {
		return crypto.createHmac("sha256", k.events).update(`${subject}\n${msgId}\n`).update(data).digest();
	}
}
