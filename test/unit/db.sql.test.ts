/**
 * lib/db's `Sql`: the one SQLite writer queue (per file, shared by every `Sql` of that file in the process) and the
 * one deadlock rule (by the driver's error code, never by the message).
 */
import fs from "fs";
import os from "os";
import path from "path";
import type { Sequelize, Transaction } from "sequelize";
import { createSequelize, isDeadlock, isLockContention, isTransientDbError, migrate, Sql } from "../../lib/db";

/** A Sequelize error as the mysql2 driver's deadlock reaches us: the code on the wrapped driver error. */
const deadlock = () =>
	Object.assign(new Error("Deadlock found when trying to get lock; try restarting transaction"), {
		name: "SequelizeDatabaseError",
		parent: { errno: 1213, code: "ER_LOCK_DEADLOCK" }
	});

/** Enough of a MariaDB Sequelize for `Sql.transaction`: runs `fn` with a dummy transaction and counts the runs. */
function fakeMysql(fn: (attempt: number) => void): { sequelize: Sequelize; attempts(): number } {
	let attempts = 0;
	const sequelize = {
		getDialect: () => "mysql",
		transaction: async (_options: object, body: (t: Transaction) => Promise<unknown>) => {
			fn(++attempts);
			return body({} as Transaction);
		}
	} as unknown as Sequelize;
	return { sequelize, attempts: () => attempts };
}

describe("the deadlock rule", () => {
	it("when InnoDB chose the transaction as a deadlock victim, then it runs again whole", async () => {
		const db = fakeMysql(attempt => {
			if (attempt < 3) throw deadlock();
		});
		await expect(new Sql(db.sequelize).transaction(async () => "done")).resolves.toBe("done");
		expect(db.attempts()).toBe(3);
	});

	it("when an error only says deadlock in its message, then it is not run again", async () => {
		const db = fakeMysql(() => {
			throw new Error("Deadlock found when trying to get lock");
		});
		await expect(new Sql(db.sequelize).transaction(async () => "done")).rejects.toThrow("Deadlock found");
		expect(db.attempts()).toBe(1);
	});

	it("when the transaction keeps losing deadlocks, then the fifth one reaches the caller", async () => {
		const db = fakeMysql(() => {
			throw deadlock();
		});
		await expect(new Sql(db.sequelize).transaction(async () => "done")).rejects.toMatchObject({ parent: { errno: 1213 } });
		expect(db.attempts()).toBe(5);
	});

	it("when the driver says deadlock, lock wait or busy file by its code, then that is contention and transient", () => {
		const lockWait = { name: "SequelizeDatabaseError", parent: { errno: 1205, code: "ER_LOCK_WAIT_TIMEOUT" } };
		const busy = { name: "SequelizeTimeoutError", parent: { errno: 5, code: "SQLITE_BUSY" } };
		expect([deadlock(), lockWait, busy].map(e => [isLockContention(e), isTransientDbError(e)])).toEqual([
			[true, true],
			[true, true],
			[true, true]
		]);
		expect(isDeadlock(deadlock())).toBe(true);
		expect(isDeadlock(lockWait)).toBe(false);
		const duplicate = { name: "SequelizeUniqueConstraintError", parent: { errno: 1062, code: "ER_DUP_ENTRY", message: "deadlock" } };
		expect([isDeadlock(duplicate), isLockContention(duplicate), isTransientDbError(duplicate)]).toEqual([false, false, false]);
		expect(isTransientDbError({ name: "SequelizeConnectionRefusedError" })).toBe(true);
	});
});

describe("the SQLite writer queue", () => {
	let dir: string;
	const opened: Sequelize[] = [];
	const log: string[] = [];

	/** Another Sequelize of the same file, as a second repository or store of the service would have; logs as `tag`. */
	function open(tag: string): Sequelize {
		const s = createSequelize({ dialect: "sqlite", dir, prefix: "", poolMax: 1 }, "queue");
		(s as unknown as { options: { logging: (sql: string) => void } }).options.logging = sql => {
			log.push(`${tag}: ${sql.replace(/^Executing \([^)]*\): /, "").split(" ")[0]}`);
		};
		opened.push(s);
		return s;
	}

	beforeAll(async () => {
		dir = fs.mkdtempSync(path.join(os.tmpdir(), "crp-sql-"));
		const s = createSequelize({ dialect: "sqlite", dir, prefix: "", poolMax: 1 }, "queue");
		await s.query("PRAGMA journal_mode=WAL");
		await migrate(
			{ dialect: "sqlite", dir, prefix: "", poolMax: 1 },
			"queue",
			s,
			[{ name: "001_t", up: async (qi, T) => qi.createTable("t", { id: { type: T.INTEGER, primaryKey: true }, v: { type: T.INTEGER } }) }],
			() => undefined
		);
		await s.close();
	});
	afterAll(async () => {
		await Promise.all(opened.map(s => s.close()));
		fs.rmSync(dir, { recursive: true, force: true });
	});

	it("when two Sql of one file write at once, then the second starts only after the first committed", async () => {
		const a = new Sql(open("a"));
		const b = new Sql(open("b"));
		let release!: () => void;
		const held = new Promise<void>(resolve => (release = resolve));
		const first = a.transaction(async t => {
			await a.insert("INSERT INTO t (id, v) VALUES (1, 1)", [], t);
			await held;
		});
		const second = b.update("UPDATE t SET v = 2 WHERE id = 1", []);
		// Long enough for b's statement to be sent, had it its own queue (it would then wait on SQLite's lock).
		await new Promise(resolve => setTimeout(resolve, 200));
		expect(log.filter(l => l.startsWith("b:"))).toEqual([]);
		release();
		await first;
		await expect(second).resolves.toBe(1);
		expect(log).toEqual(["a: BEGIN", "a: INSERT", "a: COMMIT;", "b: UPDATE"]);
	});
});
