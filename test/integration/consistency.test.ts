/**
 * The ops consistency check in cluster mode (three brokers over NATS, MariaDB, Redis, JetStream): ok after a real
 * journey; each kind of drift, injected directly in this run's own databases and Redis, reported with its ids;
 * the ranking repaired; bad requests refused with a stable error type.
 */
import crypto from "crypto";
import type { ServiceBroker } from "moleculer";
import { createHoldStore } from "../../services/concert/holds.store";
import { RANKING_KEYS } from "../../services/ranking/ranking.store";
import { adminToken, ownConcert, pay, reserve, seats, shopper, type Shopper } from "../support/booking";
import { http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { bulkSale, checkOf, OPS_ADMIN, opsCluster, redisOf, schema, sqlOf, type Check } from "../support/ops";
import { SchemaNodes } from "../support/saga";
import OpsService from "../../services/ops/ops.service";

// The relay runs after each commit and at start; a long poll keeps an injected outbox row unpublished (stale)
// for as long as nothing else commits in the reservation database.
const ENV = { ...OPS_ADMIN, OUTBOX_POLL_MS: "600000" };

describe("consistency check (cluster)", () => {
	let env: TestEnv;
	let gateway: ServiceBroker;
	let api: string;
	let admin: string;
	let concertId: string;
	let scheduleId: string;
	let buyer: Shopper;

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: ENV });
		({ gateway, api } = await opsCluster(env));
		admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		({ concertId, scheduleId } = await ownConcert(api, admin, 2, 5, 1200));
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	const report = async () => {
		const res = await http("GET", `${api}/admin/consistency`, { token: admin });
		expect(res.status).toBe(200);
		return res.body;
	};

	it("when a journey has confirmed, cancelled and pending reservations, then every check is ok", async () => {
		buyer = await shopper(api, concertId, 10_000, "buyer");
		const [a, b, c, d] = await seats(api, scheduleId);
		const held = await reserve(api, buyer, scheduleId, [a.id, b.id]);
		expect((await pay(api, buyer, held.body.id)).status).toBe(201);

		const canceller = await shopper(api, concertId, 5000, "canceller");
		const second = await reserve(api, canceller, scheduleId, [c.id]);
		expect((await pay(api, canceller, second.body.id)).status).toBe(201);
		const cancelled = await http("POST", `${api}/reservations/${second.body.id}/cancel`, { token: canceller.token, headers: { "idempotency-key": "c1" } });
		expect(cancelled.status).toBe(200);

		const waiting = await shopper(api, concertId, 0, "pending");
		expect((await reserve(api, waiting, scheduleId, [d.id])).status).toBe(201);

		// The ranking follows the events: eventually consistent by design.
		await waitFor(async () => (await gateway.call<{ ok: boolean }, object>("ranking.verify", {})).ok, 20_000, "the ranking to follow the events");

		const body = await report();
		expect(body.checks.map((c: { name: string }) => c.name).sort()).toEqual(["holds", "money", "outbox", "ranking", "sagas", "seats"]);
		for (const c of body.checks) expect({ name: c.name, ok: c.ok, details: c.details }).toMatchObject({ name: c.name, ok: true });
		expect(body.ok).toBe(true);
		expect(Object.keys(checkOf(body, "outbox").details.producers)).toEqual(expect.arrayContaining(["payment", "reservation"]));
	}, 60_000);

	it("when seats, a wallet, a hold, a saga, the outbox and the ranking drift behind the services' backs, then each is reported with its ids", async () => {
		const sql = await sqlOf();
		const { store, redis } = redisOf(env);
		const all = await seats(api, scheduleId);
		const [soldSeat, heldSeat] = all.filter(s => s.status === "AVAILABLE");
		const ghostReservation = `ghost-${crypto.randomBytes(4).toString("hex")}`;
		const orphanOwner = `orphan-${crypto.randomBytes(4).toString("hex")}`;
		const staleEvent = crypto.randomUUID();
		const stuckSaga = crypto.randomUUID();
		try {
			// A seat sold without a reservation (the counter moves with it, as a sale would move it).
			await sql.query(`INSERT INTO ${schema(env, "concert")}.seat_sales (schedule_id, seat_id, reservation_id, sold_at) VALUES (?, ?, ?, NOW(3))`, [
				scheduleId,
				soldSeat.id,
				ghostReservation
			]);
			await sql.query(`UPDATE ${schema(env, "concert")}.seat_availability SET sold_seats = sold_seats + 1 WHERE schedule_id = ?`, [scheduleId]);
			// A balance that disagrees with its ledger.
			await sql.query(`UPDATE ${schema(env, "payment")}.wallets SET balance = balance + 7 WHERE user_id = ?`, [buyer.userId]);
			// An outbox row nobody published for two hours.
			await sql.query(
				`INSERT INTO ${schema(env, "reservation")}.outbox_events (id, aggregate_type, aggregate_id, event_type, payload, version, processed, created_at)
				 VALUES (?, 'reservation', ?, 'reservation.expired', '{}', 1, 0, NOW(3) - INTERVAL 2 HOUR)`,
				[staleEvent, `stale-${staleEvent.slice(0, 8)}`]
			);
			// A saga RUNNING for an hour whose node holds its lease but never moves it on.
			const hourAgo = Date.now() - 3600_000;
			await sql.query(
				`INSERT INTO ${schema(env, "saga")}.saga_instances (id, type, saga_key, status, data, results, current_step, step_name, attempts, lease_owner, lease_expires_at, rev, created_at, updated_at)
				 VALUES (?, 'ConfirmReservation', ?, 'RUNNING', '{}', '{}', 1, 'pay', 1, 'a-node-that-hangs', ?, 0, ?, ?)`,
				[stuckSaga, `stuck:${stuckSaga}`, Date.now() + 3600_000, hourAgo, hourAgo]
			);
			// A hold whose owner is no reservation at all.
			const hold = await createHoldStore(store).hold({ scheduleId, seatIds: [heldSeat.id], owner: orphanOwner, ttlMs: 600_000 });
			expect(hold.ok).toBe(true);
			// The ranking counts five seats more than were sold.
			await redis.zincrby(RANKING_KEYS.scores, 5, concertId);

			const body = await report();
			expect(body.ok).toBe(false);

			const seatsCheck = checkOf(body, "seats");
			expect(seatsCheck.ok).toBe(false);
			expect(seatsCheck.details.soldWithoutReservation).toEqual([
				{ scheduleId, seatId: soldSeat.id, reservationId: ghostReservation, reservationStatus: null }
			]);
			expect(seatsCheck.details.soldTwice).toEqual([]);
			expect(seatsCheck.details.confirmedNotSold).toEqual([]);

			const money = checkOf(body, "money");
			expect(money.ok).toBe(false);
			expect(money.details.wallets).toEqual(expect.arrayContaining([{ rule: "wallet-balance-equals-ledger", offenders: [buyer.userId] }]));
			expect(money.details.confirmedWithoutPayment).toEqual([]);

			const holds = checkOf(body, "holds");
			expect(holds.ok).toBe(false);
			expect(holds.details.orphanHolds).toEqual([{ scheduleId, seatId: heldSeat.id, owner: orphanOwner, reservationStatus: null }]);

			const outbox = checkOf(body, "outbox");
			expect(outbox.ok).toBe(false);
			expect(outbox.details.stale).toEqual([expect.objectContaining({ producer: "reservation", eventId: staleEvent, eventType: "reservation.expired" })]);

			const ranking = checkOf(body, "ranking");
			expect(ranking.ok).toBe(false);
			expect(ranking.details.mismatches).toEqual([expect.objectContaining({ concertId, ranking: 7, truth: 2 })]);

			const sagas = checkOf(body, "sagas");
			expect(sagas.ok).toBe(false);
			expect(sagas.details.stuck).toEqual([
				{ id: stuckSaga, type: "ConfirmReservation", status: "RUNNING", step: "pay", updatedAt: new Date(hourAgo).toISOString() }
			]);
			expect(sagas.details.openDeadLetters).toEqual([]);
		} finally {
			await store.close();
			await sql.end();
		}
	}, 60_000);

	it("when the ranking repair runs, then the ranking check is ok again and the other findings stay", async () => {
		const repaired = await http("POST", `${api}/admin/consistency/repair`, { token: admin, body: { check: "ranking" } });
		expect(repaired.status).toBe(200);
		expect(repaired.body).toMatchObject({ check: "ranking", ok: true, details: { mismatches: [] } });
		const body = await report();
		expect(checkOf(body, "ranking").ok).toBe(true);
		expect(checkOf(body, "seats").ok).toBe(false);
	}, 30_000);

	it("when the holds repair runs, then the orphan hold is released (by its owner) and the holds check is ok again", async () => {
		const repaired = await http("POST", `${api}/admin/consistency/repair`, { token: admin, body: { check: "holds" } });
		expect(repaired.status).toBe(200);
		expect(repaired.body).toMatchObject({ check: "holds", ok: true, repaired: { released: 1 } });
		const body = await report();
		expect(checkOf(body, "holds").ok).toBe(true);
		expect(checkOf(body, "seats").ok).toBe(false);
	}, 30_000);

	it("when an ops node is configured with a short interval, then it runs the check by itself and its gauges show the drift", async () => {
		const nodes = new SchemaNodes(env);
		try {
			const scheduled = await nodes.node(
				[{ ...OpsService, settings: { ...OpsService.settings, intervalMs: 300, metricsIntervalMs: 60_000 } }],
				`${env.id}-ops2`,
				{
					metrics: { enabled: true, reporter: [] }
				}
			);
			const gauge = (check: string) => scheduled.metrics.getMetric("ops.consistency.ok")?.get({ check })?.value;
			await waitFor(() => gauge("seats") !== undefined, 15_000, "a scheduled consistency run");
			expect(gauge("seats")).toBe(0);
			expect(gauge("sagas")).toBe(0);
			expect(gauge("ranking")).toBe(1);
		} finally {
			await nodes.stop();
		}
	}, 30_000);

	it("when a repair is asked for a check without one, or by a non-admin, then 422 or 403 and nothing runs", async () => {
		const bad = await http("POST", `${api}/admin/consistency/repair`, { token: admin, body: { check: "seats" } });
		expect(bad.status).toBe(422);
		expect(bad.body.type).toBe("VALIDATION_ERROR");
		const missing = await http("POST", `${api}/admin/consistency/repair`, { token: admin, body: {} });
		expect(missing.status).toBe(422);
		expect((await http("POST", `${api}/admin/consistency/repair`, { token: buyer.token, body: { check: "ranking" } })).status).toBe(403);
		expect((await http("GET", `${api}/admin/consistency`, { token: buyer.token })).status).toBe(403);
		expect((await http("GET", `${api}/admin/consistency`)).status).toBe(401);
	}, 30_000);
});

/**
 * Item 3 of issue 15: a sale of 5,000 reservations (10,000 seats), written straight into the services' own schemas.
 * The audits used to answer every row in one NATS message (over NATS' 1 MB max payload: MAX_PAYLOAD_EXCEEDED, shown
 * as seats, money and holds drift); now they answer pages and the check walks them. The scheduled check reads only
 * what changed since its last run; stuck PAYING/CANCELLING reservations are listed.
 */
describe("consistency check at scale (cluster)", () => {
	const RESERVATIONS = 5000;
	let env: TestEnv;
	let gateway: ServiceBroker;
	let api: string;
	let admin: string;
	let concertId: string;
	let sql: Awaited<ReturnType<typeof sqlOf>>;
	const at = (ms: number) => new Date(ms).toISOString().replace("T", " ").replace("Z", "");

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: OPS_ADMIN });
		({ gateway, api } = await opsCluster(env));
		admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		({ concertId } = await ownConcert(api, admin, 1, 1, 1000));
		sql = await sqlOf();
		await bulkSale(env, sql, concertId, RESERVATIONS, 2);
		// The rows did not come through the events: the ranking learns them from the repair.
		await gateway.call("ranking.rebuild", {});
	}, 180_000);
	afterAll(async () => {
		await sql?.end();
		await env.cleanup();
	}, 60_000);

	const report = async (query = "") => {
		const res = await http("GET", `${api}/admin/consistency${query}`, { token: admin });
		expect(res.status).toBe(200);
		return res.body;
	};
	const opsService = () => gateway.getLocalService("ops") as unknown as { scheduledCheck(): Promise<any> };

	/** A CONFIRMED reservation with neither seats nor payment, changed at `updatedAt`: money drift. */
	const unpaid = async (updatedAt: number) => {
		const id = crypto.randomUUID();
		await sql.query(
			`INSERT INTO ${schema(env, "reservation")}.reservations (id, user_id, concert_id, schedule_id, status, amount, expires_at, created_at, updated_at)
			 VALUES (?, 'drift-user', ?, 'no-schedule', 'CONFIRMED', 1000, ?, ?, ?)`,
			[id, concertId, at(updatedAt), at(updatedAt), at(updatedAt)]
		);
		return id;
	};
	const unpaidIds = (body: { checks: Check[] }) =>
		(checkOf(body, "money").details.confirmedWithoutPayment as { reservationId: string }[]).map(x => x.reservationId).sort();

	it("when a sale has 5,000 reservations, then every audit answers at most a page and the full check is ok, not MAX_PAYLOAD_EXCEEDED drift", async () => {
		const body = await report();
		for (const name of ["seats", "money", "holds", "sagas", "outbox", "ranking"]) {
			const c = checkOf(body, name);
			// The error (before: MAX_PAYLOAD_EXCEEDED) shows in the diff when a check is not ok.
			expect({ name, status: c.status, error: c.details.error, message: c.details.message }).toEqual({
				name,
				status: "ok",
				error: undefined,
				message: undefined
			});
		}
		expect(body).toMatchObject({ ok: true, status: "ok", scope: { full: true, since: null } });

		const page = await gateway.call<{ rows: unknown[]; next: string[] | null }, object>("reservation.audit", {});
		expect(page.rows).toHaveLength(500);
		expect(page.next).not.toBeNull();
	}, 120_000);

	it("when drift is injected after a scheduled run, then the next (incremental) run reports it, and keeps reporting it; rows unchanged since are left to the full check", async () => {
		const first = await opsService().scheduledCheck();
		expect(first).toMatchObject({ status: "ok", scope: { full: true } });

		// Behind the services' backs: one drift stamped an hour ago (before the watermark and its margin), one now.
		const old = await unpaid(Date.now() - 3600_000);
		const fresh = await unpaid(Date.now());

		const second = await opsService().scheduledCheck();
		expect(second.scope.full).toBe(false);
		expect(Date.parse(second.scope.since)).toBeLessThan(Date.now());
		expect(checkOf(second, "money").status).toBe("drift");
		expect(unpaidIds(second)).toEqual([fresh]);

		// Nothing changed since: the finding is read again (carried), not dropped with the moving watermark.
		const third = await opsService().scheduledCheck();
		expect(third.scope.full).toBe(false);
		expect(unpaidIds(third)).toEqual([fresh]);

		// The full check on demand sees both; `full=false` on demand reads what the next scheduled run would.
		expect(unpaidIds(await report())).toEqual([fresh, old].sort());
		const incremental = await report("?full=false");
		expect(incremental.scope.full).toBe(false);
		expect(unpaidIds(incremental)).toEqual([fresh]);

		await sql.query(`DELETE FROM ${schema(env, "reservation")}.reservations WHERE id IN (?, ?)`, [old, fresh]);
	}, 120_000);

	it("when reservations are left PAYING or CANCELLING by a FAILED saga or by no running saga, then the sagas check lists them with their saga ids", async () => {
		const r = schema(env, "reservation");
		const insert = async (status: string, sagaId: string, updatedAt: number) => {
			const id = crypto.randomUUID();
			await sql.query(
				`INSERT INTO ${r}.reservations (id, user_id, concert_id, schedule_id, status, amount, expires_at, saga_id, previous_status, created_at, updated_at)
				 VALUES (?, 'stuck-user', ?, 'no-schedule', ?, 1000, ?, ?, ?, ?, ?)`,
				[id, concertId, status, at(updatedAt + 300_000), sagaId, status === "CANCELLING" ? "CONFIRMED" : null, at(updatedAt), at(updatedAt)]
			);
			return id;
		};
		const saga = async (status: string) => {
			const id = crypto.randomUUID();
			const now = Date.now();
			await sql.query(
				`INSERT INTO ${schema(env, "saga")}.saga_instances (id, type, saga_key, status, data, results, current_step, step_name, attempts, lease_owner, lease_expires_at, rev, created_at, updated_at)
				 VALUES (?, 'ConfirmReservation', ?, ?, '{}', '{}', 1, 'pay', 1, ?, ?, 0, ?, ?)`,
				[id, `stuck:${id}`, status, status === "RUNNING" ? "a-live-node" : null, status === "RUNNING" ? now + 3600_000 : null, now, now]
			);
			return id;
		};
		const failedSaga = await saga("FAILED");
		const runningSaga = await saga("RUNNING");
		const goneSaga = crypto.randomUUID();
		const byFailed = await insert("PAYING", failedSaga, Date.now());
		const orphaned = await insert("CANCELLING", goneSaga, Date.now() - 3600_000);
		await insert("PAYING", runningSaga, Date.now() - 3600_000); // its saga runs: not the reservation's finding
		await insert("PAYING", crypto.randomUUID(), Date.now()); // within the margin: a saga may still be starting

		const sagas = checkOf(await report(), "sagas");
		expect(sagas.status).toBe("drift");
		expect(sagas.details.stuckReservations).toHaveLength(2);
		expect(sagas.details.stuckReservations).toEqual(
			expect.arrayContaining([
				expect.objectContaining({ reservationId: byFailed, status: "PAYING", sagaId: failedSaga, sagaStatus: "FAILED" }),
				expect.objectContaining({ reservationId: orphaned, status: "CANCELLING", sagaId: goneSaga, sagaStatus: null })
			])
		);
	}, 60_000);
});

describe("consistency check without its sources (cluster)", () => {
	let env: TestEnv;
	afterAll(() => env.cleanup(), 60_000);

	it("when no service it reads answers, then every check says unavailable with the error, and nothing is reported as drift", async () => {
		env = testEnv({ cluster: true });
		const ops = await env.broker(["ops"]);
		const body = await ops.call<{ status: string; ok: boolean; checks: Check[] }, object>("ops.consistency", {});
		expect(body.ok).toBe(false);
		expect(body.status).toBe("unavailable");
		for (const c of body.checks) {
			expect({ name: c.name, status: c.status }).toEqual({ name: c.name, status: "unavailable" });
			expect(c.details.error).toEqual(expect.any(String));
		}
	}, 60_000);
});
