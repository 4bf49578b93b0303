/**
 * The operator console (issue 19) in a real browser against a real cluster: Debian's chromium driven by
 * puppeteer-core, the brokers of test/support/ops.ts over NATS with MariaDB and Redis (the booking node also runs
 * the saga tests' definitions and fake participant, test/support/saga-services) plus a test consumer group. No
 * mocks: the saga fails on a fault of its participant (lifted by fake.heal), the event dead letter is a real one
 * from JetStream, the drift is written into this run's own payment database.
 *
 * An admin signs in at /admin, finds the FAILED saga, reads its journal, retries it once the fault is lifted and
 * sees it COMPLETED; inspects and replays an event dead letter; runs the consistency check and sees the drifted
 * wallet named; looks at the waiting rooms, the nodes and the live figures. A user without the admin role who signs
 * in is told so and the console fetches nothing. A screenshot of each page goes to test-results/console/
 * (gitignored); the paths are printed at the end.
 *
 * The browser: CHROMIUM_PATH, else `command -v chromium`, else /usr/bin/chromium.
 */
import crypto from "crypto";
import fs from "fs";
import path from "path";
import type { ServiceBroker } from "moleculer";
import type { Browser, Page } from "puppeteer-core";
import { adminToken, ownConcert, pay, reserve, seats, shopper, type Shopper } from "../support/booking";
import { EventNodes, makeEvent, publishRaw } from "../support/events";
import { sinkSchema, type SinkStats } from "../support/event-services/sink.service";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { OPS_ADMIN, schema, sqlOf } from "../support/ops";
import { SchemaNodes, serviceFile } from "../support/saga";
import FakeService from "../support/saga-services/fake/fake.service";
import { testSagaSchema } from "../support/saga-services/saga/saga.service";
import SagaService from "../../services/saga/saga.service";
import { launchBrowser } from "../support/browser";

/** What the test reads of an element in the page (the test is compiled without the DOM library). */
type Shown = { hidden: boolean; dataset: Record<string, string | undefined> };

const SHOTS = path.resolve(__dirname, "../../test-results/console");

describe("operator console in a browser (cluster)", () => {
	let env: TestEnv;
	let schemaNodes: SchemaNodes;
	let eventNodes: EventNodes;
	let gateway: ServiceBroker;
	let api: string;
	let origin: string;
	let admin: string;
	let buyer: Shopper;
	let concertId: string;
	let sagaId: string;
	let poisonId: string;
	let browser: Browser | undefined;
	let page: Page;
	const shots: string[] = [];
	/** Console messages and page errors: a CSP violation or a script error shows up here. */
	const problems: string[] = [];

	const shot = async (name: string, p: Page = page) => {
		const file = path.join(SHOTS, `${name}.png`);
		await p.screenshot({ path: file, fullPage: true });
		shots.push(file);
	};
	const go = async (hash: string) => {
		await page.evaluate(`location.hash = ${JSON.stringify(hash)}`);
	};
	const text = (selector: string, p: Page = page) => p.$eval(selector, e => e.textContent ?? "");

	beforeAll(async () => {
		fs.mkdirSync(SHOTS, { recursive: true });
		// Only the operator retries FAILED sagas here (no automatic retry racing the test).
		env = testEnv({ cluster: true, env: { ...OPS_ADMIN, SAGA_FAILED_RETRY_SEC: "0" } });
		schemaNodes = new SchemaNodes(env);
		eventNodes = new EventNodes(env);
		// test/support/ops.ts's three nodes, the booking node with the test saga definitions and their fake
		// participant beside the real ones (production saga settings), and a node of a test consumer group.
		const brokers = await Promise.all([
			env.broker(["api", "user", "queue", "ops"]),
			schemaNodes.node([serviceFile("reservation"), serviceFile("concert"), testSagaSchema({ ...SagaService.settings }), FakeService]),
			env.broker(["payment", "ranking", "notification"]),
			eventNodes.node([sinkSchema("console-sink", { maxAttempts: 2 })])
		]);
		gateway = brokers[0];
		await gateway.waitForServices(["reservation", "saga", "concert", "payment", "ranking", "notification", "fake", "sink-console-sink"], 45_000);
		api = gatewayUrl(gateway);
		origin = new URL(api).origin;
		admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);

		// An event the test group cannot handle until it is "fixed": dead-lettered after two deliveries.
		const poison = makeEvent("test.happened", `poison-${crypto.randomBytes(3).toString("hex")}`, 1, { poison: true });
		poisonId = poison.id;
		await publishRaw(env.config.namespace, [poison]);

		// A real booking (the figures' bookings and payment p99), by a buyer whose wallet the drift test disturbs.
		({ concertId } = await ownConcert(api, admin, 1, 6, 1000));
		buyer = await shopper(api, concertId, 10_000, "console");
		const scheduleId = (await http("GET", `${api}/concerts/${concertId}`)).body.schedules[0].id as string;
		const held = await reserve(api, buyer, scheduleId, [(await seats(api, scheduleId))[0].id]);
		expect(held.status).toBe(201);
		expect((await pay(api, buyer, held.body.id)).status).toBe(201);

		browser = await launchBrowser();
	}, 120_000);

	afterAll(async () => {
		await browser?.close().catch(() => undefined);
		await Promise.all([schemaNodes?.stop(), eventNodes?.stop()]);
		await env?.cleanup();
		if (shots.length > 0) console.log(`console screenshots:\n${shots.join("\n")}`);
	}, 60_000);

	it("when an admin signs in, then the console finds the FAILED saga, shows its journal, and a retry after the fault is lifted completes it", async () => {
		// A saga whose third step, past the point of no return, keeps failing on a transient fault of its participant:
		// retried, then parked FAILED with a dead letter, until the fault is lifted (fake.heal).
		const parked = await gateway.call<{ id: string; status: string }, object>("saga.start", {
			type: "Pivot",
			key: `console-${crypto.randomUUID()}`,
			data: { plan: { c: { fail: -1, error: "transient" } } },
			waitMs: 10_000
		});
		expect(parked.status).toBe("FAILED");
		sagaId = parked.id;

		page = await browser!.newPage();
		await page.setViewport({ width: 1280, height: 900 });
		page.on("console", m => {
			if (m.type() === "error") problems.push(`console: ${m.text()}`);
		});
		page.on("pageerror", e => problems.push(`page error: ${(e as Error).message}`));
		await page.goto(`${origin}/admin`, { waitUntil: "load" });
		// Nothing but the sign-in form before anyone signs in.
		expect(await page.$eval("#app", e => (e as unknown as Shown).hidden)).toBe(true);
		expect(await page.$eval("#signin", e => (e as unknown as Shown).hidden)).toBe(false);
		await shot("01-sign-in");

		await page.type("#signin-email", OPS_ADMIN.ADMIN_EMAIL);
		await page.type("#signin-password", OPS_ADMIN.ADMIN_PASSWORD);
		await page.click("#signin-submit");
		await page.waitForSelector("#app:not([hidden]) #saga-list table", { timeout: 10_000 });
		expect(await page.evaluate(`[typeof sessionStorage.getItem("crp.console.token"), localStorage.length]`)).toEqual(["string", 0]);

		await go("#sagas?status=FAILED");
		await page.waitForSelector(`#saga-list tr[data-id="${sagaId}"]`, { timeout: 10_000 });
		await shot("02-sagas-failed");

		await page.click(`#saga-list tr[data-id="${sagaId}"] a`);
		await page.waitForSelector('#saga-detail[data-status="FAILED"] #saga-timeline li[data-step="c"]', { timeout: 10_000 });
		const steps = await page.$$eval("#saga-timeline li", lis =>
			lis.map(li => `${(li as unknown as Shown).dataset.phase}:${(li as unknown as Shown).dataset.step}:${(li as unknown as Shown).dataset.status}`)
		);
		expect(steps).toEqual(["forward:a:SUCCEEDED", "forward:b:SUCCEEDED", "forward:c:FAILED"]);
		const failedStep = await text('#saga-timeline li[data-step="c"]');
		expect(failedStep).toContain("FAKE_UNAVAILABLE");
		expect(failedStep).toMatch(/attempts 3 · duration \d+ ms/);
		await shot("03-saga-journal");

		await gateway.call("fake.heal", { sagaId });
		await page.click("#saga-retry");
		await page.waitForSelector('#saga-detail[data-status="COMPLETED"]', { timeout: 20_000 });
		expect(await text("#saga-detail h2")).toContain("COMPLETED");
		await shot("04-saga-completed");

		await go("#dead-letters?status=");
		await page.waitForSelector(`#dl-list tr[data-saga-id="${sagaId}"]`, { timeout: 10_000 });
		expect(await text(`#dl-list tr[data-saga-id="${sagaId}"]`)).toContain("RETRIED");
		await shot("05-saga-dead-letters");
	}, 60_000);

	it("when an admin inspects and replays an event dead letter, then it leaves the list and its group applies it once", async () => {
		await go("#event-dead-letters");
		await waitFor(
			async () => {
				if (await page.$(`#edl-list tr[data-event-id="${poisonId}"]`)) return true;
				await go(`#event-dead-letters?t=${Date.now()}`);
				await page.waitForSelector("#edl-list table", { timeout: 5_000 });
				return false;
			},
			20_000,
			"the event dead letter in the console",
			500
		);
		const row = `#edl-list tr[data-event-id="${poisonId}"]`;
		await page.click(`${row} .edl-inspect`);
		expect(await page.$eval(`${row} .edl-payload`, e => (e as unknown as Shown).hidden)).toBe(false);
		expect(JSON.parse(await text(`${row} .edl-payload`))).toMatchObject({ id: poisonId, type: "test.happened", payload: { poison: true } });
		await shot("06-event-dead-letters");

		await gateway.call("sink-console-sink.fix");
		await page.click(`${row} .edl-replay`);
		await page.waitForFunction(`!document.querySelector('#edl-list tr[data-event-id="${poisonId}"]') && !!document.querySelector("#edl-list table")`, {
			timeout: 10_000
		});
		expect(await text("#notice")).toContain(`Replayed dead letter`);
		await waitFor(
			async () => (await gateway.call<SinkStats, { ids: string[] }>("sink-console-sink.stats", { ids: [poisonId] })).applied[poisonId] === 1,
			10_000,
			"the replay to apply"
		);
		await shot("07-event-replayed");
	}, 60_000);

	it("when a wallet drifts from its ledger and the admin runs the consistency check, then the money check names that wallet", async () => {
		const sql = await sqlOf();
		try {
			await sql.query(`UPDATE ${schema(env, "payment")}.wallets SET balance = balance + 7 WHERE user_id = ?`, [buyer.userId]);
		} finally {
			await sql.end();
		}
		await go("#consistency");
		await page.waitForSelector("#consistency-run");
		await page.click("#consistency-run");
		await page.waitForSelector('#consistency-report .check[data-check="money"]', { timeout: 30_000 });
		expect(await page.$eval('#consistency-report .check[data-check="money"]', e => (e as unknown as Shown).dataset.status)).toBe("drift");
		expect(await text('#consistency-report .check[data-check="money"]')).toContain(buyer.userId);
		expect(await page.$$eval("[data-repair]", bs => bs.map(b => (b as unknown as Shown).dataset.repair))).toEqual(["ranking", "holds"]);
		await shot("08-consistency");
	}, 60_000);

	it("when the admin opens the waiting rooms, the nodes and the live figures, then each shows the cluster's figures", async () => {
		await go("#queues");
		await page.waitForSelector(`#queues tr[data-id="${concertId}"]`, { timeout: 10_000 });
		expect(await text(`#queues tr[data-id="${concertId}"]`)).toContain("OPEN");
		await shot("09-waiting-rooms");

		await go("#nodes");
		await page.waitForSelector("#nodes table", { timeout: 10_000 });
		const nodeIds = await page.$$eval("#nodes tr[data-id]", trs => trs.map(tr => (tr as unknown as Shown).dataset.id));
		expect(nodeIds).toEqual(expect.arrayContaining([gateway.nodeID]));
		expect(nodeIds.length).toBeGreaterThanOrEqual(4);
		expect(await text("#nodes")).toMatch(/reservation.*saga|saga.*reservation/);
		await shot("10-nodes");

		await go("#figures");
		await page.waitForSelector('#figures [data-figure="paymentP99"]', { timeout: 10_000 });
		// The retried saga completed within the window: one booking, a timed payment.
		await page.waitForFunction(`document.querySelector('[data-figure="completed"] .value')?.textContent !== "-"`, { timeout: 10_000 });
		expect(Number(await text('[data-figure="completed"] .value'))).toBeGreaterThanOrEqual(1);
		expect(await text('[data-figure="paymentP99"] .value')).toMatch(/\d+(\.\d+)? m?s/);
		// Refreshed while open: the stamp changes.
		const before = await text("#figures-at");
		await page.waitForFunction(`document.querySelector("#figures-at")?.textContent !== ${JSON.stringify(before)}`, { timeout: 10_000 });
		await shot("11-live-figures");
		expect(problems).toEqual([]);
	}, 60_000);

	it("when a user without the admin role signs in, then the console says there is no access and fetches nothing", async () => {
		const email = `fan-${crypto.randomBytes(4).toString("hex")}@example.com`;
		expect((await http("POST", `${api}/auth/register`, { body: { email, password: "password-1", name: "Fan" } })).status).toBe(201);
		const context = await browser!.createBrowserContext();
		const fan = await context.newPage();
		const requests: string[] = [];
		fan.on("request", r => requests.push(new URL(r.url()).pathname));
		await fan.goto(`${origin}/admin`, { waitUntil: "load" });
		await fan.type("#signin-email", email);
		await fan.type("#signin-password", "password-1");
		await fan.click("#signin-submit");
		await fan.waitForSelector("#denied:not([hidden])", { timeout: 10_000 });
		expect(await text("#denied-text", fan)).toContain("no access");
		expect(await fan.$eval("#app", e => (e as unknown as Shown).hidden)).toBe(true);
		expect(await fan.$eval("#page", e => e.childElementCount)).toBe(0);
		expect(await fan.evaluate(`sessionStorage.getItem("crp.console.token")`)).toBeNull();
		expect(requests.filter(p => p.startsWith("/api/") && p !== "/api/auth/login")).toEqual([]);
		await shot("12-non-admin", fan);
		await context.close();
	}, 30_000);
});
