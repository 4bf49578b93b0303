/** The sale guard below the holds (test/support/contracts/concert-sales.ts) on the real MariaDB (databases of this run). */
import { concertSalesSuite } from "../support/contracts/concert-sales";
import { dropDatabases } from "../support/harness";
import { mariadbSqlConfig, runId } from "../support/isolation";

const prefix = `${runId()}_`;

afterAll(async () => {
	await dropDatabases(prefix);
});

concertSalesSuite("mariadb", mariadbSqlConfig(prefix));
