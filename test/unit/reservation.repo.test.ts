/**
 * The reservation's transitions in SQL (test/support/contracts/reservation-repo.ts) on SQLite, as embedded mode runs
 * them; test/integration/reservation.repo.mariadb.test.ts runs the same suite on the real MariaDB.
 */
import fs from "fs";
import os from "os";
import path from "path";
import { reservationRepoSuite } from "../support/contracts/reservation-repo";
import { runId } from "../support/isolation";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "reservation-repo-"));

afterAll(() => {
	fs.rmSync(tmp, { recursive: true, force: true });
});

reservationRepoSuite("sqlite", { dialect: "sqlite", dir: tmp, prefix: `${runId()}_`, poolMax: 5 });
