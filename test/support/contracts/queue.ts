/**
 * The waiting-room store contract, run by the unit tier against the memory store (injected clock) and by the
 * integration tier against the real Redis (real clock, short time-to-live). Same operations, same answers.
 */
import { newTokenId } from "../../../services/queue/queue.domain";
import type { QueueLimits, QueueStore } from "../../../services/queue/queue.store";
import { runId } from "../isolation";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

export interface Fixture {
	queue: QueueStore;
	/** Moves the store's clock forward by at least `ms` (memory: the injected clock; Redis: real time). */
	advance(ms: number): Promise<void>;
	close(): Promise<void>;
	/** Raw size of the active set (lapsed entries included until swept): the cap invariant's measure. */
	activeSize(concertId: string): Promise<number>;
	/** The store's clock now (epoch ms). */
	now(): number;
	/** How many tokens the store still keeps for the concert's line (what a closed line must free). */
	lineSize(concertId: string): Promise<number>;
}

/** Spearman's rank correlation of two permutations of 0..n-1. */
function spearman(a: number[], b: number[]): number {
	const n = a.length;
	const d2 = a.reduce((sum, x, i) => sum + (x - b[i]) ** 2, 0);
	return 1 - (6 * d2) / (n * (n * n - 1));
}

/** Short enough for Redis tests that sleep through it, long enough that a busy 2-core box does not lapse it early. */
const TTL_MS = 600;

export function queueContract(name: string, make: () => Promise<Fixture>): void {
	describe(`queue store contract: ${name}`, () => {
		let f: Fixture;
		let c: string;
		const limits = (maxActive: number, activeTtlMs = 60_000): QueueLimits => ({ maxActive, activeTtlMs });
		const enter = (user: string, l: QueueLimits, concert = c) => f.queue.enter(concert, user, newTokenId(), l);

		beforeEach(async () => {
			f = await make();
			c = `c${runId()}`;
		});
		afterEach(async () => {
			await f.close();
		});

		it("when users enter one after another past the cap, then the first are ACTIVE and the rest wait in order", async () => {
			const l = limits(3);
			const results = [];
			for (let i = 0; i < 6; i++) results.push(await enter(`u${i}`, l));
			expect(results.map(r => r.status)).toEqual(["ACTIVE", "ACTIVE", "ACTIVE", "WAITING", "WAITING", "WAITING"]);
			expect(results.map(r => r.position)).toEqual([0, 0, 0, 1, 2, 3]);
			expect(results.every(r => r.created)).toBe(true);
			const first = results[0];
			expect(first.expiresAt).toBe(first.now + 60_000);
			expect(results[3].expiresAt).toBeNull();
			expect(results.map(r => r.userId)).toEqual(["u0", "u1", "u2", "u3", "u4", "u5"]);
			expect(await f.queue.stats(c)).toEqual({ waiting: 3, active: 3, slotsTaken: 3, admittedLastMinute: 3, admittedTotal: 3, state: null });
		});

		it("when 150 users enter at once with a cap of 100, then exactly 100 are ACTIVE and 50 wait at positions 1..50", async () => {
			const l = limits(100);
			const results = await Promise.all(Array.from({ length: 150 }, (_, i) => enter(`u${i}`, l)));
			const active = results.filter(r => r.status === "ACTIVE");
			const waiting = results.filter(r => r.status === "WAITING");
			expect(active).toHaveLength(100);
			expect(waiting).toHaveLength(50);
			expect(waiting.map(r => r.position).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
			expect(new Set(results.map(r => r.tokenId)).size).toBe(150);
			expect(await f.queue.stats(c)).toMatchObject({ waiting: 50, active: 100, admittedTotal: 100 });
			// Reads agree with what entering answered.
			for (const r of waiting) expect((await f.queue.read(c, r.tokenId))?.position).toBe(r.position);
		});

		it("when a user enters again, then the same token comes back and nobody's place changes", async () => {
			const l = limits(1);
			await enter("a", l);
			const b = await enter("b", l);
			await enter("c", l);
			const again = await enter("b", l);
			expect(again).toMatchObject({ tokenId: b.tokenId, status: "WAITING", position: 1, created: false });
			expect((await f.queue.stats(c)).waiting).toBe(2);
		});

		it("when the same user enters twice at the same moment, then one token exists", async () => {
			const l = limits(5);
			const results = await Promise.all(Array.from({ length: 20 }, () => enter("same", l)));
			expect(new Set(results.map(r => r.tokenId)).size).toBe(1);
			expect(results.filter(r => r.created)).toHaveLength(1);
			expect(await f.queue.stats(c)).toMatchObject({ waiting: 0, active: 1, admittedTotal: 1 });
		});

		it("when an active user leaves, then the head of the line is admitted and everyone behind moves up", async () => {
			const l = limits(2);
			const entered = [];
			for (const u of ["a", "b", "w1", "w2", "w3"]) entered.push(await enter(u, l));
			expect(entered.map(e => e.status)).toEqual(["ACTIVE", "ACTIVE", "WAITING", "WAITING", "WAITING"]);
			expect(await f.queue.leave(c, entered[0].tokenId, "a", l)).toBe("ACTIVE");
			expect(await f.queue.read(c, entered[0].tokenId)).toBeNull();
			expect(await f.queue.read(c, entered[2].tokenId)).toMatchObject({ status: "ACTIVE", position: 0, userId: "w1" });
			expect(await f.queue.read(c, entered[3].tokenId)).toMatchObject({ status: "WAITING", position: 1 });
			expect(await f.queue.read(c, entered[4].tokenId)).toMatchObject({ status: "WAITING", position: 2 });
			expect(await f.queue.stats(c)).toMatchObject({ waiting: 2, active: 2, admittedTotal: 3 });
		});

		it("when a waiting user leaves, then the people behind move up and nobody is admitted", async () => {
			const l = limits(1);
			await enter("a", l);
			const w1 = await enter("w1", l);
			const w2 = await enter("w2", l);
			expect(await f.queue.leave(c, w1.tokenId, "w1", l)).toBe("WAITING");
			expect(await f.queue.read(c, w2.tokenId)).toMatchObject({ status: "WAITING", position: 1 });
			expect(await f.queue.stats(c)).toMatchObject({ waiting: 1, active: 1, admittedTotal: 1 });
		});

		it("when someone else tries to remove a token, then nothing changes", async () => {
			const l = limits(1);
			const a = await enter("a", l);
			const w = await enter("w", l);
			expect(await f.queue.leave(c, a.tokenId, "mallory", l)).toBeNull();
			expect(await f.queue.read(c, a.tokenId)).toMatchObject({ status: "ACTIVE", userId: "a" });
			expect(await f.queue.read(c, w.tokenId)).toMatchObject({ status: "WAITING", position: 1 });
		});

		it("when a token is expired twice (a replayed saga step), then the second time is a no-op", async () => {
			const l = limits(1);
			const a = await enter("a", l);
			const w1 = await enter("w1", l);
			const w2 = await enter("w2", l);
			expect(await f.queue.leave(c, a.tokenId, null, l)).toBe("ACTIVE");
			expect(await f.queue.leave(c, a.tokenId, null, l)).toBeNull();
			expect(await f.queue.read(c, w1.tokenId)).toMatchObject({ status: "ACTIVE" });
			expect(await f.queue.read(c, w2.tokenId)).toMatchObject({ status: "WAITING", position: 1 });
			expect((await f.queue.stats(c)).admittedTotal).toBe(2);
		});

		it("when slots free one at a time over many rounds, then admission follows arrival order exactly", async () => {
			const l = limits(3);
			const tokens: { user: string; tokenId: string }[] = [];
			for (let i = 0; i < 30; i++) tokens.push({ user: `u${i}`, tokenId: (await enter(`u${i}`, l)).tokenId });
			const admitted: string[] = ["u0", "u1", "u2"];
			const active = new Set(admitted);
			for (let round = 0; round < 27; round++) {
				// Free a different slot each round: the oldest, the newest or the middle one.
				const list = [...active];
				const leaving = list[round % list.length];
				active.delete(leaving);
				const t = tokens.find(x => x.user === leaving)!;
				expect(await f.queue.leave(c, t.tokenId, round % 2 ? leaving : null, l)).toBe("ACTIVE");
				const next = tokens[3 + round];
				expect(await f.queue.read(c, next.tokenId)).toMatchObject({ status: "ACTIVE" });
				if (round < 26) expect(await f.queue.read(c, tokens[4 + round].tokenId)).toMatchObject({ position: 1 });
				admitted.push(next.user);
				active.add(next.user);
			}
			expect(admitted).toEqual(tokens.map(t => t.user));
			expect(await f.queue.stats(c)).toMatchObject({ waiting: 0, active: 3, admittedTotal: 30 });
		});

		it("when an active token outlives its time, then it reads as gone and the sweep admits the next", async () => {
			const l = limits(1, TTL_MS);
			const a = await enter("a", l);
			const w = await enter("w", l);
			await f.advance(TTL_MS + 50);
			expect(await f.queue.read(c, a.tokenId)).toBeNull();
			// Before the sweep the lapsed token still holds its slot (never more than the cap).
			expect(await f.activeSize(c)).toBe(1);
			const swept = await f.queue.sweep(l);
			expect(swept.expired).toBeGreaterThanOrEqual(1);
			expect(swept.admitted).toBeGreaterThanOrEqual(1);
			const now = await f.queue.read(c, w.tokenId);
			expect(now).toMatchObject({ status: "ACTIVE", position: 0 });
			expect(now!.expiresAt!).toBeGreaterThan(now!.now);
			expect(now!.expiresAt!).toBeLessThanOrEqual(now!.now + TTL_MS);
			// The lapsed user's next entry is a new token at the back of the line.
			const again = await enter("a", l);
			expect(again).toMatchObject({ created: true, status: "WAITING", position: 1 });
			expect(again.tokenId).not.toBe(a.tokenId);
		});

		it("when a newcomer arrives after a slot lapsed but before any sweep, then the head of the line gets it", async () => {
			const l = limits(1, TTL_MS);
			await enter("a", l);
			const w = await enter("w", l);
			await f.advance(TTL_MS + 50);
			const late = await enter("late", l);
			expect(late).toMatchObject({ status: "WAITING", position: 1 });
			expect(await f.queue.read(c, w.tokenId)).toMatchObject({ status: "ACTIVE" });
		});

		it("when two concerts have queues, then they do not affect each other", async () => {
			const l = limits(1);
			const other = `${c}x`;
			await enter("a", l);
			expect(await enter("b", l)).toMatchObject({ status: "WAITING" });
			const elsewhere = await enter("b", l, other);
			expect(elsewhere).toMatchObject({ status: "ACTIVE", created: true });
			expect(await f.queue.read(c, elsewhere.tokenId)).toBeNull();
		});

		it("when 400 enters and leaves of active tokens race, then the active set never exceeds the cap and the admissions add up", async () => {
			const cap = 10;
			const l = limits(cap);
			let maxSeen = 0;
			let sampling = true;
			const sampler = (async () => {
				while (sampling) {
					maxSeen = Math.max(maxSeen, await f.activeSize(c));
					await sleep(1);
				}
			})();
			let leftWaiting = 0;
			let leftActive = 0;
			await Promise.all(
				Array.from({ length: 400 }, async (_, i) => {
					const user = `u${i}`;
					const e = await enter(user, l);
					if (i % 5 === 0) {
						const was = await f.queue.leave(c, e.tokenId, user, l);
						if (was === "WAITING") leftWaiting++;
						if (was === "ACTIVE") leftActive++;
						return;
					}
					// Active users leave at once; waiting ones stay in line.
					const now = await f.queue.read(c, e.tokenId);
					if (now?.status === "ACTIVE" && (await f.queue.leave(c, e.tokenId, user, l)) === "ACTIVE") leftActive++;
				})
			);
			sampling = false;
			await sampler;
			const s = await f.queue.stats(c);
			expect(maxSeen).toBeLessThanOrEqual(cap);
			expect(s.active).toBeLessThanOrEqual(cap);
			// Every entrant is, exactly once, either still waiting, left while waiting, or admitted.
			expect(s.waiting + leftWaiting + s.admittedTotal).toBe(400);
			expect(s.admittedTotal).toBe(leftActive + s.active);
			// The cap was actually reached: this test could see an overshoot.
			expect(s.active).toBe(cap);
		});

		it("when 1,000 enter before the sale opens, then nobody is admitted until it opens, the pre-queue goes first in an order unlike arrival, and later entries follow in arrival order", async () => {
			const l: QueueLimits = { maxActive: 1, activeTtlMs: 60_000, opensAt: f.now() + 1500 };
			const early: string[] = [];
			for (let i = 0; i < 1000; i += 50) {
				const batch = await Promise.all(Array.from({ length: 50 }, (_, j) => enter(`p${i + j}`, l)));
				for (const e of batch) {
					expect(e).toMatchObject({ status: "PRE_QUEUE", position: 0 });
					early.push(e.tokenId);
				}
			}
			expect((await f.queue.stats(c)).admittedTotal).toBe(0);
			await f.advance(1600);
			const late = [];
			for (let i = 0; i < 5; i++) late.push(await enter(`late${i}`, l));
			await f.queue.sweep(l);
			// The order of admission is each token's place after the opening (one is admitted, the rest wait).
			const places = await Promise.all(
				early.map(async t => {
					const e = await f.queue.read(c, t);
					return e!.status === "ACTIVE" ? 0 : e!.position;
				})
			);
			expect([...places].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
			// Over 1,000 entries the admission order correlates only weakly with the arrival order.
			expect(
				Math.abs(
					spearman(
						places,
						Array.from({ length: 1000 }, (_, i) => i)
					)
				)
			).toBeLessThan(0.15);
			for (let i = 0; i < 5; i++) expect((await f.queue.read(c, late[i].tokenId))?.position).toBe(1000 + i);
		});

		it("when a waiting token is not polled within the waiting TTL, then it leaves (EXPIRED) and the one behind moves up", async () => {
			const l: QueueLimits = { maxActive: 1, activeTtlMs: 60_000, waitingTtlMs: TTL_MS };
			await enter("a", l);
			const gone = await enter("b", l);
			const polled = await enter("c", l);
			await f.advance(TTL_MS / 2);
			await f.queue.lookup(c, polled.tokenId, "c");
			await f.advance(TTL_MS / 2 + 100);
			await f.queue.sweep(l);
			expect(await f.queue.lookup(c, gone.tokenId)).toEqual({ kind: "gone", reason: "EXPIRED", userId: "b" });
			expect(await f.queue.read(c, polled.tokenId)).toMatchObject({ status: "WAITING", position: 1 });
		});

		it("when a promoted user does nothing within the grace, then the slot goes to the next; one who polls keeps it for the full time", async () => {
			const l: QueueLimits = { maxActive: 1, activeTtlMs: 60_000, graceMs: TTL_MS };
			const a = await enter("a", l);
			const idle = await enter("idle", l);
			const keen = await enter("keen", l);
			await f.queue.leave(c, a.tokenId, "a", l);
			expect(await f.queue.read(c, idle.tokenId)).toMatchObject({ status: "ACTIVE" });
			await f.advance(TTL_MS + 100);
			await f.queue.sweep(l);
			expect(await f.queue.lookup(c, idle.tokenId)).toEqual({ kind: "gone", reason: "EXPIRED", userId: "idle" });
			expect(await f.queue.read(c, keen.tokenId)).toMatchObject({ status: "ACTIVE" });
			await f.queue.lookup(c, keen.tokenId, "keen");
			await f.advance(TTL_MS + 100);
			await f.queue.sweep(l);
			const kept = await f.queue.read(c, keen.tokenId);
			expect(kept?.status).toBe("ACTIVE");
			expect(kept!.expiresAt! - kept!.now).toBeGreaterThan(50_000);
		});

		it("when a token leaves, is completed or lapses, then a lookup says which, to its owner's id", async () => {
			const l = limits(5);
			const left = await enter("l", l);
			const done = await enter("d", l);
			await f.queue.leave(c, left.tokenId, "l", l, "LEFT");
			await f.queue.leave(c, done.tokenId, null, l, "COMPLETED");
			expect(await f.queue.lookup(c, left.tokenId)).toEqual({ kind: "gone", reason: "LEFT", userId: "l" });
			expect(await f.queue.lookup(c, done.tokenId)).toEqual({ kind: "gone", reason: "COMPLETED", userId: "d" });
			expect(await f.queue.lookup(c, newTokenId())).toEqual({ kind: "unknown" });
		});

		it("when a line closes SOLD_OUT, then every token reads SOLD_OUT, entries are refused, its memory is freed, and a reopening takes former members back", async () => {
			const l = limits(2);
			const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => enter(`s${i}`, l)));
			expect(await f.lineSize(c)).toBeGreaterThan(0);
			await f.queue.close(c, "SOLD_OUT", 60_000);
			for (const t of tokens) expect(await f.queue.lookup(c, t.tokenId)).toEqual({ kind: "closed", state: "SOLD_OUT" });
			await expect(enter("newcomer", l)).rejects.toMatchObject({ code: 409, type: "SOLD_OUT" });
			expect(await f.lineSize(c)).toBe(0);
			expect((await f.queue.concerts()).soldOut).toContain(c);
			expect((await f.queue.concerts()).live).not.toContain(c);
			expect((await f.queue.stats(c)).state).toBe("SOLD_OUT");

			await f.queue.reopen(c);
			expect((await f.queue.concerts()).soldOut).not.toContain(c);
			expect(await f.queue.lookup(c, tokens[5].tokenId)).toEqual({ kind: "rejoin" });
			const back = await f.queue.enter(c, "s5", newTokenId(), l);
			expect(back).toMatchObject({ userId: "s5", status: "ACTIVE", created: true });
		});

		it("when a line closes CLOSED, then reads say CLOSED and it is not watched for seats coming back", async () => {
			const l = limits(2);
			const t = await enter("x", l);
			await f.queue.close(c, "CLOSED", 60_000);
			expect(await f.queue.lookup(c, t.tokenId)).toEqual({ kind: "closed", state: "CLOSED" });
			await expect(enter("y", l)).rejects.toMatchObject({ type: "SALES_CLOSED" });
			expect((await f.queue.concerts()).soldOut).not.toContain(c);
		});
	});
}
