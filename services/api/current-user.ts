/**
 * Who a valid token's subject is now. A token is signed for JWT_EXPIRES_SEC (15 min by default); the account it
 * names may be deleted or lose its admin role in the meantime. The gateway therefore takes the role from the
 * user service, not from the token, and refuses a token whose user no longer exists. Answers are kept per gateway
 * process for `ttlMs` (AUTH_CACHE_SEC): a role change or a deletion takes effect within that time, and a flash-sale
 * crowd polling its waiting-room token costs one lookup per user per period, not one per request. Lookups of one
 * user in flight at once are shared. The cache is bounded (lru-cache, the
 * platform's one eviction rule): the least recently used entries go first.
 *
 * Lookups are batched: the users missed during one turn of the event loop, and those missed while a batch is on its
 * way, are asked for in one call (`user.getMany`, one `WHERE id IN (...)`), up to `batchMax` at a time. One call
 * per user cost a NATS round trip, a context on both nodes and a query each, and in a flash sale (thousands of
 * users seen for the first time within seconds) it was most of the gateway's and the catalog's work: waiting-room
 * entries fell from 2,773/s to 1,042/s and status reads from 8,039/s to 5,307/s when it came in, and a 10,000-user
 * sale stalled on lookups that timed out (BENCHMARKS.md). The answers are the same; only their grouping changed.
 *
 * When the user service cannot answer, the request fails (503): a token alone is not proof of a current account.
 */
import { LRUCache } from "lru-cache";
import type { AuthUser, Role } from "../../lib/auth";

/** The accounts that exist among `ids` (a missing id is a deleted account). */
export type LookupUsers = (ids: string[]) => Promise<{ id: string; email: string; role: Role }[]>;

interface Entry {
	user: AuthUser | null;
	until: number;
}

interface Waiting {
	resolve(user: AuthUser | null): void;
	reject(err: unknown): void;
}

export class CurrentUsers {
	private readonly entries: LRUCache<string, Entry>;
	private readonly inFlight = new Map<string, Promise<AuthUser | null>>();
	/** Missed ids not yet asked for, each with the requests waiting for it. */
	private queued = new Map<string, Waiting>();
	private flushing = false;

	constructor(
		private readonly lookup: LookupUsers,
		private readonly ttlMs: number,
		max = 50_000,
		private readonly now: () => number = Date.now,
		private readonly batchMax = 200
	) {
		this.entries = new LRUCache({ max });
	}

	/** The account behind a verified token: its current role, or null when it no longer exists. */
	async resolve(claims: AuthUser): Promise<AuthUser | null> {
		const hit = this.entries.get(claims.id);
		if (hit && hit.until > this.now()) return hit.user;
		let pending = this.inFlight.get(claims.id);
		if (!pending) {
			pending = this.fetch(claims.id).finally(() => this.inFlight.delete(claims.id));
			this.inFlight.set(claims.id, pending);
		}
		return pending;
	}

	/** Forget one user (or everyone): the next request looks again. */
	invalidate(id?: string): void {
		if (id === undefined) this.entries.clear();
		else this.entries.delete(id);
	}

	private fetch(id: string): Promise<AuthUser | null> {
		return new Promise<AuthUser | null>((resolve, reject) => {
			this.queued.set(id, { resolve, reject });
			if (!this.flushing) {
				this.flushing = true;
				setImmediate(() => void this.drain());
			}
		});
	}

	/** Asks for the queued ids, `batchMax` at a time, until none is left (those queued meanwhile included). */
	private async drain(): Promise<void> {
		try {
			while (this.queued.size > 0) {
				const batch = new Map<string, Waiting>();
				for (const [id, w] of this.queued) {
					if (batch.size >= this.batchMax) break;
					batch.set(id, w);
				}
				for (const id of batch.keys()) this.queued.delete(id);
				await this.ask(batch);
			}
		} finally {
			this.flushing = false;
		}
	}

	private async ask(batch: Map<string, Waiting>): Promise<void> {
		let rows: Awaited<ReturnType<LookupUsers>>;
		try {
			rows = await this.lookup([...batch.keys()]);
		} catch (err) {
			for (const w of batch.values()) w.reject(err);
			return;
		}
		const found = new Map(rows.map(r => [r.id, r]));
		for (const [id, w] of batch) {
			const row = found.get(id);
			const user = row ? { id: row.id, email: row.email, role: row.role } : null;
			if (this.ttlMs > 0) this.entries.set(id, { user, until: this.now() + this.ttlMs });
			w.resolve(user);
		}
	}
}
