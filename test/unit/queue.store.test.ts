/**
 * The waiting-room store contract (test/support/contracts/queue.ts) against the memory store with an injected
 * clock, and what only the memory store has; test/integration/queue.store.redis.test.ts runs it against Redis.
 */
import { MemoryStore } from "../../lib/store";
import { newTokenId } from "../../services/queue/queue.domain";
import { createQueueStore } from "../../services/queue/queue.store";
import { queueContract } from "../support/contracts/queue";
import { runId } from "../support/isolation";

queueContract("memory", async () => {
	let now = 1_700_000_000_000;
	const store = new MemoryStore({ prefix: `${runId()}:`, now: () => now, sweepIntervalMs: 0 });
	const queue = createQueueStore(store);
	return {
		queue,
		advance: async ms => {
			now += ms;
		},
		close: () => store.close(),
		activeSize: async concertId => (await queue.stats(concertId)).slotsTaken,
		now: () => now,
		lineSize: async () => {
			const fp = (queue as unknown as { footprint(): { tokens: number; gone: number } }).footprint();
			return fp.tokens + fp.gone;
		}
	};
});

describe("memory queue store specifics", () => {
	it("when admissions age past a minute, then the measured rate forgets them", async () => {
		let now = 1_000_000;
		const store = new MemoryStore({ now: () => now, sweepIntervalMs: 0 });
		const q = createQueueStore(store);
		const l = { maxActive: 10, activeTtlMs: 600_000 };
		for (let i = 0; i < 4; i++) await q.enter("c", `u${i}`, newTokenId(), l);
		expect((await q.stats("c")).admittedLastMinute).toBe(4);
		now += 30_000;
		await q.enter("c", "late", newTokenId(), l);
		expect((await q.stats("c")).admittedLastMinute).toBe(5);
		now += 30_000;
		expect((await q.stats("c")).admittedLastMinute).toBe(1);
		expect((await q.stats("c")).admittedTotal).toBe(5);
		await store.close();
	});

	it("when two queue stores wrap one memory store, then they share one waiting room (as two nodes share Redis)", async () => {
		const store = new MemoryStore({ sweepIntervalMs: 0 });
		const l = { maxActive: 1, activeTtlMs: 60_000 };
		const a = await createQueueStore(store).enter("c", "a", newTokenId(), l);
		const b = await createQueueStore(store).enter("c", "b", newTokenId(), l);
		expect([a.status, b.status]).toEqual(["ACTIVE", "WAITING"]);
		await store.close();
	});
});
