/**
 * User context: accounts, password hashes, roles, and the access tokens the gateway verifies (docs/API.md, Users).
 */
import crypto from "crypto";
import type { Context, ServiceSchema } from "moleculer";
import { UniqueConstraintError } from "sequelize";
import { DataTypes } from "sequelize";
import { dummyPasswordHash, HashBusyError, hashPassword, setPasswordHashLimits, signAccessToken, verifyPassword, type Role } from "../../lib/auth";
import { NotFoundError } from "../../lib/errors";
import { signedInUser, type RequestMeta } from "../../lib/request";
import { DbMixin, type DbVars } from "../../mixins/db.mixin";
import { PlatformMixin, type PlatformVars } from "../../mixins/platform.mixin";
import { AuthBusyError, EmailTakenError, InvalidCredentialsError, LoginThrottledError } from "./errors";
import { createUsers } from "./migrations/001_create_users";
import type { UserApi } from "./user.api";
import { normalizeEmail, toPublicUser, type PublicUser, type UserRow } from "./user.domain";

interface RegisterParams {
	email: string;
	password: string;
	name: string;
}
interface LoginParams {
	email: string;
	password: string;
}

interface UserMethods {
	createUser(email: string, password: string, name: string, role: Role): Promise<PublicUser>;
	findByEmail(email: string): Promise<UserRow | null>;
	ensureBootstrapAdmin(): Promise<void>;
	throttle(kind: "addr" | "acct", key: string | undefined, limit: number): Promise<void>;
}

const UserService: ServiceSchema<Record<string, never>, UserMethods, PlatformVars & DbVars> = {
	name: "user",

	mixins: [
		PlatformMixin,
		DbMixin({
			database: "user",
			migrations: [createUsers],
			model: {
				name: "users",
				define: {
					id: { type: DataTypes.STRING(36), primaryKey: true },
					email: { type: DataTypes.STRING(254), allowNull: false },
					name: { type: DataTypes.STRING(100), allowNull: false },
					password_hash: { type: DataTypes.STRING(200), allowNull: false },
					role: { type: DataTypes.STRING(16), allowNull: false }
				},
				options: { tableName: "users", timestamps: true, underscored: true }
			}
		})
	],

	actions: {
		/** POST /api/auth/register. Only email, password and name are read: a `role` in the body is ignored. */
		register: {
			visibility: "published",
			auth: false,
			params: {
				email: { type: "email", max: 254 },
				password: { type: "string", min: 8, max: 128 },
				name: { type: "string", min: 1, max: 100, trim: true },
				$$strict: "remove"
			},
			async handler(ctx: Context<RegisterParams, RequestMeta>) {
				const { email, password, name } = ctx.params;
				// A sign-up costs a hash like a login: it counts against the same per-address allowance, and a taken
				// email is answered before hashing (the unique key still decides a race).
				await this.throttle("addr", ctx.meta.clientIp, this.config.auth.loginPerAddressPerMinute);
				if (await this.findByEmail(email)) throw new EmailTakenError();
				const user = await busyAs429(this.createUser(email, password, name, "user"));
				Object.assign(ctx.meta, { $statusCode: 201, $location: "/api/users/me" });
				return user;
			}
		},

		/** POST /api/auth/login: an access token for valid credentials, the same 401 otherwise. */
		login: {
			visibility: "published",
			auth: false,
			params: {
				email: { type: "string", min: 1, max: 254 },
				password: { type: "string", min: 1, max: 128 },
				$$strict: "remove"
			},
			async handler(ctx: Context<LoginParams, RequestMeta>) {
				await this.throttle("addr", ctx.meta.clientIp, this.config.auth.loginPerAddressPerMinute);
				const row = await this.findByEmail(ctx.params.email);
				// Per account, not per spelling: MariaDB's collation finds "victim@" for "victím@", so the bucket is
				// the account found (an unknown email gets one of its own and can log in to nothing).
				const account = row ? `id:${row.id}` : `email:${crypto.createHash("sha256").update(normalizeEmail(ctx.params.email)).digest("base64url")}`;
				await this.throttle("acct", account, this.config.auth.loginPerAccountPerMinute);
				// Verify against a dummy hash when the user is unknown, so timing does not reveal registered emails.
				const ok = await busyAs429(verifyPassword(ctx.params.password, row?.password_hash ?? (await busyAs429(dummyPasswordHash()))));
				if (!row || !ok) throw new InvalidCredentialsError();
				const user = toPublicUser(row);
				const secret = this.config.jwt.secret!;
				return {
					accessToken: signAccessToken(user, secret, this.config.jwt.expiresInSec),
					tokenType: "Bearer",
					expiresIn: this.config.jwt.expiresInSec,
					user
				};
			}
		},

		/** GET /api/users/me: the caller's own account, read fresh from the database. */
		me: {
			visibility: "published",
			auth: "user",
			async handler(ctx: Context<unknown, RequestMeta>) {
				const caller = signedInUser(ctx);
				const row = (await this.model.findByPk(caller.id))?.get({ plain: true }) as UserRow | undefined;
				if (!row) throw new NotFoundError("user", caller.id);
				return toPublicUser(row);
			}
		},

		/** For other services: a user's public profile. */
		get: {
			visibility: "public",
			params: { id: { type: "string", min: 1, max: 36 } },
			async handler(ctx: Context<UserApi["user.get"]["params"]>): Promise<UserApi["user.get"]["result"]> {
				const row = (await this.model.findByPk(ctx.params.id))?.get({ plain: true }) as UserRow | undefined;
				if (!row) throw new NotFoundError("user", ctx.params.id);
				return toPublicUser(row);
			}
		},

		/**
		 * For the gateway: the users that exist among `ids`, in one query (it batches the lookups of the tokens it
		 * has not seen within AUTH_CACHE_SEC: services/api/current-user.ts).
		 */
		getMany: {
			visibility: "public",
			params: { ids: { type: "array", min: 1, max: 500, items: { type: "string", min: 1, max: 36 } } },
			async handler(ctx: Context<UserApi["user.getMany"]["params"]>): Promise<UserApi["user.getMany"]["result"]> {
				// A plain query, not the model: building a model instance per row was most of this action's cost.
				const rows = await this.sql.select<Pick<UserRow, "id" | "email" | "name" | "role">>("SELECT id, email, name, role FROM users WHERE id IN (?)", [
					[...new Set(ctx.params.ids)]
				]);
				return rows.map(toPublicUser);
			}
		}
	},

	methods: {
		async createUser(email: string, password: string, name: string, role: Role) {
			const normalized = normalizeEmail(email);
			const passwordHash = await hashPassword(password);
			try {
				const row = await this.model.create({
					id: crypto.randomUUID(),
					email: normalized,
					name,
					password_hash: passwordHash,
					role
				});
				return toPublicUser(row.get({ plain: true }) as UserRow);
			} catch (err) {
				if (err instanceof UniqueConstraintError) throw new EmailTakenError();
				throw err;
			}
		},

		/**
		 * Login attempts per client address and per account, each in fixed one-minute windows of the coordination
		 * store (shared by every node). Counted before the password is hashed: a throttled attempt costs no hash.
		 * A store that is down lets logins through (the hash gate still bounds the CPU).
		 */
		async throttle(kind: "addr" | "acct", key: string | undefined, limit: number) {
			if (limit <= 0 || !key) return;
			const now = Date.now();
			const window = Math.floor(now / 60_000);
			let count: number;
			try {
				count = await this.store.incr(`login:${kind}:${key}:${window}`, { ttlMs: 61_000 });
			} catch {
				return;
			}
			if (count > limit) throw new LoginThrottledError(Math.ceil(((window + 1) * 60_000 - now) / 1000));
		},

		async findByEmail(email: string) {
			return (await this.model.findOne({ where: { email: normalizeEmail(email) }, raw: true })) as UserRow | null;
		},

		/** ADMIN_EMAIL/ADMIN_PASSWORD: create the admin once, or promote an existing account. Safe on many nodes. */
		async ensureBootstrapAdmin() {
			const admin = this.config.admin;
			if (!admin) return;
			const existing = await this.findByEmail(admin.email);
			if (existing) {
				if (existing.role !== "admin") await this.model.update({ role: "admin" }, { where: { id: existing.id } });
				return;
			}
			try {
				await this.createUser(admin.email, admin.password, "Administrator", "admin");
			} catch (err) {
				// Another replica created it at the same moment.
				if (!(err instanceof EmailTakenError)) throw err;
			}
		}
	},

	created() {
		const { hashConcurrency: concurrency, hashQueue: queue, hashMaxWaitMs: maxWaitMs } = this.config.auth;
		setPasswordHashLimits({ concurrency, queue, maxWaitMs });
	},

	async started() {
		if (this.config.jwt.generatedAt) {
			this.logger.info(`Embedded mode without JWT_SECRET: generated a signing secret in ${this.config.jwt.generatedAt}`);
		}
		await this.ensureBootstrapAdmin();
	}
};

/** The hash gate is full: a 429 the client retries shortly, not a server fault. */
async function busyAs429<T>(p: Promise<T>): Promise<T> {
	try {
		return await p;
	} catch (err) {
		if (err instanceof HashBusyError) throw new AuthBusyError();
		throw err;
	}
}

export default UserService;
