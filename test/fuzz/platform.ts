/**
 * The platform the HTTP fuzz runs against: EMBEDDED mode (in-process transport, SQLite in a temp dir, the
 * in-memory store; no servers needed), one broker with every service under services/, a bootstrap admin, and no
 * rate limit (the fuzz sends thousands of requests from one address). Shared by the jest test
 * (test/integration/fuzz.test.ts) and the long run (`npm run fuzz`, test/fuzz/run.ts).
 */
import fs from "fs";
import path from "path";
import type { ServiceBroker } from "moleculer";
import { gatewayUrl, http, testEnv, type TestEnv } from "../support/harness";
import { seedWorld, type Identities, type World } from "./http-fuzz";

export const FUZZ_ADMIN = { email: "fuzz-admin@example.com", password: "fuzz-admin-password" };

/** Every service of the platform: each directory under services/ with a `<name>.service.ts`. */
export function allServices(): string[] {
	const dir = path.resolve(__dirname, "../../services");
	return fs
		.readdirSync(dir)
		.filter(name => fs.existsSync(path.join(dir, name, `${name}.service.ts`)))
		.sort((a, b) => (a === "api" ? -1 : b === "api" ? 1 : a.localeCompare(b)));
}

export interface FuzzPlatform {
	env: TestEnv;
	broker: ServiceBroker;
	/** The gateway's base URL, ending in /api. */
	api: string;
	adminToken(): Promise<string>;
	/** A fresh world (concert, users, tokens, reservations) and fresh logins. */
	seed(): Promise<{ world: World; identities: Identities }>;
}

export async function startFuzzPlatform(extraEnv: Record<string, string> = {}): Promise<FuzzPlatform> {
	const env = testEnv({
		cluster: false,
		env: {
			ADMIN_EMAIL: FUZZ_ADMIN.email,
			ADMIN_PASSWORD: FUZZ_ADMIN.password,
			RATE_LIMIT_PER_MINUTE: "0",
			// The report has every failing request; FUZZ_LOG_LEVEL=error adds the gateway's own lines (stacks of the 500s).
			LOG_LEVEL: process.env.FUZZ_LOG_LEVEL ?? "fatal",
			// Holds and queue tokens outlive a long run, so a snapshot never sees a hold expire on its own.
			HOLD_TTL_SEC: "3600",
			QUEUE_ACTIVE_TTL_SEC: "3600",
			...extraEnv
		}
	});
	let broker: ServiceBroker;
	try {
		broker = await env.broker(allServices());
	} catch (err) {
		await env.cleanup();
		throw err;
	}
	const api = gatewayUrl(broker);
	// One login per 10 minutes (tokens live JWT_EXPIRES_SEC, 15 min by default): the fuzz itself sends wrong
	// passwords for the admin's email, and login throttling would refuse a fresh login for a while.
	let cached: { token: string; at: number } | undefined;
	const adminToken = async () => {
		if (cached && Date.now() - cached.at < 600_000) return cached.token;
		const res = await http("POST", `${api}/auth/login`, { body: FUZZ_ADMIN });
		if (res.status !== 200) throw new Error(`admin login: ${res.status} ${JSON.stringify(res.body)}`);
		cached = { token: res.body.accessToken as string, at: Date.now() };
		return cached.token;
	};
	return { env, broker, api, adminToken, seed: async () => seedWorld(api, await adminToken(), FUZZ_ADMIN.password) };
}
