/**
 * Access-token verification, including the per-process cache of verified tokens: a cached token must give the
 * same verdict as verifying it again (expiry, secret), never a more lenient one.
 */
import jwt from "jsonwebtoken";
import { signAccessToken, verifyAccessToken } from "../../lib/auth";

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
