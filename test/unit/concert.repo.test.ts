/**
 * The sale guard below the holds (test/support/contracts/concert-sales.ts) on SQLite, as embedded mode runs it;
 * test/integration/concert.repo.mariadb.test.ts runs the same suite on the real MariaDB.
 */
import fs from "fs";
import os from "os";
import path from "path";
import { concertSalesSuite } from "../support/contracts/concert-sales";
import { runId } from "../support/isolation";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "concert-repo-"));

afterAll(() => {
	fs.rmSync(tmp, { recursive: true, force: true });
});

concertSalesSuite("sqlite", { dialect: "sqlite", dir: tmp, prefix: `${runId()}_`, poolMax: 5 });
