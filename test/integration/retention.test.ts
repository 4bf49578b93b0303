/**
 * Retention (issue 19) on a real cluster: a journey on concert A (paid, cancelled and refunded, short of points),
 * its rows moved 400 days into the past and its show with them; a journey on concert B today. One retention run
 * deletes what is past its age and nothing else: A's published outbox rows but each aggregate's latest, A's finished
 * sagas with their journals, old resolved dead letters (an old OPEN one stays), old voids and VOIDED payments, A's
 * notifications and A's waiting-room keys; every row and key of B stays; the consistency check still passes.
 * Batches of two rows, so every rule runs many batches (the outbox's from where the last one ended).
 */
import crypto from "crypto";
import type mysql from "mysql2/promise";
import { adminToken, ownConcert, pay, reserve, seats, shopper } from "../support/booking";
import { http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { OPS_ADMIN, opsCluster, redisOf, schema, sqlOf } from "../support/ops";

const DAY = 86_400_000;
const OLD = 400 * DAY;

describe("retention (cluster)", () => {
	let env: TestEnv;
	let api: string;
	let admin: string;
	let sql: mysql.Connection;
	const concerts: { a: string; b: string } = { a: "", b: "" };
	/** The OPEN dead letters the test wrote: the one finding the consistency check must still report. */
	const openLetters: string[] = [];

	/** One journey: a paid booking, a paid and cancelled one, a payment short of points (compensated). */
	async function journey(concertId: string, scheduleId: string, tag: string) {
		const [s1, s2, s3] = await seats(api, scheduleId);
		const buyer = await shopper(api, concertId, 10_000, `${tag}buyer`);
		const held = await reserve(api, buyer, scheduleId, [s1.id]);
		expect((await pay(api, buyer, held.body.id)).status).toBe(201);
		const canceller = await shopper(api, concertId, 10_000, `${tag}cancel`);
		const second = await reserve(api, canceller, scheduleId, [s2.id]);
		expect((await pay(api, canceller, second.body.id)).status).toBe(201);
		const cancel = await http("POST", `${api}/reservations/${second.body.id}/cancel`, {
			token: canceller.token,
			headers: { "idempotency-key": `${tag}c` }
		});
		expect(cancel.status).toBe(200);
		const poor = await shopper(api, concertId, 10, `${tag}poor`);
		const short = await reserve(api, poor, scheduleId, [s3.id]);
		expect((await pay(api, poor, short.body.id)).status).toBe(402);
	}

	const count = async (service: string, table: string, where = "1 = 1", params: unknown[] = []) => {
		const [rows] = await sql.query(`SELECT COUNT(*) AS n FROM ${schema(env, service)}.${table} WHERE ${where}`, params);
		return Number((rows as { n: number }[])[0].n);
	};

	const aggregates = async (where: string) => {
		const [rows] = await sql.query(`SELECT COUNT(DISTINCT aggregate_id) AS n FROM ${schema(env, "reservation")}.outbox_events WHERE ${where}`);
		return Number((rows as { n: number }[])[0].n);
	};

	/** Every outbox row is published (the journey's events are all out) in the three producers. */
	const outboxDrained = async () => {
		let left: number[] = [];
		const drained = async () =>
			(left = await Promise.all(["reservation", "payment", "saga"].map(s => count(s, "outbox_events", "processed = 0")))).every(n => n === 0);
		await waitFor(drained, 90_000, "outbox drained").catch(err => {
			throw new Error(`${(err as Error).message}: unpublished rows of reservation, payment, saga: ${left.join(", ")}`);
		});
	};

	/** Dead letters and a VOIDED payment written as the services write them, `age` ms old. */
	async function lettersAndVoid(age: number) {
		const at = Date.now() - age;
		for (const status of ["RESOLVED", "OPEN"]) {
			const id = crypto.randomUUID();
			if (status === "OPEN") openLetters.push(id);
			await sql.query(
				`INSERT INTO ${schema(env, "saga")}.dead_letters (id, saga_id, saga_type, step, phase, error, status, note, created_at, updated_at)
				 VALUES (?, ?, 'ConfirmReservation', 'pay', 'forward', '{"message":"test"}', ?, NULL, ?, ?)`,
				[id, crypto.randomUUID(), status, at, at]
			);
		}
		await sql.query(
			`INSERT INTO ${schema(env, "payment")}.payments (id, saga_id, reservation_id, user_id, amount, status, refund_reason, created_at, updated_at)
			 VALUES (?, ?, NULL, NULL, 0, 'VOIDED', 'compensated', ?, ?)`,
			[crypto.randomUUID(), crypto.randomUUID(), new Date(at), new Date(at)]
		);
	}

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: { ...OPS_ADMIN, RETENTION_INTERVAL_SEC: "0", RETENTION_BATCH: "2" } });
		({ api } = await opsCluster(env));
		sql = await sqlOf();
		admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);

		const a = await ownConcert(api, admin, 1, 4, 500);
		concerts.a = a.concertId;
		await journey(a.concertId, a.scheduleId, "a");
		await outboxDrained();
		await lettersAndVoid(OLD);
		// Concert A's journey, 400 days ago: every timestamp retention reads, and its show.
		const past = (col: string) => `${col} = ${col} - INTERVAL 400 DAY`;
		for (const s of ["reservation", "payment", "saga"])
			await sql.query(`UPDATE ${schema(env, s)}.outbox_events SET ${past("created_at")}, ${past("processed_at")}`);
		await sql.query(`UPDATE ${schema(env, "saga")}.saga_instances SET created_at = created_at - ?, updated_at = updated_at - ?`, [OLD, OLD]);
		await sql.query(`UPDATE ${schema(env, "reservation")}.reservation_saga_voids SET ${past("created_at")}`);
		await sql.query(`UPDATE ${schema(env, "concert")}.seat_sale_voids SET ${past("created_at")}`);
		await sql.query(`UPDATE ${schema(env, "notification")}.notifications SET ${past("created_at")}`);
		await sql.query(`UPDATE ${schema(env, "concert")}.schedules SET ${past("starts_at")} WHERE concert_id = ?`, [a.concertId]);

		const b = await ownConcert(api, admin, 1, 4, 500);
		concerts.b = b.concertId;
		await journey(b.concertId, b.scheduleId, "b");
		await outboxDrained();
		await lettersAndVoid(DAY);
	}, 240_000);
	afterAll(async () => {
		await sql?.end();
		await env.cleanup();
	}, 60_000);

	it("when the retention job runs, then what is past its age is deleted, what is younger and what must stay is kept, and the consistency check passes", async () => {
		const { redis, store } = redisOf(env);
		const prefix = String(redis.options.keyPrefix ?? "");
		const queueKeys = async (concertId: string) => (await redis.keys(`${prefix}queue:{${concertId}}:*`)).length;
		const old = "created_at < NOW(3) - INTERVAL 300 DAY";
		const young = "created_at >= NOW(3) - INTERVAL 300 DAY";
		const cut = Date.now() - 300 * DAY;
		try {
			const before = {
				outboxOld: await count("reservation", "outbox_events", old),
				outboxAggregates: await aggregates(old),
				outboxYoung: await count("reservation", "outbox_events", young),
				sagasOld: await count("saga", "saga_instances", "created_at < ?", [cut]),
				sagasYoung: await count("saga", "saga_instances", "created_at >= ?", [cut]),
				stepsYoung: await count("saga", "saga_steps", `saga_id IN (SELECT id FROM ${schema(env, "saga")}.saga_instances WHERE created_at >= ?)`, [cut]),
				notificationsOld: await count("notification", "notifications", old),
				notificationsYoung: await count("notification", "notifications", young),
				voidsYoung: await count("concert", "seat_sale_voids", young),
				queueA: await queueKeys(concerts.a),
				queueB: await queueKeys(concerts.b)
			};
			// The journey made what retention must find: finished sagas, outbox history, notifications, queue keys.
			expect(before.sagasOld).toBeGreaterThanOrEqual(3);
			expect(before.outboxOld).toBeGreaterThan(before.outboxAggregates / 2);
			expect(before.notificationsOld).toBeGreaterThan(0);
			expect(before.queueA).toBeGreaterThan(0);
			expect(before.queueB).toBeGreaterThan(0);

			const res = await http("POST", `${api}/admin/retention/run`, { token: admin });
			expect(res.status).toBe(200);
			expect(res.body.failed).toEqual({});
			expect(res.body.concertsForgotten).toBeGreaterThanOrEqual(1);

			// Outbox: of A's history only each aggregate's latest event is left; B's history is whole.
			const aggregatesOld = await aggregates(old);
			expect(await count("reservation", "outbox_events", old)).toBe(aggregatesOld);
			expect(await count("reservation", "outbox_events", young)).toBe(before.outboxYoung);
			expect(res.body.deleted.reservation.outbox_events).toBe(before.outboxOld - aggregatesOld);
			// Sagas: A's finished ones and their journals are gone; B's stay whole.
			expect(await count("saga", "saga_instances", "created_at < ?", [cut])).toBe(0);
			expect(await count("saga", "saga_steps", `saga_id NOT IN (SELECT id FROM ${schema(env, "saga")}.saga_instances)`)).toBe(0);
			expect(await count("saga", "saga_instances", "created_at >= ?", [cut])).toBe(before.sagasYoung);
			expect(await count("saga", "saga_steps", `saga_id IN (SELECT id FROM ${schema(env, "saga")}.saga_instances WHERE created_at >= ?)`, [cut])).toBe(
				before.stepsYoung
			);
			// Dead letters: the old resolved one goes, the old OPEN one waits for an operator, the young ones stay.
			expect(await count("saga", "dead_letters", "status = 'RESOLVED' AND created_at < ?", [cut])).toBe(0);
			expect(await count("saga", "dead_letters", "status = 'OPEN' AND created_at < ?", [cut])).toBe(1);
			expect(await count("saga", "dead_letters", "created_at >= ?", [cut])).toBe(2);
			// Voids and VOIDED payments: old ones gone, young ones kept.
			expect(await count("concert", "seat_sale_voids", old)).toBe(0);
			expect(await count("concert", "seat_sale_voids", young)).toBe(before.voidsYoung);
			expect(await count("reservation", "reservation_saga_voids", old)).toBe(0);
			expect(await count("payment", "payments", `status = 'VOIDED' AND ${old}`)).toBe(0);
			expect(await count("payment", "payments", `status = 'VOIDED' AND ${young}`)).toBeGreaterThanOrEqual(1);
			// Notifications: A's gone, B's kept.
			expect(await count("notification", "notifications", old)).toBe(0);
			expect(await count("notification", "notifications", young)).toBe(before.notificationsYoung);
			// Redis: the finished concert's waiting-room keys are gone, the other concert's are there.
			expect(await queueKeys(concerts.a)).toBe(0);
			expect(await queueKeys(concerts.b)).toBe(before.queueB);

			// What is kept is still consistent: money, seats, holds, outbox and the ranking; the sagas check names the
			// two OPEN dead letters the test wrote (waiting for an operator) and nothing else.
			const report = await http("GET", `${api}/admin/consistency`, { token: admin });
			expect(report.status).toBe(200);
			const bad = report.body.checks.filter((c: { ok: boolean }) => !c.ok);
			expect(bad.map((c: { name: string }) => c.name)).toEqual(["sagas"]);
			expect(bad[0].details.openDeadLetters.map((d: { id: string }) => d.id).sort()).toEqual([...openLetters].sort());
			expect(bad[0].details.stuck).toEqual([]);
			expect(bad[0].details.stuckReservations).toEqual([]);
			// And the ranking can still be rebuilt from what the outbox kept.
			const repair = await http("POST", `${api}/admin/consistency/repair`, { token: admin, body: { check: "ranking" } });
			expect(repair.status).toBe(200);
			expect(repair.body.ok).toBe(true);

			// A second run finds nothing more to delete, and no finished concert to forget again.
			const again = await http("POST", `${api}/admin/retention/run`, { token: admin });
			const total = Object.values(again.body.deleted as Record<string, Record<string, number>>).flatMap(r => Object.values(r));
			expect(total.every(n => n === 0)).toBe(true);
			expect(again.body.concertsForgotten).toBe(0);

			// A run going on another node (it holds the run lease): asking for one is 409 and runs nothing; once it has
			// ended, a run goes again.
			expect(await store.acquireLease("ops:retention:run", "another-node:ops", 60_000)).toBe(true);
			const busy = await http("POST", `${api}/admin/retention/run`, { token: admin });
			expect(busy.status).toBe(409);
			expect(busy.body.type).toBe("RETENTION_RUNNING");
			await store.releaseLease("ops:retention:run", "another-node:ops");
			expect((await http("POST", `${api}/admin/retention/run`, { token: admin })).status).toBe(200);
		} finally {
			await store.close();
		}
	}, 120_000);

	it("when a non-admin asks for a retention run, then 403 and nothing runs", async () => {
		const u = await shopper(api, concerts.b, 0, "nosy");
		const res = await http("POST", `${api}/admin/retention/run`, { token: u.token });
		expect(res.status).toBe(403);
		expect(res.body.type).toBe("FORBIDDEN");
	}, 30_000);
});

describe("retention on its schedule (cluster, two ops nodes)", () => {
	let env: TestEnv;
	let sql: mysql.Connection;

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: { ...OPS_ADMIN, RETENTION_INTERVAL_SEC: "1" } });
		await opsCluster(env);
		// A second ops node: the two share each interval's run through the lease.
		await env.broker(["ops"]);
		sql = await sqlOf();
	}, 120_000);
	afterAll(async () => {
		await sql?.end();
		await env.cleanup();
	}, 60_000);

	it("when the interval passes, then one of the ops nodes runs the job by itself: an old resolved dead letter goes, a young one stays", async () => {
		const at = (age: number) => Date.now() - age;
		const letter = async (id: string, created: number) =>
			sql.query(
				`INSERT INTO ${schema(env, "saga")}.dead_letters (id, saga_id, saga_type, step, phase, error, status, note, created_at, updated_at)
				 VALUES (?, ?, 'ConfirmReservation', 'pay', 'forward', '{"message":"test"}', 'RESOLVED', 'settled', ?, ?)`,
				[id, crypto.randomUUID(), created, created]
			);
		const [old, young] = [crypto.randomUUID(), crypto.randomUUID()];
		await letter(old, at(OLD));
		await letter(young, at(DAY));
		const left = async () => {
			const [rows] = await sql.query(`SELECT id FROM ${schema(env, "saga")}.dead_letters WHERE id IN (?, ?)`, [old, young]);
			return (rows as { id: string }[]).map(r => r.id);
		};
		await waitFor(async () => !(await left()).includes(old), 15_000, "the scheduled run to delete the old letter");
		expect(await left()).toEqual([young]);
	}, 30_000);
});
