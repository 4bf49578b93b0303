/** The reservation's transitions in SQL (test/support/contracts/reservation-repo.ts) on the real MariaDB (databases of this run). */
import { reservationRepoSuite } from "../support/contracts/reservation-repo";
import { dropDatabases } from "../support/harness";
import { mariadbSqlConfig, runId } from "../support/isolation";

const prefix = `${runId()}_`;

afterAll(async () => {
	await dropDatabases(prefix);
});

reservationRepoSuite("mariadb", mariadbSqlConfig(prefix));
