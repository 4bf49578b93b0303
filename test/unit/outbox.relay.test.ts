/**
 * The outbox relay on SQLite (embedded mode's database) with a publish function the test controls: events go out
 * right after the commit that wrote them, in order per aggregate, once; a rolled-back transaction publishes
 * nothing; while publishing fails every row stays and the relay backs off; one aggregate's failure does not hold
 * up another's. Where a test is about time passing (polls, backoff, the coalescing window) the relay runs on a
 * manual clock the test steps, so it neither waits for real time nor depends on the machine's speed.
 */
import fs from "fs";
import os from "os";
import path from "path";
import { QueryTypes, type Sequelize } from "sequelize";
import type { EventMessage } from "../../lib/events/types";
import { appendAnyOutbox, outboxMigration, OutboxRelay, outboxStats, type RelayClock } from "../../lib/outbox";
import { createSequelize, migrate, Sql } from "../../lib/db";
import { waitFor } from "../support/harness";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

/** A clock that moves only when the test advances it; `fired` is when each of the relay's rounds was due. */
class ManualClock implements RelayClock {
	private t = 1_000_000;
	private timers: { at: number; fn: () => void }[] = [];
	readonly fired: number[] = [];

	now = () => this.t;

	after(ms: number, fn: () => void): () => void {
		const timer = { at: this.t + ms, fn };
		this.timers.push(timer);
		return () => {
			this.timers = this.timers.filter(x => x !== timer);
		};
	}

	/**
	 * Moves time forward by `ms`, running each round that falls due in turn. A started relay always has its next
	 * round scheduled once the current one ended, so that is the condition waited for before looking further.
	 */
	async advance(ms: number): Promise<void> {
		const until = this.t + ms;
		for (;;) {
			const deadline = Date.now() + 2_000;
			while (this.timers.length === 0) {
				if (Date.now() > deadline) throw new Error("the relay scheduled no next round");
				await sleep(1);
			}
			const next = this.timers.reduce((a, b) => (b.at < a.at ? b : a));
			if (next.at > until) break;
			this.timers = this.timers.filter(x => x !== next);
			this.t = next.at;
			this.fired.push(next.at);
			next.fn();
		}
		this.t = until;
	}
}

describe("outbox relay (SQLite)", () => {
	let dir: string;
	let db: Sequelize;
	let relay: OutboxRelay | undefined;
	let published: EventMessage[];
	let fail: (e: EventMessage) => boolean;

	beforeEach(async () => {
		dir = fs.mkdtempSync(path.join(os.tmpdir(), "relay-"));
		const sql = { dialect: "sqlite" as const, dir, prefix: "", poolMax: 1 };
		db = createSequelize(sql, "relay");
		await migrate(sql, "relay", db, [outboxMigration], () => undefined);
		published = [];
		fail = () => false;
	});
	afterEach(async () => {
		await relay?.stop();
		relay = undefined;
		await db.close();
		fs.rmSync(dir, { recursive: true, force: true });
	});

	const start = (pollMs: number, clock?: RelayClock) => {
		relay = new OutboxRelay({
			sql: new Sql(db),
			pollMs,
			maxBackoffMs: 100,
			clock,
			publish: async e => {
				if (fail(e)) throw new Error("broker unreachable");
				published.push(e);
			}
		});
		relay.start();
		return relay;
	};
	const append = (aggregateId: string, n = 1, rollback = false) =>
		db
			.transaction(async t => {
				const out = [];
				for (let i = 0; i < n; i++)
					out.push(await appendAnyOutbox(db, t, { aggregateType: "reservation", aggregateId, eventType: "test.happened", payload: { i } }));
				if (rollback) throw new Error("rolled back");
				return out;
			})
			.catch(err => {
				if (rollback) return [];
				throw err;
			});
	const unprocessed = async () =>
		Number((await db.query<{ n: number }>("SELECT COUNT(*) AS n FROM outbox_events WHERE processed = 0", { type: QueryTypes.SELECT }))[0].n);

	it("when a transaction commits events, then they are published right after the commit (not at the next poll), marked processed", async () => {
		const clock = new ManualClock();
		start(60_000, clock);
		await clock.advance(0); // the start-up round
		const rows = await append("a", 3);
		expect(published).toEqual([]);
		// The commit's 10 ms coalescing window, far short of the 60 s poll.
		await clock.advance(10);
		expect(published.map(e => [e.id, e.version])).toEqual(rows.map(r => [r.id, r.version]));
		expect(published[0]).toMatchObject({
			type: "test.happened",
			aggregateType: "reservation",
			aggregateId: "a",
			version: 1,
			payload: { i: 0, eventId: rows[0].id, version: 1 }
		});
		expect(await unprocessed()).toBe(0);
	});

	it("when the transaction rolls back, then its event never exists and nothing is published", async () => {
		const clock = new ManualClock();
		const rounds = jest.spyOn(start(20, clock), "relayOnce");
		await append("gone", 2, true);
		// Ten polls: none finds anything to publish.
		await clock.advance(200);
		expect(rounds.mock.calls.length).toBeGreaterThanOrEqual(10);
		expect(published).toEqual([]);
		expect(await unprocessed()).toBe(0);
	});

	it("when publishing fails, then every row stays, the relay backs off, and once the broker is back each event goes out once in order", async () => {
		let down = true;
		fail = () => down;
		const clock = new ManualClock();
		const r = start(20, clock);
		await append("x", 3);
		await append("y", 2);
		await clock.advance(500);
		expect(published).toEqual([]);
		expect(await unprocessed()).toBe(5);
		expect(r.backingOff).toBe(true);
		// Failed rounds wait twice the poll, then twice that, then the 100 ms cap.
		const gaps = clock.fired.slice(1).map((at, i) => at - clock.fired[i]);
		expect(gaps.slice(0, 4)).toEqual([40, 80, 100, 100]);
		down = false;
		await clock.advance(100);
		expect(published).toHaveLength(5);
		// Fifty more polls publish nothing again.
		await clock.advance(1_000);
		expect(published).toHaveLength(5);
		expect(new Set(published.map(e => e.id)).size).toBe(5);
		for (const agg of ["x", "y"]) {
			expect(published.filter(e => e.aggregateId === agg).map(e => e.version)).toEqual(agg === "x" ? [1, 2, 3] : [1, 2]);
		}
		expect(r.backingOff).toBe(false);
		expect(await unprocessed()).toBe(0);
	});

	it("when one aggregate's event fails, then its later events wait behind it while other aggregates go out", async () => {
		const [, bad] = await append("stuck", 3);
		await append("free", 2);
		let failures = 0;
		fail = e => e.id === bad.id && failures++ < 1;
		const r = start(20);
		await waitFor(() => published.length === 5, 3_000, "all published after the retry");
		// The first round published stuck v1 and free v1..2, then stopped "stuck" at v2; the retry sent v2, v3.
		expect(published.filter(e => e.aggregateId === "stuck").map(e => e.version)).toEqual([1, 2, 3]);
		expect(published.filter(e => e.aggregateId === "free").map(e => e.version)).toEqual([1, 2]);
		expect(published.findIndex(e => e.aggregateId === "free")).toBeLessThan(published.findIndex(e => e.id === bad.id));
		expect(failures).toBe(2);
		await waitFor(() => !r.backingOff, 1_000, "the relay to leave its backoff");
	});

	it("when commits keep coming while a round runs, then none waits for the next poll (no kick is lost)", async () => {
		relay = new OutboxRelay({
			sql: new Sql(db),
			pollMs: 60_000,
			publish: async e => {
				// A broker that takes a moment to store each event, so that rounds last long enough to be committed into.
				await sleep(2);
				published.push(e);
			}
		});
		const rounds = jest.spyOn(relay, "relayOnce");
		relay.start();
		await waitFor(() => rounds.mock.results.length === 1, 2_000, "the start-up round");
		await rounds.mock.results[0].value;
		const rows = [];
		for (let i = 0; i < 60; i++) {
			rows.push(...(await append(`k${i % 6}`)));
			// Not a wait for anything: it spreads the commits so that some land during a round, some between.
			if (i % 3 === 0) await sleep(1);
		}
		await waitFor(() => published.length === 60, 3_000, "all 60 published long before the 60 s poll");
		expect(published.map(e => e.id).sort()).toEqual(rows.map(r => r.id).sort());
	});

	it("when commits come within the coalescing window, then they share one relay round", async () => {
		const clock = new ManualClock();
		relay = new OutboxRelay({ sql: new Sql(db), pollMs: 60_000, coalesceMs: 200, clock, publish: async e => void published.push(e) });
		const rounds = jest.spyOn(relay, "relayOnce");
		relay.start();
		await clock.advance(0);
		expect(rounds).toHaveBeenCalledTimes(1);
		const rows = [];
		for (let i = 0; i < 10; i++) rows.push(...(await append(`c${i}`)));
		await clock.advance(200);
		// Ten commits, each kicking the relay, within one window: one round after the start-up one, not ten.
		expect(rounds).toHaveBeenCalledTimes(2);
		expect(published.map(e => e.id).sort()).toEqual(rows.map(r => r.id).sort());
	});

	it("when a caller passes a version the aggregate already has, then the unique index refuses the event", async () => {
		await db.transaction(t => appendAnyOutbox(db, t, { aggregateType: "payment", aggregateId: "p1", version: 1, eventType: "test.happened", payload: {} }));
		await expect(
			db.transaction(t => appendAnyOutbox(db, t, { aggregateType: "payment", aggregateId: "p1", version: 1, eventType: "test.happened", payload: {} }))
		).rejects.toThrow();
		expect(await unprocessed()).toBe(1);
	});

	it("when rows wait unpublished, then outboxStats counts them, ages the oldest and lists those past staleMs", async () => {
		expect(await outboxStats(new Sql(db), 1000)).toEqual({ pending: 0, oldestAgeMs: 0, stale: [] });
		const [old] = await append("old");
		// Time must pass, not a condition: appendOutbox stamps the rows with the wall clock, and "old" has to be
		// older than staleMs on it when "new" is not.
		await sleep(60);
		await append("new");
		const stats = await outboxStats(new Sql(db), 40);
		expect(stats.pending).toBe(2);
		expect(stats.oldestAgeMs).toBeGreaterThanOrEqual(60);
		expect(stats.stale).toEqual([{ id: old.id, eventType: "test.happened", aggregateId: "old", ageMs: expect.any(Number) }]);
		start(20);
		await waitFor(() => published.length === 2, 2_000, "both published");
		await waitFor(async () => (await outboxStats(new Sql(db), 0)).pending === 0, 2_000, "nothing pending");
	});

	it("when more rows wait than one batch holds, then the backlog drains in one round without waiting for the poll", async () => {
		for (let i = 0; i < 5; i++) await append(`b${i}`, 50);
		relay = new OutboxRelay({ sql: new Sql(db), pollMs: 60_000, batchSize: 40, publish: async e => void published.push(e) });
		relay.start();
		await waitFor(() => published.length === 250, 5_000, "250 events published");
		expect(await unprocessed()).toBe(0);
	});
});
