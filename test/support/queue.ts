/**
 * Test helpers for the waiting room: a stand-in for the one concert action the queue calls (`concert.get`, until
 * the concert service is in the tree for every test that needs it) and access tokens signed like the user
 * service signs them, so tests can act as many users without registering each. The gateway asks the user service
 * who a token's user is now (`user.getMany`); `userDirectory()` is the stand-in that answers for these users, in
 * tests that do not run the user context.
 */
import crypto from "crypto";
import type { ServiceSchema } from "moleculer";
import { signAccessToken, type Role } from "../../lib/auth";
import { NotFoundError } from "../../lib/errors";

export interface FakeConcert {
	schema: ServiceSchema;
	/** How many times `concert.get` was called (the queue caches known ids). */
	calls(): number;
}

/** Only `concert.get({id})`, answering the agreed shape for `ids` and 404 NOT_FOUND for anything else. */
export function fakeConcertService(ids: string[]): FakeConcert {
	let calls = 0;
	const known = new Set(ids);
	const schema: ServiceSchema = {
		name: "concert",
		actions: {
			get: {
				visibility: "public",
				params: { id: { type: "string", min: 1, max: 64 } },
				handler(ctx) {
					calls++;
					const id = (ctx.params as { id: string }).id;
					if (!known.has(id)) throw new NotFoundError("concert", id);
					return { id, title: `Concert ${id}`, artist: "Test", venue: { id: "v1", name: "Hall" }, schedules: [] };
				}
			},
			/** What the waiting room asks of the catalog: always on sale, never sold out. */
			saleStatus: {
				visibility: "public",
				params: { id: { type: "string", min: 1, max: 64 } },
				handler(ctx) {
					// Lookups made for a request count; the queue's periodic sale check (no parent request) does not.
					if (ctx.parentID) calls++;
					const id = (ctx.params as { id: string }).id;
					if (!known.has(id)) throw new NotFoundError("concert", id);
					return { concertId: id, state: "OPEN", opensAt: null, closesAt: null, availableSeats: 100, heldSeats: 0, soldOut: false };
				}
			}
		}
	};
	return { schema, calls: () => calls };
}

export interface TestUser {
	id: string;
	email: string;
	role: Role;
	/** Bearer token for the gateway. */
	token: string;
}

/** Users minted by `testUser` (and `tokenFor`) in this test process, as `user.get` answers them. */
const minted = new Map<string, { id: string; email: string; name: string; role: Role }>();

export function mintUser(id: string, role: Role): { id: string; email: string; role: Role } {
	const user = { id, email: `${id}@example.com`, role };
	minted.set(id, { ...user, name: "Test user" });
	return user;
}

export function testUser(secret: string, role: Role = "user"): TestUser {
	const user = mintUser(crypto.randomUUID(), role);
	return { ...user, token: signAccessToken(user, secret, 900) };
}

/** Stand-in for the user context's `user.get` and `user.getMany`: the minted users exist, nobody else does. */
export function userDirectory(): ServiceSchema {
	return {
		name: "user",
		actions: {
			get: {
				visibility: "public",
				params: { id: { type: "string", min: 1, max: 64 } },
				handler(ctx) {
					const id = (ctx.params as { id: string }).id;
					const user = minted.get(id);
					if (!user) throw new NotFoundError("user", id);
					return user;
				}
			},
			/** The gateway's batched lookup: the minted users among `ids`. */
			getMany: {
				visibility: "public",
				params: { ids: { type: "array", min: 1, max: 500, items: { type: "string", min: 1, max: 64 } } },
				handler(ctx) {
					return (ctx.params as { ids: string[] }).ids.flatMap(id => minted.get(id) ?? []);
				}
			}
		}
	};
}

export function concertId(label = "c"): string {
	return `${label}-${crypto.randomBytes(6).toString("hex")}`;
}
