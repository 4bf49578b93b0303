/** The sale guard below the holds (test/support/contracts/concert-sales.ts) on the real MariaDB (databases of this run). */
import { concertSalesSuite } from "../support/contracts/concert-sales";
import { dropDatabases } from "../support/harness";
import { MARIADB_URL, runId } from "../support/isolation";

const prefix = `${runId()}_`;
const maria = new URL(MARIADB_URL);

afterAll(async () => {
	await dropDatabases(prefix);
});

concertSalesSuite("mariadb", {
	dialect: "mysql",
	host: maria.hostname,
	port: Number(maria.port || 3306),
	user: decodeURIComponent(maria.username || "root"),
	password: maria.password ? decodeURIComponent(maria.password) : undefined,
	prefix,
	poolMax: 8
});
