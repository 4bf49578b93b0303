/**
 * The in-process bus (embedded mode) honours the same contract as the JetStream bus: each group gets each event
 * once and its members share them; a late group still gets earlier events; the same message id is stored once;
 * a failing handler is retried, then dead-lettered; a replay goes to the failed group only, once. Also the JetStream
 * bus's stream settings as pure functions (replica count and dead-letter limits, for new and existing streams).
 */
import { DiscardPolicy, StorageType } from "nats";
import { NATS_RECONNECT, streamChanges, streamConfigs, streamNames, streamSettings } from "../../lib/events/jetstream-bus";
import { MemoryEventBus } from "../../lib/events/memory-bus";
import { natsClientOptions } from "../../moleculer.config";
import { DeadLetterRedriver } from "../../lib/events/redrive";
import { redriveDue } from "../../lib/events/retry";
import type { DeadLetter, EventMessage } from "../../lib/events/types";
import { MemoryStore } from "../../lib/store";
import { waitFor } from "../support/harness";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
let n = 0;
const ev = (type = "test.happened", payload: Record<string, unknown> = {}): EventMessage => ({
	id: `e${++n}`,
	type,
	aggregateType: "x",
	aggregateId: "a",
	version: n,
	createdAt: new Date().toISOString(),
	payload
});

describe("memory event bus", () => {
	let bus: MemoryEventBus;
	beforeEach(() => (bus = new MemoryEventBus()));
	afterEach(() => bus.close());

	it("when two groups subscribe, then each gets every event once and the members of a group share them", async () => {
		const got: Record<string, string[]> = { g1a: [], g1b: [], g2: [] };
		await bus.subscribe({ group: "g1", types: ["test.happened"], handler: async e => void got.g1a.push(e.id) });
		await bus.subscribe({ group: "g1", types: ["test.happened"], handler: async e => void got.g1b.push(e.id) });
		await bus.subscribe({ group: "g2", types: ["test.happened"], handler: async e => void got.g2.push(e.id) });
		const events = Array.from({ length: 20 }, () => ev());
		for (const e of events) await bus.publish(e);
		await bus.publish(ev("other.type"));
		await waitFor(() => got.g1a.length + got.g1b.length === 20 && got.g2.length === 20, 2_000, "deliveries");
		// A sleep on purpose: it shows that no extra delivery follows.
		await sleep(50);
		expect([...got.g1a, ...got.g1b].sort()).toEqual(events.map(e => e.id).sort());
		expect(got.g1a.length).toBeGreaterThan(0);
		expect(got.g1b.length).toBeGreaterThan(0);
		expect(got.g2).toEqual(events.map(e => e.id));
	});

	it("when a group subscribes after events were published, or an id is published twice, then it gets each earlier event once", async () => {
		const e1 = ev();
		await bus.publish(e1);
		await bus.publish(e1);
		const got: string[] = [];
		await bus.subscribe({ group: "late", types: ["test.happened"], handler: async e => void got.push(e.id) });
		await waitFor(() => got.length === 1, 1_000, "the earlier event");
		// A sleep on purpose: it shows that the id published twice is not delivered twice.
		await sleep(30);
		expect(got).toEqual([e1.id]);
	});

	it("when a handler keeps failing, then it is tried maxAttempts times and dead-lettered; a replay after the fix applies once, to that group only", async () => {
		let fixed = false;
		const tries: number[] = [];
		const applied: string[] = [];
		const other: string[] = [];
		const letters: DeadLetter[] = [];
		await bus.subscribe({
			group: "fragile",
			types: ["test.happened"],
			maxAttempts: 3,
			backoffMs: 5,
			onDeadLetter: l => letters.push(l),
			handler: async (e, info) => {
				tries.push(info.attempt);
				if (!fixed) throw new Error("boom");
				applied.push(`${e.id}:${info.replayed}`);
			}
		});
		await bus.subscribe({ group: "bystander", types: ["test.happened"], handler: async e => void other.push(e.id) });
		const e = ev();
		await bus.publish(e);
		await waitFor(() => letters.length === 1, 2_000, "the dead letter");
		expect(tries).toEqual([1, 2, 3]);
		expect(letters[0]).toMatchObject({ group: "fragile", attempts: 3, error: "boom", event: { id: e.id } });
		expect(await bus.deadLetters()).toHaveLength(1);
		expect(await bus.deadLetters({ group: "bystander" })).toHaveLength(0);

		fixed = true;
		expect(await bus.replay(letters[0].id)).toMatchObject({ id: letters[0].id });
		expect(await bus.replay(letters[0].id)).toBeNull();
		await waitFor(() => applied.length === 1, 1_000, "the replay");
		// A sleep on purpose: it shows that the second replay (null) delivers nothing.
		await sleep(30);
		expect(applied).toEqual([`${e.id}:true`]);
		expect(other).toEqual([e.id]);
		expect(await bus.deadLetters()).toEqual([]);
	});

	it("when a subscription stops, then it waits for the event in hand and gets nothing more", async () => {
		const got: string[] = [];
		let release!: () => void;
		const sub = await bus.subscribe({
			group: "g",
			types: ["test.happened"],
			handler: async e => {
				got.push(e.id);
				await new Promise<void>(r => (release = r));
			}
		});
		await bus.publish(ev());
		await waitFor(() => got.length === 1, 1_000, "first event");
		const stopping = sub.stop();
		release();
		await stopping;
		await bus.publish(ev());
		// A sleep on purpose: it shows that the stopped subscription gets nothing more.
		await sleep(30);
		expect(got).toHaveLength(1);
	});

	it("when a handler fails for 2.5 s (a store restarting) and then recovers, then the event is applied and nothing is dead-lettered", async () => {
		const started = Date.now();
		const tries: number[] = [];
		const applied: string[] = [];
		const letters: DeadLetter[] = [];
		// The bus's default schedule: what every consumer group gets unless it says otherwise.
		await bus.subscribe({
			group: "patient",
			types: ["test.happened"],
			onDeadLetter: l => letters.push(l),
			handler: async (e, info) => {
				tries.push(info.attempt);
				if (Date.now() - started < 2_500) throw new Error("store unavailable");
				applied.push(e.id);
			}
		});
		const e = ev();
		await bus.publish(e);
		await waitFor(() => applied.length === 1 || letters.length > 0, 15_000, "the event applied or dead-lettered");
		expect(letters).toEqual([]);
		expect(applied).toEqual([e.id]);
		expect(tries.length).toBeGreaterThanOrEqual(5);
		expect(await bus.deadLetters()).toEqual([]);
	}, 20_000);

	it("when dead letters are redriven, then a fixed group applies its event once and a poison event stops after maxRedrives", async () => {
		let fixed = false;
		const applied: string[] = [];
		const letters: DeadLetter[] = [];
		await bus.subscribe({
			group: "redriven",
			types: ["test.happened", "test.poison"],
			maxAttempts: 2,
			backoffMs: 5,
			onDeadLetter: l => letters.push(l),
			handler: async e => {
				if (e.type === "test.poison" || !fixed) throw new Error("boom");
				applied.push(e.id);
			}
		});
		const good = ev();
		const poison = ev("test.poison");
		await bus.publish(good);
		await bus.publish(poison);
		await waitFor(() => letters.length === 2, 2_000, "two dead letters");
		const policy = { afterMs: 0, maxRedrives: 2 };
		fixed = true;
		// Another group's letters are not this group's business.
		expect((await bus.redrive("someone-else", policy)).redriven).toEqual([]);

		let round = await bus.redrive("redriven", policy);
		expect(round.redriven.map(l => l.event.id).sort()).toEqual([good.id, poison.id].sort());
		await waitFor(() => applied.length === 1 && letters.length === 3, 2_000, "the good one applied, the poison back");
		expect(letters[2]).toMatchObject({ event: { id: poison.id }, redrives: 1 });

		round = await bus.redrive("redriven", policy);
		expect(round.redriven.map(l => l.event.id)).toEqual([poison.id]);
		await waitFor(() => letters.length === 4, 2_000, "the poison back again");
		expect(letters[3]).toMatchObject({ redrives: 2 });

		// It had its two redrives: it stays, for an operator.
		round = await bus.redrive("redriven", policy);
		expect(round).toEqual({ redriven: [], exhausted: 1 });
		// A sleep on purpose: it shows that the exhausted poison is not delivered again.
		await sleep(50);
		expect(letters).toHaveLength(4);
		expect(await bus.deadLetters({ group: "redriven" })).toEqual([expect.objectContaining({ event: poison, redrives: 2 })]);
		expect(applied).toEqual([good.id]);

		// An operator's replay keeps the count: the poison does not earn new automatic rounds by it.
		await bus.replay(letters[3].id);
		await waitFor(() => letters.length === 5, 2_000, "the poison after the manual replay");
		expect(letters[4].redrives).toBe(2);
		expect((await bus.redrive("redriven", policy)).exhausted).toBe(1);
	});

	it("when two nodes' redrivers run a round at once, then one of them works (the lease) and each letter goes back once", async () => {
		const store = new MemoryStore({ sweepIntervalMs: 0 });
		try {
			let fixed = false;
			const applied: string[] = [];
			const letters: DeadLetter[] = [];
			await bus.subscribe({
				group: "leased",
				types: ["test.happened"],
				maxAttempts: 1,
				onDeadLetter: l => letters.push(l),
				handler: async e => {
					if (!fixed) throw new Error("down");
					applied.push(e.id);
				}
			});
			const events = [ev(), ev(), ev()];
			for (const e of events) await bus.publish(e);
			await waitFor(() => letters.length === 3, 2_000, "three dead letters");
			fixed = true;
			const policy = { afterMs: 1, maxRedrives: 3 };
			// The redriver goes by the wall clock (it takes none to inject): the letters are due 1 ms after they failed.
			await waitFor(
				async () => (await bus.deadLetters({ group: "leased" })).every(l => redriveDue(l, policy, Date.now()) === "due"),
				1_000,
				"the letters to be due"
			);
			const [a, b] = [1, 2].map(i => new DeadLetterRedriver({ bus, group: "leased", policy, store, owner: `node-${i}` }));
			const rounds = await Promise.all([a.round(), b.round()]);
			expect(rounds.filter(r => r === null)).toHaveLength(1);
			expect(rounds.find(r => r !== null)!.redriven).toHaveLength(3);
			await waitFor(() => applied.length === 3, 2_000, "the redriven events");
			// A sleep on purpose: it shows that no letter goes back twice.
			await sleep(50);
			expect(applied.sort()).toEqual(events.map(e => e.id).sort());
			expect(await bus.deadLetters({ group: "leased" })).toEqual([]);
			// The lease was given back: the next round works (with nothing left to do).
			expect(await b.round()).toEqual({ redriven: [], exhausted: 0 });
		} finally {
			await store.close();
		}
	});
});

describe("JetStream bus stream settings (JETSTREAM_REPLICAS, dead-letter limits)", () => {
	const names = streamNames("unit-ns");

	it("when replicas are given, then both streams are created with that many copies, on file storage", () => {
		const { events, dlq } = streamConfigs(names, streamSettings({ replicas: 3, dlqMaxAgeSec: 86_400, dlqMaxMessages: 1000 }));
		expect(events).toMatchObject({ name: "CRP_unit-ns_EVENTS", subjects: ["crp.unit-ns.ev.>"], num_replicas: 3, storage: StorageType.File });
		expect(dlq).toMatchObject({ name: "CRP_unit-ns_DLQ", num_replicas: 3, max_age: 86_400 * 1e9, max_msgs: 1000, discard: DiscardPolicy.Old });
	});

	it("when nothing is given, then one copy and the default dead-letter limits; a count outside 1..5 is refused", () => {
		expect(streamSettings({})).toEqual({ replicas: 1, dlqMaxAgeSec: 30 * 86400, dlqMaxMessages: 100_000 });
		expect(() => streamSettings({ replicas: 0 })).toThrow(/1 to 5/);
		expect(() => streamSettings({ replicas: 7 })).toThrow(/1 to 5/);
		expect(() => streamSettings({ replicas: 2.5 })).toThrow(/1 to 5/);
	});

	it("when an existing stream has another replica count, then only that changes; the DLQ also takes new limits", () => {
		const wanted = streamConfigs(names, streamSettings({ replicas: 3, dlqMaxAgeSec: 86_400, dlqMaxMessages: 1000 }));
		const existingEvents = { num_replicas: 1, max_age: 7 * 86400 * 1e9, max_msgs: -1, discard: DiscardPolicy.Old };
		expect(streamChanges(existingEvents, wanted.events, false)).toEqual({ num_replicas: 3 });
		expect(streamChanges({ ...existingEvents, num_replicas: 3 }, wanted.events, false)).toBeNull();
		// The events stream's own limits are not the bus's to change (only the DLQ's are configurable).
		expect(streamChanges({ ...existingEvents, num_replicas: 3, max_age: 1 }, wanted.events, false)).toBeNull();
		const existingDlq = { num_replicas: 1, max_age: 30 * 86400 * 1e9, max_msgs: 100_000, discard: DiscardPolicy.New };
		expect(streamChanges(existingDlq, wanted.dlq, true)).toEqual({ num_replicas: 3, max_age: 86_400 * 1e9, max_msgs: 1000, discard: DiscardPolicy.Old });
		expect(streamChanges({ num_replicas: 3, max_age: 86_400 * 1e9, max_msgs: 1000, discard: DiscardPolicy.Old }, wanted.dlq, true)).toBeNull();
	});

	it("when a node asks for fewer copies than a stream keeps (a REPL or a job without JETSTREAM_REPLICAS), then the copies stay", () => {
		const one = streamConfigs(names, streamSettings({}));
		expect(streamChanges({ num_replicas: 3, max_age: 0, max_msgs: -1, discard: DiscardPolicy.Old }, one.events, false)).toBeNull();
		const dlqChange = streamChanges({ num_replicas: 3, max_age: 1, max_msgs: 1, discard: DiscardPolicy.Old }, one.dlq, true);
		expect(dlqChange).not.toHaveProperty("num_replicas");
	});

	it("when a stream reports 0 replicas (a server that leaves the default out), then it counts as one copy", () => {
		const one = streamConfigs(names, streamSettings({}));
		expect(streamChanges({ num_replicas: 0, max_age: 0, max_msgs: -1, discard: DiscardPolicy.Old }, one.events, false)).toBeNull();
	});

	it("when a node connects, then the transporter and the bus share the reconnection settings: never give up, a silent server noticed within 20 s", () => {
		const transport = natsClientOptions({ url: "nats://a:4222,nats://b:4222", servers: ["a:4222", "b:4222"] });
		expect(transport).toMatchObject({ servers: ["a:4222", "b:4222"], ...NATS_RECONNECT });
		expect(NATS_RECONNECT.maxReconnectAttempts).toBe(-1);
		expect(NATS_RECONNECT.pingInterval * NATS_RECONNECT.maxPingOut).toBeLessThanOrEqual(20_000);
	});
});
