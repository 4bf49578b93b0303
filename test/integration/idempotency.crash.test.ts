/**
 * A gateway process that dies mid-request (issue 15 item 5): the Idempotency-Key's in-flight slot it held is
 * free within seconds, so the client's retry through another gateway goes through (it was a 409
 * IDEMPOTENCY_KEY_IN_PROGRESS for 60 s), and the operation still happens once.
 */
import type { ServiceBroker } from "moleculer";
import { Faults } from "../support/faults";
import { gatewayUrl, http, testEnv, waitFor, type SpawnedNode, type TestEnv } from "../support/harness";
import { freePort } from "../support/nats-server";

describe("idempotency keys when a gateway dies mid-request (cluster)", () => {
	let env: TestEnv;
	let backend: ServiceBroker;
	let doomed: SpawnedNode;
	let doomedApi: string;
	let api: string;
	let token: string;
	const faults = new Faults();

	beforeAll(async () => {
		env = testEnv({ cluster: true });
		// The surviving gateway and the services, in this process; the doomed gateway, in its own.
		backend = await env.broker(["api", "user", "payment"], { middlewares: [faults.middleware()] });
		api = gatewayUrl(backend);
		const port = await freePort();
		doomed = await env.spawn(["api"], { env: { PORT: String(port) } });
		doomedApi = `http://127.0.0.1:${port}/api`;
		await http("POST", `${api}/auth/register`, { body: { email: "crash@example.com", password: "password-1", name: "C" } });
		token = (await http("POST", `${api}/auth/login`, { body: { email: "crash@example.com", password: "password-1" } })).body.accessToken;
		// The spawned gateway knows the services before the test starts.
		await waitFor(async () => (await http("GET", `${doomedApi}/points`, { token })).status === 200, 30_000, "the spawned gateway to serve /points");
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when the gateway running a request is killed, then the client's retry through another gateway runs within seconds, and the charge happens once", async () => {
		const before = (await http("GET", `${api}/points`, { token })).body.balance as number;
		const headers = { "idempotency-key": "crash-1" };
		// The charge answers late: the doomed gateway holds the key's slot while it waits.
		faults.delayAfter("payment.charge", 3000, { times: 1 });
		const lost = http("POST", `${doomedApi}/points/charge`, { token, body: { amount: 700 }, headers }).catch(() => null);
		await waitFor(() => (faults.calls.get("payment.charge") ?? 0) >= 1, 10_000, "the charge to reach the service");

		await doomed.kill();
		expect(await lost).toBeNull();

		// The client retries with the same key through the other gateway, once a second, as Retry-After says. Well
		// inside the old slot's 60 s, one goes through.
		const answers: number[] = [];
		let last: Awaited<ReturnType<typeof http>> | undefined;
		for (let i = 0; i < 15; i++) {
			last = await http("POST", `${api}/points/charge`, { token, body: { amount: 700 }, headers });
			answers.push(last.status);
			if (last.status !== 409) break;
			expect(last.body.type).toBe("IDEMPOTENCY_KEY_IN_PROGRESS");
			expect(last.headers.get("retry-after")).toBe("1");
			await new Promise(r => setTimeout(r, 1000));
		}
		expect(last!.status).toBe(200);

		// The first charge (still running on the service when its gateway died) and the retry are one charge.
		await waitFor(() => (faults.finished.get("payment.charge") ?? 0) >= 2, 15_000, "both charge calls to finish");
		const after = (await http("GET", `${api}/points`, { token })).body.balance as number;
		expect(after).toBe(before + 700);
		const replay = await http("POST", `${api}/points/charge`, { token, body: { amount: 700 }, headers });
		expect(replay.status).toBe(200);
		expect(replay.headers.get("idempotent-replayed")).toBe("true");
	}, 60_000);
});
