/**
 * A hold whose answer is lost, retried with the same Idempotency-Key (found by the chaos harness during a NATS
 * restart): the booking node created the reservation, the gateway never heard back and answered 503, the shopper
 * retried. The retry must answer that same reservation, not a 409 SEAT_UNAVAILABLE against the shopper's own hold
 * while a reservation it was never told about sits PENDING until it expires.
 */
import { Errors, type ServiceBroker } from "moleculer";
import { adminToken, ownConcert, reservation, seats, shopper } from "../support/booking";
import { Faults } from "../support/faults";
import mysql from "mysql2/promise";
import { reservationIdFor } from "../../services/reservation/reservation.service";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { MARIADB_URL } from "../support/isolation";

const ADMIN = { ADMIN_EMAIL: "retry-admin@example.com", ADMIN_PASSWORD: "retry-admin-password" };

let env: TestEnv;
let gateway: ServiceBroker;
let booking: ServiceBroker;
let api: string;
let admin: string;
const faults = new Faults();
const catalogFaults = new Faults();

beforeAll(async () => {
	env = testEnv({ cluster: true, env: ADMIN });
	[gateway, booking] = await Promise.all([
		env.broker(["api", "user", "queue", "payment", "saga", "concert"], { middlewares: [catalogFaults.middleware()] }),
		env.broker(["reservation"], { middlewares: [faults.middleware()] })
	]);
	await gateway.waitForServices(["reservation", "concert", "queue"], 30_000);
	api = gatewayUrl(gateway);
	admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
}, 120_000);

afterAll(async () => {
	await env.cleanup();
}, 60_000);

describe("reservation.create retried with the same Idempotency-Key", () => {
	it("when the first attempt's answer was lost, then the retry answers the reservation it made, and no other exists", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 500);
		const u = await shopper(api, concertId, 0);
		const [a] = await seats(api, scheduleId);
		// The booking node does the work, then its answer never reaches the gateway (a lost reply: 503, retryable).
		faults.failAfter("reservation.create", () => new Errors.MoleculerRetryableError("reply lost", 503, "INJECTED_FAULT"), { times: 4 });
		const send = () =>
			http("POST", `${api}/reservations`, {
				token: u.token,
				body: { scheduleId, seatIds: [a.id] },
				headers: { "x-queue-token": u.queueToken, "idempotency-key": "hold-once" }
			});
		const first = await send();
		expect(first.status).toBe(503);
		faults.heal("reservation.create");

		const retry = await send();
		expect(retry.status).toBe(201);
		const mine = (await http("GET", `${api}/reservations`, { token: u.token })).body.rows as { id: string; status: string }[];
		expect(mine.map(r => r.id)).toEqual([retry.body.id]);
		expect((await reservation(api, u, retry.body.id)).status).toBe("PENDING");
		// A replay of the retry is the stored answer, the same reservation.
		const again = await send();
		expect(again.status).toBe(201);
		expect(again.body.id).toBe(retry.body.id);
	}, 60_000);
	it("when the first attempt gave its hold up, then the retry holds again under a fresh id instead of failing for good", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 500);
		const u = await shopper(api, concertId, 0);
		const [a] = await seats(api, scheduleId);
		// The hold lands but its answer is lost every time: create gives it up (released, the owner refused from now on).
		catalogFaults.failAfter("concert.hold", () => new Errors.MoleculerRetryableError("reply lost", 503, "INJECTED_FAULT"));
		const send = () =>
			http("POST", `${api}/reservations`, {
				token: u.token,
				body: { scheduleId, seatIds: [a.id] },
				headers: { "x-queue-token": u.queueToken, "idempotency-key": "hold-after-abandon" }
			});
		expect((await send()).status).toBe(503);
		catalogFaults.heal("concert.hold");

		const retry = await send();
		expect(retry.status).toBe(201);
		const mine = (await http("GET", `${api}/reservations`, { token: u.token })).body.rows as { id: string }[];
		expect(mine.map(r => r.id)).toEqual([retry.body.id]);
		expect((await seats(api, scheduleId)).find(x => x.id === a.id)!.status).toBe("HELD");
	}, 60_000);
	it("when the waiting-room token is gone by the time of the retry, then the retry still answers the reservation the first attempt made", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 500);
		const u = await shopper(api, concertId, 0);
		const [a] = await seats(api, scheduleId);
		faults.failAfter("reservation.create", () => new Errors.MoleculerRetryableError("reply lost", 503, "INJECTED_FAULT"), { times: 4 });
		const send = () =>
			http("POST", `${api}/reservations`, {
				token: u.token,
				body: { scheduleId, seatIds: [a.id] },
				headers: { "x-queue-token": u.queueToken, "idempotency-key": "hold-token-gone" }
			});
		expect((await send()).status).toBe(503);
		faults.heal("reservation.create");
		// The token goes (as every token does when Redis restarts empty).
		expect((await http("DELETE", `${api}/queue/tokens/${encodeURIComponent(u.queueToken)}`, { token: u.token })).status).toBe(204);

		const retry = await send();
		expect(retry.status).toBe(201);
		const mine = (await http("GET", `${api}/reservations`, { token: u.token })).body.rows as { id: string }[];
		expect(mine.map(r => r.id)).toEqual([retry.body.id]);
	}, 60_000);
	it("when the attempt after an abandoned hold made a reservation but lost its answer, then the next retry answers that reservation, not 409 against it", async () => {
		// Found by the chaos harness after Redis and MariaDB restarts: the second attempt held under a fresh, random id,
		// its answer was lost (a 504 at the gateway), and the third attempt could not find that reservation: it held
		// again, got 409 SEAT_UNAVAILABLE against it, and the reservation sat PENDING, never told, until it expired.
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 500);
		const u = await shopper(api, concertId, 0);
		const [a] = await seats(api, scheduleId);
		const send = () =>
			http("POST", `${api}/reservations`, {
				token: u.token,
				body: { scheduleId, seatIds: [a.id] },
				headers: { "x-queue-token": u.queueToken, "idempotency-key": "hold-abandoned-then-lost" }
			});
		catalogFaults.failAfter("concert.hold", () => new Errors.MoleculerRetryableError("reply lost", 503, "INJECTED_FAULT"));
		expect((await send()).status).toBe(503);
		catalogFaults.heal("concert.hold");
		faults.failAfter("reservation.create", () => new Errors.MoleculerRetryableError("reply lost", 503, "INJECTED_FAULT"), { times: 4 });
		expect((await send()).status).toBe(503);
		faults.heal("reservation.create");

		const retry = await send();
		expect(retry.status).toBe(201);
		const mine = (await http("GET", `${api}/reservations`, { token: u.token })).body.rows as { id: string }[];
		expect(mine.map(r => r.id)).toEqual([retry.body.id]);
		expect((await send()).body.id).toBe(retry.body.id);
	}, 60_000);

	it("when two attempts of one key wait on their inserts under different generations (a database stall), then one reservation is made and both answer it", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 500);
		const u = await shopper(api, concertId, 0);
		const [a] = await seats(api, scheduleId);
		const key = "stalled-hold";
		const me = (await http("GET", `${api}/users/me`, { token: u.token })).body as { id: string; email: string; role: "user" };
		// Straight to the action: the gateway would (rightly) answer 409 IN_PROGRESS to the second attempt of a key.
		const create = () =>
			gateway.call(
				"reservation.create",
				{ scheduleId, seatIds: [a.id] },
				{ meta: { user: me, idempotencyKey: key, queueToken: u.queueToken }, timeout: 60_000 }
			);
		const database = (booking.getLocalService("reservation") as unknown as { sequelize: { config: { database: string } } }).sequelize.config.database;
		const url = new URL(MARIADB_URL);
		const locker = await mysql.createConnection({
			host: url.hostname,
			port: Number(url.port || 3306),
			user: decodeURIComponent(url.username || "root"),
			password: decodeURIComponent(url.password),
			database
		});
		// The attempts' inserts in flight: with the table locked, each waits there (for the lock, or behind the other).
		const waitingInserts = async () => {
			const [rows] = await locker.query(
				"SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND = 'Query' AND INFO LIKE 'INSERT INTO reservation%'",
				[database]
			);
			return Number((rows as { n: number }[])[0].n);
		};
		try {
			// Writes to this test's reservations table wait (reads do not), as under the harness's global stall.
			await locker.query("LOCK TABLES reservations READ");
			const first = create();
			await waitFor(async () => (await waitingInserts()) === 1, 15_000, "the first attempt to wait on its insert");
			// Another attempt of the key gave the generation-0 hold up meanwhile (its own insert failed): released and refused.
			await gateway.call("concert.release", { scheduleId, seatIds: [a.id], owner: reservationIdFor(me.id, key, 0), abandon: true });
			const second = create();
			await waitFor(async () => (await waitingInserts()) === 2, 15_000, "the second attempt to wait on its insert");
			await locker.query("UNLOCK TABLES");
			const answers = (await Promise.all([first, second])) as { id: string }[];
			expect(answers[1].id).toBe(answers[0].id);
		} finally {
			await locker.end();
		}
		const mine = (await http("GET", `${api}/reservations`, { token: u.token })).body.rows as { id: string }[];
		expect(mine).toHaveLength(1);
		// Nothing is left held by the attempt that lost: the seat is held by no one but the answered reservation, or free.
		const seat = (await seats(api, scheduleId)).find(s => s.id === a.id)!;
		expect(["AVAILABLE", "HELD"]).toContain(seat.status);
	}, 60_000);
});

describe("reservation.create past its caller's deadline", () => {
	it("when the hold only lands after the request timed out (a retried hold after a slow store), then no reservation is made and the seat is given back", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 500);
		const u = await shopper(api, concertId, 0);
		const [a] = await seats(api, scheduleId);
		const me = (await http("GET", `${api}/users/me`, { token: u.token })).body as { id: string; email: string; role: "user" };
		// The first hold waits past the request's deadline (its caller gives up on it); the broker's retry of the hold
		// then lands at once: the hold succeeds after the client was answered 504.
		catalogFaults.delayBefore("concert.hold", 2500, { times: 1 });
		const inFlight = (action: string) => (catalogFaults.calls.get(action) ?? 0) - (catalogFaults.finished.get(action) ?? 0);
		const releasesBefore = catalogFaults.finished.get("concert.release") ?? 0;
		const answer = await gateway
			.call(
				"reservation.create",
				{ scheduleId, seatIds: [a.id] },
				{ meta: { user: me, idempotencyKey: "late-hold", queueToken: u.queueToken }, timeout: 2000, retries: 0 }
			)
			.then(
				() => "created",
				(err: { code?: number }) => err.code
			);
		expect(answer).toBe(504);
		// The late hold has run (every hold the catalog was asked for is done) and the hold was given back.
		await waitFor(
			() => inFlight("concert.hold") === 0 && inFlight("concert.release") === 0 && (catalogFaults.finished.get("concert.release") ?? 0) > releasesBefore,
			15_000,
			"the late hold to land and be given back"
		);
		catalogFaults.heal("concert.hold");
		const mine = (await http("GET", `${api}/reservations`, { token: u.token })).body.rows as { id: string }[];
		expect(mine).toEqual([]);
		expect((await seats(api, scheduleId)).find(s => s.id === a.id)?.status).toBe("AVAILABLE");
	}, 60_000);
});
