/**
 * Who a valid token's subject is now. A token is signed for JWT_EXPIRES_SEC (15 min by default); the account it
 * names may be deleted or lose its admin role in the meantime. The gateway therefore takes the role from the
 * user service, not from the token, and refuses a token whose user no longer exists. Answers are kept per gateway
 * process for `ttlMs` (AUTH_CACHE_SEC): a role change or a deletion takes effect within that time, and a flash-sale
 * crowd polling its waiting-room token costs one lookup per user per period, not one per request. Lookups of one
 * user in flight at once are shared. The cache is bounded (lru-cache, the
 * platform's one eviction rule): the least recently used entries go first.
 *
 * When the user service cannot answer, the request fails (503): a token alone is not proof of a current account.
 */
import { LRUCache } from "lru-cache";
import type { AuthUser, Role } from "../../lib/auth";

export type LookupUser = (id: string) => Promise<{ id: string; email: string; role: Role } | null>;

interface Entry {
	user: AuthUser | null;
	until: number;
}

export class CurrentUsers {
	private readonly entries: LRUCache<string, Entry>;
	private readonly inFlight = new Map<string, Promise<AuthUser | null>>();

	constructor(
		private readonly lookup: LookupUser,
		private readonly ttlMs: number,
		max = 50_000,
		private readonly now: () => number = Date.now
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

	private async fetch(id: string): Promise<AuthUser | null> {
		const row = await this.lookup(id);
		const user = row ? { id: row.id, email: row.email, role: row.role } : null;
		if (this.ttlMs > 0) {
			this.entries.set(id, { user, until: this.now() + this.ttlMs });
		}
		return user;
	}
}
