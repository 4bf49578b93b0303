/**
 * Reviews with the real catalog and reservation services (issue 7's reservation.hasConfirmed, the concert
 * service's concert.get) after a real booking over HTTP: a held (PENDING) reservation does not allow a review, a
 * paid (CONFIRMED) one does once its show has taken place, once; a cancelled one does not. Embedded mode in one process; cluster mode
 * with the review service on its own node over NATS, MariaDB and Redis.
 */
import type { ServiceBroker } from "moleculer";
import { adminToken, ownConcert, pay, reserve, seats, shopper } from "../support/booking";
import { gatewayUrl, http, testEnv, type TestEnv } from "../support/harness";

const ADMIN = { ADMIN_EMAIL: "ops@example.com", ADMIN_PASSWORD: "ops-password" };

describe.each([
	["embedded", false],
	["cluster", true]
])("reviews after a real booking (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let api: string;
	let admin: string;

	beforeAll(async () => {
		// Cancellations until the show's start: the show here is seconds away.
		env = testEnv({ cluster, env: { ...ADMIN, CANCEL_CUTOFF_HOURS: "0" } });
		const core = ["api", "user", "queue", "concert", "payment", "saga", "reservation"];
		let gateway: ServiceBroker;
		if (cluster) {
			[gateway] = await Promise.all([env.broker(core), env.broker(["review"])]);
			await gateway.waitForServices(["review"], 20_000);
		} else {
			gateway = await env.broker([...core, "review"]);
		}
		api = gatewayUrl(gateway);
		admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	it("when the reservation is only held, then 403; once paid and the show has taken place, then 201 once; after a cancel, another user's review is refused", async () => {
		const startsAt = new Date(Date.now() + 8000);
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 100, { startsAt });
		const u = await shopper(api, concertId, 1000);
		const review = (token: string, rating = 5) => http("POST", `${api}/concerts/${concertId}/reviews`, { token, body: { rating, content: "Loved it" } });
		const [a, b] = await seats(api, scheduleId);

		const held = await reserve(api, u, scheduleId, [a.id]);
		expect(held.status).toBe(201);
		const early = await review(u.token);
		expect(early.status).toBe(403);
		expect(early.body.type).toBe("REVIEW_NOT_ALLOWED");

		expect((await pay(api, u, held.body.id)).status).toBe(201);
		const beforeShow = await review(u.token, 4);
		expect(beforeShow.status).toBe(403);
		expect(beforeShow.body.data.reason).toBe("SHOW_NOT_YET");

		// Another user books and cancels before the show: a cancelled reservation is not a confirmed one.
		const v = await shopper(api, concertId, 1000, "v");
		const vHeld = await reserve(api, v, scheduleId, [b.id]);
		expect((await pay(api, v, vHeld.body.id)).status).toBe(201);
		const cancel = await http("POST", `${api}/reservations/${vHeld.body.id}/cancel`, { token: v.token, headers: { "idempotency-key": "c1" } });
		expect(cancel.status).toBe(200);

		await new Promise(r => setTimeout(r, Math.max(0, startsAt.getTime() - Date.now() + 300)));
		const ok = await review(u.token, 4);
		expect(ok.status).toBe(201);
		expect(ok.body).toMatchObject({ concertId, userId: u.userId, rating: 4, content: "Loved it" });
		expect((await review(u.token)).status).toBe(409);
		const vReview = await review(v.token);
		expect(vReview.status).toBe(403);
		expect(vReview.body.data.reason).toBe("NO_BOOKING");

		const list = await http("GET", `${api}/concerts/${concertId}/reviews`);
		expect(list.body).toMatchObject({ total: 1, averageRating: 4 });
		expect((await http("GET", `${api}/concerts/no-such-concert/reviews`)).status).toBe(404);
	}, 60_000);
});
