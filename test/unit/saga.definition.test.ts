/**
 * The saga engine with fake participants, in the given/expect style: given a participant plan, expect the exact
 * order of calls and compensations, the final status and the effects. Embedded mode (in-process transport,
 * SQLite): the engine's behaviour, not the cluster's (see test/integration/saga.cluster.test.ts for that).
 */
import crypto from "crypto";
import type { ServiceBroker } from "moleculer";
import { QueryTypes, type Sequelize } from "sequelize";
import { waitFor, testEnv, type TestEnv } from "../support/harness";
import { fakeStats, getSaga, SchemaNodes, waitSaga } from "../support/saga";
import type { FakeData } from "../support/saga-services/definitions";
import FakeService from "../support/saga-services/fake/fake.service";
import { testSagaSchema } from "../support/saga-services/saga/saga.service";
import type { SagaView } from "../../services/saga/saga.api";

let env: TestEnv;
let nodes: SchemaNodes;
let broker: ServiceBroker;

beforeAll(async () => {
	env = testEnv({ cluster: false });
	nodes = new SchemaNodes(env);
	broker = await nodes.node([testSagaSchema(), FakeService]);
}, 60_000);

afterAll(async () => {
	await nodes.stop();
	await env.cleanup();
}, 30_000);

const start = (type: string, data: FakeData, opts: { key?: string; waitMs?: number } = {}): Promise<SagaView> =>
	broker.call("saga.start", { type, key: opts.key ?? crypto.randomUUID(), data, waitMs: opts.waitMs ?? 15_000 });

const sagaDb = () => (broker.getLocalService("saga") as unknown as { sequelize: Sequelize }).sequelize;

interface Expectation {
	status: string;
	trace: string[];
	errorType?: string;
}

const fwd = (...steps: string[]) => steps.map(s => `do:${s}`);
const undo = (...steps: string[]) => steps.map(s => `undo:${s}`);

describe("given/expect: Test4 (a, b, c, d, each compensable)", () => {
	const cases: [string, FakeData["plan"], Expectation][] = [
		["every participant agrees", {}, { status: "COMPLETED", trace: fwd("a", "b", "c", "d") }],
		// A business rejection at each step: the completed steps are undone in reverse; the rejecting one is not.
		["a rejects", { a: { fail: 1, error: "reject" } }, { status: "COMPENSATED", trace: fwd("a"), errorType: "FAKE_REJECTED" }],
		["b rejects", { b: { fail: 1, error: "reject" } }, { status: "COMPENSATED", trace: [...fwd("a", "b"), ...undo("a")], errorType: "FAKE_REJECTED" }],
		[
			"c rejects",
			{ c: { fail: 1, error: "reject" } },
			{ status: "COMPENSATED", trace: [...fwd("a", "b", "c"), ...undo("b", "a")], errorType: "FAKE_REJECTED" }
		],
		[
			"d rejects",
			{ d: { fail: 1, error: "reject" } },
			{ status: "COMPENSATED", trace: [...fwd("a", "b", "c", "d"), ...undo("c", "b", "a")], errorType: "FAKE_REJECTED" }
		],
		// A transient failure that outlasts the 3 attempts: the step is in doubt, so it is compensated too.
		[
			"a stays unavailable",
			{ a: { fail: 3, error: "transient" } },
			{ status: "COMPENSATED", trace: [...fwd("a", "a", "a"), ...undo("a")], errorType: "FAKE_UNAVAILABLE" }
		],
		[
			"b stays unavailable",
			{ b: { fail: 3, error: "transient" } },
			{ status: "COMPENSATED", trace: [...fwd("a", "b", "b", "b"), ...undo("b", "a")], errorType: "FAKE_UNAVAILABLE" }
		],
		[
			"c stays broken (500)",
			{ c: { fail: 3, error: "server" } },
			{ status: "COMPENSATED", trace: [...fwd("a", "b", "c", "c", "c"), ...undo("c", "b", "a")], errorType: "FAKE_BROKEN" }
		],
		[
			"d stays unavailable",
			{ d: { fail: 3, error: "transient" } },
			{ status: "COMPENSATED", trace: [...fwd("a", "b", "c", "d", "d", "d"), ...undo("d", "c", "b", "a")], errorType: "FAKE_UNAVAILABLE" }
		],
		// In doubt, then rejected: the timed-out attempt may still apply later, so the rejecting step is undone too
		// (its compensation leaves the record that turns a late attempt away).
		[
			"b is unavailable once, then rejects",
			{ b: { fail: 1, error: "transient", thenReject: true } },
			{ status: "COMPENSATED", trace: [...fwd("a", "b", "b"), ...undo("b", "a")], errorType: "FAKE_REJECTED" }
		],
		// Transient failures within the attempts: retried under the same key, then the saga goes on.
		["b is unavailable twice", { b: { fail: 2, error: "transient" } }, { status: "COMPLETED", trace: fwd("a", "b", "b", "b", "c", "d") }],
		// Compensations are retried too.
		[
			"c rejects and undoing b fails 3 times",
			{ c: { fail: 1, error: "reject" }, "b:undo": { fail: 3, error: "transient" } },
			{ status: "COMPENSATED", trace: [...fwd("a", "b", "c"), ...undo("b", "b", "b", "b", "a")], errorType: "FAKE_REJECTED" }
		]
	];

	it.each(cases)("when %s, then the calls, compensations and status are as expected", async (_name, plan, expected) => {
		const saga = await start("Test4", { plan });
		expect(saga.status).toBe(expected.status);
		const stats = await fakeStats(broker, saga.id);
		expect(stats.trace).toEqual(expected.trace);
		if (expected.errorType) {
			expect(saga.error).toMatchObject({ type: expected.errorType });
		} else {
			expect(saga.error).toBeUndefined();
			expect(saga.result).toEqual({ steps: ["a", "b", "c", "d"] });
		}
		// Effects: each distinct call applied once, whatever the retries.
		const distinct = [...new Set(stats.trace)];
		const rejectedOrFailed = Object.entries(plan ?? {})
			.filter(([k, p]) => !k.includes(":") && p.fail !== undefined && (p.error === "reject" || p.thenReject || (p.fail ?? 0) >= 3))
			.map(([k]) => `do:${k}`);
		const applied = distinct.filter(c => !rejectedOrFailed.includes(c));
		expect(stats.effects.map(e => `${e.kind}:${e.step}`).sort()).toEqual(applied.sort());
		expect(stats.alerts).toHaveLength(0);
	});

	it("when b rejects, then the saga keeps the rejection's type, reason and code for the caller", async () => {
		const saga = await start("Test4", { plan: { b: { fail: 1, error: "reject" } } });
		expect(saga).toEqual({
			id: saga.id,
			type: "Test4",
			key: expect.any(String),
			status: "COMPENSATED",
			error: {
				type: "FAKE_REJECTED",
				reason: "the participant said no",
				code: 409,
				message: "the fake says no",
				data: { step: "b" },
				step: "b",
				phase: "forward"
			}
		});
	});

	it("when a step has no compensation (Mixed: a, b without undo, c), then undoing skips it", async () => {
		const saga = await start("Mixed", { plan: { c: { fail: 1, error: "reject" } } });
		expect(saga.status).toBe("COMPENSATED");
		expect((await fakeStats(broker, saga.id)).trace).toEqual([...fwd("a", "b", "c"), ...undo("a")]);
	});

	it("when a saga completes, then its journal holds one SUCCEEDED forward entry per step", async () => {
		const saga = await start("Test4", {});
		const full = await getSaga(broker, saga.id);
		expect(full.journal.map(j => [j.step, j.phase, j.status, j.attempts])).toEqual([
			["a", "forward", "SUCCEEDED", 1],
			["b", "forward", "SUCCEEDED", 1],
			["c", "forward", "SUCCEEDED", 1],
			["d", "forward", "SUCCEEDED", 1]
		]);
		expect(full.leaseOwner).toBeNull();
	});
});

describe("given/expect: Pivot (a, b compensable; c, d retriable)", () => {
	it("when c is unavailable twice, then it is retried and the saga completes", async () => {
		const saga = await start("Pivot", { plan: { c: { fail: 2, error: "transient" } } });
		expect(saga.status).toBe("COMPLETED");
		expect((await fakeStats(broker, saga.id)).trace).toEqual(fwd("a", "b", "c", "c", "c", "d"));
	});

	it("when c stays unavailable, then nothing is undone: FAILED with a forward dead letter; a retry completes it", async () => {
		const saga = await start("Pivot", { plan: { c: { fail: -1, error: "transient" } } });
		expect(saga.status).toBe("FAILED");
		expect(saga.error).toMatchObject({ type: "FAKE_UNAVAILABLE", step: "c", phase: "forward" });
		expect((await fakeStats(broker, saga.id)).trace).toEqual(fwd("a", "b", "c", "c", "c"));
		const full = await getSaga(broker, saga.id);
		expect(full.deadLetters).toEqual([expect.objectContaining({ status: "OPEN", step: "c", phase: "forward" })]);

		await broker.call("fake.heal", { sagaId: saga.id });
		expect(await broker.call("saga.retry", { id: saga.id })).toMatchObject({ status: "RUNNING" });
		expect((await waitSaga(broker, saga.id, ["COMPLETED", "FAILED", "COMPENSATED"])).status).toBe("COMPLETED");
		const stats = await fakeStats(broker, saga.id);
		expect(stats.trace).toEqual(fwd("a", "b", "c", "c", "c", "c", "d"));
		expect(stats.effects.map(e => `${e.kind}:${e.step}`).sort()).toEqual(fwd("a", "b", "c", "d"));
		expect(stats.alerts).toHaveLength(1);
	});

	it("when d's participant rejects, then nothing is undone either: FAILED for an operator", async () => {
		const saga = await start("Pivot", { plan: { d: { fail: 1, error: "reject" } } });
		expect(saga.status).toBe("FAILED");
		expect(saga.error).toMatchObject({ type: "FAKE_REJECTED", step: "d" });
		expect((await fakeStats(broker, saga.id)).trace).toEqual(fwd("a", "b", "c", "d"));
	});
});

describe("timeouts, dead letters and operator actions", () => {
	it("when a participant times out but succeeds late, then it is retried under the same key with no second effect", async () => {
		const saga = await start("Test4", { plan: { b: { lateMs: 800 } } });
		expect(saga.status).toBe("COMPLETED");
		// The late first call finishes its (duplicate) effect attempt after the retry answered.
		await waitFor(async () => (await fakeStats(broker, saga.id)).finished[`${saga.id}:b`] === 2, 3000, "the late call of b to finish");
		const stats = await fakeStats(broker, saga.id);
		expect(stats.calls[`${saga.id}:b`]).toBe(2);
		expect(stats.effects.filter(e => e.step === "b")).toHaveLength(1);
		expect(stats.effects).toHaveLength(4);
		const journal = (await getSaga(broker, saga.id)).journal;
		expect(journal.find(j => j.step === "b")).toMatchObject({ status: "SUCCEEDED", attempts: 2 });
	});

	it("when a compensation never succeeds, then FAILED, one dead letter, one alert; an admin retry completes it after recovery", async () => {
		const saga = await start("Test4", { plan: { c: { fail: 1, error: "reject" }, "b:undo": { fail: -1 } } });
		expect(saga.status).toBe("FAILED");
		expect(saga.error).toMatchObject({ type: "FAKE_REJECTED" });
		let stats = await fakeStats(broker, saga.id);
		// Five attempts (the test limit), and nothing after b: a is not undone while b is stuck.
		expect(stats.trace).toEqual([...fwd("a", "b", "c"), ...undo("b", "b", "b", "b", "b")]);
		await waitFor(async () => (await fakeStats(broker, saga.id)).alerts.length > 0, 2000, "the saga.failed alert");
		const full = await getSaga(broker, saga.id);
		expect(full.deadLetters).toEqual([expect.objectContaining({ status: "OPEN", step: "b", phase: "compensate" })]);
		expect(full.stepName).toBe("b");
		// The alert is also in the outbox, written with the dead letter, under the event id that was emitted.
		const outbox = await sagaDb().query<{ id: string; event_type: string }>("SELECT id, event_type FROM outbox_events WHERE aggregate_id = ?", {
			replacements: [saga.id],
			type: QueryTypes.SELECT
		});
		const alert = (await fakeStats(broker, saga.id)).alerts[0] as { eventId: string; deadLetterId: string; key: string };
		expect(outbox).toEqual([{ id: alert.eventId, event_type: "saga.failed" }]);
		expect(alert).toMatchObject({ deadLetterId: full.deadLetters[0].id, key: saga.key, step: "b" });

		// The participant recovers; the operator retries.
		await broker.call("fake.heal", { sagaId: saga.id });
		const retried: SagaView = await broker.call("saga.retry", { id: saga.id });
		expect(retried.status).toBe("COMPENSATING");
		const done = await waitSaga(broker, saga.id, ["COMPENSATED", "FAILED"]);
		expect(done.status).toBe("COMPENSATED");
		stats = await fakeStats(broker, saga.id);
		expect(stats.trace.slice(-2)).toEqual(undo("b", "a"));
		expect(
			stats.effects
				.filter(e => e.kind === "undo")
				.map(e => e.step)
				.sort()
		).toEqual(["a", "b"]);
		expect(stats.alerts).toHaveLength(1);
		expect(done.deadLetters).toEqual([expect.objectContaining({ status: "RETRIED" })]);
		// Once compensated it is no longer retryable.
		await expect(broker.call("saga.retry", { id: saga.id })).rejects.toMatchObject({ code: 409, type: "SAGA_NOT_RETRYABLE" });
	});

	it("when an operator retries a dead letter, then its saga resumes; a resolved one is closed and stays FAILED", async () => {
		const plan: FakeData["plan"] = { b: { fail: 1, error: "reject" }, "a:undo": { fail: -1 } };
		const [s1, s2] = await Promise.all([start("Test4", { plan }), start("Test4", { plan })]);
		expect([s1.status, s2.status]).toEqual(["FAILED", "FAILED"]);
		const open: { rows: { id: string; sagaId: string }[] } = await broker.call("saga.deadLetters", { status: "OPEN", pageSize: 100 });
		const dl1 = open.rows.find(d => d.sagaId === s1.id)!;
		const dl2 = open.rows.find(d => d.sagaId === s2.id)!;
		expect(dl1 && dl2).toBeTruthy();

		await broker.call("fake.heal", { sagaId: s1.id });
		expect(await broker.call("saga.retryDeadLetter", { id: dl1.id })).toMatchObject({ status: "RETRIED", saga: { id: s1.id } });
		expect((await waitSaga(broker, s1.id, ["COMPENSATED"])).status).toBe("COMPENSATED");
		await expect(broker.call("saga.retryDeadLetter", { id: dl1.id })).rejects.toMatchObject({ code: 409, type: "DEAD_LETTER_CLOSED" });

		expect(await broker.call("saga.resolveDeadLetter", { id: dl2.id, note: "refunded by hand" })).toMatchObject({
			status: "RESOLVED",
			note: "refunded by hand"
		});
		await expect(broker.call("saga.resolveDeadLetter", { id: dl2.id })).rejects.toMatchObject({ code: 409, type: "DEAD_LETTER_CLOSED" });
		expect((await getSaga(broker, s2.id)).status).toBe("FAILED");
		await expect(broker.call("saga.retryDeadLetter", { id: "no-such-id" })).rejects.toMatchObject({ code: 404, type: "NOT_FOUND" });
	});
});

describe("starting and waiting", () => {
	it("when 10 starts with one key race, then there is one saga and each step runs once", async () => {
		const key = crypto.randomUUID();
		const views = await Promise.all(Array.from({ length: 10 }, () => start("Test4", {}, { key })));
		expect(new Set(views.map(v => v.id)).size).toBe(1);
		expect(await broker.call("saga.find", { key })).toEqual(views[0]);
		await expect(start("Mixed", {}, { key })).rejects.toMatchObject({ code: 409, type: "SAGA_KEY_CONFLICT", data: { key, type: "Test4" } });
		expect(await broker.call("saga.find", { id: views[0].id })).toEqual(views[0]);
		expect(views.every(v => v.status === "COMPLETED")).toBe(true);
		expect((await fakeStats(broker, views[0].id)).trace).toEqual(fwd("a", "b", "c", "d"));
		const listed: { total: number } = await broker.call("saga.list", { type: "Test4", pageSize: 100 });
		const [row] = await sagaDb().query<{ n: number }>("SELECT COUNT(*) AS n FROM saga_instances WHERE saga_key = ?", {
			replacements: [key],
			type: QueryTypes.SELECT
		});
		expect(Number(row.n)).toBe(1);
		expect(listed.total).toBeGreaterThan(0);
	});

	it("when the saga outlives waitMs, then start answers RUNNING and the saga still completes", async () => {
		const saga = await start("Long4", { plan: { a: { gate: true } } }, { waitMs: 100 });
		expect(saga.status).toBe("RUNNING");
		await waitFor(async () => ((await broker.call("fake.waiting")) as string[]).includes(`${saga.id}:a`), 2000, "the gated call");
		await broker.call("fake.open", { key: `${saga.id}:a` });
		// The same key answers the same saga, now finished; the gated call ran once.
		const again = await start("Long4", {}, { key: saga.key, waitMs: 5000 });
		expect(again).toMatchObject({ id: saga.id, status: "COMPLETED" });
		expect((await fakeStats(broker, saga.id)).calls[`${saga.id}:a`]).toBe(1);
	});

	it("when the type is unknown or the params are bad, then a 422 and no saga is written", async () => {
		const before: { total: number } = await broker.call("saga.list", {});
		await expect(broker.call("saga.start", { type: "Nope", key: "k1", data: {} })).rejects.toMatchObject({ code: 422, type: "UNKNOWN_SAGA_TYPE" });
		await expect(broker.call("saga.start", { type: "Test4", key: "", data: {} })).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
		await expect(broker.call("saga.start", { type: "Test4", key: "k2", data: "x" })).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
		const after: { total: number } = await broker.call("saga.list", {});
		expect(after.total).toBe(before.total);
		await expect(broker.call("saga.get", { id: "missing" })).rejects.toMatchObject({ code: 404, type: "NOT_FOUND" });
		await expect(broker.call("saga.find", { key: "missing" })).rejects.toMatchObject({ code: 404, type: "NOT_FOUND" });
		await expect(broker.call("saga.retry", { id: "missing" })).rejects.toMatchObject({ code: 404, type: "NOT_FOUND" });
	});
});

describe("leases", () => {
	it("when another owner takes the lease while a step is in flight, then this node stops driving the saga", async () => {
		const saga = await start("Long4", { plan: { b: { gate: true } } }, { waitMs: 0 });
		await waitFor(async () => ((await broker.call("fake.waiting")) as string[]).includes(`${saga.id}:b`), 3000, "the gated call");
		await sagaDb().query("UPDATE saga_instances SET lease_owner = 'thief', lease_expires_at = ?, rev = rev + 1 WHERE id = ?", {
			replacements: [Date.now() + 60_000, saga.id]
		});
		await broker.call("fake.open", { key: `${saga.id}:b` });
		// The executor tries its fenced write, finds the lease gone and stops driving the saga.
		const driving = (broker.getLocalService("saga") as unknown as { driving: Map<string, unknown> }).driving;
		await waitFor(() => !driving.has(saga.id), 3000, "this node to stop driving the saga");
		const stats = await fakeStats(broker, saga.id);
		expect(stats.trace).toEqual(fwd("a", "b"));
		const full = await getSaga(broker, saga.id);
		expect(full).toMatchObject({ status: "RUNNING", leaseOwner: "thief", stepName: "b" });
		// The result of b was not journalled by the node that lost the lease.
		expect(full.journal.find(j => j.step === "b")).toMatchObject({ status: "RUNNING" });
	});
});
