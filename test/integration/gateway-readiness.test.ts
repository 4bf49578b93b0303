/**
 * A gateway that does not know a service yet (a worker that just (re)joined, before the other nodes' INFO packets
 * arrive) answers 503 with Retry-After, never 404 NOT_FOUND: every route is an explicit alias, so a service that
 * is not registered is a dependency that is not there yet, not a resource the client got wrong (issue 15).
 */
import type { ServiceBroker } from "moleculer";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { testUser, userDirectory } from "../support/queue";

describe("gateway readiness (cluster)", () => {
	let env: TestEnv;
	let gateway: ServiceBroker;
	let api: string;

	beforeAll(async () => {
		env = testEnv({ cluster: true });
		gateway = await env.broker(["api", "payment"]);
		api = gatewayUrl(gateway);
	}, 90_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when a service a request needs is not registered yet, then 503 SERVICE_UNAVAILABLE with Retry-After, and the same request succeeds once it joins", async () => {
		const user = testUser(env.config.jwt.secret!);
		// The route's own service is here; the user service that resolves the token has not joined yet.
		const early = await http("GET", `${api}/points`, { token: user.token });
		expect(early.status).toBe(503);
		expect(early.body.type).toBe("SERVICE_UNAVAILABLE");
		expect(Number(early.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
		// A route whose own service is missing answers the same way.
		const missing = await http("GET", `${api}/reservations`, { token: user.token });
		expect(missing.status).toBe(503);
		expect(missing.body.type).toBe("SERVICE_UNAVAILABLE");

		const late = await env.broker([]);
		late.createService(userDirectory());
		await waitFor(() => gateway.registry.getActionEndpoints("user.get")?.hasAvailable() === true, 15_000, "the gateway to learn of the user service");
		const after = await http("GET", `${api}/points`, { token: user.token });
		expect(after.status).toBe(200);
		// Unknown paths are still 404.
		expect((await http("GET", `${api}/no-such-route`)).status).toBe(404);
	}, 60_000);
});
