/**
 * Sealing of packets between nodes and signing of JetStream events with the cluster secret (lib/cluster-auth.ts),
 * without a broker: what passes, and for each way a packet can be wrong, the reason it is dropped.
 */
import { EventSigner, PACKET_MAX_AGE_MS, packetSealer } from "../../lib/cluster-auth";

const SECRET = "s".repeat(40);
const OTHER = "o".repeat(40);
const data = Buffer.from('{"ver":"5","sender":"a","action":"payment.charge","params":{"amount":1}}');

function pair(opts: { senderSecret?: string; accept?: string; receiverSecret?: string; now?: () => number } = {}) {
	const a = packetSealer({ secret: opts.senderSecret ?? SECRET, nodeID: "node-a", now: opts.now });
	const b = packetSealer({ secret: opts.receiverSecret ?? SECRET, accept: opts.accept, nodeID: "node-b", now: opts.now });
	return { a, b };
}

describe("packet sealing with the cluster secret", () => {
	it("when a node seals a packet, then a node with the same secret opens it to the same bytes, and the wire shows none of them", () => {
		const { a, b } = pair();
		const sealed = a.seal("REQ", "node-b", data);
		expect(sealed.includes(Buffer.from("payment.charge"))).toBe(false);
		expect(b.open("REQ", sealed)).toEqual({ ok: true, data });
		// A broadcast (no target) opens anywhere.
		expect(b.open("HEARTBEAT", a.seal("HEARTBEAT", null, data))).toEqual({ ok: true, data });
	});

	it("when a packet is sealed with another secret, then it is dropped as sealed with an unknown key", () => {
		const { a, b } = pair({ senderSecret: OTHER });
		expect(b.open("REQ", a.seal("REQ", "node-b", data))).toMatchObject({ ok: false, reason: "unknown-key", sender: "node-a" });
	});

	it("when any byte of a sealed packet is changed, then it is dropped (forged or unreadable), never delivered", () => {
		const { a, b } = pair();
		const sealed = a.seal("REQ", "node-b", data);
		for (let i = 0; i < sealed.length; i++) {
			const tampered = Buffer.from(sealed);
			tampered[i] ^= 0x01;
			const res = b.open("REQ", tampered);
			expect(res.ok).toBe(false);
		}
	});

	it("when a packet is presented as another type than it was sealed as, then it is forged", () => {
		const { a, b } = pair();
		expect(b.open("EVENT", a.seal("REQ", "node-b", data))).toMatchObject({ ok: false, reason: "forged" });
	});

	it("when a packet addressed to one node reaches another, then that node drops it as misdirected", () => {
		const { a, b } = pair();
		expect(b.open("REQ", a.seal("REQ", "node-c", data))).toMatchObject({ ok: false, reason: "misdirected" });
	});

	it("when the same packet arrives twice, then the copy is dropped as replayed", () => {
		const { a, b } = pair();
		const sealed = a.seal("REQ", "node-b", data);
		expect(b.open("REQ", sealed).ok).toBe(true);
		expect(b.open("REQ", sealed)).toMatchObject({ ok: false, reason: "replayed" });
	});

	it("when packets arrive out of order within the window, then each is delivered once", () => {
		const { a, b } = pair();
		const packets = Array.from({ length: 50 }, (_, i) => a.seal("EVENT", null, Buffer.from(String(i))));
		const order = [...packets.keys()].reverse();
		for (const i of order) expect(b.open("EVENT", packets[i]).ok).toBe(true);
		for (const i of order) expect(b.open("EVENT", packets[i])).toMatchObject({ ok: false, reason: "replayed" });
	});

	it("when a packet is older than the maximum age or dated in the future, then it is dropped as stale", () => {
		let now = 1_700_000_000_000;
		const clock = () => now;
		const { a, b } = pair({ now: clock });
		const old = a.seal("REQ", "node-b", data);
		now += PACKET_MAX_AGE_MS + 1;
		expect(b.open("REQ", old)).toMatchObject({ ok: false, reason: "stale" });
		const future = packetSealer({ secret: SECRET, nodeID: "node-a", now: () => now + PACKET_MAX_AGE_MS + 1 }).seal("REQ", "node-b", data);
		expect(b.open("REQ", future)).toMatchObject({ ok: false, reason: "stale" });
	});

	it("when a node restarts under the same node id, then a packet captured before the restart is not accepted again", () => {
		let now = 1_700_000_000_000;
		const a = packetSealer({ secret: SECRET, nodeID: "node-a", now: () => now });
		const before = packetSealer({ secret: SECRET, nodeID: "node-b", now: () => now });
		const captured = a.seal("REQ", "node-b", data);
		expect(before.open("REQ", captured).ok).toBe(true);
		now += 5_000;
		const restarted = packetSealer({ secret: SECRET, nodeID: "node-b", now: () => now });
		expect(restarted.open("REQ", captured)).toMatchObject({ ok: false, reason: "stale" });
		expect(restarted.open("REQ", a.seal("REQ", "node-b", data)).ok).toBe(true);
	});

	it("when the secret is rotated, then a node that also accepts the old one opens both, and one that does not opens only its own", () => {
		const oldNode = packetSealer({ secret: OTHER, nodeID: "node-a" });
		const rotating = packetSealer({ secret: SECRET, accept: OTHER, nodeID: "node-b" });
		const newOnly = packetSealer({ secret: SECRET, nodeID: "node-b" });
		expect(rotating.open("INFO", oldNode.seal("INFO", null, data)).ok).toBe(true);
		expect(newOnly.open("INFO", oldNode.seal("INFO", null, data))).toMatchObject({ ok: false, reason: "unknown-key" });
		// Sealing always uses the first secret, which the new-only node knows.
		expect(newOnly.open("INFO", rotating.seal("INFO", null, data)).ok).toBe(true);
	});

	it("when the bytes are not a sealed packet at all (a plain Moleculer JSON packet), then it is malformed", () => {
		const { b } = pair();
		expect(b.open("REQ", data)).toMatchObject({ ok: false, reason: "malformed" });
		expect(b.open("REQ", Buffer.alloc(0))).toMatchObject({ ok: false, reason: "malformed" });
		expect(b.open("REQ", Buffer.from([1, 2, 3]))).toMatchObject({ ok: false, reason: "malformed" });
	});
});

describe("event signatures with the cluster secret", () => {
	const body = Buffer.from('{"id":"e1","type":"reservation.confirmed"}');

	it("when an event is signed, then it verifies, and a change of subject, id, body or key does not", () => {
		const signer = new EventSigner({ secret: SECRET });
		const sig = signer.sign("crp.ns.ev.reservation.confirmed", "e1", body);
		expect(signer.verify("crp.ns.ev.reservation.confirmed", "e1", body, sig)).toBe(true);
		expect(signer.verify("crp.ns.ev.reservation.cancelled", "e1", body, sig)).toBe(false);
		expect(signer.verify("crp.ns.ev.reservation.confirmed", "e2", body, sig)).toBe(false);
		expect(signer.verify("crp.ns.ev.reservation.confirmed", "e1", Buffer.from(body.toString().replace("e1", "e9")), sig)).toBe(false);
		expect(new EventSigner({ secret: OTHER }).verify("crp.ns.ev.reservation.confirmed", "e1", body, sig)).toBe(false);
		for (const bad of [undefined, "", "v1", "v2.00000000.x", sig.slice(0, -2)]) {
			expect(signer.verify("crp.ns.ev.reservation.confirmed", "e1", body, bad)).toBe(false);
		}
	});

	it("when the secret is rotated, then events signed with the accepted old secret still verify", () => {
		const old = new EventSigner({ secret: OTHER });
		const rotating = new EventSigner({ secret: SECRET, accept: OTHER });
		expect(rotating.verify("s", "m", body, old.sign("s", "m", body))).toBe(true);
	});
});
