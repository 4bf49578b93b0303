/**
 * The gateway's rate limit counts in the coordination store: two gateway nodes on the same Redis share one
 * allowance per client address, and the client past it gets 429 RATE_LIMITED with Retry-After.
 */
import { gatewayUrl, http, testEnv, type TestEnv } from "../support/harness";

describe("rate limiting across gateways (cluster: two gateways, one Redis)", () => {
	let env: TestEnv;
	let a: string;
	let b: string;

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: { RATE_LIMIT_PER_MINUTE: "6" } });
		await env.broker(["user"]);
		a = gatewayUrl(await env.broker(["api"]));
		b = gatewayUrl(await env.broker(["api"]));
	}, 90_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when one client spreads 8 requests over two gateways with a limit of 6, then exactly 2 are refused with 429", async () => {
		// Requests are sequential so the count is exact. The windows are fixed clock minutes shared by every gateway:
		// start in the first 45 s of one, so the 8 requests (well under a second) are not split between two windows.
		const intoMinute = Date.now() % 60_000;
		if (intoMinute > 45_000) await new Promise(r => setTimeout(r, 60_000 - intoMinute + 50));
		const statuses: number[] = [];
		let refused: Awaited<ReturnType<typeof http>> | undefined;
		for (let i = 0; i < 8; i++) {
			const res = await http("POST", `${i % 2 === 0 ? a : b}/auth/login`, { body: { email: "nobody@example.com", password: "whatever-1" } });
			statuses.push(res.status);
			if (res.status === 429) refused = res;
		}
		expect(statuses.filter(s => s === 401)).toHaveLength(6);
		expect(statuses.filter(s => s === 429)).toHaveLength(2);
		expect(refused!.body).toMatchObject({ code: 429, type: "RATE_LIMITED" });
		expect(refused!.headers.get("retry-after")).toBe("60");
	});
});
