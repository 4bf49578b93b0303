/**
 * The one place that reads the environment (docs/DESIGN.md section 10).
 *
 * `loadConfig(env)` parses and validates everything at start-up and throws a `ConfigError` that lists every
 * problem at once, so a misconfigured node refuses to start with a readable message instead of failing later on
 * its first request. Services never read `process.env`; they get this object through the config mixin.
 */
import fs from "fs";
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

/** How a node reaches NATS: the servers without credentials, and the credentials apart. */
export interface NatsConfig {
	/** TRANSPORTER with any credentials removed (safe to print). */
	url: string;
	/** `host:port` of every server in TRANSPORTER. */
	servers: string[];
	user?: string;
	password?: string;
	token?: string;
	/** TLS: set when TRANSPORTER uses tls:// or NATS_TLS_* is given; file paths of the CA, client cert and key. */
	tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

export interface Config {
	mode: RunMode;
	nodeEnv: string;
	port: number;
	dataDir: string;
	namespace: string;
	nodeID?: string;
	services?: string[];
	transporter?: NatsConfig;
	/**
	 * Cluster mode: the secret every packet between nodes (and every JetStream event) is authenticated with
	 * (lib/cluster-auth.ts). `accept` is a second secret also accepted on receipt, for rotation.
	 */
	cluster?: { secret: string; accept?: string };
	/** Said once at start-up by the broker's logger (e.g. a cluster without NATS credentials outside production). */
	warnings: string[];
	/** Every service's database unless `sqlByService` names another one for it. */
	sql: SqlConfig;
	/**
	 * DATABASE_URL_<SERVICE> (e.g. DATABASE_URL_PAYMENT): a service whose database lives on a server of its own,
	 * by the service's database name (`payment`). Read through `sqlFor`.
	 */
	sqlByService: Record<string, SqlConfig>;
	/**
	 * `undefined` means the in-memory coordination store. `clusterNodes` (REDIS_CLUSTER_NODES, or several hosts in
	 * REDIS_URL) makes it a Redis Cluster: those `host:port` are the seeds, `url` carries only the credentials and
	 * the scheme (rediss:// for TLS) and its first node.
	 */
	redis?: {
		url: string;
		clusterNodes?: string[];
		/**
		 * Cluster only (REDIS_FAILOVER_BUDGET_MS): how long a command for a failed master's slots is retried inside
		 * the client while a replica takes over, before it fails as unavailable.
		 */
		failoverBudgetMs?: number;
	};
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
	/**
	 * A FAILED saga with an open dead letter is retried by itself after this long, then after twice as long per
	 * time it failed again (up to an hour); 0: only operators retry.
	 */
	sagaFailedRetrySec: number;
	/** Journal writes of different sagas committed in one transaction at most (MariaDB; 1: each alone). */
	sagaGroupCommitMax: number;
	queueMaxActive: number;
	queueActiveTtlSec: number;
	/** A WAITING token not polled for this long leaves the line (the tab was closed). */
	queueWaitingTtlSec: number;
	/** A token promoted from the line that is not used (polled or presented) within this long gives its slot back. */
	queueAdmitGraceSec: number;
	/** At most this many seats per user per schedule across PENDING, PAYING and CONFIRMED reservations. */
	maxSeatsPerBuyer: number;
	/** A confirmed booking is cancelled with a full refund until this many hours before the show; not after. */
	cancelCutoffHours: number;
	idempotencyTtlSec: number;
	outboxPollMs: number;
	/** Durable events (lib/events/retry.ts): how long a failing event is retried, and the dead-letter redrive. */
	events: {
		/** A failing event is retried with growing delays for at least this long, then dead-lettered. */
		retryForSec: number;
		/** The longest delay between two deliveries of a failing event. */
		retryMaxDelaySec: number;
		/** A dead letter is sent back to its group after this long; 0 turns the automatic redrive off. */
		dlqRedriveSec: number;
		/** Automatic redrives per event; after that it waits for an operator. */
		dlqRedriveMax: number;
		/** Limits of the JetStream dead-letter stream: past either, the oldest letters are dropped. */
		dlqMaxAgeDays: number;
		dlqMaxMessages: number;
		/** Copies JetStream keeps of each stream (JETSTREAM_REPLICAS; 3 on a three-server NATS cluster). */
		replicas: number;
	};
	/**
	 * Retention (mixins/retention.mixin.ts): ages in days past which rows are deleted, 0 keeps them. One node at a
	 * time runs the job every `intervalSec` (0: never by itself), `batch` rows per transaction.
	 */
	retention: {
		intervalSec: number;
		batch: number;
		/** Published outbox events (each aggregate's latest stays). */
		outboxDays: number;
		/** COMPLETED and COMPENSATED sagas with their step journals (a FAILED one, or one with an open dead letter, stays). */
		sagaDays: number;
		/** Resolved or retried saga dead letters. */
		deadLetterDays: number;
		/** The tombstones that refuse a late step of a compensated saga (two void tables, VOIDED payments). */
		voidDays: number;
		notificationDays: number;
		/** A concert's waiting-room keys in Redis, counted from its last show. */
		finishedConcertDays: number;
	};
	requestTimeoutMs: number;
	/** Failover between replicas (lib/balancer.ts): when a node that stopped answering is probed, and given up on. */
	failover: {
		/** A node with calls in flight that answered nothing for this long is pinged (and avoided meanwhile). */
		silenceMs: number;
		/** That ping is given up after this long (the node stays avoided and is pinged again). */
		probeTimeoutMs: number;
		/** A node that answered nothing (no call, no ping) for this long is removed from the registry. */
		removeAfterMs: number;
	};
	logLevel: LogLevel;
	admin?: { email: string; password: string };
	auth: {
		/** How long a gateway trusts what it last heard of a token's user (role, existence). 0: ask every time. */
		cacheSec: number;
		/** Login attempts per client address and per account (email) per minute; 0 turns a limit off. */
		loginPerAddressPerMinute: number;
		loginPerAccountPerMinute: number;
		/** Password hashes computed at once per process, and how many may wait for a turn (past that: 429). */
		hashConcurrency: number;
		hashQueue: number;
		/** How long a login may wait for its turn at the hash gate before it is a 429. */
		hashMaxWaitMs: number;
	};
	metricsPort: number;
	/** Interface the metrics port listens on (loopback by default: it is not for the public). */
	metricsHost: string;
	tracing: { exporter: TracingExporter; endpoint?: string };
	http: {
		bodyLimit: string;
		rateLimitPerMinute: number;
		corsOrigins: string[] | "*";
		/**
		 * Proxies of yours in front of the gateway (TRUST_PROXY: false = 0, true = 1, or a count): the client is the
		 * address that many hops from the right of X-Forwarded-For. 0: the socket's address.
		 */
		trustProxy: number;
		/** Strict-Transport-Security max-age on every answer; 0 sends none (only behind TLS you terminate). */
		hstsMaxAgeSec: number;
	};
	/** The ops consistency check (services/ops): audit page size, incremental window margin, full-run cadence. */
	consistency: {
		/** Rows per answer of an audit action (reservation.audit, concert.audit, payment.audit). */
		auditPageSize: number;
		/** The incremental check reads what changed since its last run minus this margin (clock skew, long commits). */
		marginSec: number;
		/** The scheduled check is a full one at least this often; 0: only the first run and on demand. */
		fullEverySec: number;
		/** How often the scheduled check runs (on one node); 0: only on demand. */
		intervalSec: number;
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

	const warnings: string[] = [];
	let transporter: Config["transporter"];
	if (transporterUrl) {
		transporter = parseNatsUrl(transporterUrl, problems);
		const user = str("NATS_USER") ?? transporter?.user;
		const password = str("NATS_PASSWORD") ?? transporter?.password;
		const token = str("NATS_TOKEN") ?? transporter?.token;
		if ((user === undefined) !== (password === undefined)) {
			problems.push("NATS_USER and NATS_PASSWORD must be set together");
		}
		if (token !== undefined && user !== undefined) problems.push("NATS_TOKEN and NATS_USER/NATS_PASSWORD exclude each other");
		const tlsFiles = { caFile: str("NATS_TLS_CA"), certFile: str("NATS_TLS_CERT"), keyFile: str("NATS_TLS_KEY") };
		if ((tlsFiles.certFile === undefined) !== (tlsFiles.keyFile === undefined)) {
			problems.push("NATS_TLS_CERT and NATS_TLS_KEY must be set together");
		}
		for (const [name, file] of [
			["NATS_TLS_CA", tlsFiles.caFile],
			["NATS_TLS_CERT", tlsFiles.certFile],
			["NATS_TLS_KEY", tlsFiles.keyFile]
		] as const) {
			if (file !== undefined && !fs.existsSync(file)) problems.push(`${name} names a file that does not exist: ${file}`);
		}
		const wantsTls = /^tls:\/\//i.test(transporterUrl) || Object.values(tlsFiles).some(f => f !== undefined);
		if (transporter) {
			transporter = {
				...transporter,
				user,
				password,
				token,
				tls: wantsTls ? Object.fromEntries(Object.entries(tlsFiles).filter(([, v]) => v !== undefined)) : undefined
			};
		}
		if (user === undefined && token === undefined) {
			const text = "NATS has no credentials (NATS_USER/NATS_PASSWORD or NATS_TOKEN): anyone who reaches the NATS server can join it";
			if ((str("NODE_ENV") ?? "") === "production") problems.push(`${text}; they are required when NODE_ENV=production`);
			else warnings.push(text);
		}
	}

	const jetstreamReplicas = int("JETSTREAM_REPLICAS", 1, 1, 5);
	if (jetstreamReplicas > 1 && mode !== "cluster") problems.push("JETSTREAM_REPLICAS needs TRANSPORTER (NATS): an embedded node keeps its events in memory");
	else if (transporter && jetstreamReplicas > transporter.servers.length) {
		warnings.push(
			`JETSTREAM_REPLICAS=${jetstreamReplicas} but TRANSPORTER lists ${transporter.servers.length} server(s): JetStream needs that many servers in its cluster (list them all, so a node reaches another when one is lost)`
		);
	}

	const poolMax = int("DB_POOL_MAX", 5, 1, 100);
	const prefix = str("DB_PREFIX") ?? "";
	if (!/^[A-Za-z0-9_]*$/.test(prefix) || prefix.length > 32) {
		problems.push(`DB_PREFIX may hold only letters, digits and _ (at most 32), got "${prefix}"`);
	}
	const sql = parseDatabaseUrl(str("DATABASE_URL"), dataDir, prefix, poolMax, problems);
	// Credentials apart from the URL: a password with @ # / % needs no encoding there (and is never printed).
	const dbUser = str("DATABASE_USER");
	const dbPassword = env.DATABASE_PASSWORD === undefined || env.DATABASE_PASSWORD === "" ? undefined : env.DATABASE_PASSWORD;
	if (sql.dialect === "mysql") {
		if (dbUser !== undefined) sql.user = dbUser;
		if (dbPassword !== undefined) sql.password = dbPassword;
	} else if (dbUser !== undefined || dbPassword !== undefined) {
		problems.push("DATABASE_USER and DATABASE_PASSWORD need a mysql:// or mariadb:// DATABASE_URL");
	}
	if (mode === "cluster" && sql.dialect === "sqlite") {
		problems.push(
			"TRANSPORTER is set (cluster mode) but DATABASE_URL is not a MariaDB/MySQL URL: SQLite files cannot be " +
				"shared between nodes. Set DATABASE_URL=mysql://user:password@host:3306"
		);
	}

	const sqlByService: Record<string, SqlConfig> = {};
	for (const name of Object.keys(env).sort()) {
		const m = /^DATABASE_URL_([A-Z0-9_]+)$/.exec(name);
		if (!m || str(name) === undefined) continue;
		const service = m[1].toLowerCase();
		if (!DATABASE_SERVICES.includes(service)) {
			problems.push(`${name}: no service keeps a database called "${service}" (one of ${DATABASE_SERVICES.map(s => s.toUpperCase()).join(", ")})`);
			continue;
		}
		const before = problems.length;
		const own = parseDatabaseUrl(str(name), dataDir, prefix, poolMax, problems, name);
		// A broken URL comes back as the SQLite fallback: its own problem says it, not a second one about the kind.
		if (problems.length > before) continue;
		if (own.dialect !== sql.dialect) {
			problems.push(`${name} must be the same kind of database as DATABASE_URL (${sql.dialect === "mysql" ? "mysql:// or mariadb://" : "sqlite:"})`);
			continue;
		}
		const user = str(`DATABASE_USER_${m[1]}`);
		const password =
			env[`DATABASE_PASSWORD_${m[1]}`] === undefined || env[`DATABASE_PASSWORD_${m[1]}`] === "" ? undefined : env[`DATABASE_PASSWORD_${m[1]}`];
		if (user !== undefined) own.user = user;
		if (password !== undefined) own.password = password;
		sqlByService[service] = own;
	}

	for (const name of Object.keys(env).sort()) {
		if (/^DATABASE_(URL|USER|PASSWORD)_/i.test(name) && !/^DATABASE_(URL|USER|PASSWORD)_[A-Z0-9_]+$/.test(name) && str(name) !== undefined) {
			problems.push(`${name}: per-service database variables are upper case, e.g. DATABASE_URL_PAYMENT`);
		}
		const m = /^DATABASE_(?:USER|PASSWORD)_([A-Z0-9_]+)$/.exec(name);
		if (m && env[name] !== undefined && env[name] !== "" && str(`DATABASE_URL_${m[1]}`) === undefined) {
			problems.push(`${name} needs DATABASE_URL_${m[1]}: the credentials of a service's own server go with its URL`);
		}
	}

	const redis = parseRedis(str("REDIS_URL"), str("REDIS_CLUSTER_NODES"), problems);
	const failoverBudgetMs = int("REDIS_FAILOVER_BUDGET_MS", 8000, 1000, 120_000);
	if (redis?.clusterNodes) redis.failoverBudgetMs = failoverBudgetMs;
	else if (str("REDIS_FAILOVER_BUDGET_MS") !== undefined) problems.push("REDIS_FAILOVER_BUDGET_MS applies to a Redis Cluster only (REDIS_CLUSTER_NODES)");
	if (mode === "cluster" && !redis) {
		problems.push(
			"TRANSPORTER is set (cluster mode) but REDIS_URL is not: the in-memory store cannot be shared between " + "nodes. Set REDIS_URL=redis://host:6379"
		);
	}

	const namespace = str("NAMESPACE") ?? "";
	if (!/^[A-Za-z0-9_-]*$/.test(namespace)) {
		problems.push(`NAMESPACE may hold only letters, digits, _ and -, got "${namespace}"`);
	}
	const storePrefix = str("STORE_PREFIX") ?? `crp:${namespace || "default"}:`;
	// A brace in the prefix would be the hash tag of every key on a Redis Cluster (the first {...} decides the slot):
	// all keys in one slot, or the keys of one script in different slots.
	if (/[{}]/.test(storePrefix)) problems.push(`STORE_PREFIX may not hold { or } (they decide a key's Redis Cluster slot), got "${storePrefix}"`);

	const jwtSecret = str("JWT_SECRET");
	if (jwtSecret !== undefined && jwtSecret.length < 32) {
		problems.push("JWT_SECRET must be at least 32 characters long");
	}
	if (mode === "cluster" && jwtSecret === undefined) {
		problems.push("JWT_SECRET is required in cluster mode (every node must verify the same tokens)");
	}

	const clusterSecret = str("CLUSTER_SECRET");
	const clusterAccept = str("CLUSTER_SECRET_ACCEPT");
	if (clusterSecret !== undefined && clusterSecret.length < 32) problems.push("CLUSTER_SECRET must be at least 32 characters long");
	if (clusterAccept !== undefined && clusterAccept.length < 32) problems.push("CLUSTER_SECRET_ACCEPT must be at least 32 characters long");
	if (clusterAccept !== undefined && clusterSecret === undefined) problems.push("CLUSTER_SECRET_ACCEPT needs CLUSTER_SECRET");
	if (mode === "cluster" && clusterSecret === undefined) {
		problems.push(
			"CLUSTER_SECRET is required in cluster mode (at least 32 characters, the same on every node): it authenticates " +
				"every packet between nodes, so a process on the NATS network without it can neither call nor answer"
		);
	}
	if (clusterSecret !== undefined && clusterSecret === jwtSecret) problems.push("CLUSTER_SECRET must differ from JWT_SECRET");

	const logLevel = (str("LOG_LEVEL") ?? "info").toLowerCase() as LogLevel;
	if (!LOG_LEVELS.includes(logLevel)) {
		problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`);
	}

	const tracingExporter = (str("TRACING") ?? "off").toLowerCase() as TracingExporter;
	if (!TRACING.includes(tracingExporter)) {
		problems.push(`TRACING must be one of ${TRACING.join(", ")}, got "${tracingExporter}"`);
	}
	// zipkin and jaeger both send Zipkin v2 JSON (moleculer.config.ts): jaeger to Jaeger's Zipkin-compatible collector
	// (port 9411), so no jaeger-client package. The endpoint is the collector's base URL; the exporter adds
	// /api/v2/spans, so a URL given with that path (as Jaeger's documentation writes it) is cut back to the base.
	let tracingEndpoint = str("TRACING_ENDPOINT");
	const sendsSpans = tracingExporter === "zipkin" || tracingExporter === "jaeger";
	if (sendsSpans && !tracingEndpoint) {
		problems.push(`TRACING=${tracingExporter} needs TRACING_ENDPOINT (the collector's URL, e.g. http://jaeger:9411)`);
	}
	if (sendsSpans && tracingEndpoint !== undefined) {
		tracingEndpoint = tracingEndpoint.replace(/\/+$/, "").replace(/\/api\/v2\/spans$/, "");
		if (!/^https?:\/\/[^/\s]+(\/\S*)?$/.test(tracingEndpoint)) {
			problems.push(`TRACING_ENDPOINT must be an http(s) URL such as http://jaeger:9411, got "${redactUrl(tracingEndpoint)}"`);
		}
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
		cluster: clusterSecret ? { secret: clusterSecret, accept: clusterAccept } : undefined,
		warnings,
		sql,
		sqlByService,
		redis,
		storePrefix,
		jwt: { secret: jwtSecret, expiresInSec: int("JWT_EXPIRES_SEC", 900, 60, 86400) },
		holdTtlSec: int("HOLD_TTL_SEC", 300, 1, 86400),
		sagaFailedRetrySec: int("SAGA_FAILED_RETRY_SEC", 30, 0, 86400),
		sagaGroupCommitMax: int("SAGA_GROUP_COMMIT_MAX", 24, 1, 30),
		queueMaxActive: int("QUEUE_MAX_ACTIVE", 100, 1, 1_000_000),
		queueActiveTtlSec: int("QUEUE_ACTIVE_TTL_SEC", 600, 1, 86400),
		queueWaitingTtlSec: int("QUEUE_WAITING_TTL_SEC", 60, 5, 86400),
		queueAdmitGraceSec: int("QUEUE_ADMIT_GRACE_SEC", 60, 5, 86400),
		maxSeatsPerBuyer: int("MAX_SEATS_PER_BUYER", 4, 1, 1_000_000),
		cancelCutoffHours: int("CANCEL_CUTOFF_HOURS", 24, 0, 24 * 365),
		idempotencyTtlSec: int("IDEMPOTENCY_TTL_SEC", 86400, 60, 7 * 86400),
		outboxPollMs: int("OUTBOX_POLL_MS", 1000, 10, 600_000),
		events: {
			retryForSec: int("EVENT_RETRY_FOR_SEC", 300, 0, 7 * 86400),
			retryMaxDelaySec: int("EVENT_RETRY_MAX_DELAY_SEC", 30, 1, 3600),
			dlqRedriveSec: int("DLQ_REDRIVE_SEC", 600, 0, 7 * 86400),
			dlqRedriveMax: int("DLQ_REDRIVE_MAX", 3, 0, 1000),
			dlqMaxAgeDays: int("EVENT_DLQ_MAX_AGE_DAYS", 30, 1, 3650),
			dlqMaxMessages: int("EVENT_DLQ_MAX_MESSAGES", 100_000, 100, 100_000_000),
			replicas: jetstreamReplicas
		},
		retention: {
			intervalSec: int("RETENTION_INTERVAL_SEC", 3600, 0, 7 * 86400),
			batch: int("RETENTION_BATCH", 500, 1, 10_000),
			outboxDays: int("RETENTION_OUTBOX_DAYS", 7, 0, 3650),
			sagaDays: int("RETENTION_SAGA_DAYS", 90, 0, 3650),
			deadLetterDays: int("RETENTION_DEAD_LETTER_DAYS", 90, 0, 3650),
			voidDays: int("RETENTION_VOID_DAYS", 30, 0, 3650),
			notificationDays: int("RETENTION_NOTIFICATION_DAYS", 180, 0, 3650),
			finishedConcertDays: int("RETENTION_FINISHED_CONCERT_DAYS", 7, 0, 3650)
		},
		requestTimeoutMs: int("REQUEST_TIMEOUT_MS", 10_000, 100, 600_000),
		failover: {
			silenceMs: int("FAILOVER_SILENCE_MS", 1000, 100, 60_000),
			probeTimeoutMs: int("FAILOVER_PROBE_TIMEOUT_MS", 3000, 100, 60_000),
			removeAfterMs: int("FAILOVER_REMOVE_AFTER_MS", 8000, 100, 600_000)
		},
		logLevel,
		admin,
		auth: {
			cacheSec: int("AUTH_CACHE_SEC", 30, 0, 600),
			loginPerAddressPerMinute: int("LOGIN_LIMIT_PER_ADDRESS", 30, 0, 1_000_000),
			loginPerAccountPerMinute: int("LOGIN_LIMIT_PER_ACCOUNT", 10, 0, 1_000_000),
			hashConcurrency: int("PASSWORD_HASH_CONCURRENCY", 1, 1, 64),
			hashQueue: int("PASSWORD_HASH_QUEUE", 64, 0, 100_000),
			hashMaxWaitMs: int("PASSWORD_HASH_WAIT_MS", 3000, 10, 600_000)
		},
		// A node with several worker processes (the runner's --instances) gives worker k METRICS_PORT + k - 1: the
		// workers would otherwise share one port and each scrape would reach whichever the primary picked.
		metricsPort: metricsPortOf(int("METRICS_PORT", 3030, 0, 65535), int("WORKER_SLOT", 1, 1, 64)),
		metricsHost: str("METRICS_HOST") ?? "127.0.0.1",
		tracing: { exporter: tracingExporter, endpoint: tracingEndpoint },
		http: {
			bodyLimit,
			rateLimitPerMinute: int("RATE_LIMIT_PER_MINUTE", 6000, 0, 10_000_000),
			corsOrigins: cors === "*" ? "*" : cors.split(",").map(s => s.trim()),
			trustProxy: /^\d+$/.test(str("TRUST_PROXY") ?? "") ? int("TRUST_PROXY", 0, 0, 10) : bool("TRUST_PROXY", false) ? 1 : 0,
			hstsMaxAgeSec: int("HSTS_MAX_AGE_SEC", 0, 0, 2 * 365 * 86400)
		},
		consistency: {
			auditPageSize: int("AUDIT_PAGE_SIZE", 500, 10, 1000),
			marginSec: int("CONSISTENCY_MARGIN_SEC", 120, 0, 86400),
			fullEverySec: int("CONSISTENCY_FULL_EVERY_SEC", 86400, 0, 30 * 86400),
			intervalSec: int("CONSISTENCY_INTERVAL_SEC", 300, 0, 86400)
		}
	};

	if (problems.length > 0) throw new ConfigError(problems);
	return config;
}

function parseDatabaseUrl(raw: string | undefined, dataDir: string, prefix: string, poolMax: number, problems: string[], name = "DATABASE_URL"): SqlConfig {
	const fallback: SqlConfig = { dialect: "sqlite", dir: path.join(dataDir, "db"), prefix, poolMax };
	if (raw === undefined) return fallback;
	const passwordVar = name === "DATABASE_URL" ? "DATABASE_PASSWORD" : name.replace("DATABASE_URL_", "DATABASE_PASSWORD_");
	const encodingHint = `(a password with characters such as @ # / % ? must be percent-encoded in the URL; or give it in ${passwordVar})`;
	let url: URL;
	try {
		url = new URL(raw);
	} catch {
		problems.push(`${name} is not a URL: "${redactUrl(raw)}" ${encodingHint}`);
		return fallback;
	}
	switch (url.protocol) {
		case "sqlite:": {
			// sqlite:./some/dir or sqlite:///abs/dir: the directory that holds one file per service.
			const dir = decode(url.host + url.pathname);
			if (dir === undefined) {
				problems.push(`${name} has a broken %-escape in its path`);
				return fallback;
			}
			return { dialect: "sqlite", dir: path.resolve(dir || path.join(dataDir, "db")), prefix, poolMax };
		}
		case "mysql:":
		case "mariadb:": {
			// One schema per service: the URL names a server, never a database, a query or a fragment. Anything
			// there is almost always a password that was not encoded (p@ss#word reads as host "ss").
			if ((url.pathname && url.pathname !== "/") || url.search || url.hash) {
				problems.push(`${name} must be mysql://user:password@host:port with nothing after the port ${encodingHint}`);
				return fallback;
			}
			const user = decode(url.username || "root");
			const password = url.password ? decode(url.password) : undefined;
			if (user === undefined || (url.password && password === undefined)) {
				problems.push(`${name} has a broken %-escape in its user or password ${encodingHint}`);
				return fallback;
			}
			return {
				dialect: "mysql",
				host: url.hostname || "127.0.0.1",
				port: url.port ? Number(url.port) : 3306,
				user,
				password,
				prefix,
				poolMax
			};
		}
		default:
			problems.push(`${name} must start with mysql://, mariadb:// or sqlite:, got "${url.protocol}"`);
			return fallback;
	}
}

/** The services that keep a database, by its logical name (`DbMixin({ database })`): what DATABASE_URL_<NAME> may name. */
export const DATABASE_SERVICES = ["user", "concert", "reservation", "saga", "payment", "review", "notification"];

/** The database server of one service's database: its DATABASE_URL_<SERVICE>, or DATABASE_URL. */
export function sqlFor(config: Pick<Config, "sql" | "sqlByService">, database: string): SqlConfig {
	return config.sqlByService?.[database] ?? config.sql;
}

/** What tells two database servers apart: host, port and user on MariaDB, the directory on SQLite. */
export function sqlServerKey(sql: SqlConfig): string {
	return sql.dialect === "mysql" ? `${sql.host}:${sql.port}:${sql.user}` : `sqlite:${sql.dir}`;
}

/** Every distinct database server of the install (DATABASE_URL first): health probes, a run's clean-up. */
export function sqlServers(config: Pick<Config, "sql" | "sqlByService">): SqlConfig[] {
	const out: SqlConfig[] = [];
	const seen = new Set<string>();
	for (const sql of [config.sql, ...Object.values(config.sqlByService ?? {})]) {
		const key = sqlServerKey(sql);
		if (seen.has(key)) continue;
		seen.add(key);
		out.push(sql);
	}
	return out;
}

/**
 * REDIS_URL and REDIS_CLUSTER_NODES. A Redis Cluster is named either by REDIS_CLUSTER_NODES=host:port,host:port
 * (credentials and rediss:// from REDIS_URL when it is set) or by several hosts in REDIS_URL itself
 * (redis://:password@host1:7000,host2:7001). Any node of the cluster is enough as a seed; more survive the loss
 * of one at start-up.
 */
function parseRedis(rawUrl: string | undefined, rawNodes: string | undefined, problems: string[]): Config["redis"] {
	if ((!rawUrl || rawUrl === "memory") && !rawNodes) return undefined;
	let url = rawUrl && rawUrl !== "memory" ? rawUrl : undefined;
	let nodes: string[] | undefined;
	if (url) {
		const m = /^(rediss?:\/\/)([^\s/?#]*@)?([^\s/?#]+)(.*)$/i.exec(url);
		if (!m) {
			problems.push(`REDIS_URL must look like redis://host:6379, got "${redactUrl(url)}"`);
			return { url };
		}
		const hosts = m[3].split(",");
		if (hosts.length > 1) {
			nodes = hosts;
			url = `${m[1]}${m[2] ?? ""}${hosts[0]}${m[4]}`;
		}
	}
	if (rawNodes) {
		if (nodes) problems.push("REDIS_CLUSTER_NODES and a REDIS_URL with several hosts name the cluster twice: give one of them");
		nodes = rawNodes.split(",").map(n => n.trim());
	}
	if (!nodes) return { url: url! };
	if (url && /^rediss?:\/\/[^/?#]*\/(?!0?(?:[?#]|$))/i.test(url)) problems.push("a Redis Cluster has only database 0: give REDIS_URL no /<db>");
	const bad = nodes.filter(n => !/^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(n) || Number(n.slice(n.lastIndexOf(":") + 1)) > 65535);
	if (bad.length > 0) problems.push(`Redis Cluster nodes must be host:port, comma-separated, got "${bad.map(redactUrl).join(",")}"`);
	if (!url) url = `redis://${nodes[0]}`;
	return { url, clusterNodes: nodes };
}

/**
 * TRANSPORTER: one or more comma-separated `nats://` (or `tls://`) URLs. Credentials in a URL are taken out of
 * it (user:password, or a lone user part as a token) so they travel to the client as options, the way
 * NATS_USER/NATS_PASSWORD/NATS_TOKEN do; the URL kept in the config is the redacted one.
 */
function parseNatsUrl(raw: string, problems: string[]): NatsConfig | undefined {
	const servers: string[] = [];
	let user: string | undefined;
	let password: string | undefined;
	let token: string | undefined;
	for (const part of raw.split(",").map(p => p.trim())) {
		let url: URL | undefined;
		try {
			url = /^(nats|tls):\/\/[^\s]+$/i.test(part) ? new URL(part) : undefined;
		} catch {
			url = undefined;
		}
		if (!url || !url.hostname || (url.pathname && url.pathname !== "/") || url.search || url.hash) {
			problems.push(`TRANSPORTER must be NATS URLs such as nats://127.0.0.1:4222 (comma-separated), got "${redactUrl(raw)}"`);
			return undefined;
		}
		servers.push(`${url.hostname}:${url.port || "4222"}`);
		const u = url.username ? decode(url.username) : undefined;
		const p = url.password ? decode(url.password) : undefined;
		if ((url.username && u === undefined) || (url.password && p === undefined)) {
			problems.push("TRANSPORTER has a broken %-escape in its credentials");
			return undefined;
		}
		if (u !== undefined && p !== undefined) {
			user ??= u;
			password ??= p;
		} else if (u !== undefined) {
			token ??= u;
		}
	}
	return { url: redactUrl(raw), servers, user, password, token };
}

/** decodeURIComponent that answers undefined instead of throwing URIError (and printing what it failed on). */
function decode(s: string): string | undefined {
	try {
		return decodeURIComponent(s);
	} catch {
		return undefined;
	}
}

/**
 * Hides the credentials of a URL (or a comma-separated list of them) before it goes into a message or a log line:
 * everything between the first `scheme://` and the last `@`, whatever characters the password holds (a `,`, `/` or
 * `@` in it must not let a part of it through, even if that hides a server name of a list too).
 */
export function redactUrl(raw: string): string {
	const withScheme = /^(\s*[a-z][a-z0-9+.-]*:\/\/)(.*)@/is;
	if (withScheme.test(raw)) {
		return raw.replace(withScheme, (_, scheme: string, cred: string) => (/^[^:,/]+:/.test(cred) ? `${scheme}${cred.split(":")[0]}:***@` : `${scheme}***@`));
	}
	// Not even `scheme://` (mysql//root:pw@db, crp:pw@host): everything before the last @ may be a password.
	return raw.replace(/^.*@/s, "***@");
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

/** The metrics port of worker `slot` (1-based) of a node whose first worker listens on `base` (0: metrics off). */
export function metricsPortOf(base: number, slot: number): number {
	return base > 0 ? base + slot - 1 : 0;
}
