import crypto from "crypto";
import fs from "fs";
import path from "path";
import type { Config } from "./config";

/**
 * A secret kept in a file of the data dir (mode 0600), generated on first use, so it survives restarts and every
 * process started on the same data dir reads the same one. Answers the file path too when it was generated now.
 */
export function dataDirSecret(dataDir: string, name: string): { secret: string; generatedAt?: string } {
	const file = path.join(dataDir, name);
	try {
		const existing = fs.readFileSync(file, "utf8").trim();
		if (existing.length >= 32) return { secret: existing };
	} catch (err) {
		if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
	}
	fs.mkdirSync(dataDir, { recursive: true });
	const secret = crypto.randomBytes(48).toString("base64url");
	try {
		// `wx`: if another process created it first, read theirs instead of overwriting.
		fs.writeFileSync(file, secret, { mode: 0o600, flag: "wx" });
	} catch (err) {
		if ((err as NodeJS.ErrnoException).code === "EEXIST") return { secret: fs.readFileSync(file, "utf8").trim() };
		throw err;
	}
	return { secret, generatedAt: file };
}

/**
 * Embedded mode may run without JWT_SECRET: a random secret is generated once per data dir and kept in
 * `<DATA_DIR>/jwt-secret`, so tokens survive restarts. Cluster mode never gets here (the config requires
 * JWT_SECRET there).
 */
export function ensureJwtSecret(config: Config): { secret: string; generatedAt?: string } {
	if (config.jwt.secret) return { secret: config.jwt.secret };
	return dataDirSecret(config.dataDir, "jwt-secret");
}
