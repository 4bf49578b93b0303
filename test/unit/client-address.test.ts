/**
 * Which address a request comes from (services/api/rate-limit.ts): the rate limit and the login throttle key on
 * it, so a client must not be able to choose it.
 */
import type { IncomingMessage } from "http";
import { clientAddress } from "../../services/api/rate-limit";

const req = (xff?: string | string[]) =>
	({ headers: xff === undefined ? {} : { "x-forwarded-for": xff }, socket: { remoteAddress: "10.0.0.9" } }) as unknown as IncomingMessage;

describe("client address", () => {
	it("when no proxy is trusted, then X-Forwarded-For is ignored", () => {
		expect(clientAddress(req("203.0.113.7"), 0)).toBe("10.0.0.9");
	});

	it("when one proxy is trusted, then the client is the entry that proxy appended, whatever the client wrote before it", () => {
		expect(clientAddress(req("203.0.113.7"), 1)).toBe("203.0.113.7");
		expect(clientAddress(req("10.0.1.1, 198.51.100.4, 203.0.113.7"), 1)).toBe("203.0.113.7");
		expect(clientAddress(req(["1.1.1.1", "203.0.113.7"]), 1)).toBe("203.0.113.7");
	});

	it("when two proxies are trusted, then it is the second entry from the right", () => {
		expect(clientAddress(req("6.6.6.6, 203.0.113.7, 10.1.0.2"), 2)).toBe("203.0.113.7");
		expect(clientAddress(req("203.0.113.7"), 2)).toBe("203.0.113.7");
	});

	it("when the entry is not an IP address, then the socket's address is used", () => {
		expect(clientAddress(req("anything-goes"), 1)).toBe("10.0.0.9");
		expect(clientAddress(req(""), 1)).toBe("10.0.0.9");
		expect(clientAddress(req("2001:db8::1"), 1)).toBe("2001:db8::1");
	});
});
