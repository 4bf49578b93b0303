/**
 * Headless Chromium for the page tests (the operator console, the booking page): Debian's `chromium` driven by
 * puppeteer-core. The browser: CHROMIUM_PATH, else `command -v chromium`, else /usr/bin/chromium (.ci/run installs
 * the package when it is missing).
 */
import { execSync } from "child_process";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { http } from "./harness";

export function chromiumPath(): string {
	if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
	try {
		const found = execSync("command -v chromium", { shell: "/bin/sh", encoding: "utf8" }).trim();
		if (found) return found;
	} catch {
		/* not on the PATH */
	}
	return "/usr/bin/chromium";
}

export function launchBrowser(): Promise<Browser> {
	return puppeteer.launch({ executablePath: chromiumPath(), headless: true, args: ["--no-sandbox", "--headless=new"] });
}

/**
 * A new fan (signed up over the API) in a browser context of their own, signed in through the booking page's form
 * and taken on to `hash`. Script errors and console errors (other than failed resources, which the page handles)
 * go to `problems`.
 */
export async function fanPage(
	browser: Browser,
	at: { api: string; origin: string },
	name: string,
	hash: string,
	problems: string[]
): Promise<{ page: Page; email: string }> {
	const email = `${name}-${Date.now().toString(36)}@example.com`;
	const password = "fan-password-1";
	const reg = await http("POST", `${at.api}/auth/register`, { body: { email, password, name } });
	if (reg.status !== 201) throw new Error(`register ${name}: ${reg.status}`);
	const page = await (await browser.createBrowserContext()).newPage();
	await page.setViewport({ width: 1280, height: 900 });
	page.on("console", m => {
		if (m.type() === "error" && !/^Failed to load resource/.test(m.text())) problems.push(`${name} console: ${m.text()}`);
	});
	page.on("pageerror", e => problems.push(`${name} page error: ${(e as Error).message}`));
	// Signed out, the page keeps where the fan was going and goes there after the sign-in.
	await page.goto(`${at.origin}/${hash}`, { waitUntil: "load" });
	await page.waitForSelector("#signin-form");
	await page.type("#signin-email", email);
	await page.type("#signin-password", password);
	await page.click("#signin-submit");
	await page.waitForFunction(`!document.querySelector("#signin-form")`);
	return { page, email };
}
