/**
 * The booking page's other states in a real browser (issue 20), on one embedded process as `npm start` runs it:
 * the pre-queue before a sale opens, a sold-out concert, a payment short of points that succeeds after a top-up
 * (a new attempt, not the refused one replayed), and, once the show has taken place, no cancel button (the
 * cutoff has passed, and the server refuses it too) and a review written from My bookings. Screenshots go to test-results/booking/states/.
 */
import fs from "fs";
import path from "path";
import type { ServiceBroker } from "moleculer";
import type { Browser, Page } from "puppeteer-core";
import { adminToken, pay, reserve, seats, shopper } from "../support/booking";
import { fanPage, launchBrowser } from "../support/browser";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { OPS_ADMIN } from "../support/ops";

const SHOTS = path.resolve(__dirname, "../../test-results/booking/states");

describe("booking page states in a browser (embedded)", () => {
	let env: TestEnv;
	let gateway: ServiceBroker;
	let api: string;
	let origin: string;
	let admin: string;
	let browser: Browser | undefined;
	const problems: string[] = [];
	const shots: string[] = [];

	const shot = async (p: Page, name: string) => {
		const file = path.join(SHOTS, `${name}.png`);
		await p.screenshot({ path: file, fullPage: true });
		shots.push(file);
	};
	const text = (p: Page, selector: string) => p.$eval(selector, e => e.textContent ?? "");
	const waitText = (p: Page, selector: string, part: string, timeout = 10_000) =>
		p.waitForFunction(
			`(document.querySelector(${JSON.stringify(selector)}) || {}).textContent && document.querySelector(${JSON.stringify(selector)}).textContent.includes(${JSON.stringify(part)})`,
			{
				timeout
			}
		);

	/** A concert made by the admin: one show at `startsAt`, `seats` seats of 1,000 points, sales as given. */
	async function concert(startsAt: Date, seatCount: number, sales?: { opensAt: string }): Promise<{ concertId: string; scheduleId: string }> {
		const res = await http("POST", `${api}/admin/concerts`, {
			token: admin,
			body: {
				title: `State ${Date.now().toString(36)}`,
				artist: "The Testers",
				venue: { name: `Hall ${Date.now().toString(36)}` },
				schedules: [{ startsAt: startsAt.toISOString() }],
				seats: { rows: 1, perRow: seatCount, price: 1000 },
				...(sales ? { sales } : {})
			}
		});
		expect(res.status).toBe(201);
		return { concertId: res.body.id, scheduleId: res.body.schedules[0].id };
	}

	/** A new fan signed in in a browser of their own, at `hash`. Answers the page and the fan's token. */
	async function fan(name: string, hash: string): Promise<{ page: Page; token: string }> {
		const { page } = await fanPage(browser!, { api, origin }, name, hash, problems);
		return { page, token: (await page.evaluate(`sessionStorage.getItem("crp.app.token")`)) as string };
	}

	beforeAll(async () => {
		fs.mkdirSync(SHOTS, { recursive: true });
		env = testEnv({ cluster: false, env: OPS_ADMIN });
		gateway = await env.broker(["api", "user", "queue", "reservation", "saga", "concert", "payment", "notification", "review"]);
		api = gatewayUrl(gateway);
		origin = new URL(api).origin;
		admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		browser = await launchBrowser();
	}, 120_000);

	afterAll(async () => {
		await browser?.close().catch(() => undefined);
		await env?.cleanup();
		if (shots.length > 0) console.log(`booking page state screenshots:\n${shots.join("\n")}`);
	}, 60_000);

	it("when the sale has not opened, then the waiting room says the fan is in the pre-queue and counts down to the opening", async () => {
		const { concertId, scheduleId } = await concert(new Date(Date.now() + 30 * 86400_000), 4, {
			opensAt: new Date(Date.now() + 10 * 60_000).toISOString()
		});
		const { page } = await fan("early", `#/queue/${concertId}/${scheduleId}`);
		await page.waitForSelector('#queue-state[data-status="PRE_QUEUE"]', { timeout: 10_000 });
		expect(await text(page, "#queue-state")).toContain("pre-queue");
		await shot(page, "01-pre-queue");
		expect(problems).toEqual([]);
	}, 60_000);

	it("when every seat is sold, then the waiting room says the concert is sold out", async () => {
		const { concertId, scheduleId } = await concert(new Date(Date.now() + 30 * 86400_000), 1);
		const first = await shopper(api, concertId, 5000, "first");
		const [only] = await seats(api, scheduleId);
		const held = await reserve(api, first, scheduleId, [only.id]);
		expect((await pay(api, first, held.body.id)).status).toBe(201);
		// The waiting room closes the line SOLD_OUT at its next sweep (about a second).
		await waitFor(
			async () => (await http("POST", `${api}/queue/tokens`, { token: first.token, body: { concertId } })).body?.type === "SOLD_OUT",
			15_000,
			"the line closed SOLD_OUT"
		);
		const { page } = await fan("late", `#/queue/${concertId}/${scheduleId}`);
		await page.waitForSelector('#queue-state[data-status="SOLD_OUT"]', { timeout: 10_000 });
		expect(await text(page, "#queue-state")).toContain("sold out");
		await shot(page, "02-sold-out");
		expect(problems).toEqual([]);
	}, 60_000);

	it("when a payment is short of points, then the page says so, and after a top-up Pay goes through; after the show the booking offers no cancellation and takes a review", async () => {
		// A show 25 s from now: booked before it starts, reviewed after.
		const startsAt = new Date(Date.now() + 25_000);
		const { concertId, scheduleId } = await concert(startsAt, 4);
		const { page, token } = await fan("soon", `#/queue/${concertId}/${scheduleId}`);
		await page.waitForSelector('#seat-map button[data-label="A-1"]', { timeout: 15_000 });
		await page.click('#seat-map button[data-label="A-1"]');
		await page.click("#hold");
		await page.waitForSelector('#checkout[data-status="PENDING"]', { timeout: 10_000 });
		const reservationId = page.url().split("#/checkout/")[1];

		// No points: refused in words, nothing paid.
		await page.click("#pay");
		await waitText(page, "#alert", "You do not have enough points");
		await shot(page, "03-not-enough-points");
		expect((await http("GET", `${api}/payments`, { token })).body.rows).toEqual([]);

		// Top up (another tab, or the API), then Pay again: a new attempt, not the refused one replayed.
		expect((await http("POST", `${api}/points/charge`, { token, body: { amount: 5000 }, headers: { "idempotency-key": "states-topup" } })).status).toBe(
			200
		);
		await page.click("#pay");
		await page.waitForSelector('#ticket[data-status="CONFIRMED"]', { timeout: 20_000 });
		const payments = (await http("GET", `${api}/payments`, { token })).body.rows as { reservationId: string }[];
		expect(payments.map(p => p.reservationId)).toEqual([reservationId]);
		await shot(page, "04-ticket");

		// After the show: cancelling is refused in words, and the booking takes a review.
		const wait = startsAt.getTime() - Date.now() + 500;
		if (wait > 0) await new Promise(r => setTimeout(r, wait));
		await page.goto(`${origin}/#/bookings`, { waitUntil: "load" });
		await page.waitForSelector(`#booking-list li[data-id="${reservationId}"] form.review`, { timeout: 10_000 });
		// Past the cutoff (24 hours before the show) no cancel button is offered, and the page says why.
		expect(await page.$(`#booking-list li[data-id="${reservationId}"] button.cancel`)).toBeNull();
		expect(await text(page, `#booking-list li[data-id="${reservationId}"]`)).toContain("Cancellation closed on");
		// And the server refuses it anyway.
		const refused = await http("POST", `${api}/reservations/${reservationId}/cancel`, { token, headers: { "idempotency-key": "states-cancel" } });
		expect([refused.status, refused.body.type]).toEqual([409, "CANCELLATION_CLOSED"]);
		await page.select(`#booking-list li[data-id="${reservationId}"] form.review select`, "5");
		await page.type(`#booking-list li[data-id="${reservationId}"] form.review textarea`, "A night to remember.");
		await page.click(`#booking-list li[data-id="${reservationId}"] form.review button[type="submit"]`);
		await waitText(page, `#booking-list li[data-id="${reservationId}"]`, "Thank you! Your review is posted.");
		await shot(page, "05-review-posted");
		const reviews = (await http("GET", `${api}/concerts/${concertId}/reviews`)).body as { rows: { rating: number; content: string }[] };
		expect(reviews.rows.map(r => [r.rating, r.content])).toEqual([[5, "A night to remember."]]);
		expect(problems).toEqual([]);
	}, 90_000);
});
