/**
 * A database per service (issue 21): the payment schema on a second MariaDB server (a private mariadbd on its own
 * port, test/support/mariadb-server.ts) through DATABASE_URL_PAYMENT, every other schema on the shared one. Three
 * brokers over the real NATS and Redis (test/support/ops.ts's opsCluster). It shows that each schema is created
 * and migrated on its own server only, that the booking journey and the consistency check pass across the two,
 * that the check reads the payment server (a wallet drift injected there is found), that losing the payment
 * server makes the money path answer a clean 503 while the catalog still reads (and the health answer names the
 * payment's server, not DATABASE_URL's), that it recovers once the server is back, and that the clean-up drops
 * the run's schemas on both servers.
 */
import type { ServiceBroker } from "moleculer";
import type mysql from "mysql2/promise";
import { adminToken, ownConcert } from "../support/booking";
import { http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { journeyLine, runJourney, type JourneyRun } from "../support/journey";
import { startMariaDb, type PrivateMariaDb } from "../support/mariadb-server";
import { checkOf, OPS_ADMIN, opsCluster, sqlOf } from "../support/ops";

describe("the payment database on a server of its own (DATABASE_URL_PAYMENT)", () => {
	let db: PrivateMariaDb;
	let env: TestEnv;
	let gateway: ServiceBroker;
	let api: string;
	let admin: string;
	let concertId: string;
	let scheduleId: string;
	let run: JourneyRun;
	let cleanedUp = false;

	beforeAll(async () => {
		db = await startMariaDb();
		env = testEnv({ cluster: true, env: { ...OPS_ADMIN, DATABASE_URL_PAYMENT: db.url } });
		({ gateway, api } = await opsCluster(env));
		admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		({ concertId, scheduleId } = await ownConcert(api, admin, 2, 10, 1000));
	}, 120_000);

	afterAll(async () => {
		// Only a run that did not reach its clean-up test needs the server up again (a test may have stopped it).
		// The server is thrown away after: SIGKILL, not a clean InnoDB shutdown, which took over a minute on a
		// loaded machine.
		if (!cleanedUp) {
			await db?.restart().catch(() => undefined);
			await env?.cleanup();
		}
		await db?.kill();
	}, 90_000);

	/** This run's schemas on one server (SHOW DATABASES), without the prefix. */
	const schemasOn = async (conn: mysql.Connection): Promise<string[]> => {
		try {
			const [rows] = await conn.query("SHOW DATABASES");
			const prefix = env.env.DB_PREFIX;
			return (rows as { Database: string }[])
				.map(r => r.Database)
				.filter(d => d.startsWith(prefix))
				.map(d => d.slice(prefix.length))
				.sort();
		} finally {
			await conn.end();
		}
	};

	const consistency = async () => {
		const res = await http("GET", `${api}/admin/consistency`, { token: admin });
		expect(res.status).toBe(200);
		return res.body;
	};

	it("when the services start, then the payment schema is created on its own server only and every other schema on DATABASE_URL's", async () => {
		expect(env.config.sqlByService.payment).toMatchObject({ host: "127.0.0.1", port: db.port });
		expect(await schemasOn(await sqlOf(env, "payment"))).toEqual(["payment"]);
		const shared = await schemasOn(await sqlOf());
		expect(shared).toEqual(expect.arrayContaining(["concert", "notification", "reservation", "saga", "user"]));
		expect(shared).not.toContain("payment");
		// Migrated there: the ledger's tables exist on the private server.
		const conn = await sqlOf(env, "payment");
		try {
			const [tables] = await conn.query(`SHOW TABLES FROM \`${env.env.DB_PREFIX}payment\``);
			expect((tables as Record<string, string>[]).map(t => Object.values(t)[0])).toEqual(
				expect.arrayContaining(["wallets", "payments", "point_transactions"])
			);
		} finally {
			await conn.end();
		}
		expect((await http("GET", `${api}/health`)).status).toBe(200);
	}, 30_000);

	it("when fans book and pay, then every journey confirms and the payments are on the payment server", async () => {
		run = await runJourney(api, { concertId, scheduleId, fans: 8, concurrency: 4, seatsEach: 1 });
		console.log(journeyLine("payment on its own server", run));
		const conn = await sqlOf(env, "payment");
		try {
			const [rows] = await conn.query(
				`SELECT COUNT(*) AS n FROM \`${env.env.DB_PREFIX}payment\`.payments WHERE status = 'COMPLETED' AND reservation_id IN (?)`,
				[run.reservationIds]
			);
			expect(Number((rows as { n: number }[])[0].n)).toBe(8);
		} finally {
			await conn.end();
		}
	}, 60_000);

	it("when the journey is done, then the consistency check reads both servers and passes", async () => {
		await waitFor(async () => (await gateway.call<{ ok: boolean }, object>("ranking.verify", {})).ok, 20_000, "the ranking to follow the events");
		const body = await consistency();
		for (const c of body.checks) expect({ name: c.name, ok: c.ok, details: c.details }).toMatchObject({ name: c.name, ok: true });
		expect(body.ok).toBe(true);
		expect(checkOf(body, "money").details).toBeDefined();
	}, 30_000);

	it("when a wallet drifts on the payment server, then the check finds it there", async () => {
		const victim = run.fans[0].userId;
		const conn = await sqlOf(env, "payment");
		const wallets = `\`${env.env.DB_PREFIX}payment\`.wallets`;
		try {
			await conn.query(`UPDATE ${wallets} SET balance = balance + 7 WHERE user_id = ?`, [victim]);
			const body = await consistency();
			const money = checkOf(body, "money");
			expect(money.ok).toBe(false);
			expect(money.details.wallets).toEqual(expect.arrayContaining([{ rule: "wallet-balance-equals-ledger", offenders: [victim] }]));
			// Put back: the check is ok again.
			await conn.query(`UPDATE ${wallets} SET balance = balance - 7 WHERE user_id = ?`, [victim]);
			expect(checkOf(await consistency(), "money").ok).toBe(true);
		} finally {
			await conn.end();
		}
	}, 30_000);

	it("when the payment server stops, then the money path answers 503 while the catalog reads, and it recovers when the server is back", async () => {
		const fan = run.fans[1];
		let n = 0;
		const charge = () =>
			http("POST", `${api}/points/charge`, { token: fan.token, body: { amount: 100 }, headers: { "idempotency-key": `dbps-charge-${++n}` } });

		await db.stop();
		const during = await charge();
		expect(during.status).toBe(503);
		expect(during.body).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE" });
		expect(Number(during.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
		expect(JSON.stringify(during.body)).not.toContain(String(db.port));
		expect((await http("GET", `${api}/points`, { token: fan.token })).status).toBe(503);

		// The catalog and the reservations live on the shared server: still there.
		expect((await http("GET", `${api}/concerts/${concertId}`)).status).toBe(200);
		const seatMap = await http("GET", `${api}/schedules/${scheduleId}/seats`);
		expect(seatMap.status).toBe(200);
		expect(seatMap.body.filter((s: { status: string }) => s.status !== "AVAILABLE")).toHaveLength(8);
		expect((await http("GET", `${api}/reservations/${run.reservationIds[1]}`, { token: fan.token })).body.status).toBe("CONFIRMED");

		// The health answer names the payment's server, and DATABASE_URL's is not blamed.
		const health = await http("GET", `${api}/health`);
		expect(health.status).toBe(503);
		expect(health.body.checks["db:payment"]).toEqual({ ok: false, error: "database: connection refused" });
		expect(health.body.checks["database:payment"]).toEqual({ ok: false, error: "connection refused" });
		expect(health.body.checks.database).toBeUndefined();
		expect(health.body.checks["db:concert"]).toMatchObject({ ok: true });

		await db.restart();
		let after = { status: 0 };
		await waitFor(async () => (after = await charge()).status !== 503, 30_000, "a charge after the restart", 500);
		expect(after.status).toBe(200);
		await waitFor(async () => (await http("GET", `${api}/health`)).status === 200, 20_000, "the gateway healthy again", 250);
	}, 75_000);

	it("when the run is cleaned up, then its schemas are gone from both servers", async () => {
		cleanedUp = true;
		await env.cleanup();
		expect(await schemasOn(await sqlOf(env, "payment"))).toEqual([]);
		expect(await schemasOn(await sqlOf())).toEqual([]);
	}, 60_000);
});
