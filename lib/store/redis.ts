import Redis, { Cluster, ReplyError, type ClusterOptions } from "ioredis";
import type { CoordinationStore, SetOptions } from "./types";
import { StoreUnavailableError } from "./types";

/**
 * Lua scripts: each one is a single atomic step on the Redis server, the same unit of atomicity that one
 * synchronous call gives in MemoryStore. ioredis prefixes KEYS with the install prefix.
 */
const SCRIPTS = {
	/** INCRBY, then set the expiry only if the key has none (a fixed window counter). */
	incrTtl: {
		numberOfKeys: 1,
		lua: `
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl > 0 and redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ttl) end
return v`
	},
	/** Take a free lease or renew our own. */
	leaseAcquire: {
		numberOfKeys: 1,
		lua: `
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`
	},
	/** Compare-and-delete: only the owner releases. */
	leaseRelease: {
		numberOfKeys: 1,
		lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`
	}
} as const;

type ScriptName = keyof typeof SCRIPTS;
/**
 * The client a store talks to: one server (`Redis`) or a Redis Cluster (`Cluster`). Both have the same command
 * methods with the same signatures; what differs (SCAN, multi-key commands across slots) goes through the helpers
 * of `RedisStore` below (`scanKeys`, `unlinkMatching`, `del`).
 */
export type RedisClient = Redis | Cluster;
type ScriptedRedis = RedisClient & Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;

export interface RedisStoreOptions {
	url: string;
	prefix: string;
	/** Give up on a command after this long when Redis does not answer (ms). */
	commandTimeoutMs?: number;
	/**
	 * Seed nodes (`host:port`) of a Redis Cluster: the store then uses ioredis' cluster client, and `url` only gives
	 * the scheme (rediss:// for TLS) and the credentials every node shares.
	 */
	clusterNodes?: string[];
	/**
	 * Cluster only: how long a command keeps being retried inside the client while a failover runs (the master of
	 * its slot died and a replica is being promoted: CLUSTERDOWN, TRYAGAIN, connections refused) before it fails
	 * as `StoreUnavailableError`. Somewhat more than the cluster's `cluster-node-timeout` plus an election: the
	 * default 8000 ms (REDIS_FAILOVER_BUDGET_MS) suits a `cluster-node-timeout` of 5 s; Redis' default of 15 s needs
	 * about 20000 (the failover test's 1.5 s cluster recovers in 3.5-4 s).
	 */
	failoverBudgetMs?: number;
}

/** The pause between two tries of a command during a failover (cluster only). */
const FAILOVER_RETRY_MS = 200;

export class RedisStore implements CoordinationStore {
	readonly kind = "redis" as const;
	readonly prefix: string;
	readonly redis: ScriptedRedis;
	/** True when `redis` is a cluster client. */
	readonly clustered: boolean;
	/** Cluster only: a command still unanswered after this long fails as unavailable (see `failoverBudgetMs`). */
	private readonly deadlineMs: number | undefined;

	constructor(opts: RedisStoreOptions) {
		this.prefix = opts.prefix;
		const commandTimeout = opts.commandTimeoutMs ?? 2000;
		let client: RedisClient;
		if (opts.clusterNodes && opts.clusterNodes.length > 0) {
			const cluster = createClusterClient(opts, commandTimeout);
			// Queue commands only until the cluster is first reached (a node starting beside its Redis). After that, a
			// cluster with no usable connection at all fails commands at once, as the single-server client does:
			// queued, they would pile up for as long as the outage lasts and then all run late, after their callers
			// were answered 503 (holds for buyers who left, leases for work nobody does). A failover of one master
			// does not go through this queue: the cluster stays "ready" and its commands take the retry path below.
			cluster.once("ready", () => {
				cluster.options.enableOfflineQueue = false;
			});
			client = cluster;
			this.clustered = true;
			// Past the nodes' own command timeout (the failover budget, see createClusterClient): this one catches
			// commands that never reached a node (queued while the client had no usable connection at all).
			this.deadlineMs = Math.max(commandTimeout, opts.failoverBudgetMs ?? 8000) + 1000;
		} else {
			client = new Redis(opts.url, {
				keyPrefix: opts.prefix,
				// Fail a command quickly instead of queueing it forever while Redis is down: callers see a retryable
				// error and the health check turns red.
				maxRetriesPerRequest: 2,
				commandTimeout,
				enableAutoPipelining: true,
				lazyConnect: false,
				retryStrategy: times => Math.min(times * 200, 2000)
			});
			this.clustered = false;
		}
		// Connection errors surface through the failed commands; without a listener ioredis logs them unhandled.
		client.on("error", () => undefined);
		// A cluster client that lost a node emits its errors on the node's own client too ("node error").
		if (client instanceof Cluster) client.on("node error", () => undefined);
		for (const [name, s] of Object.entries(SCRIPTS)) {
			client.defineCommand(name, { numberOfKeys: s.numberOfKeys, lua: s.lua });
		}
		this.redis = client as ScriptedRedis;
	}

	/**
	 * Awaits one of this client's commands as `redisCall` does, and on a cluster also bounds the wait: a command
	 * queued while the cluster client has no usable connection (every node unreachable) would otherwise wait for
	 * as long as the client keeps reconnecting. Domain stores built on `redis` use it for their commands.
	 */
	call<T>(p: Promise<T>): Promise<T> {
		if (this.deadlineMs === undefined) return redisCall(p);
		return redisCall(withDeadline(p, this.deadlineMs));
	}

	/**
	 * One PING. On a cluster it goes to any node, so it fails only when the cluster as a whole is unreachable: a
	 * failover of one master (the cluster's state "fail" for the 15-20 s a stock cluster takes) must not turn every
	 * gateway's health red at once, since the commands for that master's slots are retried meanwhile
	 * (`failoverBudgetMs`). It also stays one command per health check, whatever the number of masters.
	 */
	async ping(): Promise<void> {
		await this.call(this.redis.ping());
	}

	async get(key: string): Promise<string | null> {
		return this.call(this.redis.get(key));
	}

	async set(key: string, value: string, opts: SetOptions = {}): Promise<boolean> {
		const ttl = opts.ttlMs;
		if (ttl !== undefined && (!Number.isFinite(ttl) || ttl <= 0)) {
			throw new Error(`ttlMs must be a positive number, got ${ttl}`);
		}
		let res: string | null;
		if (ttl !== undefined && opts.ifAbsent) res = await this.call(this.redis.set(key, value, "PX", Math.ceil(ttl), "NX"));
		else if (ttl !== undefined) res = await this.call(this.redis.set(key, value, "PX", Math.ceil(ttl)));
		else if (opts.ifAbsent) res = await this.call(this.redis.set(key, value, "NX"));
		else res = await this.call(this.redis.set(key, value));
		return res === "OK";
	}

	async del(...keys: string[]): Promise<number> {
		if (keys.length === 0) return 0;
		// A multi-key DEL on a cluster is refused (CROSSSLOT) unless every key is in one slot: one DEL per key, all
		// sent at once. Each key's DEL is atomic, the set of them is not; no caller relies on that (the domain
		// stores delete a slot's keys in one command of their own).
		if (this.clustered && keys.length > 1) {
			const counts = await Promise.all(keys.map(k => this.call(this.redis.del(k))));
			return counts.reduce((a, b) => a + b, 0);
		}
		return this.call(this.redis.del(...keys));
	}

	async incr(key: string, opts: { by?: number; ttlMs?: number } = {}): Promise<number> {
		const v = await this.call(this.redis.incrTtl(key, opts.by ?? 1, Math.ceil(opts.ttlMs ?? 0)));
		return Number(v);
	}

	async ttl(key: string): Promise<number | null> {
		const v = await this.call(this.redis.pttl(key));
		if (v === -2) return null;
		return v;
	}

	async acquireLease(key: string, owner: string, ttlMs: number): Promise<boolean> {
		return Number(await this.call(this.redis.leaseAcquire(key, owner, Math.ceil(ttlMs)))) === 1;
	}

	async releaseLease(key: string, owner: string): Promise<boolean> {
		return Number(await this.call(this.redis.leaseRelease(key, owner))) === 1;
	}

	async leaseOwner(key: string): Promise<string | null> {
		return this.get(key);
	}

	async clear(): Promise<number> {
		return this.unlinkMatching("*");
	}

	/**
	 * Keys of this install matching `pattern` (a SCAN glob relative to the prefix), without the prefix. On a cluster
	 * SCAN only sees the node it is sent to, so every master is scanned. For tests, resets and tools: SCAN walks the
	 * whole keyspace.
	 */
	async scanKeys(pattern: string): Promise<string[]> {
		const out: string[] = [];
		await this.eachScanned(pattern, async keys => {
			out.push(...keys.map(k => k.slice(this.prefix.length)));
		});
		return out;
	}

	/** Deletes (UNLINK) every key of this install matching `pattern` (relative to the prefix); returns how many. */
	async unlinkMatching(pattern: string): Promise<number> {
		let n = 0;
		await this.eachScanned(pattern, async (keys, node) => {
			if (node) {
				// A node's own client has no key prefix (the prefix is the cluster client's), and one UNLINK of keys
				// of several slots is refused even when one node serves them all: one UNLINK per key.
				const counts = await Promise.all(keys.map(k => this.call(node.unlink(k))));
				n += counts.reduce((a, b) => a + b, 0);
			} else {
				// SCAN does not apply keyPrefix, UNLINK does: match with the prefix, delete without it.
				n += await this.call(this.redis.unlink(...keys.map(k => k.slice(this.prefix.length))));
			}
		});
		return n;
	}

	/** Runs `each` on every SCAN batch of full (prefixed) keys; `node` is the master they are on (cluster only). */
	private async eachScanned(pattern: string, each: (keys: string[], node?: Redis) => Promise<void>): Promise<void> {
		const match = `${globEscape(this.prefix)}${pattern}`;
		const scanOne = async (client: Redis, node?: Redis) => {
			let cursor = "0";
			do {
				const [next, keys] = await this.call(client.scan(cursor, "MATCH", match, "COUNT", 500));
				cursor = next;
				if (keys.length > 0) await each(keys, node);
			} while (cursor !== "0");
		};
		if (this.redis instanceof Cluster) {
			// Wait for the slot map, so `nodes` lists every master even right after the client was made.
			if (this.redis.status !== "ready") await this.call(this.redis.ping());
			await Promise.all(this.redis.nodes("master").map(node => scanOne(node, node)));
		} else {
			await scanOne(this.redis);
		}
	}

	async close(): Promise<void> {
		if (this.redis.status === "ready") {
			try {
				await this.redis.quit();
				return;
			} catch {
				// fall through to a hard disconnect
			}
		}
		this.redis.disconnect();
		// Let the socket's close event run so no handle outlives the store.
		await new Promise(resolve => setImmediate(resolve));
	}
}

/**
 * The cluster client. Its retry rules are what makes a failover invisible to callers when it ends in time:
 * - MOVED/ASK (a slot moved) are followed at once, and the slot map is refreshed;
 * - CLUSTERDOWN (a slot has no master yet), TRYAGAIN (a slot being migrated) and a connection to a master that
 *   closed or refuses (it died and its replica is not promoted yet) are tried again every FAILOVER_RETRY_MS, with
 *   the slot map refreshed, until `failoverBudgetMs` is spent (each try counts against `maxRedirections`);
 * - past that the command fails, and `redisCall` turns it into `StoreUnavailableError` (a 503 with Retry-After).
 * A command the dead master ran but did not answer is sent again to its successor: the scripts here are idempotent
 * for the same caller (a hold by the same owner, an entry by the same user), and counters may count twice.
 */
function createClusterClient(opts: RedisStoreOptions, commandTimeout: number): Cluster {
	const url = new URL(opts.url);
	const tls = url.protocol === "rediss:";
	const budget = opts.failoverBudgetMs ?? 8000;
	const nodes = opts.clusterNodes!.map(n => {
		const i = n.lastIndexOf(":");
		return { host: n.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(n.slice(i + 1)) };
	});
	const options: ClusterOptions = {
		// The prefix is the cluster client's own, not its nodes' (redisOptions): the nodes' clients stay raw, which
		// `unlinkMatching` relies on.
		keyPrefix: opts.prefix,
		scaleReads: "master",
		// No auto-pipelining on a cluster: ioredis retries a failed pipeline (which is what an auto-pipelined batch
		// is) only when every command of it failed with the same error, so in a failover a batch that mixes slots of
		// the dead master gets its MOVED / "Connection is closed" errors surfaced instead of retried (measured:
		// a third of the writes failed at once). Without it each command takes the retry path below; ioredis still
		// writes commands to a node's socket without waiting for the previous reply.
		enableAutoPipelining: false,
		enableOfflineQueue: true,
		retryDelayOnFailover: FAILOVER_RETRY_MS,
		retryDelayOnClusterDown: FAILOVER_RETRY_MS,
		retryDelayOnTryAgain: FAILOVER_RETRY_MS,
		retryDelayOnMoved: 0,
		// Every try during a failover counts, and a refused master costs two (the MOVED that points at it, then the
		// refusal): twice the tries the budget allows, plus a few plain redirections.
		maxRedirections: 2 * Math.ceil(budget / FAILOVER_RETRY_MS) + 8,
		slotsRefreshTimeout: 1000,
		slotsRefreshInterval: 5000,
		// The whole cluster unreachable: keep trying to reconnect, never give up (commands meanwhile fail by the
		// store's deadline, not by this).
		clusterRetryStrategy: times => Math.min(100 * times, 2000),
		redisOptions: {
			username: url.username ? decodeURIComponent(url.username) : undefined,
			password: url.password ? decodeURIComponent(url.password) : undefined,
			// Each node is reached at the address the cluster announces; the certificate is checked against the URL's host.
			tls: tls ? { servername: url.hostname } : undefined,
			// A command's timer starts when it is first sent to a node and is not restarted by the retries, so it is
			// the whole retry budget here: a command sent to a master that then died keeps being retried until
			// `failoverBudgetMs`, then fails. (A node that hangs without closing holds a command that long too.)
			commandTimeout: Math.max(commandTimeout, budget),
			connectTimeout: Math.max(commandTimeout, 2000),
			// A node's socket that does not close by itself is destroyed after this (ioredis waits 2 s by default,
			// which keeps a closing process alive that long for each node it tried).
			disconnectTimeout: 500,
			maxRetriesPerRequest: 2
		}
	};
	return new Cluster(nodes, options);
}

/** Rejects with a connection-level error when `p` has not settled after `ms` (the command itself is not cancelled). */
function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
	return new Promise<T>((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error("coordination store command deadline passed")), ms);
		p.then(
			v => {
				clearTimeout(timer);
				resolve(v);
			},
			err => {
				clearTimeout(timer);
				reject(err);
			}
		);
	});
}

/** A prefix as a literal SCAN glob (an install prefix may hold glob characters such as `[`, `*`, `?`). */
function globEscape(s: string): string {
	return s.replace(/[*?[\]\\]/g, c => `\\${c}`);
}

/**
 * Awaits a Redis command, turning connection-level failures into a retryable error with no address in its
 * message. Domain store modules built on `RedisStore.redis` use it too.
 */
export async function redisCall<T>(p: Promise<T>): Promise<T> {
	try {
		return await p;
	} catch (err) {
		if (isUnavailable(err)) throw new StoreUnavailableError("coordination store unavailable");
		throw err;
	}
}

/** Replies by which a server says "not now" (restarting, a replica without its primary), not "this is wrong". */
const UNAVAILABLE_REPLIES = new Set(["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY"]);

/**
 * Whether a failed command says the store is unreachable rather than that the command was wrong, by the error's
 * kind, never its wording: a reply from the server (`ReplyError`: a script error, a wrong type) is the command's
 * fault unless its code is one of the "not now" ones above; anything else ioredis raises (a refused or reset
 * socket, "Connection is closed", a command timeout, `MaxRetriesPerRequestError`) means no server answered;
 * a TypeError or RangeError is a bug of ours and stays what it is.
 */
export function isUnavailable(err: unknown): boolean {
	if (err instanceof ReplyError) return UNAVAILABLE_REPLIES.has(String((err as Error).message).split(" ", 1)[0]);
	return err instanceof Error && !(err instanceof TypeError || err instanceof RangeError);
}
