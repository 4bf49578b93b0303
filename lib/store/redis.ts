import Redis, { ReplyError } from "ioredis";
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
type ScriptedRedis = Redis & Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;

export interface RedisStoreOptions {
	url: string;
	prefix: string;
	/** Give up on a command after this long when Redis does not answer (ms). */
	commandTimeoutMs?: number;
}

export class RedisStore implements CoordinationStore {
	readonly kind = "redis" as const;
	readonly prefix: string;
	readonly redis: ScriptedRedis;

	constructor(opts: RedisStoreOptions) {
		this.prefix = opts.prefix;
		const client = new Redis(opts.url, {
			keyPrefix: opts.prefix,
			// Fail a command quickly instead of queueing it forever while Redis is down: callers see a retryable
			// error and the health check turns red.
			maxRetriesPerRequest: 2,
			commandTimeout: opts.commandTimeoutMs ?? 2000,
			enableAutoPipelining: true,
			lazyConnect: false,
			retryStrategy: times => Math.min(times * 200, 2000)
		});
		// Connection errors surface through the failed commands; without a listener ioredis logs them unhandled.
		client.on("error", () => undefined);
		for (const [name, s] of Object.entries(SCRIPTS)) {
			client.defineCommand(name, { numberOfKeys: s.numberOfKeys, lua: s.lua });
		}
		this.redis = client as ScriptedRedis;
	}

	async ping(): Promise<void> {
		await this.wrap(this.redis.ping());
	}

	async get(key: string): Promise<string | null> {
		return this.wrap(this.redis.get(key));
	}

	async set(key: string, value: string, opts: SetOptions = {}): Promise<boolean> {
		const ttl = opts.ttlMs;
		if (ttl !== undefined && (!Number.isFinite(ttl) || ttl <= 0)) {
			throw new Error(`ttlMs must be a positive number, got ${ttl}`);
		}
		let res: string | null;
		if (ttl !== undefined && opts.ifAbsent) res = await this.wrap(this.redis.set(key, value, "PX", Math.ceil(ttl), "NX"));
		else if (ttl !== undefined) res = await this.wrap(this.redis.set(key, value, "PX", Math.ceil(ttl)));
		else if (opts.ifAbsent) res = await this.wrap(this.redis.set(key, value, "NX"));
		else res = await this.wrap(this.redis.set(key, value));
		return res === "OK";
	}

	async del(...keys: string[]): Promise<number> {
		if (keys.length === 0) return 0;
		return this.wrap(this.redis.del(...keys));
	}

	async incr(key: string, opts: { by?: number; ttlMs?: number } = {}): Promise<number> {
		const v = await this.wrap(this.redis.incrTtl(key, opts.by ?? 1, Math.ceil(opts.ttlMs ?? 0)));
		return Number(v);
	}

	async ttl(key: string): Promise<number | null> {
		const v = await this.wrap(this.redis.pttl(key));
		if (v === -2) return null;
		return v;
	}

	async acquireLease(key: string, owner: string, ttlMs: number): Promise<boolean> {
		return Number(await this.wrap(this.redis.leaseAcquire(key, owner, Math.ceil(ttlMs)))) === 1;
	}

	async releaseLease(key: string, owner: string): Promise<boolean> {
		return Number(await this.wrap(this.redis.leaseRelease(key, owner))) === 1;
	}

	async leaseOwner(key: string): Promise<string | null> {
		return this.get(key);
	}

	async clear(): Promise<number> {
		// SCAN does not apply keyPrefix, DEL does: match with the prefix, delete without it.
		let cursor = "0";
		let n = 0;
		do {
			const [next, keys] = await this.wrap(this.redis.scan(cursor, "MATCH", `${this.prefix}*`, "COUNT", 500));
			cursor = next;
			if (keys.length > 0) n += await this.wrap(this.redis.unlink(...keys.map(k => k.slice(this.prefix.length))));
		} while (cursor !== "0");
		return n;
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

	private wrap<T>(p: Promise<T>): Promise<T> {
		return redisCall(p);
	}
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
