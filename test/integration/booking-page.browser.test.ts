/**
 * The fans' booking page (issue 20) in a real browser against a real cluster: Debian's chromium driven by
 * puppeteer-core, three brokers over NATS with MariaDB and Redis (gateway; booking; money and projections). No
 * mocks. QUEUE_MAX_ACTIVE is 2 and two other fans hold both active places, so the new fan really waits in the
 * waiting room until one of them leaves (DELETE /api/queue/tokens/:token).
 *
 * A new fan signs up, tops up, waits in the room until admitted, picks two seats on the map (one of them is taken
 * by another fan just before the hold: the page says so in words and the map shows the seat taken), pays, sees the
 * ticket, cancels and sees the refund. Then, signed in again in a new tab: the map follows a seat coming back
 * (the live feed, or polling without it); a double click on Pay sends one request, which is lost (held back by the
 * test); after a reload the page says the booking is still unpaid, Pay again reuses the same Idempotency-Key, a
 * reload while that request runs finds the ticket: exactly one payment (GET /api/payments), the real state shown. Every view passes axe-core with no "serious" or "critical" violation.
 * Screenshots of each step (and the seat map on a 375 px phone) go to test-results/booking/ (gitignored); the
 * paths are printed at the end.
 *
 * axe-core is injected with page.addScriptTag, which the page's CSP (script-src 'self') would refuse: the pages
 * run with page.setBypassCSP(true). The CSP itself is checked over HTTP in admin-console.api.test.ts.
 *
 * The browser: CHROMIUM_PATH, else `command -v chromium`, else /usr/bin/chromium.
 */
import fs from "fs";
import path from "path";
import type { ServiceBroker } from "moleculer";
import type { Browser, HTTPRequest, Page } from "puppeteer-core";
import { adminToken, shopper, type Shopper } from "../support/booking";
import { gatewayUrl, http, testEnv, type TestEnv } from "../support/harness";
import { OPS_ADMIN } from "../support/ops";
import { launchBrowser } from "../support/browser";

/** What the test reads of an element in the page (the test is compiled without the DOM library). */
type Shown = { hidden: boolean; dataset: Record<string, string | undefined>; getAttribute(n: string): string | null };
type AxeViolation = { id: string; impact: string | null; help: string; nodes: { target: string[] }[] };

const SHOTS = path.resolve(__dirname, "../../test-results/booking");
const AXE = require.resolve("axe-core/axe.min.js");
const PASSWORD = "fan-password-1";

/** Where the page runs: one process as `npm start` runs it, and three brokers over NATS as a cluster does. */
const SETUPS: [string, boolean][] = [
	["embedded: every service in one process, SQLite and the in-memory store", false],
	["cluster: three brokers over NATS, MariaDB and Redis", true]
];

describe.each(SETUPS)("booking page in a browser (%s)", (_setup, cluster) => {
	const tag = cluster ? "cluster" : "embedded";
	let env: TestEnv;
	let gateway: ServiceBroker;
	let api: string;
	let origin: string;
	let concertId: string;
	let scheduleId: string;
	let browser: Browser | undefined;
	let page: Page;
	let blockerA: Shopper;
	let blockerB: Shopper;
	let blockerHold: string;
	let fanToken: string;
	const email = `fan-${Date.now().toString(36)}@example.com`;
	const shots: string[] = [];
	/** Console errors and page errors: a script error shows up here. */
	const problems: string[] = [];
	/** axe-core findings of impact serious or critical, per view. */
	const axeFindings: string[] = [];

	const shot = async (name: string, p: Page = page) => {
		const file = path.join(SHOTS, tag, `${name}.png`);
		await p.screenshot({ path: file, fullPage: true });
		shots.push(file);
	};
	const text = (selector: string, p: Page = page) => p.$eval(selector, e => e.textContent ?? "");
	/** waitForSelector that, when it gives up, says what the page showed instead (its view, its alert, its errors). */
	const waitShown = async (selector: string, timeout = 30_000, p: Page = page) => {
		try {
			await p.waitForSelector(selector, { timeout });
		} catch (err) {
			const shown = await p
				.evaluate(`[location.hash, (document.querySelector("#alert") || {}).textContent, (document.querySelector("#view") || {}).textContent]`)
				.catch(() => []);
			throw new Error(`${(err as Error).message}; the page showed ${JSON.stringify(shown).slice(0, 1500)}; problems: ${JSON.stringify(problems)}`);
		}
	};
	const seat = (label: string) => `#seat-map button[data-label="${label}"]`;
	const seatName = (label: string, p: Page = page) => p.$eval(seat(label), e => (e as unknown as Shown).getAttribute("aria-label") ?? "");

	/** axe-core on the view as it is now: no violation of impact serious or critical. */
	const axe = async (view: string, p: Page = page) => {
		if (!(await p.evaluate("typeof window.axe === 'object'"))) await p.addScriptTag({ path: AXE });
		const violations = (await p.evaluate("axe.run(document, { resultTypes: ['violations'] }).then(r => r.violations)")) as AxeViolation[];
		const bad = violations.filter(v => v.impact === "serious" || v.impact === "critical");
		for (const v of bad) axeFindings.push(`${view}: ${v.impact} ${v.id} (${v.help}) at ${v.nodes.map(n => n.target.join(" ")).join(", ")}`);
		expect([view, bad.map(v => v.id)]).toEqual([view, []]);
	};

	const newPage = async (): Promise<Page> => {
		const p = await (await browser!.createBrowserContext()).newPage();
		await p.setBypassCSP(true);
		await p.setViewport({ width: 1280, height: 900 });
		p.on("console", m => {
			// An error answer the page handles (a 409 SEAT_UNAVAILABLE, an aborted request) is logged by the browser
			// as a failed resource: expected. Anything else (a script error, a CSP refusal) is a problem.
			if (m.type() === "error" && !/^Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
		});
		p.on("pageerror", e => problems.push(`page error: ${(e as Error).message}`));
		return p;
	};

	beforeAll(async () => {
		fs.mkdirSync(path.join(SHOTS, tag), { recursive: true });
		env = testEnv({ cluster, env: { ...OPS_ADMIN, QUEUE_MAX_ACTIVE: "2" } });
		const brokers = cluster
			? await Promise.all([
					env.broker(["api", "user", "queue"]),
					env.broker(["reservation", "saga", "concert"]),
					env.broker(["payment", "notification", "review"])
				])
			: [await env.broker(["api", "user", "queue", "reservation", "saga", "concert", "payment", "notification", "review"])];
		gateway = brokers[0];
		await gateway.waitForServices(["reservation", "saga", "concert", "payment", "notification", "review"], 45_000);
		api = gatewayUrl(gateway);
		origin = new URL(api).origin;
		const admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		// Two sections: row A is VIP, rows B and C the standard grade R.
		const created = await http("POST", `${api}/admin/concerts`, {
			token: admin,
			body: {
				title: `Night Lights ${Date.now().toString(36)}`,
				artist: "The Testers",
				venue: { name: `Hall ${Date.now().toString(36)}` },
				schedules: [{ startsAt: new Date(Date.now() + 30 * 86400_000).toISOString() }],
				seats: { rows: 3, perRow: 8, price: 1500, grades: [{ grade: "VIP", rows: 1, price: 3000 }] }
			}
		});
		expect(created.status).toBe(201);
		concertId = created.body.id;
		scheduleId = created.body.schedules[0].id;
		// Both active places of the waiting room are taken.
		blockerA = await shopper(api, concertId, 0, "blocker-a");
		blockerB = await shopper(api, concertId, 0, "blocker-b");

		browser = await launchBrowser();
	}, 120_000);

	afterAll(async () => {
		await browser?.close().catch(() => undefined);
		await env?.cleanup();
		if (shots.length > 0) console.log(`booking page screenshots:\n${shots.join("\n")}`);
		if (axeFindings.length > 0) console.log(`axe findings:\n${axeFindings.join("\n")}`);
	}, 60_000);

	it("when a new fan signs up, tops up, waits in the room, picks two seats, pays and cancels, then the page shows each step and the refund", async () => {
		page = await newPage();
		// This tab follows the map by polling (no EventSource), so the test decides when the map learns of a taken seat.
		await page.evaluateOnNewDocument("delete window.EventSource");
		let freezeMap = false;
		await page.setRequestInterception(true);
		page.on("request", (req: HTTPRequest) => {
			const url = new URL(req.url());
			if (url.pathname === "/api/reservations" && req.method() === "POST") freezeMap = false;
			if (freezeMap && req.method() === "GET" && url.pathname === `/api/schedules/${scheduleId}/seats`) return void req.abort();
			void req.continue();
		});

		await page.goto(`${origin}/`, { waitUntil: "load" });
		await page.waitForSelector("#signin-form");
		expect(await page.$eval("#nav", e => (e as unknown as Shown).hidden)).toBe(true);
		expect(await page.$$eval("footer a", as => as.map(a => a.getAttribute("href")))).toEqual(["/api/docs", "/admin"]);
		await axe("sign in");
		await shot("01-sign-in");

		// Sign up (and in).
		await page.click("#to-signup");
		await page.waitForSelector("#signup-form");
		await page.type("#signup-name", "Fan");
		await page.type("#signup-email", email);
		await page.type("#signup-password", PASSWORD);
		await axe("sign up");
		await shot("02-sign-up");
		await page.click("#signup-submit");
		await page.waitForSelector(`#concert-list li[data-id="${concertId}"] .price`, { timeout: 10_000 });
		expect(await page.evaluate(`[typeof sessionStorage.getItem("crp.app.token"), localStorage.length]`)).toEqual(["string", 0]);
		fanToken = (await page.evaluate(`sessionStorage.getItem("crp.app.token")`)) as string;
		const card = await text(`#concert-list li[data-id="${concertId}"]`);
		expect(card).toContain("24 of 24 seats left");
		expect(card).toContain("1,500 to 3,000 points");
		await axe("concerts");
		await shot("03-concerts");

		// Top up.
		await page.click('a[href="#/points"]');
		await page.waitForSelector("#topup-form");
		await page.type("#topup-amount", "20000");
		await page.click("#topup-submit");
		await page.waitForFunction(`document.querySelector("#topup-result").textContent.includes("20,000 points")`, { timeout: 10_000 });
		expect((await http("GET", `${api}/points`, { token: fanToken })).body.balance).toBe(20_000);
		await axe("points");
		await shot("04-top-up");

		// The concert, one of its shows, the waiting room: both places are taken, so the fan waits.
		await page.click('a[href="#/concerts"]');
		await page.waitForSelector(`#concert-list a[href="#/concert/${concertId}"]`);
		// By keyboard: the cards above grow as their prices arrive, so a mouse click aimed a moment earlier can land
		// beside a link low on the page (the test concert is listed last, after the demo catalog).
		await page.focus(`#concert-list a[href="#/concert/${concertId}"]`);
		await page.keyboard.press("Enter");
		await waitShown(`#schedule-list a[data-schedule="${scheduleId}"]`);
		await axe("concert");
		await shot("05-concert");
		await page.focus(`#schedule-list a[data-schedule="${scheduleId}"]`);
		await page.keyboard.press("Enter");
		await page.waitForSelector('#queue-state[data-status="WAITING"]', { timeout: 10_000 });
		expect(await text("#queue-position")).toMatch(/Your place in line: 1\. Estimated wait: /);
		expect(await page.$eval("#queue-position", e => (e as unknown as Shown).getAttribute("aria-live"))).toBe("polite");
		await axe("waiting room");
		await shot("06-waiting-room");
		// Still waiting a few polls later.
		await new Promise(r => setTimeout(r, 2500));
		expect(await page.$eval("#queue-state", e => (e as unknown as Shown).dataset.status)).toBe("WAITING");

		// One of the two leaves: the fan is admitted and taken to the seat map.
		const started = Date.now();
		expect((await http("DELETE", `${api}/queue/tokens/${blockerA.queueToken}`, { token: blockerA.token })).status).toBe(204);
		await page.waitForSelector(`${seat("B-2")}`, { timeout: 15_000 });
		console.log(`admitted and on the seat map ${Date.now() - started} ms after a place came free`);
		expect(await seatName("A-3")).toBe("A-3, available, 3,000 points");
		expect(await seatName("B-2")).toBe("B-2, available, 1,500 points");
		expect(await page.$$eval("#seat-map .section h2", hs => hs.map(h => h.textContent))).toEqual([
			"Section VIP · 3,000 points",
			"Section R · 1,500 points"
		]);

		// Two seats by keyboard and mouse: a real button each, pressed state announced.
		await page.focus(seat("B-2"));
		await page.keyboard.press("Enter");
		await page.click(seat("B-3"));
		expect(await page.$eval(seat("B-3"), e => (e as unknown as Shown).getAttribute("aria-pressed"))).toBe("true");
		expect(await text("#seat-summary")).toContain("2 of up to 4 seats chosen: B-2, B-3. Total 3,000 points.");
		await axe("seat map");
		await shot("07-seat-map");
		// A phone's width (isMobile would reload the page and lose the choice).
		await page.setViewport({ width: 375, height: 812, deviceScaleFactor: 2 });
		await shot("07b-seat-map-phone");
		await axe("seat map (phone)");
		await page.setViewport({ width: 1280, height: 900 });

		// Another fan takes B-3 before the map hears of it: the hold is refused in words and the map shows it taken.
		freezeMap = true;
		const taken = await http("POST", `${api}/reservations`, {
			token: blockerB.token,
			body: { scheduleId, seatIds: [await seatId("B-3")] },
			headers: { "x-queue-token": blockerB.queueToken }
		});
		expect(taken.status).toBe(201);
		blockerHold = taken.body.id;
		await page.click("#hold");
		await page
			.waitForFunction(`document.querySelector("#alert").textContent.includes("Someone just took one of those seats")`, { timeout: 10_000 })
			.catch(async e => {
				console.log("DEBUG", await text("#alert"), await text("#seat-summary"), page.url());
				throw e;
			});
		await page.waitForFunction(`document.querySelector('${seat("B-3")}').dataset.status === "HELD"`, { timeout: 10_000 });
		expect(await seatName("B-3")).toBe("B-3, held by someone else, 1,500 points");
		expect(await page.$eval(seat("B-3"), e => (e as unknown as Shown).getAttribute("aria-disabled"))).toBe("true");
		expect(await text("#seat-summary")).toContain("1 of up to 4 seats chosen: B-2.");
		await axe("seat taken");
		await shot("08-seat-taken");

		// B-4 instead; hold both.
		await page.click(seat("B-4"));
		await page.click("#hold");
		await page.waitForSelector('#checkout[data-status="PENDING"]', { timeout: 10_000 });
		const reservationId = page.url().split("#/checkout/")[1];
		expect(await text("#checkout")).toMatch(/B-2.*B-4/s);
		await page.waitForFunction(`/Your seats are held for \\d+:\\d\\d/.test(document.querySelector("#hold-timer").textContent)`);
		expect(await text("#checkout-balance")).toContain("20,000 points");
		await axe("checkout");
		await shot("09-checkout");

		// Pay: the ticket.
		await page.click("#pay");
		await page.waitForSelector('#ticket[data-status="CONFIRMED"]', { timeout: 20_000 });
		const payments = (await http("GET", `${api}/payments`, { token: fanToken })).body.rows as { id: string; reservationId: string }[];
		expect(payments.map(p => p.reservationId)).toEqual([reservationId]);
		expect(await text("#ticket-payment")).toBe(payments[0].id);
		expect(await text("#ticket-seats")).toBe("B-2, B-4");
		expect(await text("#ticket-reservation")).toBe(reservationId);
		expect(await text("#ticket-show")).toMatch(/\d{4}/);
		expect((await http("GET", `${api}/points`, { token: fanToken })).body.balance).toBe(17_000);
		await axe("ticket");
		await shot("10-ticket");

		// My bookings: cancel, see the refund.
		await page.click("#to-bookings");
		await page.waitForSelector(`#booking-list li[data-id="${reservationId}"] button.cancel`);
		await axe("bookings");
		await shot("11-bookings");
		await page.click(`#booking-list li[data-id="${reservationId}"] button.cancel`);
		await page.waitForFunction(`document.querySelector('#booking-list li[data-id="${reservationId}"]').dataset.status === "CANCELLED"`, {
			timeout: 20_000
		});
		expect(await text(`#booking-list li[data-id="${reservationId}"] .note`)).toBe("Cancelled. 3,000 points were refunded to your balance.");
		expect((await http("GET", `${api}/points`, { token: fanToken })).body.balance).toBe(20_000);
		await axe("cancelled");
		await shot("12-cancelled-refund");

		// The inbox (its notifications arrive by events: eventually).
		await page.click('a[href="#/inbox"]');
		await page.waitForSelector("#inbox-list");
		await axe("inbox");
		await shot("13-inbox");
		expect(problems).toEqual([]);
	}, 120_000);

	it("when the fan double-clicks Pay and reloads while it runs, then exactly one payment is made and the page shows the real state", async () => {
		const tab = await newPage();
		// Every payment request's Idempotency-Key. The first request is held back (never sent on), as if the network
		// lost it; the ones after it go through.
		const payKeys: string[] = [];
		let paySeen: () => void = () => undefined;
		let payLeft = new Promise<void>(resolve => (paySeen = resolve));
		await tab.setRequestInterception(true);
		tab.on("request", (req: HTTPRequest) => {
			if (new URL(req.url()).pathname === "/api/payments" && req.method() === "POST") {
				payKeys.push(req.headers()["idempotency-key"]);
				if (payKeys.length > 1) void req.continue();
				paySeen();
				return;
			}
			void req.continue();
		});

		// Signed in again in a new tab (sessionStorage is per tab); straight to the show's waiting room: admitted at once.
		await tab.goto(`${origin}/#/queue/${concertId}/${scheduleId}`, { waitUntil: "load" });
		await tab.waitForSelector("#signin-form");
		await tab.type("#signin-email", email);
		await tab.type("#signin-password", PASSWORD);
		await tab.click("#signin-submit");
		await waitShown(seat("B-3"), 15_000, tab);
		expect(await tab.$eval(seat("B-3"), e => (e as unknown as Shown).dataset.status)).toBe("HELD");

		// The other fan lets B-3 go: the open map shows it free again by itself (live feed, or polling without it).
		const released = Date.now();
		expect(
			(await http("POST", `${api}/reservations/${blockerHold}/cancel`, { token: blockerB.token, headers: { "idempotency-key": `c-${blockerHold}` } }))
				.status
		).toBe(200);
		await tab.waitForFunction(`document.querySelector('${seat("B-3")}').dataset.status === "AVAILABLE"`, { timeout: 10_000 });
		const mode = await tab.$eval("#seat-feed", e => (e as unknown as Shown).dataset.mode);
		console.log(`the map showed B-3 free ${Date.now() - released} ms after its release (${mode === "live" ? "live feed" : "polling"})`);

		await tab.click(seat("C-1"));
		await tab.click(seat("C-2"));
		await tab.click("#hold");
		await tab.waitForSelector('#checkout[data-status="PENDING"]', { timeout: 10_000 });
		const reservationId = tab.url().split("#/checkout/")[1];

		// A double click on Pay: one request (the button is off while it runs); it never arrives, and the fan reloads.
		await tab.click("#pay", { count: 2 });
		await payLeft;
		await new Promise(r => setTimeout(r, 300));
		expect(payKeys.length).toBe(1);
		await tab.reload({ waitUntil: "load" });
		await tab.waitForSelector('#checkout[data-status="PENDING"]', { timeout: 10_000 });
		expect(await text("#checkout-state", tab)).toContain("you will not be charged twice");
		await axe("checkout after a lost payment", tab);
		await shot("14-checkout-after-reload", tab);

		// Pay again (the same key), and reload as soon as that request has left: the page finds the booking's real state.
		payLeft = new Promise<void>(resolve => (paySeen = resolve));
		await tab.click("#pay");
		await payLeft;
		await tab.reload({ waitUntil: "load" });
		await tab.waitForSelector('#ticket[data-status="CONFIRMED"]', { timeout: 20_000 });
		expect([payKeys.length, new Set(payKeys).size]).toEqual([2, 1]);
		const payments = (
			(await http("GET", `${api}/payments`, { token: fanToken })).body.rows as { id: string; reservationId: string; status: string }[]
		).filter(p => p.reservationId === reservationId);
		expect(payments.map(p => p.status)).toEqual(["COMPLETED"]);
		expect(await text("#ticket-payment", tab)).toBe(payments[0].id);
		expect(await text("#ticket-status", tab)).toBe("Confirmed");
		expect((await http("GET", `${api}/points`, { token: fanToken })).body.balance).toBe(17_000);
		await axe("ticket after reload", tab);
		await shot("15-ticket-after-reload", tab);
		expect(problems).toEqual([]);
	}, 90_000);

	/** A seat's id by its label. */
	async function seatId(label: string): Promise<string> {
		const list = (await http("GET", `${api}/schedules/${scheduleId}/seats`)).body as { id: string; label: string }[];
		return list.find(s => s.label === label)!.id;
	}
});
