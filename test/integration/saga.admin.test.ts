/**
 * The operations routes of docs/API.md for sagas and dead letters, over HTTP through the real gateway (embedded mode:
 * one process, SQLite): admin only, list/get/retry sagas, list/retry/resolve dead letters, and the broker
 * metrics the engine keeps.
 */
import crypto from "crypto";
import type { ServiceBroker } from "moleculer";
import type { SagaView } from "../../services/saga/saga.api";
import { gatewayUrl, http, testEnv, type TestEnv } from "../support/harness";
import { SchemaNodes, serviceFile, waitSaga } from "../support/saga";
import FakeService from "../support/saga-services/fake/fake.service";
import { testSagaSchema } from "../support/saga-services/saga/saga.service";

let env: TestEnv;
let nodes: SchemaNodes;
let broker: ServiceBroker;
let api: string;
let admin: string;
let user: string;

beforeAll(async () => {
	// Operators' routes only: no automatic retry of FAILED sagas racing the test's (test/integration/saga.settle.test.ts).
	env = testEnv({ cluster: false, env: { ADMIN_EMAIL: "ops@example.com", ADMIN_PASSWORD: "admin-password", SAGA_FAILED_RETRY_SEC: "0" } });
	nodes = new SchemaNodes(env);
	// Metrics on without a reporter, so the test can read the registry.
	broker = await nodes.node([serviceFile("api"), serviceFile("user"), testSagaSchema(), FakeService], undefined, {
		metrics: { enabled: true, reporter: [] }
	});
	api = gatewayUrl(broker);
	admin = (await http("POST", `${api}/auth/login`, { body: { email: "ops@example.com", password: "admin-password" } })).body.accessToken;
	await http("POST", `${api}/auth/register`, { body: { email: "u@example.com", password: "user-password", name: "U" } });
	user = (await http("POST", `${api}/auth/login`, { body: { email: "u@example.com", password: "user-password" } })).body.accessToken;
}, 60_000);

afterAll(async () => {
	await nodes.stop();
	await env.cleanup();
}, 30_000);

/** A saga parked FAILED: c rejects, undoing b keeps failing until the fake is healed for it. */
const failedSaga = (): Promise<SagaView> =>
	broker.call("saga.start", {
		type: "Test4",
		key: crypto.randomUUID(),
		data: { plan: { c: { fail: 1, error: "reject" }, "b:undo": { fail: -1 } } },
		waitMs: 10_000
	});

describe("operations routes for sagas", () => {
	it("when a non-admin or nobody calls them, then 403 FORBIDDEN or 401 UNAUTHORIZED", async () => {
		for (const [method, path] of [
			["GET", "/admin/sagas"],
			["GET", "/admin/sagas/x"],
			["POST", "/admin/sagas/x/retry"],
			["GET", "/admin/dead-letters"],
			["POST", "/admin/dead-letters/x/retry"],
			["POST", "/admin/dead-letters/x/resolve"]
		]) {
			const asUser = await http(method, `${api}${path}`, { token: user });
			expect([path, asUser.status, asUser.body.type]).toEqual([path, 403, "FORBIDDEN"]);
			const anonymous = await http(method, `${api}${path}`);
			expect([path, anonymous.status, anonymous.body.type]).toEqual([path, 401, "UNAUTHORIZED"]);
		}
	});

	it("when an admin lists, reads and retries a FAILED saga, then 200s and a 202 that resumes it", async () => {
		const saga = await failedSaga();
		expect(saga.status).toBe("FAILED");

		const list = await http("GET", `${api}/admin/sagas?status=FAILED&page=1&pageSize=100`, { token: admin });
		expect(list.status).toBe(200);
		expect(list.body).toMatchObject({ page: 1, pageSize: 100, total: expect.any(Number) });
		expect(list.body.rows).toContainEqual({
			id: saga.id,
			type: "Test4",
			key: saga.key,
			status: "FAILED",
			step: "b",
			createdAt: expect.any(String),
			updatedAt: expect.any(String)
		});

		const one = await http("GET", `${api}/admin/sagas/${saga.id}`, { token: admin });
		expect(one.status).toBe(200);
		expect(one.body).toMatchObject({ id: saga.id, status: "FAILED", stepName: "b", error: { type: "FAKE_REJECTED" } });
		expect(one.body.journal.map((j: { step: string; phase: string; status: string }) => `${j.phase}:${j.step}:${j.status}`)).toEqual([
			"forward:a:SUCCEEDED",
			"forward:b:SUCCEEDED",
			"forward:c:REJECTED",
			"compensate:b:FAILED"
		]);
		expect(one.body.deadLetters).toHaveLength(1);

		await broker.call("fake.heal", { sagaId: saga.id });
		const retry = await http("POST", `${api}/admin/sagas/${saga.id}/retry`, { token: admin });
		expect(retry.status).toBe(202);
		expect(retry.body).toMatchObject({ id: saga.id, status: "COMPENSATING" });
		expect((await waitSaga(broker, saga.id, ["COMPENSATED"])).status).toBe("COMPENSATED");

		const again = await http("POST", `${api}/admin/sagas/${saga.id}/retry`, { token: admin });
		expect(again.status).toBe(409);
		expect(again.body).toMatchObject({ type: "SAGA_NOT_RETRYABLE", data: { id: saga.id, status: "COMPENSATED" } });
	});

	it("when an admin lists, retries and resolves dead letters, then 200, 202 and 200; a handled one answers 409", async () => {
		const [s1, s2] = await Promise.all([failedSaga(), failedSaga()]);
		const list = await http("GET", `${api}/admin/dead-letters?status=OPEN&pageSize=100`, { token: admin });
		expect(list.status).toBe(200);
		const dl1 = list.body.rows.find((d: { sagaId: string }) => d.sagaId === s1.id);
		const dl2 = list.body.rows.find((d: { sagaId: string }) => d.sagaId === s2.id);
		expect(dl1).toMatchObject({ sagaType: "Test4", step: "b", phase: "compensate", status: "OPEN", error: { type: "FAKE_UNAVAILABLE" } });

		await broker.call("fake.heal", { sagaId: s1.id });
		const retry = await http("POST", `${api}/admin/dead-letters/${dl1.id}/retry`, { token: admin });
		expect(retry.status).toBe(202);
		expect((await waitSaga(broker, s1.id, ["COMPENSATED"])).status).toBe("COMPENSATED");

		const resolve = await http("POST", `${api}/admin/dead-letters/${dl2.id}/resolve`, { token: admin, body: { note: "refunded by hand" } });
		expect(resolve.status).toBe(200);
		expect(resolve.body).toMatchObject({ id: dl2.id, status: "RESOLVED", note: "refunded by hand" });
		const twice = await http("POST", `${api}/admin/dead-letters/${dl2.id}/resolve`, { token: admin });
		expect(twice.status).toBe(409);
		expect(twice.body.type).toBe("DEAD_LETTER_CLOSED");
	});

	it("when the input is bad or the id unknown, then 422 VALIDATION_ERROR or 404 NOT_FOUND", async () => {
		const bad = await http("GET", `${api}/admin/sagas?status=BOGUS`, { token: admin });
		expect(bad.status).toBe(422);
		expect(bad.body.type).toBe("VALIDATION_ERROR");
		const big = await http("GET", `${api}/admin/dead-letters?pageSize=1000`, { token: admin });
		expect(big.status).toBe(422);
		for (const [method, path] of [
			["GET", "/admin/sagas/nope"],
			["POST", "/admin/sagas/nope/retry"],
			["POST", "/admin/dead-letters/nope/retry"],
			["POST", "/admin/dead-letters/nope/resolve"]
		]) {
			const r = await http(method, `${api}${path}`, { token: admin });
			expect([path, r.status, r.body.type]).toEqual([path, 404, "NOT_FOUND"]);
		}
	});

	it("when sagas run, then the broker metrics count them by outcome and time their steps", async () => {
		const m = broker.metrics;
		const count = (name: string) => Number(m.getMetric(name)?.get({ type: "Test4" })?.value ?? 0);
		const before = {
			started: count("saga.started"),
			completed: count("saga.completed"),
			compensated: count("saga.compensated"),
			failed: count("saga.failed")
		};
		await broker.call("saga.start", { type: "Test4", key: crypto.randomUUID(), data: {}, waitMs: 10_000 });
		await broker.call("saga.start", { type: "Test4", key: crypto.randomUUID(), data: { plan: { a: { fail: 1, error: "reject" } } }, waitMs: 10_000 });
		await failedSaga();
		expect(count("saga.started") - before.started).toBe(3);
		expect(count("saga.completed") - before.completed).toBe(1);
		expect(count("saga.compensated") - before.compensated).toBe(1);
		expect(count("saga.failed") - before.failed).toBe(1);
		const latency = m.getMetric("saga.step.duration")?.get({ type: "Test4", step: "a", phase: "forward", outcome: "ok" });
		expect(latency?.count).toBeGreaterThan(0);
	});
});
