/**
 * The outbox relay on SQLite (embedded mode's database) with a publish function the test controls: events go out
 * right after the commit that wrote them, in order per aggregate, once; a rolled-back transaction publishes
 * nothing; while publishing fails every row stays and the relay backs off; one aggregate's failure does not hold
 * up another's.
 */
import fs from "fs";
import os from "os";
import path from "path";
import { QueryTypes, type Sequelize } from "sequelize";
import type { EventMessage } from "../../lib/events/types";
import { appendOutbox, outboxMigration, OutboxRelay, outboxStats } from "../../lib/outbox";
import { createSequelize, migrate, Sql } from "../../lib/db";
import { waitFor } from "../support/harness";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

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

	const start = (pollMs = 60_000) => {
		relay = new OutboxRelay({
			sql: new Sql(db),
			pollMs,
			maxBackoffMs: 100,
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
				for (let i = 0; i < n; i++) out.push(await appendOutbox(db, t, { aggregateType: "reservation", aggregateId, eventType: "test.happened", payload: { i } }));
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
		start(60_000);
		await sleep(50);
		const rows = await append("a", 3);
		await waitFor(() => published.length === 3, 2_000, "3 events published");
		expect(published.map(e => [e.id, e.version])).toEqual(rows.map(r => [r.id, r.version]));
		expect(published[0]).toMatchObject({ type: "test.happened", aggregateType: "reservation", aggregateId: "a", version: 1, payload: { i: 0, eventId: rows[0].id, version: 1 } });
		expect(await unprocessed()).toBe(0);
	});

	it("when the transaction rolls back, then its event never exists and nothing is published", async () => {
		start(20);
		await append("gone", 2, true);
		await sleep(200);
		expect(published).toEqual([]);
		expect(await unprocessed()).toBe(0);
	});

	it("when publishing fails, then every row stays, the relay backs off, and once the broker is back each event goes out once in order", async () => {
		let down = true;
		fail = () => down;
		const r = start(20);
		await append("x", 3);
		await append("y", 2);
		await sleep(300);
		expect(published).toEqual([]);
		expect(await unprocessed()).toBe(5);
		expect(r.backingOff).toBe(true);
		down = false;
		await waitFor(() => published.length === 5, 3_000, "5 events published");
		await sleep(200);
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
				await sleep(2);
				published.push(e);
			}
		});
		relay.start();
		await sleep(50);
		const rows = [];
		for (let i = 0; i < 60; i++) {
			rows.push(...(await append(`k${i % 6}`)));
			if (i % 3 === 0) await sleep(1);
		}
		await waitFor(() => published.length === 60, 3_000, "all 60 published long before the 60 s poll");
		expect(published.map(e => e.id).sort()).toEqual(rows.map(r => r.id).sort());
	});

	it("when commits come within the coalescing window, then they share one relay round", async () => {
		relay = new OutboxRelay({ sql: new Sql(db), pollMs: 60_000, coalesceMs: 200, publish: async e => void published.push(e) });
		const rounds = jest.spyOn(relay, "relayOnce");
		relay.start();
		await waitFor(() => rounds.mock.calls.length === 1, 2_000, "the start-up round");
		const rows = [];
		for (let i = 0; i < 10; i++) rows.push(...(await append(`c${i}`)));
		await waitFor(() => published.length === 10, 2_000, "all 10 published");
		// Ten commits, each kicking the relay: one round after the start-up one (two when the commits straddled
		// the window's end on a slow machine), not ten.
		expect(rounds.mock.calls.length - 1).toBeLessThanOrEqual(2);
		expect(published.map(e => e.id).sort()).toEqual(rows.map(r => r.id).sort());
	});

	it("when a caller passes a version the aggregate already has, then the unique index refuses the event", async () => {
		await db.transaction(t => appendOutbox(db, t, { aggregateType: "payment", aggregateId: "p1", version: 1, eventType: "test.happened", payload: {} }));
		await expect(
			db.transaction(t => appendOutbox(db, t, { aggregateType: "payment", aggregateId: "p1", version: 1, eventType: "test.happened", payload: {} }))
		).rejects.toThrow();
		expect(await unprocessed()).toBe(1);
	});

	it("when rows wait unpublished, then outboxStats counts them, ages the oldest and lists those past staleMs", async () => {
		expect(await outboxStats(new Sql(db), 1000)).toEqual({ pending: 0, oldestAgeMs: 0, stale: [] });
		const [old] = await append("old");
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
