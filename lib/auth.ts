/**
 * Access tokens and password hashes. Tokens are HS256 JWTs; verification pins the algorithm (no `none`, no
 * RS/HS confusion), the issuer and the audience, and requires an expiry.
 */
import crypto from "crypto";
import jwt from "jsonwebtoken";
import { LRUCache } from "lru-cache";

export type Role = "user" | "admin";

export interface AuthUser {
	id: string;
	email: string;
	role: Role;
}

const ALGORITHM = "HS256" as const;

/**
 * jsonwebtoken turns a string secret into a key object on every call (about 0.7 ms of CPU, most of the gateway's
 * time under load); the key object is built once per secret instead (about 13 µs per verify).
 */
const keys = new Map<string, crypto.KeyObject>();
function keyOf(secret: string): crypto.KeyObject {
	let key = keys.get(secret);
	if (!key) {
		key = crypto.createSecretKey(Buffer.from(secret, "utf8"));
		keys.set(secret, key);
	}
	return key;
}
const ISSUER = "concert-reservation-platform";
const AUDIENCE = "crp-api";

export function signAccessToken(user: AuthUser, secret: string, expiresInSec: number): string {
	return jwt.sign({ email: user.email, role: user.role }, keyOf(secret), {
		algorithm: ALGORITHM,
		subject: user.id,
		issuer: ISSUER,
		audience: AUDIENCE,
		expiresIn: expiresInSec
	});
}

/**
 * Tokens this process verified, until they expire: a client sends the same token with every request (a waiting
 * room polls it every few hundred milliseconds), and the HMAC check and JSON decoding were a tenth of the
 * gateway's CPU per status read. A hit is the exact same string under the same secret, so it is the same
 * verdict; the expiry is still checked on every use. Bounded: the least recently used go first.
 */
const VERIFIED_MAX = 20_000;
const verified = new LRUCache<string, { secret: string; user: AuthUser; expMs: number }>({ max: VERIFIED_MAX });

/** Returns the user the token names, or null for any invalid, tampered, foreign or expired token. */
export function verifyAccessToken(token: string, secret: string): AuthUser | null {
	const hit = verified.get(token);
	if (hit && hit.secret === secret) {
		// jsonwebtoken's rule: expired once now (in whole seconds) reaches exp.
		if (Math.floor(Date.now() / 1000) * 1000 < hit.expMs) return hit.user;
		verified.delete(token);
		return null;
	}
	const user = verifyUncached(token, secret);
	if (user) {
		verified.set(token, { secret, user: user.user, expMs: user.exp * 1000 });
	}
	return user?.user ?? null;
}

function verifyUncached(token: string, secret: string): { user: AuthUser; exp: number } | null {
	try {
		const claims = jwt.verify(token, keyOf(secret), {
			algorithms: [ALGORITHM],
			issuer: ISSUER,
			audience: AUDIENCE
		});
		if (typeof claims !== "object" || claims === null) return null;
		const { sub, email, role, exp } = claims as jwt.JwtPayload;
		if (typeof sub !== "string" || typeof email !== "string" || typeof exp !== "number") return null;
		if (role !== "user" && role !== "admin") return null;
		return { user: { id: sub, email, role }, exp };
	} catch {
		return null;
	}
}

// scrypt parameters: N=2^14, r=8, p=1 (about 30-60 ms per hash on one core here, 16 MiB of memory).
const SCRYPT = { N: 16384, r: 8, p: 1, keyLen: 32, maxmem: 64 * 1024 * 1024 };

/** The hash gate's queue is full: too many logins or sign-ups at once on this process. */
export class HashBusyError extends Error {
	constructor() {
		super("password hashing is saturated on this node");
		this.name = "HashBusyError";
	}
}

/**
 * At most `concurrency` password hashes at once per process, at most `queue` waiting; past that HashBusyError.
 * scrypt runs on libuv's thread pool (4 threads), beside the event loops of every process on the machine: a burst
 * of 150 logins once took the other requests' latency from 9 to 131 ms on two cores. Written here rather than
 * with Moleculer's bulkhead because what needs a bound is the hash, shared by login, sign-up and the bootstrap
 * admin (a bulkhead is per action), and because a full bulkhead answers a 503 that counts against the circuit
 * breaker, where this becomes a 429 that does not.
 */
class HashGate {
	private running = 0;
	private readonly waiting: { start(): void; timer?: NodeJS.Timeout }[] = [];

	constructor(
		public concurrency = 1,
		public queue = 64,
		/**
		 * How long a request may wait for its turn. Past it the answer is a 429 at once rather than a hash that
		 * finishes after the caller's request timeout (a 504, a server fault, and a hash nobody waits for).
		 */
		public maxWaitMs = 3000
	) {}

	async run<T>(fn: () => Promise<T>): Promise<T> {
		if (this.running >= this.concurrency) {
			if (this.waiting.length >= this.queue) throw new HashBusyError();
			await new Promise<void>((resolve, reject) => {
				const entry: { start(): void; timer?: NodeJS.Timeout } = {
					start: () => {
						clearTimeout(entry.timer);
						resolve();
					}
				};
				entry.timer = setTimeout(() => {
					const i = this.waiting.indexOf(entry);
					if (i >= 0) this.waiting.splice(i, 1);
					reject(new HashBusyError());
				}, this.maxWaitMs);
				this.waiting.push(entry);
			});
		} else {
			this.running++;
		}
		try {
			return await fn();
		} finally {
			// Hand the slot straight to the next in line (running stays the same), or give it back.
			const next = this.waiting.shift();
			if (next) next.start();
			else this.running--;
		}
	}
}

const hashGate = new HashGate();

/** PASSWORD_HASH_CONCURRENCY, PASSWORD_HASH_QUEUE and PASSWORD_HASH_WAIT_MS (the user service sets them at start). */
export function setPasswordHashLimits(limits: { concurrency: number; queue: number; maxWaitMs?: number }): void {
	hashGate.concurrency = limits.concurrency;
	hashGate.queue = limits.queue;
	if (limits.maxWaitMs !== undefined) hashGate.maxWaitMs = limits.maxWaitMs;
}

function scrypt(password: string, salt: Buffer, N: number, r: number, p: number, keyLen: number): Promise<Buffer> {
	return hashGate.run(
		() =>
			new Promise((resolve, reject) =>
				crypto.scrypt(password, salt, keyLen, { N, r, p, maxmem: SCRYPT.maxmem }, (err, key) => (err ? reject(err) : resolve(key)))
			)
	);
}

/** `scrypt$N$r$p$salt$hash`, base64url parts: the parameters travel with the hash so they can be raised later. */
export async function hashPassword(password: string): Promise<string> {
	const salt = crypto.randomBytes(16);
	const key = await scrypt(password, salt, SCRYPT.N, SCRYPT.r, SCRYPT.p, SCRYPT.keyLen);
	return ["scrypt", SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString("base64url"), key.toString("base64url")].join("$");
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
	const parts = stored.split("$");
	if (parts.length !== 6 || parts[0] !== "scrypt") return false;
	const [, n, r, p, saltB64, keyB64] = parts;
	const expected = Buffer.from(keyB64, "base64url");
	const key = await scrypt(password, Buffer.from(saltB64, "base64url"), Number(n), Number(r), Number(p), expected.length);
	return crypto.timingSafeEqual(key, expected);
}

/** A hash to verify against when the user does not exist, so a login costs the same either way. */
let dummyHash: Promise<string> | undefined;
export function dummyPasswordHash(): Promise<string> {
	dummyHash ??= hashPassword(crypto.randomBytes(16).toString("hex")).catch(err => {
		dummyHash = undefined;
		throw err;
	});
	return dummyHash;
}
