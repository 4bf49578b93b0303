/** The reservation's transitions in SQL (test/support/contracts/reservation-repo.ts) on the real MariaDB (databases of this run). */
import { reservationRepoSuite } from "../support/contracts/reservation-repo";
import { dropDatabases } from "../support/harness";
import { MARIADB_URL, runId } from "../support/isolation";

const prefix = `${runId()}_`;
const maria = new URL(MARIADB_URL);

afterAll(async () => {
	await dropDatabases(prefix);
});

reservationRepoSuite("mariadb", {
	dialect: "mysql",
	host: maria.hostname,
	port: Number(maria.port || 3306),
	user: decodeURIComponent(maria.username || "root"),
	password: maria.password ? decodeURIComponent(maria.password) : undefined,
	prefix,
	poolMax: 8
});
