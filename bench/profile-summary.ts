/**
 * Summarises V8 CPU profiles (`npm run bench -- <scenario> --cpu-prof` writes one per node process into
 * bench/results/prof-*): self time per function and per package, heaviest first, so a profile answers "what
 * dominates" without opening DevTools.
 *
 *   node -r ts-node/register/transpile-only bench/profile-summary.ts <dir-or-file.cpuprofile> [top=25] [results.json]
 *
 * With the run's results JSON, only the samples inside the timed phase count (its `profileWindowUs`: both clocks
 * are CLOCK_MONOTONIC), so start-up (ts-node compiling every file) and setup do not hide the steady state.
 */
import fs from "fs";
import path from "path";

interface ProfileNode {
	id: number;
	callFrame: { functionName: string; url: string; lineNumber: number };
	hitCount?: number;
	children?: number[];
}
interface Profile {
	nodes: ProfileNode[];
	startTime: number;
	endTime: number;
	samples?: number[];
	timeDeltas?: number[];
}

function packageOf(url: string): string {
	if (!url) return "(native/gc/idle)";
	const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
	if (m) return m[1];
	if (url.startsWith("node:")) return "node core";
	const rel = url.replace(/^file:\/\//, "");
	const root = path.resolve(__dirname, "..");
	return rel.startsWith(root) ? path.relative(root, rel).split("/").slice(0, 2).join("/") : rel;
}

function summarise(file: string, top: number, window?: number[]): void {
	const p = JSON.parse(fs.readFileSync(file, "utf8")) as Profile;
	const byId = new Map(p.nodes.map(n => [n.id, n]));
	const self = new Map<number, number>();
	const samples = p.samples ?? [];
	const deltas = p.timeDeltas ?? [];
	let at = p.startTime;
	let total = 0;
	for (let i = 0; i < samples.length; i++) {
		at += deltas[i] ?? 0;
		if (window && (at < window[0] || at > window[1])) continue;
		const ms = (deltas[i] ?? 0) / 1000;
		total += ms;
		self.set(samples[i], (self.get(samples[i]) ?? 0) + ms);
	}
	const fn = new Map<string, number>();
	const pkg = new Map<string, number>();
	let idle = 0;
	for (const [id, ms] of self) {
		const n = byId.get(id)!;
		const name = n.callFrame.functionName || "(anonymous)";
		if (name === "(idle)") {
			idle += ms;
			continue;
		}
		const key = `${name}  ${packageOf(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
		fn.set(key, (fn.get(key) ?? 0) + ms);
		const pk = ["(garbage collector)", "(program)"].includes(name) ? name : packageOf(n.callFrame.url);
		pkg.set(pk, (pkg.get(pk) ?? 0) + ms);
	}
	const busy = total - idle;
	process.stdout.write(
		`\n${path.basename(file)}: ${(total / 1000).toFixed(1)} s profiled, ${(busy / 1000).toFixed(1)} s busy (${((100 * busy) / total).toFixed(0)}%)\n`
	);
	process.stdout.write("  by package:\n");
	for (const [k, ms] of [...pkg.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
		process.stdout.write(`    ${((100 * ms) / busy).toFixed(1).padStart(5)}%  ${k}\n`);
	}
	process.stdout.write("  by function (self time):\n");
	for (const [k, ms] of [...fn.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) {
		process.stdout.write(`    ${((100 * ms) / busy).toFixed(1).padStart(5)}%  ${k}\n`);
	}
}

const target = process.argv[2];
const top = Number(process.argv[3] ?? 25);
const resultsFile = process.argv[4];
const window = resultsFile
	? (JSON.parse(fs.readFileSync(resultsFile, "utf8")) as { runs: { facts: { resources: { profileWindowUs: number[] } } }[] }).runs[0].facts.resources
			.profileWindowUs
	: undefined;
if (!target) throw new Error("usage: profile-summary.ts <dir-or-file> [top]");
const files = fs.statSync(target).isDirectory()
	? fs
			.readdirSync(target)
			.filter(f => f.endsWith(".cpuprofile"))
			.map(f => path.join(target, f))
	: [target];
for (const f of files) summarise(f, top, window);
