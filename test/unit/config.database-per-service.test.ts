/**
 * A database per service (issue 21): DATABASE_URL_<SERVICE> (with DATABASE_USER_<SERVICE> and
 * DATABASE_PASSWORD_<SERVICE>) puts one service's database on a server of its own, so the money path can live
 * apart from the rest. These cases pin the parsing and its refusals (a name no service keeps, a different kind of
 * database than DATABASE_URL, a broken URL named by its own variable without printing the password), and the two
 * helpers every caller goes through: `sqlFor` (the server of one database) and `sqlServers` (every distinct
 * server, for health probes and a run's clean-up).
 */
import path from "path";
import { loadConfig, sqlFor, sqlServers } from "../../lib/config";
import { problemsOf } from "../support/config-problems";

const MAIN = { DATABASE_URL: "mysql://app:main-secret@db-main:3306", DB_PREFIX: "crp_", DB_POOL_MAX: "7" };

describe("a database per service (DATABASE_URL_<SERVICE>)", () => {
	it("when DATABASE_URL_PAYMENT is set, then the payment database is on that server and every other on DATABASE_URL", () => {
		const c = loadConfig({ ...MAIN, DATABASE_URL_PAYMENT: "mariadb://pay:pay%40secret@db-money:3307" });
		expect(c.sqlByService).toEqual({
			payment: { dialect: "mysql", host: "db-money", port: 3307, user: "pay", password: "pay@secret", prefix: "crp_", poolMax: 7 }
		});
		expect(sqlFor(c, "payment")).toBe(c.sqlByService.payment);
		for (const other of ["user", "concert", "reservation", "saga", "review", "notification"]) expect(sqlFor(c, other)).toBe(c.sql);
		expect(c.sql).toMatchObject({ host: "db-main", port: 3306, user: "app", password: "main-secret" });
	});

	it("when nothing per service is set, then every database is on DATABASE_URL and there is one server", () => {
		const c = loadConfig(MAIN);
		expect(c.sqlByService).toEqual({});
		expect(sqlFor(c, "payment")).toBe(c.sql);
		expect(sqlServers(c)).toEqual([c.sql]);
	});

	it("when DATABASE_USER_<SERVICE> and DATABASE_PASSWORD_<SERVICE> are set, then they replace the URL's credentials for that service only", () => {
		const c = loadConfig({
			...MAIN,
			DATABASE_URL_PAYMENT: "mysql://ignored:ignored@db-money:3307",
			DATABASE_USER_PAYMENT: "ledger",
			DATABASE_PASSWORD_PAYMENT: "p@ss#w/rd"
		});
		expect(c.sqlByService.payment).toMatchObject({ user: "ledger", password: "p@ss#w/rd", host: "db-money" });
		expect(c.sql).toMatchObject({ user: "app", password: "main-secret" });
	});

	it("when a service's variable is empty, then it is as if unset", () => {
		expect(loadConfig({ ...MAIN, DATABASE_URL_PAYMENT: "  " }).sqlByService).toEqual({});
	});

	it("when a service's user or password comes without its URL, then it is a problem rather than silently ignored", () => {
		expect(problemsOf({ ...MAIN, DATABASE_USER_PAYMENT: "ledger" })).toEqual([expect.stringMatching(/DATABASE_USER_PAYMENT needs DATABASE_URL_PAYMENT/)]);
		const problems = problemsOf({ ...MAIN, DATABASE_PASSWORD_PAYMENT: "pw-secret-1" });
		expect(problems).toEqual([expect.stringMatching(/DATABASE_PASSWORD_PAYMENT needs DATABASE_URL_PAYMENT/)]);
		expect(problems.join("\n")).not.toContain("pw-secret-1");
	});

	it("when a per-service variable is not upper case, then it is refused rather than silently ignored", () => {
		expect(problemsOf({ ...MAIN, DATABASE_URL_Payment: "mysql://db-money:3306" })).toEqual([expect.stringMatching(/DATABASE_URL_Payment: .*upper case/)]);
	});

	it("when DATABASE_URL_<NAME> names no service that keeps a database, then it is a problem that lists the valid names", () => {
		const problems = problemsOf({ ...MAIN, DATABASE_URL_BILLING: "mysql://root@db-money:3307" });
		expect(problems).toHaveLength(1);
		expect(problems[0]).toContain("DATABASE_URL_BILLING");
		expect(problems[0]).toContain('"billing"');
		expect(problems[0]).toContain("PAYMENT");
	});

	it("when DATABASE_URL is SQLite and a service's is MariaDB (or the other way round), then it is a problem", () => {
		const sqliteMain = problemsOf({ DATABASE_URL_PAYMENT: "mysql://root@db-money:3307" });
		expect(sqliteMain).toEqual([expect.stringContaining("DATABASE_URL_PAYMENT must be the same kind of database as DATABASE_URL (sqlite:)")]);
		const mysqlMain = problemsOf({ ...MAIN, DATABASE_URL_PAYMENT: "sqlite:/tmp/money" });
		expect(mysqlMain).toEqual([expect.stringContaining("DATABASE_URL_PAYMENT must be the same kind of database as DATABASE_URL (mysql:// or mariadb://)")]);
	});

	it("when a service's URL is broken, then the problem names its variable and never prints the password", () => {
		const problems = problemsOf({ ...MAIN, DATABASE_URL_PAYMENT: "mysql://pay:never-print-me@db-money:3307/payment" });
		expect(problems).toEqual([expect.stringContaining("DATABASE_URL_PAYMENT must be mysql://user:password@host:port")]);
		expect(problems.join("\n")).not.toContain("never-print-me");
		expect(problemsOf({ ...MAIN, DATABASE_URL_PAYMENT: "postgres://db-money" })).toEqual([expect.stringContaining("DATABASE_URL_PAYMENT must start with")]);
	});

	it("when SQLite keeps one service's file in another directory, then that directory is its server", () => {
		const c = loadConfig({ DATABASE_URL: "sqlite:///var/crp/db", DATABASE_URL_PAYMENT: "sqlite:///var/crp-money/db" });
		expect(sqlFor(c, "payment")).toMatchObject({ dialect: "sqlite", dir: path.resolve("/var/crp-money/db") });
		expect(sqlServers(c).map(s => s.dir)).toEqual([path.resolve("/var/crp/db"), path.resolve("/var/crp-money/db")]);
	});

	it("sqlServers lists each server once, DATABASE_URL's first: the same host, port and user is one server", () => {
		const c = loadConfig({
			...MAIN,
			DATABASE_URL_PAYMENT: "mysql://pay@db-money:3307",
			DATABASE_URL_SAGA: "mysql://pay@db-money:3307",
			// The main server spelt again: nothing to probe or clean twice.
			DATABASE_URL_REVIEW: "mysql://app:main-secret@db-main:3306"
		});
		expect(Object.keys(c.sqlByService).sort()).toEqual(["payment", "review", "saga"]);
		const servers = sqlServers(c);
		expect(servers.map(s => `${s.user}@${s.host}:${s.port}`)).toEqual(["app@db-main:3306", "pay@db-money:3307"]);
		expect(servers[0]).toBe(c.sql);
	});

	it("sqlFor and sqlServers accept a config without sqlByService (a partial config built by hand)", () => {
		const sql = loadConfig(MAIN).sql;
		expect(sqlFor({ sql } as never, "payment")).toBe(sql);
		expect(sqlServers({ sql } as never)).toEqual([sql]);
	});
});
