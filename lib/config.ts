/**
 * The one place that reads the environment (DESIGN.md section 10).
 *
 * `loadConfig(env)` parses and validates everything at start-up and throws a `ConfigError` that lists every
 * problem at once, so a misconfigured node refuses to start with a readable message instead of failing later on
 * its first request. Services never read `process.env`; they get this object through the config mixin.
 */
import path from "path";

export type RunMode = "embedded" | "cluster";
export type TracingExporter = "off" | "console" | "zipkin" | "jaeger";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace";

export interface SqlConfig {
	/** `sqlite`: one file per service under `dir`; `mysql`: one schema per service on a MariaDB/MySQL server. */
	dialect: "sqlite" | "mysql";
	/** SQLite only: the directory that holds the per-service files. */
	dir?: string;
	host?: string;
	port?: number;
	user?: string;
	password?: string;
	/** Prepended to every service's schema name, so several installs can share one server. */
	prefix: string;
	/** Connections per service per node. */
	poolMax: number;
}

export interface Config {
	mode: RunMode;
	nodeEnv: string;
	port: number;
	dataDir: string;
	namespace: string;
	nodeID?: string;
	services?: string[];
	transporter?: {
		url: string;
		user?: string;
		password?: string;
		token?: string;
	};
	sql: SqlConfig;
	/** `undefined` means the in-memory coordination store. */
	redis?: { url: string };
	/** Prefix of every coordination-store key of this install. */
	storePrefix: string;
	jwt: {
		/** `undefined` in embedded mode until a secret is generated for the data dir (see lib/secrets.ts). */
		secret?: string;
		/** Set when the secret was generated for the data dir at this start (embedded mode). */
		generatedAt?: string;
		expiresInSec: number;
	};
	holdTtlSec: number;
	queueMaxActive: number;
	queueActiveTtlSec: number;
	idempotencyTtlSec: number;
	outboxPollMs: number;
	requestTimeoutMs: number;
	logLevel: LogLevel;
	admin?: { email: string; password: string };
	metricsPort: number;
	tracing: { exporter: TracingExporter; endpoint?: string };
	http: {
		bodyLimit: string;
		rateLimitPerMinute: number;
		corsOrigins: string[] | "*";
		trustProxy: boolean;
	};
}

export class ConfigError extends Error {
	constructor(readonly problems: string[]) {
		super(`Invalid configuration:\n${problems.map(p => `  - ${p}`).join("\n")}`);
		this.name = "ConfigError";
	}
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS: LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace"];
const TRACING: TracingExporter[] = ["off", "console", "zipkin", "jaeger"];

/** Reads and validates the whole configuration. Throws ConfigError listing every problem found. */
export function loadConfig(env: Env = process.env): Config {
	const problems: string[] = [];
	const str = (name: string): string | undefined => {
		const v = env[name];
		return v === undefined || v.trim() === "" ? undefined : v.trim();
	};
	const int = (name: string, def: number, min: number, max: number): number => {
		const raw = str(name);
		if (raw === undefined) return def;
		if (!/^-?\d+$/.test(raw)) {
			problems.push(`${name} must be an integer, got "${raw}"`);
			return def;
		}
		const n = Number(raw);
		if (n < min || n > max) {
			problems.push(`${name} must be between ${min} and ${max}, got ${n}`);
			return def;
		}
		return n;
	};
	const bool = (name: string, def: boolean): boolean => {
		const raw = str(name);
		if (raw === undefined) return def;
		if (/^(1|true|yes|on)$/i.test(raw)) return true;
		if (/^(0|false|no|off)$/i.test(raw)) return false;
		problems.push(`${name} must be true or false, got "${raw}"`);
		return def;
	};

	const transporterUrl = str("TRANSPORTER");
	const mode: RunMode = transporterUrl ? "cluster" : "embedded";
	const dataDir = path.resolve(str("DATA_DIR") ?? "./data");

	let transporter: Config["transporter"];
	if (transporterUrl) {
		if (!/^nats:\/\/[^\s]+$/i.test(transporterUrl)) {
			problems.push(`TRANSPORTER must be a NATS URL such as nats://127.0.0.1:4222, got "${redactUrl(transporterUrl)}"`);
		}
		transporter = {
			url: transporterUrl,
			user: str("NATS_USER"),
			password: str("NATS_PASSWORD"),
			token: str("NATS_TOKEN")
		};
		if ((transporter.user === undefined) !== (transporter.password === undefined)) {
			problems.push("NATS_USER and NATS_PASSWORD must be set together");
		}
	}

	const poolMax = int("DB_POOL_MAX", 5, 1, 100);
	const prefix = str("DB_PREFIX") ?? "";
	if (!/^[A-Za-z0-9_]*$/.test(prefix) || prefix.length > 32) {
		problems.push(`DB_PREFIX may hold only letters, digits and _ (at most 32), got "${prefix}"`);
	}
	const sql = parseDatabaseUrl(str("DATABASE_URL"), dataDir, prefix, poolMax, problems);
	if (mode === "cluster" && sql.dialect === "sqlite") {
		problems.push(
			"TRANSPORTER is set (cluster mode) but DATABASE_URL is not a MariaDB/MySQL URL: SQLite files cannot be " +
				"shared between nodes. Set DATABASE_URL=mysql://user:password@host:3306"
		);
	}

	const redisUrl = str("REDIS_URL");
	let redis: Config["redis"];
	if (redisUrl && redisUrl !== "memory") {
		if (!/^rediss?:\/\/[^\s]+$/i.test(redisUrl)) {
			problems.push(`REDIS_URL must look like redis://host:6379, got "${redactUrl(redisUrl)}"`);
		}
		redis = { url: redisUrl };
	}
	if (mode === "cluster" && !redis) {
		problems.push(
			"TRANSPORTER is set (cluster mode) but REDIS_URL is not: the in-memory store cannot be shared between " +
				"nodes. Set REDIS_URL=redis://host:6379"
		);
	}

	const namespace = str("NAMESPACE") ?? "";
	if (!/^[A-Za-z0-9_-]*$/.test(namespace)) {
		problems.push(`NAMESPACE may hold only letters, digits, _ and -, got "${namespace}"`);
	}
	const storePrefix = str("STORE_PREFIX") ?? `crp:${namespace || "default"}:`;

	const jwtSecret = str("JWT_SECRET");
	if (jwtSecret !== undefined && jwtSecret.length < 32) {
		problems.push("JWT_SECRET must be at least 32 characters long");
	}
	if (mode === "cluster" && jwtSecret === undefined) {
		problems.push("JWT_SECRET is required in cluster mode (every node must verify the same tokens)");
	}

	const logLevel = (str("LOG_LEVEL") ?? "info").toLowerCase() as LogLevel;
	if (!LOG_LEVELS.includes(logLevel)) {
		problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`);
	}

	const tracingExporter = (str("TRACING") ?? "off").toLowerCase() as TracingExporter;
	if (!TRACING.includes(tracingExporter)) {
		problems.push(`TRACING must be one of ${TRACING.join(", ")}, got "${tracingExporter}"`);
	}
	const tracingEndpoint = str("TRACING_ENDPOINT");
	if ((tracingExporter === "zipkin" || tracingExporter === "jaeger") && !tracingEndpoint) {
		problems.push(`TRACING=${tracingExporter} needs TRACING_ENDPOINT (the collector URL)`);
	}
	if (tracingExporter === "jaeger" && !canResolve("jaeger-client")) {
		problems.push("TRACING=jaeger needs the optional package jaeger-client (npm install jaeger-client)");
	}

	const adminEmail = str("ADMIN_EMAIL");
	const adminPassword = str("ADMIN_PASSWORD");
	let admin: Config["admin"];
	if ((adminEmail === undefined) !== (adminPassword === undefined)) {
		problems.push("ADMIN_EMAIL and ADMIN_PASSWORD must be set together");
	} else if (adminEmail && adminPassword) {
		if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(adminEmail)) problems.push("ADMIN_EMAIL is not an email address");
		if (adminPassword.length < 8 || adminPassword.length > 128) {
			problems.push("ADMIN_PASSWORD must be 8..128 characters long");
		}
		admin = { email: adminEmail.toLowerCase(), password: adminPassword };
	}

	const bodyLimit = str("BODY_LIMIT") ?? "100kb";
	if (!/^\d+(b|kb|mb)$/i.test(bodyLimit)) problems.push(`BODY_LIMIT must look like 100kb or 1mb, got "${bodyLimit}"`);
	const cors = str("CORS_ORIGINS") ?? "*";

	const services = str("SERVICES")
		?.split(",")
		.map(s => s.trim())
		.filter(Boolean);

	const config: Config = {
		mode,
		nodeEnv: str("NODE_ENV") ?? "development",
		port: int("PORT", 3000, 0, 65535),
		dataDir,
		namespace,
		nodeID: str("NODE_ID") ?? str("NODEID"),
		services,
		transporter,
		sql,
		redis,
		storePrefix,
		jwt: { secret: jwtSecret, expiresInSec: int("JWT_EXPIRES_SEC", 900, 60, 86400) },
		holdTtlSec: int("HOLD_TTL_SEC", 300, 1, 86400),
		queueMaxActive: int("QUEUE_MAX_ACTIVE", 100, 1, 1_000_000),
		queueActiveTtlSec: int("QUEUE_ACTIVE_TTL_SEC", 600, 1, 86400),
		idempotencyTtlSec: int("IDEMPOTENCY_TTL_SEC", 86400, 60, 7 * 86400),
		outboxPollMs: int("OUTBOX_POLL_MS", 1000, 10, 600_000),
		requestTimeoutMs: int("REQUEST_TIMEOUT_MS", 10_000, 100, 600_000),
		logLevel,
		admin,
		metricsPort: int("METRICS_PORT", 3030, 0, 65535),
		tracing: { exporter: tracingExporter, endpoint: tracingEndpoint },
		http: {
			bodyLimit,
			rateLimitPerMinute: int("RATE_LIMIT_PER_MINUTE", 6000, 0, 10_000_000),
			corsOrigins: cors === "*" ? "*" : cors.split(",").map(s => s.trim()),
			trustProxy: bool("TRUST_PROXY", false)
		}
	};

	if (problems.length > 0) throw new ConfigError(problems);
	return config;
}

function parseDatabaseUrl(
	raw: string | undefined,
	dataDir: string,
	prefix: string,
	poolMax: number,
	problems: string[]
): SqlConfig {
	if (raw === undefined) return { dialect: "sqlite", dir: path.join(dataDir, "db"), prefix, poolMax };
	let url: URL;
	try {
		url = new URL(raw);
	} catch {
		problems.push(`DATABASE_URL is not a URL: "${redactUrl(raw)}"`);
		return { dialect: "sqlite", dir: path.join(dataDir, "db"), prefix, poolMax };
	}
	switch (url.protocol) {
		case "sqlite:": {
			// sqlite:./some/dir or sqlite:///abs/dir: the directory that holds one file per service.
			const dir = decodeURIComponent((url.host + url.pathname) || "");
			return { dialect: "sqlite", dir: path.resolve(dir || path.join(dataDir, "db")), prefix, poolMax };
		}
		case "mysql:":
		case "mariadb:":
			return {
				dialect: "mysql",
				host: url.hostname || "127.0.0.1",
				port: url.port ? Number(url.port) : 3306,
				user: decodeURIComponent(url.username || "root"),
				password: url.password ? decodeURIComponent(url.password) : undefined,
				prefix,
				poolMax
			};
		default:
			problems.push(`DATABASE_URL must start with mysql://, mariadb:// or sqlite:, got "${url.protocol}"`);
			return { dialect: "sqlite", dir: path.join(dataDir, "db"), prefix, poolMax };
	}
}

/** Hides the password part of a URL before it goes into a message or a log line. */
export function redactUrl(raw: string): string {
	return raw.replace(/\/\/([^:@/]+):([^@/]+)@/, "//$1:***@");
}

function canResolve(mod: string): boolean {
	try {
		require.resolve(mod);
		return true;
	} catch {
		return false;
	}
}

/** For entry points: load the config or print the problems and exit non-zero. */
export function loadConfigOrExit(env: Env = process.env): Config {
	try {
		return loadConfig(env);
	} catch (err) {
		if (err instanceof ConfigError) {
			process.stderr.write(`${err.message}\n`);
			process.exit(1);
		}
		throw err;
	}
}
