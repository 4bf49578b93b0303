/**
 * Access-token verification, including the per-process cache of verified tokens: a cached token must give the
 * same verdict as verifying it again (expiry, secret), never a more lenient one.
 */
import jwt from "jsonwebtoken";
import { HashBusyError, hashPassword, setPasswordHashLimits, signAccessToken, verifyAccessToken, verifyPassword } from "../../lib/auth";

const user = { id: "u-1", email: "a@example.com", role: "user" as const };

afterEach(() => jest.restoreAllMocks());

describe("access tokens", () => {
	it("when a valid token is verified twice, then both answers name the user", () => {
		const token = signAccessToken(user, "secret-a", 60);
		expect(verifyAccessToken(token, "secret-a")).toEqual(user);
		expect(verifyAccessToken(token, "secret-a")).toEqual(user);
	});

	it("when a token verified under one secret is presented under another, then it is refused", () => {
		const token = signAccessToken(user, "secret-a", 60);
		expect(verifyAccessToken(token, "secret-a")).toEqual(user);
		expect(verifyAccessToken(token, "secret-b")).toBeNull();
	});

	it("when a cached token reaches its expiry, then it is refused from then on", () => {
		const token = signAccessToken(user, "secret-a", 30);
		const exp = (jwt.decode(token) as { exp: number }).exp;
		expect(verifyAccessToken(token, "secret-a")).toEqual(user);
		jest.spyOn(Date, "now").mockReturnValue(exp * 1000 - 1);
		expect(verifyAccessToken(token, "secret-a")).toEqual(user);
		jest.spyOn(Date, "now").mockReturnValue(exp * 1000);
		expect(verifyAccessToken(token, "secret-a")).toBeNull();
	});

	it("when a token is tampered with after a good copy was cached, then the tampered one is refused", () => {
		const token = signAccessToken(user, "secret-a", 60);
		expect(verifyAccessToken(token, "secret-a")).toEqual(user);
		const [h, p, s] = token.split(".");
		const admin = Buffer.from(JSON.stringify({ ...(jwt.decode(token) as object), role: "admin" })).toString("base64url");
		expect(verifyAccessToken(`${h}.${admin}.${s}`, "secret-a")).toBeNull();
		expect(verifyAccessToken(`${h}.${p}.${s.slice(0, -2)}xx`, "secret-a")).toBeNull();
	});
});

describe("password hash gate", () => {
	afterEach(() => setPasswordHashLimits({ concurrency: 1, queue: 64, maxWaitMs: 3000 }));

	it("when more hashes are asked at once than may run plus wait, then exactly the excess fail with HashBusyError", async () => {
		setPasswordHashLimits({ concurrency: 1, queue: 1 });
		const results = await Promise.allSettled([hashPassword("password-1"), hashPassword("password-2"), hashPassword("password-3")]);
		expect(results.map(r => r.status)).toEqual(["fulfilled", "fulfilled", "rejected"]);
		expect((results[2] as PromiseRejectedResult).reason).toBeInstanceOf(HashBusyError);
	});

	it("when a hash waits longer than its deadline for a turn, then it gives up with HashBusyError and leaves the line", async () => {
		setPasswordHashLimits({ concurrency: 1, queue: 100, maxWaitMs: 10 });
		const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => hashPassword(`password-${i}`)));
		const busy = results.filter(r => r.status === "rejected");
		expect(busy.length).toBeGreaterThan(0);
		for (const r of busy) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(HashBusyError);
		// The first one ran; nothing is left holding a place.
		expect(results[0].status).toBe("fulfilled");
		setPasswordHashLimits({ concurrency: 1, queue: 0, maxWaitMs: 10 });
		expect(await verifyPassword("x-password", await hashPassword("x-password"))).toBe(true);
	});

	it("when the queue drains, then the gate takes new work again and every hash still verifies", async () => {
		setPasswordHashLimits({ concurrency: 2, queue: 0 });
		const first = await Promise.allSettled([hashPassword("a-password"), hashPassword("b-password"), hashPassword("c-password")]);
		expect(first.filter(r => r.status === "rejected")).toHaveLength(1);
		const again = await hashPassword("d-password");
		expect(await verifyPassword("d-password", again)).toBe(true);
		expect(await verifyPassword("wrong", again)).toBe(false);
	});
});
