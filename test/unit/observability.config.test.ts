/**
 * The monitoring of the docker-compose `observability` profile, checked without Docker: promtool validates the
 * Prometheus config and the alert rules and runs the rules' unit tests (docker/prometheus/alerts.test.yml: each alert
 * fires on a broken series and stays quiet on a healthy one); the Grafana dashboard is parsed, every query must be
 * valid PromQL, be scoped to the selected namespace and use only metric names the platform exports, so a renamed
 * metric or a typo in a query fails here instead of leaving an empty panel or an alert that can never fire.
 * Needs promtool (Debian's `prometheus` package); without it the promtool tests fail, they are never skipped.
 */
import { execFileSync } from "child_process";
import fs from "fs";
import os from "os";
import path from "path";
import { EXPORTED } from "../support/metric-names";

const ROOT = path.resolve(__dirname, "../..");
const DASHBOARD = "docker/grafana/dashboards/platform.json";
const DATASOURCE = { type: "prometheus", uid: "prometheus" };

/** Runs promtool from the repository root; a missing promtool or a failed check throws with what promtool printed. */
function promtool(...args: string[]): string {
	try {
		return execFileSync("promtool", args, { cwd: ROOT, encoding: "utf8", stdio: "pipe" });
	} catch (err) {
		const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
		if (e.code === "ENOENT")
			throw new Error("promtool is not installed: install Debian's `prometheus` package (apt-get install prometheus), which ships it");
		throw new Error(`promtool ${args.join(" ")} failed:\n${e.stdout ?? ""}${e.stderr ?? ""}`);
	}
}

interface Target {
	refId?: string;
	expr?: string;
	datasource?: unknown;
}
interface Panel {
	id: number;
	type: string;
	title: string;
	datasource?: unknown;
	targets?: Target[];
	panels?: Panel[];
}
interface Dashboard {
	uid: string;
	title: string;
	schemaVersion: number;
	refresh: string;
	time: { from: string; to: string };
	templating: { list: { name: string; definition?: string; datasource?: unknown }[] };
	panels: Panel[];
}

const dashboard = (): Dashboard => JSON.parse(fs.readFileSync(path.join(ROOT, DASHBOARD), "utf8")) as Dashboard;

/** Every panel that shows data: rows are only headings (a collapsed row keeps its panels inside it). */
function dataPanels(panels: Panel[]): Panel[] {
	return panels.flatMap(p => (p.type === "row" ? dataPanels(p.panels ?? []) : [p]));
}

/** The metric names of a PromQL expression: identifiers that are neither functions, keywords, labels nor strings. */
function metricNames(expr: string): string[] {
	const bare = expr
		.replace(/"(?:[^"\\]|\\.)*"/g, '""')
		.replace(/\{[^}]*\}/g, "")
		.replace(/\[[^\]]*\]/g, "")
		.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "");
	const keywords = new Set(["and", "or", "unless", "offset", "bool", "inf", "nan"]);
	return [...bare.matchAll(/(?<![\w:.])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()/g)].map(m => m[0]).filter(w => !keywords.has(w.toLowerCase()));
}

/** Whether every selector of `name` in `expr` carries namespace="$namespace". */
function scoped(expr: string, name: string): boolean {
	const all = expr.match(new RegExp(`(?<![\\w:])${name}(?![\\w:])`, "g")) ?? [];
	const filtered = expr.match(new RegExp(`(?<![\\w:])${name}\\{[^}]*namespace="\\$namespace"[^}]*\\}`, "g")) ?? [];
	return all.length > 0 && all.length === filtered.length;
}

describe("observability configuration (docker compose --profile observability)", () => {
	it("when promtool checks the Prometheus config, then its syntax is valid (the rule file path is the container's)", () => {
		expect(promtool("check", "config", "--syntax-only", "docker/prometheus/prometheus.yml")).toMatch(/SUCCESS/);
	});

	it("when promtool checks the alert rules, then they are valid", () => {
		expect(promtool("check", "rules", "docker/prometheus/alerts.yml")).toMatch(/SUCCESS/);
	});

	it("when the rules' unit tests run on synthetic series, then each alert fires when broken and stays quiet when healthy", () => {
		expect(promtool("test", "rules", "docker/prometheus/alerts.test.yml")).toMatch(/SUCCESS/);
	});

	it("when the dashboard is read, then it is the platform dashboard on the provisioned Prometheus", () => {
		const d = dashboard();
		expect(d).toMatchObject({
			uid: "crp-platform",
			title: "Concert reservation platform",
			schemaVersion: 39,
			refresh: "10s",
			time: { from: "now-1h", to: "now" }
		});
		const ns = d.templating.list.find(v => v.name === "namespace");
		expect(ns).toMatchObject({ definition: "label_values(moleculer_broker_started, namespace)", datasource: DATASOURCE });
		const panels = dataPanels(d.panels);
		expect(panels.length).toBeGreaterThan(10);
		for (const p of panels) {
			expect({ panel: p.title, datasource: p.datasource }).toEqual({ panel: p.title, datasource: DATASOURCE });
			const exprs = (p.targets ?? []).filter(t => typeof t.expr === "string" && t.expr.trim() !== "");
			expect({ panel: p.title, queries: exprs.length > 0 }).toEqual({ panel: p.title, queries: true });
			for (const t of p.targets ?? []) if (t.datasource !== undefined) expect(t.datasource).toEqual(DATASOURCE);
		}
	});

	it("when the dashboard's queries are read, then they use only exported metric names, each scoped to $namespace", () => {
		const exprs = dataPanels(dashboard().panels).flatMap(p => (p.targets ?? []).map(t => ({ panel: p.title, expr: t.expr ?? "" })));
		const used = new Set(exprs.flatMap(e => metricNames(e.expr)));
		expect(used.size).toBeGreaterThan(20);
		expect([...used].filter(n => !EXPORTED.has(n))).toEqual([]);
		// `up` is written by Prometheus per target and has no namespace label: its panel selects the platform's jobs.
		const unscoped = exprs.filter(e => metricNames(e.expr).some(n => n !== "up" && !scoped(e.expr, n)));
		expect(unscoped).toEqual([]);
	});

	it("when every dashboard query is checked by promtool, then it is valid PromQL", () => {
		const queries = dataPanels(dashboard().panels).flatMap(p =>
			(p.targets ?? []).map(t => ({ record: `dashboard:panel_${p.id}_${t.refId}`, expr: t.expr ?? "" }))
		);
		const rules = { groups: [{ name: "dashboard", rules: queries.map(q => ({ record: q.record, expr: q.expr.replace(/\$namespace/g, "crp") })) }] };
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crp-dashboard-"));
		try {
			// JSON is YAML: promtool reads the rule file as is.
			const file = path.join(dir, "dashboard.rules.yml");
			fs.writeFileSync(file, JSON.stringify(rules));
			expect(promtool("check", "rules", file)).toMatch(new RegExp(`SUCCESS: ${queries.length} rules found`));
		} finally {
			fs.rmSync(dir, { recursive: true, force: true });
		}
	});
});
