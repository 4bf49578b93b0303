/**
 * Defaults for running a cluster on this machine: the local NATS, MariaDB and Redis, and a JWT secret and a
 * cluster secret generated once per data dir (so `npm run cluster` and `npm run repl` work with no setup and
 * agree with each other). Anything already in the environment wins.
 */
import { loadConfig } from "../lib/config";
import { dataDirSecret } from "../lib/secrets";

export function localClusterEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
	const merged: Record<string, string> = {
		TRANSPORTER: "nats://127.0.0.1:4222",
		DATABASE_URL: "mysql://root@127.0.0.1:3306",
		REDIS_URL: "redis://127.0.0.1:6379",
		DB_PREFIX: "crp_",
		...(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) as Record<string, string>)
	};
	// Validate everything else first (with stand-ins for the two secrets), then generate what is missing.
	const { dataDir } = loadConfig({ ...merged, JWT_SECRET: "j".repeat(32), CLUSTER_SECRET: "c".repeat(32) });
	for (const [name, file] of [
		["JWT_SECRET", "jwt-secret"],
		["CLUSTER_SECRET", "cluster-secret"]
	] as const) {
		if (merged[name]) continue;
		const { secret, generatedAt } = dataDirSecret(dataDir, file);
		if (generatedAt) process.stderr.write(`${name} not set: generated one for this data dir in ${generatedAt}\n`);
		merged[name] = secret;
	}
	return merged;
}
