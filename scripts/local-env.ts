/**
 * Defaults for running a cluster on this machine: the local NATS, MariaDB and Redis, and a JWT secret generated
 * once per data dir (so `npm run cluster` works with no setup). Anything already in the environment wins.
 */
import { loadConfig } from "../lib/config";
import { ensureJwtSecret } from "../lib/secrets";

export function localClusterEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
	const merged: Record<string, string> = {
		TRANSPORTER: "nats://127.0.0.1:4222",
		DATABASE_URL: "mysql://root@127.0.0.1:3306",
		REDIS_URL: "redis://127.0.0.1:6379",
		DB_PREFIX: "crp_",
		...(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) as Record<string, string>)
	};
	if (!merged.JWT_SECRET) {
		// Validate everything else first, then generate the secret the way embedded mode does.
		const config = loadConfig({ ...merged, JWT_SECRET: "x".repeat(32) });
		const { secret, generatedAt } = ensureJwtSecret({ ...config, jwt: { ...config.jwt, secret: undefined } });
		if (generatedAt) process.stderr.write(`JWT_SECRET not set: generated one for this data dir in ${generatedAt}\n`);
		merged.JWT_SECRET = secret;
	}
	return merged;
}
