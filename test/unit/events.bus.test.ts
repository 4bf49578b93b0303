/**
 * The in-process bus (embedded mode) honours the same contract as the JetStream bus: each group gets each event
 * once and its members share them; a late group still gets earlier events; the same message id is stored once;
 * a failing handler is retried, then dead-lettered; a replay goes to the failed group only, once.
 */
import { MemoryEventBus } from "../../lib/events/memory-bus";
import type { DeadLetter, EventMessage } from "../../lib/events/types";
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
		await sleep(30);
		expect(got).toHaveLength(1);
	});
});
