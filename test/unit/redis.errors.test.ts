/**
 * How a failed Redis command is classified: by the error's kind (a server reply, or no server at all), never by
 * its wording. The "no server" case with a real client is in test/integration/redis.unreachable.test.ts (an
 * ioredis client that failed to connect keeps the process up for two more seconds).
 */
import { ReplyError } from "ioredis";
import { isUnavailable, redisCall } from "../../lib/store/redis";

describe("Redis failures: the store's fault or the command's", () => {
	it("when the server replies with an error about the command, then it is the command's fault and stays as it is", async () => {
		for (const msg of [
			"ERR Error running script (call to f_1): @user_script:1: oops",
			"WRONGTYPE Operation against a key holding the wrong kind of value",
			"NOSCRIPT No matching script"
		]) {
			const err = new ReplyError(msg);
			expect(isUnavailable(err)).toBe(false);
			await expect(redisCall(Promise.reject(err))).rejects.toBe(err);
		}
	});

	it("when the server replies that it cannot serve now (loading its data, busy, no primary), then the store is unavailable", () => {
		for (const msg of [
			"LOADING Redis is loading the dataset in memory",
			"BUSY Redis is busy running a script",
			"MASTERDOWN Link with MASTER is down",
			"READONLY You can't write against a read only replica."
		]) {
			expect(isUnavailable(new ReplyError(msg))).toBe(true);
		}
	});

	it("when our own code throws a TypeError, then it is not mistaken for an outage", () => {
		expect(isUnavailable(new TypeError("x is not a function"))).toBe(false);
		expect(isUnavailable("a string")).toBe(false);
	});
});
