/**
 * `Sql` on the real MariaDB sends its statements to the mysql2 connection itself, not through sequelize.query
 * (lib/db/sql.ts). These tests hold it to what callers saw before: the same rows, typed the same way, the same
 * counts, the same error classes, and transactions that still commit and roll back as a whole.
 */
import { QueryTypes, UniqueConstraintError, type Sequelize } from "sequelize";
import type { SqlConfig } from "../../lib/config";
import { createSequelize, dropDatabasesByPrefix, isDeadlock, Sql } from "../../lib/db";
import { mariadbSqlConfig, runId } from "../support/isolation";

let sql: SqlConfig;
let db: Sequelize;
let s: Sql;

beforeAll(async () => {
	const prefix = `${runId("sq")}_`;
	sql = { ...mariadbSqlConfig(prefix), poolMax: 3 };
	const admin = createSequelize(sql, "");
	await admin.query(`CREATE DATABASE \`${prefix}t\``);
	await admin.close();
	db = createSequelize(sql, `${prefix}t`);
	s = new Sql(db);
	await db.query(
		"CREATE TABLE t (id VARCHAR(36) PRIMARY KEY, qty BIGINT NOT NULL, amount DECIMAL(12,2) NULL, flag TINYINT(1) NOT NULL DEFAULT 0, at DATETIME(3) NULL, ms BIGINT NULL, note TEXT NULL)"
	);
});

afterAll(async () => {
	await db.close();
	await dropDatabasesByPrefix(sql, sql.prefix);
});

const old = <T extends object>(q: string, replacements: unknown[] = []) => db.query<T>(q, { replacements, type: QueryTypes.SELECT });

describe("Sql on MariaDB, straight to the driver", () => {
	it("when a row is written and read, then it comes back exactly as sequelize.query gives it", async () => {
		const at = new Date(Date.UTC(2026, 11, 6, 10, 20, 30, 456));
		await s.insert("INSERT INTO t (id, qty, amount, flag, at, ms, note) VALUES (?, ?, ?, ?, ?, ?, ?)", [
			"a",
			9007199254740991,
			12.5,
			true,
			at,
			1796553619181,
			'it\'s "quoted" ; -- not a comment'
		]);
		await s.insert("INSERT INTO t (id, qty, amount, flag, at, ms, note) VALUES (?, ?, ?, ?, ?, ?, ?)", [
			"b",
			-3,
			null,
			false,
			"2026-12-06 10:20:30.456",
			null,
			null
		]);
		const mine = await s.select("SELECT * FROM t ORDER BY id");
		const theirs = await old("SELECT * FROM t ORDER BY id");
		expect(mine).toEqual(theirs);
		expect(mine[0]).toMatchObject({ id: "a", qty: 9007199254740991, flag: 1, ms: 1796553619181, note: 'it\'s "quoted" ; -- not a comment' });
		expect((mine[0] as { at: Date }).at.toISOString()).toBe(at.toISOString());
		// A Date and its UTC text form are the same instant in the column.
		expect((mine[1] as { at: Date }).at.toISOString()).toBe(at.toISOString());
	});

	it("when an array fills IN (?), then it is a list; when nothing matches, then no rows", async () => {
		expect((await s.select<{ id: string }>("SELECT id FROM t WHERE id IN (?) ORDER BY id", [["a", "b", "zz"]])).map(r => r.id)).toEqual(["a", "b"]);
		expect(await s.select("SELECT id FROM t WHERE id = ?", ["nobody"])).toEqual([]);
	});

	it("when an UPDATE matches rows it does not change, then the count is the changed rows, as before", async () => {
		expect(await s.update("UPDATE t SET qty = qty + 1 WHERE id IN (?)", [["a", "b"]])).toBe(2);
		expect(await s.update("UPDATE t SET flag = 1 WHERE id IN (?)", [["a", "b"]])).toBe(1); // a already had 1
		expect(await s.update("UPDATE t SET qty = 0 WHERE id = ?", ["nobody"])).toBe(0);
	});

	it("when a key is inserted twice, then UniqueConstraintError with the driver's errno under parent", async () => {
		const err = await s.insert("INSERT INTO t (id, qty) VALUES (?, ?)", ["a", 1]).catch(e => e);
		expect(err).toBeInstanceOf(UniqueConstraintError);
		expect(err.parent.errno).toBe(1062);
		expect(isDeadlock(err)).toBe(false);
	});

	it("when a statement fails inside a transaction, then the whole transaction is rolled back", async () => {
		await expect(
			s.transaction(async t => {
				await s.insert("INSERT INTO t (id, qty) VALUES (?, ?)", ["c", 1], t);
				expect(await s.select("SELECT id FROM t WHERE id = ?", ["c"], t)).toHaveLength(1);
				await s.insert("INSERT INTO t (id, qty) VALUES (?, ?)", ["a", 1], t);
			})
		).rejects.toBeInstanceOf(UniqueConstraintError);
		expect(await s.select("SELECT id FROM t WHERE id = ?", ["c"])).toEqual([]);
		await s.transaction(async t => {
			await s.insert("INSERT INTO t (id, qty) VALUES (?, ?)", ["c", 1], t);
			await s.update("UPDATE t SET qty = 5 WHERE id = ?", ["c"], t);
		});
		expect(await s.select("SELECT qty FROM t WHERE id = ?", ["c"])).toEqual([{ qty: 5 }]);
	});

	it("when a compound statement runs, then it answers n, and a failure in it commits nothing", async () => {
		expect(await s.compound("UPDATE t SET qty = qty + 1 WHERE id = ?;\nSET n = ROW_COUNT();", ["c"])).toBe(1);
		const err = await s.compound("UPDATE t SET qty = 100 WHERE id = ?;\nINSERT INTO t (id, qty) VALUES (?, 1);", ["c", "a"]).catch(e => e);
		expect(err).toBeInstanceOf(UniqueConstraintError);
		expect(await s.select("SELECT qty FROM t WHERE id = ?", ["c"])).toEqual([{ qty: 6 }]);
	});

	it("when a value is an object, then the statement is refused before it is sent", async () => {
		await expect(s.select("SELECT id FROM t WHERE id = ?", [{ id: "a" }])).rejects.toThrow(TypeError);
	});

	it("when 50 statements run at once on a pool of 3, then every connection goes back to the pool", async () => {
		await Promise.all(Array.from({ length: 50 }, (_, i) => s.select("SELECT ? AS i", [i])));
		const pool = (db.connectionManager as unknown as { pool: { size: number; available: number; using: number } }).pool;
		expect(pool.using).toBe(0);
		expect(pool.available).toBe(pool.size);
	});
});
