/**
 * A real ioredis client aimed at a port nothing listens on: its failure is classified as "store unavailable" by
 * the error's kind, with no address in the message (the classification's other cases: test/unit/redis.errors.test.ts).
 */
import net from "net";
import Redis from "ioredis";
import { redisCall } from "../../lib/store/redis";
import { StoreUnavailableError } from "../../lib/store/types";

async function closedPort(): Promise<number> {
	const server = net.createServer();
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	const port = (server.address() as net.AddressInfo).port;
	await new Promise(resolve => server.close(resolve));
	return port;
}

describe("Redis failures: no server at all", () => {
	it("when nothing listens on the store's port, then the command fails as unavailable, with no address in the message", async () => {
		const port = await closedPort();
		const redis = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 });
		redis.on("error", () => undefined);
		try {
			const failure = await redisCall(redis.get("k")).catch((e: unknown) => e);
			expect(failure).toBeInstanceOf(StoreUnavailableError);
			expect(String((failure as Error).message)).not.toContain(String(port));
		} finally {
			redis.disconnect();
			if (redis.status !== "end") await new Promise(resolve => redis.once("end", resolve));
		}
	});
});
