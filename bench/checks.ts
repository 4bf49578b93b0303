/**
 * The invariants every scenario ends with, read straight from each service's own database (the bench started
 * the instance, so it knows the schema prefix or the SQLite dir): seats sold exactly once, money conserved,
 * every saga terminal. Scenario-specific checks (FIFO, one winner per seat) are computed by the scenario from
 * what the clients saw and added to the same list.
 */
import path from "path";
import mysql from "mysql2/promise";
import sqlite3 from "sqlite3";
import { MARIADB, type Target } from "./target";

export interface Check {
	name: string;
	ok: boolean;
	details: string;
}

type Row = Record<string, unknown>;

export class Sql {
	private readonly mysqlConns = new Map<string, Promise<mysql.Connection>>();
	private readonly sqliteDbs = new Map<string, sqlite3.Database>();

	constructor(private readonly where: NonNullable<Target["sql"]>) {}

	/** Rows of `sql` in the logical database `db` (user, concert, reservation, payment, saga...). */
	async query(db: string, sql: string, params: unknown[] = []): Promise<Row[]> {
		if (this.where.dialect === "mysql") {
			const name = `${this.where.prefix}${db}`;
			let conn = this.mysqlConns.get(name);
			if (!conn) {
				conn = mysql.createConnection({
					...MARIADB,
					...(this.where.port ? { port: this.where.port } : {}),
					// A database on a server of its own (DATABASE_URL_PAYMENT) is read there.
					...this.where.servers?.[db],
					database: name,
					supportBigNumbers: true,
					bigNumberStrings: false
				});
				// A connection that fails (the server restarted under a chaos run) is dropped; the next query opens another.
				conn.then(c => c.on("error", () => this.mysqlConns.delete(name))).catch(() => this.mysqlConns.delete(name));
				this.mysqlConns.set(name, conn);
			}
			try {
				const [rows] = await (await conn).query(sql, params);
				return rows as Row[];
			} catch (err) {
				this.mysqlConns.delete(name);
				(await conn.catch(() => undefined))?.destroy();
				throw err;
			}
		}
		const file = path.join(this.where.dir, `${this.where.prefix}${db}.sqlite`);
		let handle = this.sqliteDbs.get(file);
		if (!handle) {
			handle = new sqlite3.Database(file, sqlite3.OPEN_READONLY);
			handle.configure("busyTimeout", 5000);
			this.sqliteDbs.set(file, handle);
		}
		const h = handle;
		return new Promise<Row[]>((resolve, reject) => h.all(sql, params, (err, rows) => (err ? reject(err) : resolve(rows as Row[]))));
	}

	/**
	 * Writes (setup only: the bench's own users). SQLite through a read-write handle of its own, kept apart from the
	 * read-only ones the checks use.
	 */
	async execute(db: string, sql: string, params: unknown[] = []): Promise<void> {
		if (this.where.dialect === "mysql") {
			await this.query(db, sql, params);
			return;
		}
		const file = path.join(this.where.dir, `${this.where.prefix}${db}.sqlite`);
		const handle = new sqlite3.Database(file, sqlite3.OPEN_READWRITE);
		try {
			handle.configure("busyTimeout", 10_000);
			await new Promise<void>((resolve, reject) => handle.run(sql, params, err => (err ? reject(err) : resolve())));
		} finally {
			await new Promise<void>(r => handle.close(() => r()));
		}
	}

	/** One number from the first column of the first row. */
	async scalar(db: string, sql: string, params: unknown[] = []): Promise<number> {
		const [row] = await this.query(db, sql, params);
		return Number(row ? (Object.values(row)[0] ?? 0) : 0);
	}

	async close(): Promise<void> {
		for (const c of this.mysqlConns.values()) await (await c.catch(() => undefined))?.end().catch(() => undefined);
		for (const d of this.sqliteDbs.values()) await new Promise<void>(r => d.close(() => r()));
	}
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

export interface Totals {
	sold: number;
	soldValue: number;
	netDebits: number;
	charged: number;
	walletSum: number;
	confirmed: number;
	confirmedValue: number;
	sagas: Record<string, number>;
	reservations: Record<string, number>;
}

/** Waits (up to `waitMs`) for every saga to reach a terminal status, then computes the common invariants. */
export async function commonChecks(sql: Sql, waitMs = 30_000): Promise<{ checks: Check[]; totals: Totals }> {
	const checks: Check[] = [];
	const until = Date.now() + waitMs;
	let sagas: Record<string, number> = {};
	for (;;) {
		sagas = Object.fromEntries(
			(await sql.query("saga", "SELECT status, COUNT(*) AS n FROM saga_instances GROUP BY status")).map(r => [String(r.status), Number(r.n)])
		);
		if (!sagas.RUNNING && !sagas.COMPENSATING) break;
		if (Date.now() > until) break;
		await sleep(500);
	}
	const open = (sagas.RUNNING ?? 0) + (sagas.COMPENSATING ?? 0);
	checks.push({ name: "every saga terminal", ok: open === 0, details: JSON.stringify(sagas) });
	checks.push({ name: "no saga parked FAILED", ok: !sagas.FAILED, details: `${sagas.FAILED ?? 0} FAILED` });

	const reservations = Object.fromEntries(
		(await sql.query("reservation", "SELECT status, COUNT(*) AS n FROM reservations GROUP BY status")).map(r => [String(r.status), Number(r.n)])
	);

	// Seats: the concert's sale rows, the reservations' CONFIRMED seats and the availability counters agree.
	const sales = await sql.query(
		"concert",
		"SELECT ss.schedule_id, ss.seat_id, ss.reservation_id, s.price FROM seat_sales ss JOIN seats s ON s.id = ss.seat_id"
	);
	const confirmedSeats = await sql.query(
		"reservation",
		"SELECT rs.reservation_id, rs.seat_id, rs.price FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id WHERE r.status = 'CONFIRMED'"
	);
	const soldBy = new Map(sales.map(r => [String(r.seat_id), String(r.reservation_id)]));
	const seatCount = new Map<string, number>();
	for (const r of confirmedSeats) seatCount.set(String(r.seat_id), (seatCount.get(String(r.seat_id)) ?? 0) + 1);
	const twice = [...seatCount.entries()].filter(([, n]) => n > 1).map(([s]) => s);
	const mismatched = confirmedSeats.filter(r => soldBy.get(String(r.seat_id)) !== String(r.reservation_id)).length;
	const counter = await sql.scalar("concert", "SELECT COALESCE(SUM(sold_seats), 0) FROM seat_availability");
	checks.push({
		name: "seats sold exactly once",
		ok: twice.length === 0 && mismatched === 0 && sales.length === confirmedSeats.length && counter === sales.length,
		details: `${sales.length} sale rows, ${confirmedSeats.length} confirmed reservation seats, counter ${counter}, ${twice.length} seats in two confirmed reservations, ${mismatched} not matching their sale row`
	});

	// Money: what the wallets lost is what the sold seats cost; the wallets hold what was charged minus that.
	const soldValue = sales.reduce((a, r) => a + Number(r.price), 0);
	const confirmedValue = await sql.scalar("reservation", "SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE status = 'CONFIRMED'");
	const debits = await sql.scalar("payment", "SELECT COALESCE(SUM(amount), 0) FROM point_transactions WHERE type = 'PAYMENT'");
	const refunds = await sql.scalar("payment", "SELECT COALESCE(SUM(amount), 0) FROM point_transactions WHERE type = 'REFUND'");
	const charged = await sql.scalar("payment", "SELECT COALESCE(SUM(amount), 0) FROM point_transactions WHERE type = 'CHARGE'");
	const walletSum = await sql.scalar("payment", "SELECT COALESCE(SUM(balance), 0) FROM wallets");
	const completed = await sql.scalar("payment", "SELECT COALESCE(SUM(amount), 0) FROM payments WHERE status = 'COMPLETED'");
	const netDebits = debits - refunds;
	checks.push({
		name: "money conserved",
		ok: netDebits === soldValue && netDebits === confirmedValue && netDebits === completed && walletSum === charged - netDebits,
		details: `debits-refunds ${netDebits}, sold seat prices ${soldValue}, confirmed reservations ${confirmedValue}, completed payments ${completed}, wallets ${walletSum} = charged ${charged} - ${netDebits}: ${walletSum === charged - netDebits}`
	});

	return {
		checks,
		totals: { sold: sales.length, soldValue, netDebits, charged, walletSum, confirmed: reservations.CONFIRMED ?? 0, confirmedValue, sagas, reservations }
	};
}
