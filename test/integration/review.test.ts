/**
 * Reviews over HTTP (seed 003's review service) in both modes: embedded (one process, SQLite) and cluster (the
 * gateway and review service on one node, the catalog and reservation peers on another, over NATS, MariaDB). The
 * peers are test-only fakes of `concert.get` and `reservation.hasConfirmed` (their real services are other issues').
 */
import type { ServiceBroker } from "moleculer";
import { FakeConcertService, FakeReservationService } from "../support/event-services/fakes.service";
import { EventNodes, tokenFor } from "../support/events";
import { userDirectory } from "../support/queue";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";

const modes: [string, boolean][] = [
	["embedded", false],
	["cluster", true]
];

describe.each(modes)("reviews (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let nodes: EventNodes;
	let gw: ServiceBroker;
	let peers: ServiceBroker;
	let api: string;

	beforeAll(async () => {
		env = testEnv({ cluster });
		nodes = new EventNodes(env);
		if (cluster) {
			peers = await nodes.node([FakeConcertService, FakeReservationService]);
			gw = await nodes.node(["api", "review", userDirectory()]);
			await gw.waitForServices(["concert", "reservation"], 10_000);
		} else {
			gw = await nodes.node(["api", "review", FakeConcertService, FakeReservationService, userDirectory()]);
			peers = gw;
		}
		api = gatewayUrl(gw);
	}, 60_000);

	afterAll(async () => {
		await nodes?.stop();
		await env?.cleanup();
	}, 60_000);

	const confirmed = async (concertId: string) => {
		const u = tokenFor(env);
		await peers.call("reservation.fakeConfirm", { userId: u.id, concertId });
		return u;
	};
	const post = (concertId: string, token: string | undefined, body: unknown) => http("POST", `${api}/concerts/${concertId}/reviews`, { token, body });

	it("when a user with a confirmed reservation reviews, then 201 with the review, and the list shows it with the average", async () => {
		const u = await confirmed("c-1");
		const res = await post("c-1", u.token, { rating: 4, content: "  Great show  ", userId: "someone-else" });
		expect(res.status).toBe(201);
		expect(res.body).toEqual({ id: expect.any(String), concertId: "c-1", userId: u.id, rating: 4, content: "Great show", createdAt: expect.any(String) });
		const u2 = await confirmed("c-1");
		expect((await post("c-1", u2.token, { rating: 1, content: "Too loud" })).status).toBe(201);
		const list = await http("GET", `${api}/concerts/c-1/reviews`);
		expect(list.status).toBe(200);
		expect(list.body).toMatchObject({ page: 1, pageSize: 20, total: 2, averageRating: 2.5 });
		expect(list.body.rows.map((r: { rating: number }) => r.rating).sort()).toEqual([1, 4]);
		const page2 = await http("GET", `${api}/concerts/c-1/reviews?page=2&pageSize=1`);
		expect(page2.body).toMatchObject({ page: 2, pageSize: 1, total: 2, averageRating: 2.5 });
		expect(page2.body.rows).toHaveLength(1);
	});

	it("when the user has no confirmed reservation for that concert, then 403 REVIEW_NOT_ALLOWED and nothing is stored", async () => {
		const u = await confirmed("c-other");
		const res = await post("c-2", u.token, { rating: 5, content: "I was not there" });
		expect(res.status).toBe(403);
		expect(res.body).toMatchObject({ code: 403, type: "REVIEW_NOT_ALLOWED", data: { concertId: "c-2" } });
		expect((await http("GET", `${api}/concerts/c-2/reviews`)).body).toMatchObject({ total: 0, rows: [], averageRating: null });
	});

	it("when the same user reviews twice, even 10 times at once, then exactly one review and 409 REVIEW_EXISTS for the rest", async () => {
		const u = await confirmed("c-3");
		const results = await Promise.all(Array.from({ length: 10 }, (_, i) => post("c-3", u.token, { rating: 3, content: `take ${i}` })));
		expect(results.filter(r => r.status === 201)).toHaveLength(1);
		const refused = results.filter(r => r.status === 409);
		expect(refused).toHaveLength(9);
		expect(refused[0].body.type).toBe("REVIEW_EXISTS");
		expect((await http("GET", `${api}/concerts/c-3/reviews`)).body.total).toBe(1);
		expect((await post("c-3", u.token, { rating: 5, content: "changed my mind" })).status).toBe(409);
	});

	it("when the concert does not exist, then 404 for both POST and GET", async () => {
		const u = tokenFor(env);
		const p = await post("nope", u.token, { rating: 5, content: "x" });
		expect(p.status).toBe(404);
		expect(p.body.type).toBe("NOT_FOUND");
		expect((await http("GET", `${api}/concerts/nope/reviews`)).status).toBe(404);
	});

	it("when the body is invalid, then 422 VALIDATION_ERROR naming the field and nothing is stored", async () => {
		const u = await confirmed("c-4");
		const cases: [unknown, string][] = [
			[{ rating: 0, content: "x" }, "rating"],
			[{ rating: 6, content: "x" }, "rating"],
			[{ rating: 4.5, content: "x" }, "rating"],
			[{ rating: "5", content: "x" }, "rating"],
			[{ rating: 5, content: "   " }, "content"],
			[{ rating: 5, content: "x".repeat(2001) }, "content"],
			[{ rating: 5 }, "content"]
		];
		for (const [body, field] of cases) {
			const res = await post("c-4", u.token, body);
			expect({ field, status: res.status, type: res.body.type }).toEqual({ field, status: 422, type: "VALIDATION_ERROR" });
			expect(res.body.data.map((d: { field: string }) => d.field)).toContain(field);
		}
		expect((await post("c-4", u.token, { rating: 5, content: "x".repeat(2000) })).status).toBe(201);
		expect((await http("GET", `${api}/concerts/c-4/reviews`)).body.total).toBe(1);
	});

	it("when there is no token, then POST is 401 and GET is public", async () => {
		expect((await post("c-1", undefined, { rating: 5, content: "anon" })).status).toBe(401);
		expect((await http("GET", `${api}/concerts/c-1/reviews`)).status).toBe(200);
	});

	it("when the reservation service is gone, then a review answers 503 SERVICE_UNAVAILABLE (not 404) and stores nothing", async () => {
		const u = await confirmed("c-5");
		await peers.destroyService(peers.getLocalService("reservation")!);
		await waitFor(
			() => !gw.registry.getServiceList({ onlyAvailable: true }).some(s => s.name === "reservation"),
			10_000,
			"the gateway to see reservation gone"
		);
		const res = await post("c-5", u.token, { rating: 5, content: "while it was down" });
		expect(res.status).toBe(503);
		expect(res.body.type).toBe("SERVICE_UNAVAILABLE");
		expect((await http("GET", `${api}/concerts/c-5/reviews`)).body.total).toBe(0);
	});
});
