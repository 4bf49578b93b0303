/**
 * Test helpers for the waiting room: a stand-in for the one concert action the queue calls (`concert.get`, until
 * the concert service is in the tree for every test that needs it) and access tokens signed like the user
 * service signs them, so tests can act as many users without registering each.
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

export function testUser(secret: string, role: Role = "user"): TestUser {
	const id = crypto.randomUUID();
	const user = { id, email: `${id}@example.com`, role };
	return { ...user, token: signAccessToken(user, secret, 900) };
}

export function concertId(label = "c"): string {
	return `${label}-${crypto.randomBytes(6).toString("hex")}`;
}
