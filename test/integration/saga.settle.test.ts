/**
 * A saga parked FAILED by a fault that passes settles by itself (issue 15, item 7b): the reservation it left
 * PAYING or CANCELLING ends PENDING or CANCELLED with money and seats consistent, without an operator. The real
 * services run in one process; the fault middleware makes a participant fail for a while; the saga node has short
 * retries so that it parks quickly, and SAGA_FAILED_RETRY_SEC=1.
 */
import { Errors, type ServiceBroker } from "moleculer";
import { brokerOptions } from "../../moleculer.config";
import { adminToken, balance, ownConcert, pay, reservation, reserve, seats, shopper } from "../support/booking";
import { Faults } from "../support/faults";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { SchemaNodes, serviceFile, waitSaga } from "../support/saga";
import { testSagaSchema } from "../support/saga-services/saga/saga.service";

const ADMIN = { ADMIN_EMAIL: "ops@example.com", ADMIN_PASSWORD: "ops-password" };
const outage = () => new Errors.MoleculerRetryableError("injected outage", 503, "INJECTED_OUTAGE");
const rejected = () => new Errors.MoleculerClientError("injected rejection", 409, "INJECTED_FAULT");

let env: TestEnv;
let nodes: SchemaNodes;
let broker: ServiceBroker;
let api: string;
let admin: string;
const faults = new Faults();

beforeAll(async () => {
	env = testEnv({ cluster: false, env: { ...ADMIN, SAGA_FAILED_RETRY_SEC: "1" } });
	nodes = new SchemaNodes(env);
	const options = brokerOptions({ ...env.config, nodeID: `${env.id}-settle` });
	broker = await nodes.node(
		[
			...["api", "user", "queue", "concert", "payment", "reservation"].map(serviceFile),
			testSagaSchema({ stepTimeoutMs: 5000, leaseMs: 10_000, compensationAttempts: 3, compensationBackoffMs: 20, maxBackoffMs: 50 })
		],
		`${env.id}-settle`,
		{ middlewares: [...(options.middlewares ?? []), faults.middleware()] }
	);
	api = gatewayUrl(broker);
	admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
}, 120_000);

afterAll(async () => {
	await nodes.stop();
	await env.cleanup();
}, 60_000);

afterEach(() => faults.clear());

async function booking(price = 800) {
	const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, price);
	const u = await shopper(api, concertId, 5000);
	const seat = (await seats(api, scheduleId))[0];
	const held = await reserve(api, u, scheduleId, [seat.id]);
	expect(held.status).toBe(201);
	return { u, scheduleId, seat: seat.id, id: held.body.id as string };
}

const seatStatus = async (scheduleId: string, seatId: string) => (await seats(api, scheduleId)).find(s => s.id === seatId)?.status;
const sagaOf = async (key: string) => (await broker.call<{ id: string; status: string }, object>("saga.find", { key })).id;

describe("FAILED sagas settle by themselves", () => {
	it("when a payment's rollback parks FAILED with the reservation PAYING, then the automatic retry brings it back to PENDING with the points refunded", async () => {
		const b = await booking(800);
		// The confirm step says no, then refunding keeps failing for longer than the compensation's retries.
		faults.fail("reservation.confirm", rejected, { times: 1 });
		faults.fail("payment.refund", outage, { times: 3 });
		const res = await pay(api, b.u, b.id, "pay-parked");
		expect(res.status).toBe(202);
		const id = await sagaOf(`confirm:${b.id}:pay-parked`);
		// Parked FAILED (the reservation PAYING, the points taken) until the automatic retry settles it.
		await waitFor(async () => (await reservation(api, b.u, b.id)).status !== "PAYING", 20_000, "the reservation to leave PAYING");

		const saga = await waitSaga(broker, id, ["COMPENSATED"], 20_000);
		expect(saga.journal.filter(j => j.step === "pay" && j.phase === "compensate").map(j => j.status)).toEqual(["SUCCEEDED"]);
		expect(saga.deadLetters.map(d => d.status)).toEqual(["RETRIED"]);
		expect((await reservation(api, b.u, b.id)).status).toBe("PENDING");
		expect(await balance(api, b.u)).toBe(5000);
		expect(await seatStatus(b.scheduleId, b.seat)).toBe("HELD");
		// Settled for good: the reservation can be paid again.
		expect((await pay(api, b.u, b.id, "pay-again")).status).toBe(201);
		expect(await balance(api, b.u)).toBe(4200);
	}, 60_000);

	it("when a cancellation parks FAILED with the reservation CANCELLING, then the automatic retry finishes it: CANCELLED, refunded once, seat free", async () => {
		const b = await booking(900);
		expect((await pay(api, b.u, b.id)).status).toBe(201);
		faults.fail("concert.releaseSold", outage, { times: 12 });
		const res = await http("POST", `${api}/reservations/${b.id}/cancel`, { token: b.u.token, headers: { "idempotency-key": "cancel-parked" } });
		expect(res.status).toBe(202);
		await waitFor(async () => (await reservation(api, b.u, b.id)).status === "CANCELLED", 20_000, "the parked cancellation to finish");

		const saga = await waitSaga(broker, await sagaOf(`cancel:${b.id}:cancel-parked`), ["COMPLETED"], 10_000);
		expect(saga.deadLetters.map(d => d.status)).toEqual(["RETRIED"]);
		expect(await balance(api, b.u)).toBe(5000);
		expect(await seatStatus(b.scheduleId, b.seat)).toBe("AVAILABLE");
	}, 60_000);

	it("when an operator resolved the dead letter (settled by hand), then the saga is left FAILED", async () => {
		const b = await booking(700);
		expect((await pay(api, b.u, b.id)).status).toBe(201);
		faults.fail("concert.releaseSold", outage);
		const res = await http("POST", `${api}/reservations/${b.id}/cancel`, { token: b.u.token, headers: { "idempotency-key": "cancel-by-hand" } });
		const id = await sagaOf(`cancel:${b.id}:cancel-by-hand`);
		const parked = await waitSaga(broker, id, ["FAILED"], 20_000);
		expect(res.status).toBe(202);
		const letter = parked.deadLetters[0];
		await http("POST", `${api}/admin/dead-letters/${letter.id}/resolve`, { token: admin, body: { note: "settled by hand" } });
		faults.clear();
		// A sleep on purpose: it shows that nothing happens while several scan periods (one every 500 ms) pass.
		await new Promise(r => setTimeout(r, 3000));
		expect((await waitSaga(broker, id, ["FAILED"])).deadLetters.map(d => d.status)).toEqual(["RESOLVED"]);
		expect((await reservation(api, b.u, b.id)).status).toBe("CANCELLING");
	}, 60_000);
});
