/**
 * The JetStream bus against the real NATS server: several nodes racing to create the streams and one group's
 * durable consumer at the same moment (the race docs/DESIGN.md section 1 warns about in @moleculer/channels), each
 * event once per group across its members, late groups, dead letters and a replay to one group only. Every
 * stream is named after this run's namespace and deleted afterwards.
 */
import { connect } from "nats";
import { InvalidEventError, JetStreamEventBus, type DeadLetter } from "../../lib/events";
import { redriveDue } from "../../lib/events/retry";
import { DeadLetterRedriver } from "../../lib/events/redrive";
import { RedisStore } from "../../lib/store";
import { makeEvent, runStreams } from "../support/events";
import { NATS_URL, REDIS_URL, runId } from "../support/isolation";
import { waitFor } from "../support/harness";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

describe("JetStream event bus (real NATS)", () => {
	const namespace = runId("bus");
	const buses: JetStreamEventBus[] = [];
	const bus = () => {
		const b = new JetStreamEventBus({ url: NATS_URL, namespace });
		buses.push(b);
		return b;
	};

	afterAll(async () => {
		await buses[0]?.destroy().catch(() => undefined);
		await Promise.all(buses.map(b => b.close()));
		expect(await runStreams(namespace)).toEqual([]);
	});

	it("when 4 nodes create the streams and the same group at once, then all subscribe and the group gets each of 100 events once", async () => {
		const nodes = [bus(), bus(), bus(), bus()];
		const got: string[][] = nodes.map(() => []);
		await Promise.all(nodes.map((b, i) => b.subscribe({ group: "race", types: ["test.happened"], handler: async e => void got[i].push(e.id) })));
		const events = Array.from({ length: 100 }, (_, i) => makeEvent("test.happened", `a${i % 10}`, i + 1, { i }));
		await Promise.all(events.map(e => nodes[0].publish(e)));
		// The same ids again (a relay that could not mark its rows): the stream stores them once.
		await Promise.all(events.slice(0, 20).map(e => nodes[1].publish(e)));
		await waitFor(() => got.flat().length >= 100, 10_000, "100 deliveries");
		// A sleep on purpose: it shows that no delivery beyond the 100 follows (the republished ids included).
		await sleep(300);
		const all = got.flat();
		expect(all).toHaveLength(100);
		expect(new Set(all).size).toBe(100);
		expect(got.filter(g => g.length > 0).length).toBeGreaterThan(1);
	}, 30_000);

	it("when a group's durable consumer disappears under a subscriber, then the subscriber takes it again and keeps receiving", async () => {
		const b = bus();
		const got: string[] = [];
		await b.subscribe({ group: "phoenix", types: ["test.phoenix"], handler: async ev => void got.push(ev.id) });
		const before = makeEvent("test.phoenix", "ph", 1, {});
		await b.publish(before);
		await waitFor(() => got.includes(before.id), 5_000, "the first event");
		const nc = await connect({ servers: new URL(NATS_URL).host });
		try {
			await (await nc.jetstreamManager()).consumers.delete(b.names.events, "phoenix");
		} finally {
			await nc.close();
		}
		const after = makeEvent("test.phoenix", "ph", 2, {});
		await b.publish(after);
		await waitFor(() => got.includes(after.id), 15_000, "the event after the consumer was lost");
		// A consumer taken again from scratch starts over (deliver all): at least once, hence the consumers' dedupe.
		expect(got.filter(id => id === before.id).length).toBeGreaterThanOrEqual(1);
	}, 30_000);

	it("when a group subscribes after events were published, then it still receives them", async () => {
		const b = bus();
		const e = makeEvent("test.late", "late", 1, {});
		await b.publish(e);
		const got: string[] = [];
		await b.subscribe({ group: "latecomer", types: ["test.late"], handler: async ev => void got.push(ev.id) });
		await waitFor(() => got.includes(e.id), 5_000, "the earlier event");
	});

	it("when a handler keeps failing, then it is dead-lettered after maxAttempts; a replay goes to that group only, once", async () => {
		const b = bus();
		let fixed = false;
		const tries: number[] = [];
		const applied: string[] = [];
		const other: string[] = [];
		const letters: DeadLetter[] = [];
		await b.subscribe({
			group: "fragile",
			types: ["test.poison"],
			maxAttempts: 4,
			backoffMs: 20,
			onDeadLetter: l => letters.push(l),
			handler: async (ev, info) => {
				tries.push(info.attempt);
				if (!fixed) throw new Error("cannot handle");
				applied.push(`${ev.id}:${info.replayed}`);
			}
		});
		await b.subscribe({ group: "bystander", types: ["test.poison"], handler: async ev => void other.push(ev.id) });
		const e = makeEvent("test.poison", "p", 1, {});
		await b.publish(e);
		await waitFor(() => letters.length === 1, 10_000, "the dead letter");
		expect(tries).toEqual([1, 2, 3, 4]);
		const listed = await b.deadLetters({ group: "fragile" });
		expect(listed).toEqual([expect.objectContaining({ id: letters[0].id, group: "fragile", attempts: 4, error: "cannot handle", event: e })]);

		fixed = true;
		const [first, second] = await Promise.all([b.replay(letters[0].id), b.replay(letters[0].id)]);
		expect([first, second].filter(Boolean).length).toBeGreaterThanOrEqual(1);
		await waitFor(() => applied.length === 1, 5_000, "the replay");
		// A sleep on purpose: it shows that the other replay delivers nothing more.
		await sleep(300);
		// Two concurrent replays of one letter publish under one message id: the group handles it once.
		expect(applied).toEqual([`${e.id}:true`]);
		expect(other).toEqual([e.id]);
		expect(await b.deadLetters({ group: "fragile" })).toEqual([]);
		expect(await b.replay(letters[0].id)).toBeNull();
	}, 30_000);

	it("when a handler calls an event invalid, then it is dead-lettered at its first delivery, marked invalid, and never due for a redrive", async () => {
		const b = bus();
		const tries: number[] = [];
		const letters: DeadLetter[] = [];
		await b.subscribe({
			group: "strict",
			types: ["test.invalid"],
			maxAttempts: 5,
			backoffMs: 100,
			onDeadLetter: l => letters.push(l),
			handler: async (ev, info) => {
				tries.push(info.attempt);
				throw new InvalidEventError(ev.id, ev.type, ["The 'userId' field is required."]);
			}
		});
		await b.publish(makeEvent("test.invalid", "inv", 1, {}));
		await waitFor(() => letters.length === 1, 10_000, "the dead letter");
		expect(tries).toEqual([1]);
		const [stored] = await b.deadLetters({ group: "strict" });
		expect(stored).toMatchObject({ attempts: 1, invalid: true });
		expect(stored.error).toContain("userId");
		expect(redriveDue(stored, { afterMs: 1, maxRedrives: 3 }, Date.now() + 60_000)).toBe("exhausted");
	}, 30_000);

	it("when a consumer fails for 4 s (twice the old 2 s window) and then recovers, then it gets the event and nothing is dead-lettered", async () => {
		const b = bus();
		let failUntil = Infinity;
		const tries: number[] = [];
		const applied: string[] = [];
		const letters: DeadLetter[] = [];
		// No retry options: the bus's default schedule, as every service gets it.
		await b.subscribe({
			group: "outage",
			types: ["test.outage"],
			onDeadLetter: l => letters.push(l),
			handler: async (ev, info) => {
				tries.push(info.attempt);
				if (Date.now() < failUntil) throw new Error("coordination store unavailable");
				applied.push(ev.id);
			}
		});
		failUntil = Date.now() + 4_000;
		const e = makeEvent("test.outage", "out", 1, {});
		await b.publish(e);
		await waitFor(() => applied.length === 1 || letters.length > 0, 20_000, "the event applied or dead-lettered");
		expect(letters).toEqual([]);
		expect(applied).toEqual([e.id]);
		expect(tries.length).toBeGreaterThanOrEqual(6);
		expect(tries).toEqual(tries.map((_, i) => i + 1));
		expect(await b.deadLetters({ group: "outage" })).toEqual([]);
	}, 30_000);

	it("when dead letters have waited, then the redriver sends them back: the fixed one is applied once, the poison stops after maxRedrives", async () => {
		const b = bus();
		const store = new RedisStore({ url: REDIS_URL, prefix: `crp-test:${runId("redrive")}:` });
		try {
			let fixed = false;
			const applied: string[] = [];
			const letters: DeadLetter[] = [];
			await b.subscribe({
				group: "redrive",
				types: ["test.redrive", "test.redrivepoison"],
				maxAttempts: 2,
				backoffMs: 20,
				onDeadLetter: l => letters.push(l),
				handler: async (ev, info) => {
					if (ev.type === "test.redrivepoison" || !fixed) throw new Error(`failed attempt ${info.attempt}`);
					applied.push(`${ev.id}:${info.replayed}`);
				}
			});
			const good = makeEvent("test.redrive", "rd", 1, {});
			const poison = makeEvent("test.redrivepoison", "rp", 1, {});
			await b.publish(good);
			await b.publish(poison);
			await waitFor(() => letters.length === 2, 10_000, "two dead letters");
			expect(letters.map(l => l.redrives)).toEqual([0, 0]);
			fixed = true;

			const policy = { afterMs: 300, maxRedrives: 1 };
			// Two nodes: the lease lets one work at a time; what it sends back arrives once.
			const nodes = [1, 2].map(i => new DeadLetterRedriver({ bus: b, group: "redrive", policy, store, owner: `n${i}`, intervalMs: 200 }));
			// Too young to go back yet.
			expect((await nodes[0].round())!.redriven).toEqual([]);
			nodes.forEach(n => n.start());
			try {
				await waitFor(() => applied.length === 1 && letters.length === 3, 10_000, "the good one applied, the poison dead again");
				expect(applied).toEqual([`${good.id}:true`]);
				expect(letters[2]).toMatchObject({ group: "redrive", event: poison, redrives: 1 });
				// The poison had its one redrive: it stays in the queue, however many rounds run. A sleep on purpose:
				// several rounds (one every 200 ms) pass with nothing sent back.
				await sleep(1_500);
			} finally {
				await Promise.all(nodes.map(n => n.stop()));
			}
			expect(letters).toHaveLength(3);
			expect(applied).toEqual([`${good.id}:true`]);
			expect(await b.deadLetters({ group: "redrive" })).toEqual([expect.objectContaining({ event: poison, redrives: 1 })]);
			expect(await b.redrive("redrive", policy)).toEqual({ redriven: [], exhausted: 1 });
		} finally {
			await store.clear();
			await store.close();
		}
	}, 40_000);

	it("when a node starts with other dead-letter limits than the stream has, then the stream takes them", async () => {
		const ns = runId("limits");
		const first = new JetStreamEventBus({ url: NATS_URL, namespace: ns, dlqMaxAgeSec: 86_400, dlqMaxMessages: 1000 });
		const second = new JetStreamEventBus({ url: NATS_URL, namespace: ns, dlqMaxAgeSec: 7 * 86_400, dlqMaxMessages: 5000 });
		const nc = await connect({ servers: new URL(NATS_URL).host });
		try {
			expect(await first.stats()).toEqual({ consumers: [], deadLetters: 0 });
			const jsm = await nc.jetstreamManager();
			const dlq = `CRP_${ns.replace(/[^A-Za-z0-9_-]/g, "_")}_DLQ`;
			expect((await jsm.streams.info(dlq)).config).toMatchObject({ max_age: 86_400 * 1e9, max_msgs: 1000 });
			// A later node (a new release, an operator's change of EVENT_DLQ_MAX_*) brings its own limits.
			await second.stats();
			expect((await jsm.streams.info(dlq)).config).toMatchObject({ max_age: 7 * 86_400 * 1e9, max_msgs: 5000 });
		} finally {
			await second.destroy().catch(() => undefined);
			await Promise.all([first.close(), second.close(), nc.close()]);
		}
		expect(await runStreams(ns)).toEqual([]);
	});
});
