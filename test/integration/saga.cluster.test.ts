/**
 * The saga engine in a real cluster: saga nodes as separate OS processes (moleculer-runner) and in-process
 * brokers, talking over the real NATS server, journalling to the real MariaDB. The participant is the fake
 * service in this process; it applies each effect at most once per idempotency key and counts every call.
 */
import crypto from "crypto";
import { QueryTypes } from "sequelize";
import type { ServiceBroker } from "moleculer";
import { createSequelize, migrate, physicalDatabaseName, Sql } from "../../lib/db";
import { createSagaTables } from "../../services/saga/migrations/001_create_saga_tables";
import { Errors } from "moleculer";
import { SagaExecutor } from "../../sagas/executor";
import { SagaStore } from "../../sagas/store";
import { defineSaga, type SagaState } from "../../sagas/types";
import type { SagaView } from "../../services/saga/saga.api";
import { testEnv, waitFor, type SpawnedNode, type TestEnv } from "../support/harness";
import { fakeStats, SAGA_NODE_DIR, SchemaNodes, waitSaga } from "../support/saga";
import FakeService from "../support/saga-services/fake/fake.service";
import { testSagaSchema } from "../support/saga-services/saga/saga.service";

let env: TestEnv;
let nodes: SchemaNodes;
let participant: ServiceBroker;

beforeAll(async () => {
	env = testEnv({ cluster: true });
	nodes = new SchemaNodes(env);
	participant = await nodes.node([FakeService], `${env.id}-fake`);
}, 60_000);

afterAll(async () => {
	await nodes.stop();
	await env.cleanup();
}, 60_000);

const sagaNodesSeen = () =>
	new Set(
		participant.registry
			.getServiceList({ onlyAvailable: true })
			.filter(s => s.name === "saga")
			.map(s => s.nodeID)
	);

const waitingAt = async (key: string) =>
	waitFor(async () => ((await participant.call("fake.waiting")) as string[]).includes(key), 10_000, `the call ${key} to arrive`);

describe("crash recovery with real processes", () => {
	let a: SpawnedNode;
	let b: SpawnedNode;

	beforeAll(async () => {
		[a, b] = await Promise.all([env.spawn([SAGA_NODE_DIR]), env.spawn([SAGA_NODE_DIR])]);
		await waitFor(() => sagaNodesSeen().has(a.nodeID) && sagaNodesSeen().has(b.nodeID), 20_000, "both saga nodes to be visible");
	}, 90_000);

	it("when the node driving a saga is killed mid-step, then another node resumes it and each effect is applied once", async () => {
		const key = crypto.randomUUID();
		const started: SagaView = await participant.call(
			"saga.start",
			{ type: "Long4", key, data: { plan: { b: { gate: true } } }, waitMs: 0 },
			{ nodeID: a.nodeID }
		);
		const id = started.id;
		await waitingAt(`${id}:b`);

		// kill -9 while A waits for b's answer; b's effect still lands (the participant finishes the call).
		await a.kill();
		await participant.call("fake.open", { key: `${id}:b` });

		const done = await waitSaga(participant, id, ["COMPLETED", "COMPENSATED", "FAILED"], 20_000, b.nodeID);
		expect(done.status).toBe("COMPLETED");

		const stats = await fakeStats(participant, id);
		// b ran twice under the same key (A's call, B's re-run), every other step once; one effect each.
		expect(stats.trace).toEqual(["do:a", "do:b", "do:b", "do:c", "do:d"]);
		expect(stats.calls[`${id}:b`]).toBe(2);
		expect(stats.effects.map(e => e.step).sort()).toEqual(["a", "b", "c", "d"]);

		const owners = new Map(done.journal.map(j => [j.step, j.owner?.split(":")[0]]));
		expect(owners.get("a")).toBe(a.nodeID);
		expect(owners.get("b")).toBe(b.nodeID);
		expect(owners.get("d")).toBe(b.nodeID);
		expect(done.journal.find(j => j.step === "b")).toMatchObject({ status: "SUCCEEDED", attempts: 2 });
	}, 60_000);

	it("when the node driving a compensation is killed mid-call, then another node finishes it with one effect per undo", async () => {
		const c = await env.spawn([SAGA_NODE_DIR]);
		await waitFor(() => sagaNodesSeen().has(c.nodeID), 20_000, "saga node C to be visible");
		const started: SagaView = await participant.call(
			"saga.start",
			{ type: "Long4", key: crypto.randomUUID(), data: { plan: { c: { fail: 1, error: "reject" }, "b:undo": { gate: true } } }, waitMs: 0 },
			{ nodeID: c.nodeID }
		);
		const id = started.id;
		await waitingAt(`${id}:b:compensate`);
		await c.kill();
		await participant.call("fake.open", { key: `${id}:b:compensate` });

		const done = await waitSaga(participant, id, ["COMPLETED", "COMPENSATED", "FAILED"], 20_000, b.nodeID);
		expect(done.status).toBe("COMPENSATED");
		expect(done.error).toMatchObject({ type: "FAKE_REJECTED", step: "c" });
		const stats = await fakeStats(participant, id);
		expect(stats.trace).toEqual(["do:a", "do:b", "do:c", "undo:b", "undo:b", "undo:a"]);
		expect(stats.calls[`${id}:b:compensate`]).toBe(2);
		expect(stats.effects.map(e => `${e.kind}:${e.step}`).sort()).toEqual(["do:a", "do:b", "undo:a", "undo:b"]);
	}, 60_000);

	it("when a node stops gracefully mid-step, then it journals the step, gives the lease up and another node goes on at once", async () => {
		// A 60 s lease: only a released lease lets another node take over within this test's patience.
		const n = await nodes.node([testSagaSchema({ leaseMs: 60_000 })]);
		await waitFor(() => sagaNodesSeen().has(n.nodeID), 10_000, "the new saga node to be visible");
		const started: SagaView = await participant.call(
			"saga.start",
			{ type: "Long4", key: crypto.randomUUID(), data: { plan: { b: { gate: true } } }, waitMs: 0 },
			{ nodeID: n.nodeID }
		);
		await waitingAt(`${started.id}:b`);
		const stopping = n.stop();
		// The broker raises `stopping` after its stop delay; from then on the saga stops before its next call.
		await waitFor(() => n.stopping === true, 5_000, "the node to start stopping");
		await participant.call("fake.open", { key: `${started.id}:b` });
		await stopping;

		const done = await waitSaga(participant, started.id, ["COMPLETED"], 8_000, b.nodeID);
		const stats = await fakeStats(participant, started.id);
		expect(stats.trace).toEqual(["do:a", "do:b", "do:c", "do:d"]);
		const owner = (step: string) => done.journal.find(j => j.step === step)!.owner!.split(":")[0];
		expect(owner("b")).toBe(n.nodeID);
		expect(owner("d")).not.toBe(n.nodeID);
	}, 30_000);

	it("when a compensation never succeeds on MariaDB, then FAILED with one dead letter, one outbox alert, one event; retry completes it", async () => {
		const started: SagaView = await participant.call(
			"saga.start",
			{ type: "Test4", key: crypto.randomUUID(), data: { plan: { c: { fail: 1, error: "reject" }, "a:undo": { fail: -1 } } }, waitMs: 10_000 },
			{ nodeID: b.nodeID, timeout: 12_000 }
		);
		expect(started.status).toBe("FAILED");
		const failed = await waitSaga(participant, started.id, ["FAILED"], 5_000, b.nodeID);
		expect(failed.deadLetters).toEqual([expect.objectContaining({ step: "a", phase: "compensate", status: "OPEN" })]);
		await waitFor(async () => (await fakeStats(participant, started.id)).alerts.length === 1, 5_000, "the saga.failed event");

		const sql = env.config.sql;
		const db = createSequelize(sql, physicalDatabaseName(sql, "saga"));
		try {
			const rows = await db.query<{ id: string; event_type: string }>("SELECT id, event_type FROM outbox_events WHERE aggregate_id = ?", {
				replacements: [started.id],
				type: QueryTypes.SELECT
			});
			const alert = (await fakeStats(participant, started.id)).alerts[0] as { eventId: string };
			expect(rows).toEqual([{ id: alert.eventId, event_type: "saga.failed" }]);
		} finally {
			await db.close();
		}

		await participant.call("fake.heal", { sagaId: started.id });
		await participant.call("saga.retry", { id: started.id }, { nodeID: b.nodeID });
		const done = await waitSaga(participant, started.id, ["COMPENSATED", "FAILED"], 10_000, b.nodeID);
		expect(done.status).toBe("COMPENSATED");
		const stats = await fakeStats(participant, started.id);
		expect(stats.effects.map(e => `${e.kind}:${e.step}`).sort()).toEqual(["do:a", "do:b", "undo:a", "undo:b"]);
		expect(stats.alerts).toHaveLength(1);
	}, 40_000);

	it("when three nodes race for the expired leases of 10 sagas, then each saga is driven by one node: every step called once", async () => {
		// Two more saga nodes in this process, scanning every 100 ms, beside the surviving spawned node B.
		const [n1] = await Promise.all([nodes.node([testSagaSchema({ recoveryIntervalMs: 100 })]), nodes.node([testSagaSchema({ recoveryIntervalMs: 100 })])]);
		const store = (n1.getLocalService("saga") as unknown as { sagaStore: SagaStore }).sagaStore;
		const ids = await Promise.all(
			Array.from({ length: 10 }, async () => {
				const id = crypto.randomUUID();
				// A saga whose node died before its first step: the lease is already expired.
				await store.create({ id, type: "Test4", key: `orphan-${id}`, data: {}, owner: "dead-node:0", leaseMs: -1 });
				return id;
			})
		);
		const done = await Promise.all(ids.map(id => waitSaga(participant, id, ["COMPLETED"], 20_000, b.nodeID)));
		const drivers = new Set<string>();
		for (const saga of done) {
			const stats = await fakeStats(participant, saga.id);
			// Each step took effect once. (A step may be called twice by its one driver when a call outlives the
			// tests' 500 ms step timeout on a loaded machine; that is a retry under the same key, not a second
			// driver: the journal's single owner below is what shows one node drove the saga.)
			expect(stats.effects.map(e => `${e.kind}:${e.step}`).sort()).toEqual(["do:a", "do:b", "do:c", "do:d"]);
			expect([...new Set(stats.trace)]).toEqual(["do:a", "do:b", "do:c", "do:d"]);
			const owners = new Set(saga.journal.map(j => j.owner));
			expect(owners.size).toBe(1);
			drivers.add([...owners][0]!);
		}
		expect(drivers.size).toBeGreaterThanOrEqual(1);
	}, 60_000);

	it("when a step outlasts the lease, then renewals keep it: no other node re-runs the step", async () => {
		const n = await nodes.node([testSagaSchema()]);
		await waitFor(() => sagaNodesSeen().has(n.nodeID), 10_000, "the new saga node to be visible");
		const started: SagaView = await participant.call(
			"saga.start",
			{ type: "Long4", key: crypto.randomUUID(), data: { plan: { a: { gate: true } } }, waitMs: 0 },
			{ nodeID: n.nodeID }
		);
		await waitingAt(`${started.id}:a`);
		// Meanwhile a caller on another node starts the same key and waits: it gets the same saga, by polling.
		const elsewhere = participant.call("saga.start", { type: "Long4", key: started.key, data: {}, waitMs: 8000 }, { nodeID: b.nodeID, timeout: 9000 });
		// A sleep on purpose, not a wait for an event: the step must outlast its 1500 ms lease twice over for the
		// test to show that renewals keep the other nodes from taking the saga over meanwhile.
		await new Promise(r => setTimeout(r, 3000));
		await participant.call("fake.open", { key: `${started.id}:a` });
		expect(await elsewhere).toMatchObject({ id: started.id, status: "COMPLETED" });
		const done = await waitSaga(participant, started.id, ["COMPLETED"], 10_000, n.nodeID);
		expect((await fakeStats(participant, started.id)).calls[`${started.id}:a`]).toBe(1);
		expect(new Set(done.journal.map(j => j.owner)).size).toBe(1);
	}, 30_000);
});

/** A saga database of its own (no saga node scans it), migrated, closed after `fn`. */
async function withOwnSagaDb(
	suffix: string,
	fn: (db: ReturnType<typeof createSequelize>, store: SagaStore) => Promise<void>,
	groupCommitMax?: number
): Promise<void> {
	const sql = env.config.sql;
	const name = physicalDatabaseName(sql, suffix);
	const db = createSequelize(sql, name);
	try {
		await migrate(sql, name, db, [createSagaTables], () => undefined);
		await fn(db, new SagaStore(new Sql(db), Date.now, groupCommitMax));
	} finally {
		await db.close();
	}
}

describe("leases on MariaDB", () => {
	it("when 10 owners claim the same expired lease at once, then exactly one gets it", async () => {
		// Its own database: no saga node scans it, so the claimers race only each other.
		await withOwnSagaDb("sagarace", async (_db, store) => {
			const races = await Promise.all(
				Array.from({ length: 5 }, async () => {
					const id = crypto.randomUUID();
					// A saga whose node died: its lease expired a second ago.
					await store.create({ id, type: "Test4", key: `race-${id}`, data: {}, owner: "dead-node", leaseMs: -1000 });
					const wins = await Promise.all(Array.from({ length: 10 }, (_, i) => store.claim(id, `claimer-${i}`, 60_000)));
					const saga = await store.get(id);
					return { wins: wins.filter(Boolean).length, owner: saga!.leaseOwner };
				})
			);
			for (const r of races) {
				expect(r.wins).toBe(1);
				expect(r.owner).toMatch(/^claimer-\d$/);
			}
		});
	});

	it("when journal writes go out as one compound statement, then they stay fenced, atomic and keyed", async () => {
		await withOwnSagaDb("sagawrites", async (db, store) => {
			const id = crypto.randomUUID();
			const steps = async () =>
				db.query<{ step: string; status: string; attempts: number }>("SELECT step, status, attempts FROM saga_steps WHERE saga_id = ? ORDER BY id", {
					replacements: [id],
					type: QueryTypes.SELECT
				});
			const created = await store.create({ id, type: "Test4", key: `w-${id}`, data: { a: 1 }, owner: "node-a", leaseMs: 60_000, firstStep: "one" });
			expect(created).toMatchObject({ created: true, saga: { id, status: "RUNNING", step: 0, stepName: "one", attempts: 1, leaseOwner: "node-a" } });
			// The answer is what a read gives (create no longer reads it back).
			expect(await store.get(id)).toEqual(created.saga);
			expect(await steps()).toEqual([{ step: "one", status: "RUNNING", attempts: 1 }]);

			// The same key again: the existing saga, not a second one (the duplicate key still reaches the store).
			const again = await store.create({
				id: crypto.randomUUID(),
				type: "Test4",
				key: `w-${id}`,
				data: {},
				owner: "node-b",
				leaseMs: 60_000,
				firstStep: "one"
			});
			expect(again).toMatchObject({ created: false, saga: { id } });

			// The holder's write lands: the instance and both journal rows.
			const done = { stepIndex: 0, step: "one", phase: "forward" as const, status: "SUCCEEDED" as const, attempts: 1, result: { ok: true } };
			const next = { stepIndex: 1, step: "two", phase: "forward" as const, status: "RUNNING" as const, attempts: 1 };
			expect(
				await store.record({ id, owner: "node-a" }, 60_000, [done, next], { step: 1, stepName: "two", attempts: 1, results: { one: { ok: true } } })
			).toBe(true);
			expect(await steps()).toEqual([
				{ step: "one", status: "SUCCEEDED", attempts: 1 },
				{ step: "two", status: "RUNNING", attempts: 1 }
			]);

			// Another owner's write changes nothing: not the instance, not the journal.
			const before = await store.get(id);
			const stale = { stepIndex: 1, step: "two", phase: "forward" as const, status: "FAILED" as const, attempts: 1, error: { message: "x" } };
			expect(await store.record({ id, owner: "node-b" }, 60_000, stale, { attempts: 9 })).toBe(false);
			expect(await store.get(id)).toEqual(before);
			expect((await steps())[1]).toEqual({ step: "two", status: "RUNNING", attempts: 1 });

			// A statement that fails inside the block rolls the whole write back (the instance update included) and
			// leaves no transaction open on the pooled connection.
			const tooLong = { stepIndex: 1, step: "x".repeat(500), phase: "forward" as const, status: "RUNNING" as const, attempts: 1 };
			await expect(store.record({ id, owner: "node-a" }, 60_000, tooLong, { attempts: 5 })).rejects.toThrow();
			expect((await store.get(id))!.attempts).toBe(1);
			const open = await db.query<{ t: number }>("SELECT @@in_transaction AS t", { type: QueryTypes.SELECT });
			expect(Number(open[0].t)).toBe(0);
		});
	});

	it("when a saga ends, then the state the executor hands its waiters is the one a read of the database gives", async () => {
		await withOwnSagaDb("sagaterminal", async (_db, store) => {
			const def = defineSaga<{ reject: boolean }>({
				type: "TwoSteps",
				steps: [
					{ name: "first", action: "p.first", params: () => ({}), compensate: { action: "p.undo", params: () => ({}) } },
					{ name: "second", action: "p.second", params: () => ({}) }
				],
				result: (_d, r) => ({ got: r.first })
			});
			const terminal = new Map<string, SagaState>();
			const executor = new SagaExecutor({
				store,
				owner: "node-a",
				definitions: new Map([[def.type, def as never]]),
				settings: { leaseMs: 60_000, stepTimeoutMs: 1_000, maxBackoffMs: 10, compensationAttempts: 2, compensationBackoffMs: 1 },
				newId: () => crypto.randomUUID(),
				// The participant: step "first" answers a value with a Date in it, "second" rejects when asked to.
				call: async (action, _params, opts) => {
					const saga = await store.get(opts.meta.sagaId);
					if (action === "p.first") return { at: new Date(0), n: 1 };
					if (action === "p.second" && (saga!.data as { reject: boolean }).reject) throw new Errors.MoleculerClientError("no", 409, "NOPE");
					return null;
				},
				hooks: { terminal: saga => terminal.set(saga.id, saga) }
			});
			for (const reject of [false, true]) {
				const { saga } = await store.create({
					id: crypto.randomUUID(),
					type: def.type,
					key: `t-${reject}`,
					data: { reject },
					owner: "node-a",
					leaseMs: 60_000,
					firstStep: "first"
				});
				expect(await executor.drive(saga.id, { fresh: true, saga })).toBe("terminal");
				const read = (await store.get(saga.id))!;
				expect(read.status).toBe(reject ? "COMPENSATED" : "COMPLETED");
				// updatedAt: the executor's is taken when it finishes, moments after the write's.
				expect(terminal.get(saga.id)).toEqual({ ...read, updatedAt: expect.any(String) });
				expect(Date.parse(terminal.get(saga.id)!.updatedAt)).toBeGreaterThanOrEqual(Date.parse(read.updatedAt));
			}
		});
	});
});

describe("group commit of the journal on MariaDB", () => {
	const step = (i: number, status: "RUNNING" | "SUCCEEDED") => ({ stepIndex: i, step: `s${i}`, phase: "forward" as const, status, attempts: 1 });

	it("when 40 sagas are created and journalled at once, then they share transactions and each write keeps its own fence and answer", async () => {
		await withOwnSagaDb("sagagroup", async (db, store) => {
			const taken = await store.create({ id: crypto.randomUUID(), type: "Test4", key: "taken-key", data: {}, owner: "a", leaseMs: 60_000 });
			const before = store.groupCommit;
			// 40 creates in one turn of the event loop, one of them for a key that exists: a duplicate key in a batch
			// must not fail the others, and that create must still find the existing saga.
			const ids = Array.from({ length: 40 }, () => crypto.randomUUID());
			const created = await Promise.all(
				ids.map((id, i) =>
					store.create({ id, type: "Test4", key: i === 7 ? "taken-key" : `k-${id}`, data: { i }, owner: "a", leaseMs: 60_000, firstStep: "s0" })
				)
			);
			expect(created.filter(c => c.created)).toHaveLength(39);
			expect(created[7]).toMatchObject({ created: false, saga: { id: taken.saga.id } });
			// Half of the fences name an owner that no longer holds the saga (its lease was taken over).
			const fresh = ids.filter((_, i) => i !== 7);
			const answers = await Promise.all(
				fresh.map((id, i) =>
					store.record({ id, owner: i % 2 === 0 ? "a" : "b" }, 60_000, [step(0, "SUCCEEDED"), step(1, "RUNNING")], {
						step: 1,
						stepName: "s1",
						attempts: 1
					})
				)
			);
			expect(answers).toEqual(fresh.map((_, i) => i % 2 === 0));
			const after = store.groupCommit;
			const writes = after.writes - before.writes;
			// Each create that took place and each record, once: the batch that met the duplicate key committed nothing
			// and its creates were written again one by one (the duplicate failing alone).
			expect(writes).toBe(39 + 39);
			// Fewer transactions than writes: the others were grouped.
			expect(after.batches - before.batches).toBeLessThan(writes / 2);
			expect(after.largest).toBeGreaterThan(1);
			for (const [i, id] of fresh.entries()) {
				const saga = await store.get(id);
				const journal = await store.journal(id);
				if (i % 2 === 0) {
					expect(saga).toMatchObject({ step: 1, stepName: "s1" });
					expect(journal.map(j => `${j.step}:${j.status}`)).toEqual(["s0:SUCCEEDED", "s1:RUNNING"]);
				} else {
					// Fenced out: neither the cursor nor the journal moved.
					expect(saga).toMatchObject({ step: 0, stepName: "s0" });
					expect(journal.map(j => `${j.step}:${j.status}`)).toEqual(["s0:RUNNING"]);
				}
			}
			const [row] = await db.query<{ n: number }>("SELECT COUNT(*) AS n FROM saga_instances", { type: QueryTypes.SELECT });
			expect(Number(row.n)).toBe(40);
		});
	});

	it("when the group size is 1, then every write has a transaction of its own", async () => {
		await withOwnSagaDb(
			"sagagroup1",
			async (_db, store) => {
				const ids = Array.from({ length: 10 }, () => crypto.randomUUID());
				await Promise.all(ids.map(id => store.create({ id, type: "Test4", key: `k-${id}`, data: {}, owner: "a", leaseMs: 60_000, firstStep: "s0" })));
				expect(store.groupCommit).toEqual({ batches: 10, writes: 10, largest: 1 });
			},
			1
		);
	});
});
