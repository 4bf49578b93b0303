/**
 * The import layers (docs/ARCHITECTURE.md), checked on the source: lib/ is the bottom and imports nothing of the
 * platform above it; mixins/ and sagas/ build on lib/ only; a service context imports lib/, mixins/, sagas/, its own
 * files, and of another context only that context's type-only `<context>.api.ts` contract. A new upward or
 * sideways import fails here before review.
 */
import fs from "fs";
import path from "path";

const ROOT = path.resolve(__dirname, "../..");

function sources(dir: string): string[] {
	const out: string[] = [];
	for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
		const rel = path.join(dir, e.name);
		if (e.isDirectory()) out.push(...sources(rel));
		else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts")) out.push(rel);
	}
	return out;
}

/** Every relative import of a file, resolved to a path from the repository root, with whether it is type-only. */
function importsOf(file: string): { target: string; typeOnly: boolean }[] {
	const text = fs.readFileSync(path.join(ROOT, file), "utf8");
	const found: { target: string; typeOnly: boolean }[] = [];
	for (const m of text.matchAll(/^(?:import|export)\s+(type\s+)?[^;]*?from\s+"(\.[^"]+)"/gms)) {
		found.push({ target: path.normalize(path.join(path.dirname(file), m[2])), typeOnly: Boolean(m[1]) });
	}
	return found;
}

const layerOf = (p: string): string => p.split(path.sep)[0];
const contextOf = (p: string): string | undefined => (p.startsWith(`services${path.sep}`) ? p.split(path.sep)[1] : undefined);

const ALLOWED: Record<string, string[]> = {
	lib: ["lib"],
	mixins: ["lib", "mixins"],
	sagas: ["lib", "sagas"],
	services: ["lib", "mixins", "sagas", "services"]
};

/** What is wrong with one import edge, or null. */
function edgeProblem(file: string, target: string, typeOnly: boolean): string | null {
	const from = layerOf(file);
	const to = layerOf(target);
	if (!(to in ALLOWED)) return null; // package.json and the like
	if (!ALLOWED[from].includes(to)) return `${file} -> ${target}`;
	if (from === "services" && to === "services" && contextOf(file) !== contextOf(target)) {
		const contract = path.basename(target) === `${contextOf(target)}.api`;
		if (!contract || !typeOnly) return `${file} -> ${target} (another context: only its type-only .api.ts)`;
	}
	return null;
}

const violations = (file: string): string[] => importsOf(file).flatMap(i => edgeProblem(file, i.target, i.typeOnly) ?? []);

describe("import layers", () => {
	const files = ["lib", "mixins", "sagas", "services"].flatMap(sources);

	it("when the source is scanned, then it finds the files of every layer (the check sees something)", () => {
		for (const layer of ["lib", "mixins", "sagas", "services"]) expect(files.filter(f => layerOf(f) === layer).length).toBeGreaterThan(2);
		expect(files.flatMap(importsOf).length).toBeGreaterThan(100);
	});

	it("when a file imports another, then the import runs down the layers, and across contexts only to a contract", () => {
		expect(files.flatMap(violations)).toEqual([]);
	});

	it("when an import runs upward or into another context's internals, then the check names it", () => {
		// The rule itself, on made-up edges: it must be able to fail.
		const rule = (file: string, target: string, typeOnly = false) => edgeProblem(path.normalize(file), path.normalize(target), typeOnly) === null;
		expect(rule("lib/outbox.ts", "mixins/db.mixin")).toBe(false);
		expect(rule("sagas/store.ts", "services/saga/saga.service")).toBe(false);
		expect(rule("services/review/review.service.ts", "services/concert/catalog.repo", true)).toBe(false);
		expect(rule("services/review/review.service.ts", "services/concert/concert.api", false)).toBe(false);
		expect(rule("services/review/review.service.ts", "services/concert/concert.api", true)).toBe(true);
		expect(rule("services/review/review.service.ts", "lib/request")).toBe(true);
	});
});
