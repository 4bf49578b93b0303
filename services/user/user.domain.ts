/** Pure rules of the user context, tested without a broker. */
import type { Role } from "../../lib/auth";

export interface UserRow {
	id: string;
	email: string;
	name: string;
	password_hash: string;
	role: Role;
}

export interface PublicUser {
	id: string;
	email: string;
	name: string;
	role: Role;
}

/** Emails compare case-insensitively and without surrounding spaces. */
export function normalizeEmail(email: string): string {
	return email.trim().toLowerCase();
}

/** The only fields that ever leave the service: never the hash. */
export function toPublicUser(row: Pick<UserRow, "id" | "email" | "name" | "role">): PublicUser {
	return { id: row.id, email: row.email, name: row.name, role: row.role };
}
