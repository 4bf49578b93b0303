/**
 * Seat holds under faults (issue 15, items 1 and 7a), on a real cluster: the catalog node keeps its holds on a
 * private redis-server that the test stops and starts, and runs behind the fault middleware.
 *
 * - A Redis outage right after a sale committed must not undo the paid booking: the hold's release is work after
 *   the step's commit, done later.
 * - A hold still queued on the catalog when `reservation.create` gave up must not land after the release.
 */
import mysql from "mysql2/promise";
import { Errors, type ServiceBroker } from "moleculer";
import { adminToken, balance, ownConcert, pay, reservation, reserve, seats, shopper } from "../support/booking";
import { Faults } from "../support/faults";
import { gatewayUrl, testEnv, waitFor, type TestEnv } from "../support/harness";
import { MARIADB_URL } from "../support/isolation";
import { startRedisServer, type PrivateRedis } from "../support/redis-server";
import { getSaga } from "../support/saga";
import { RedisStore } from "../../lib/store";
import { createHoldStore } from "../../services/concert/holds.store";

const ADMIN = { ADMIN_EMAIL: "ops@example.com", ADMIN_PASSWORD: "ops-password" };

let env: TestEnv;
let redis: PrivateRedis;
let gateway: ServiceBroker;
let api: string;
let admin: string;
const faults = new Faults();

beforeAll(async () => {
	env = testEnv({ cluster: true, env: ADMIN });
	redis = await startRedisServer({ appendonly: true });
	[gateway] = await Promise.all([
		env.broker(["api", "user", "queue", "payment", "saga"]),
		env.broker(["reservation"]),
		env.broker(["concert"], { config: { redis: { url: redis.url } }, middlewares: [faults.middleware()] })
	]);
	await gateway.waitForServices(["reservation", "concert", "payment", "saga", "queue"], 30_000);
	api = gatewayUrl(gateway);
	admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
}, 120_000);

afterAll(async () => {
	await env.cleanup();
	await redis.stop();
}, 60_000);

afterEach(() => faults.clear());

/** Who holds each seat right now, read from the catalog's own store (null = free). */
async function holders(scheduleId: string, seatIds: string[]): Promise<(string | null)[]> {
	const store = new RedisStore({ url: redis.url, prefix: env.config.storePrefix });
	try {
		return await createHoldStore(store).owners({ scheduleId, seatIds });
	} finally {
		await store.close();
	}
}

describe("seat holds under faults", () => {
	it("when Redis is down for 3 s right after the sale committed, then the saga completes and the booking stays CONFIRMED and paid once", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 700);
		const u = await shopper(api, concertId, 5000);
		const seat = (await seats(api, scheduleId))[0];
		const held = await reserve(api, u, scheduleId, [seat.id]);
		expect(held.status).toBe(201);
		const reservationId = held.body.id as string;

		// Stall the sale inside its transaction (a lock on the schedule's counter row), so that the outage starts
		// exactly between the sale's commit and the hold's release.
		const db = await mysql.createConnection({ uri: MARIADB_URL, database: `${env.env.DB_PREFIX}concert` });
		const control = await mysql.createConnection({ uri: MARIADB_URL });
		try {
			await db.beginTransaction();
			await db.query("SELECT schedule_id FROM seat_availability WHERE schedule_id = ? FOR UPDATE", [scheduleId]);
			const paying = pay(api, u, reservationId, "pay-outage");
			// The sale's locking read waits (MariaDB shows it in the process list, not yet in INNODB_TRX).
			await waitFor(
				async () => {
					const [rows] = await control.query(
						"SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT schedule_id FROM seat_availability%' AND INFO LIKE ?",
						[`%${scheduleId}%`]
					);
					return Number((rows as { n: number }[])[0].n) > 0;
				},
				20_000,
				"the sale to wait for the schedule lock"
			);
			await redis.stop();
			await db.commit();
			const first = await paying;
			// The outage lasts at least 3 s, and as long as the saga still sits at the sale step (at most 20 s).
			const saga = (await gateway.call<{ id: string }, object>("saga.find", { key: `confirm:${reservationId}:pay-outage` })).id;
			const down = Date.now();
			await waitFor(
				async () => {
					const now = await getSaga(gateway, saga);
					return Date.now() - down >= 3000 && (now.status !== "RUNNING" || now.stepName !== "sellSeats");
				},
				20_000,
				"the saga to move past the sale"
			);
			await redis.restart();
			expect([201, 202]).toContain(first.status);
			await waitFor(async () => ["COMPLETED", "COMPENSATED", "FAILED"].includes((await getSaga(gateway, saga)).status), 30_000, "the saga to end");
			expect((await getSaga(gateway, saga)).status).toBe("COMPLETED");
		} finally {
			await db.end();
			await control.end();
		}

		const detail = await reservation(api, u, reservationId);
		expect(detail).toMatchObject({ status: "CONFIRMED", payment: { amount: 700, status: "COMPLETED" } });
		expect(await balance(api, u)).toBe(4300);
		expect((await seats(api, scheduleId)).find(s => s.id === seat.id)?.status).toBe("SOLD");
		// A sold seat is never holdable, whatever hold still lingers on it.
		const other = await shopper(api, concertId, 5000);
		const taken = await reserve(api, other, scheduleId, [seat.id]);
		expect(taken.status).toBe(409);
		expect(taken.body.type).toBe("SEAT_UNAVAILABLE");
		// The hold the outage kept is released once the store is back (not at its expiry).
		await waitFor(async () => (await holders(scheduleId, [seat.id]))[0] === null, 15_000, "the lingering hold to be released");
	}, 90_000);

	it("when a hold is still queued on the catalog after reservation.create gave up, then it never lands and the seats stay free", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 500);
		const u = await shopper(api, concertId, 0);
		const [a, b] = await seats(api, scheduleId);
		// The catalog is slow: every hold waits 2.5 s before it runs, and the request's deadline is 1.5 s, which the
		// booking node's calls inherit: it gives up on the hold (after its own retries) while holds still wait.
		faults.delayBefore("concert.hold", 2500);
		const gaveUp = await gateway
			.call(
				"reservation.create",
				{ scheduleId, seatIds: [a.id, b.id] },
				{
					timeout: 1500,
					retries: 0,
					meta: { user: { id: u.userId, email: "x@example.com", role: "user" }, queueToken: u.queueToken }
				}
			)
			.then(
				() => null,
				(err: { code?: number; type?: string }) => err
			);
		expect(gaveUp).toMatchObject({ code: 504 });
		// The booking node gives the hold up (a release reaches the catalog), then the late holds run.
		await waitFor(() => (faults.calls.get("concert.release") ?? 0) > 0, 15_000, "the give-up").catch(() => undefined);
		await waitFor(() => (faults.finished.get("concert.hold") ?? 0) >= (faults.calls.get("concert.hold") ?? 0), 20_000, "the late holds to run");
		faults.heal("concert.hold");

		expect(await holders(scheduleId, [a.id, b.id])).toEqual([null, null]);
		expect((await seats(api, scheduleId)).filter(s => s.status !== "AVAILABLE")).toEqual([]);
		const other = await shopper(api, concertId, 0);
		expect((await reserve(api, other, scheduleId, [a.id, b.id])).status).toBe(201);
	}, 90_000);
	it("when the hold landed but giving it up cannot reach the catalog at first, then it is released in the background, not left to expire", async () => {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 500);
		const u = await shopper(api, concertId, 0);
		const [a] = await seats(api, scheduleId);
		// The hold lands but its answer is lost (every attempt), so reservation.create gives it up; the release then
		// fails 6 times (more than one call's retries: the catalog is unreachable for a while, as when NATS is down).
		const unreachable = () => new Errors.MoleculerRetryableError("catalog unreachable", 503, "INJECTED_FAULT");
		faults.failAfter("concert.hold", unreachable);
		faults.fail("concert.release", unreachable, { times: 6 });
		const gaveUp = await gateway
			.call(
				"reservation.create",
				{ scheduleId, seatIds: [a.id] },
				{
					retries: 0,
					meta: { user: { id: u.userId, email: "x@example.com", role: "user" }, queueToken: u.queueToken }
				}
			)
			.then(
				() => null,
				(err: { code?: number }) => err
			);
		expect(gaveUp).toMatchObject({ code: 503 });
		faults.heal("concert.hold");
		await waitFor(async () => (await holders(scheduleId, [a.id]))[0] !== null, 10_000, "the hold to land");
		// Released once the catalog answers again: within seconds, not at HOLD_TTL (300 s).
		await waitFor(async () => (await holders(scheduleId, [a.id]))[0] === null, 30_000, "the abandoned hold to be released");
		expect(faults.calls.get("concert.release")).toBeGreaterThan(6);
	}, 90_000);
});
