/**
 * `npm run chaos -- <fault>[,<fault>...]|all [options]`: the platform under faults, one per phase, with every
 * invariant checked after each.
 *
 * The harness starts its own MariaDB, Redis (AOF) and NATS (chaos/servers.ts), the `npm run cluster` topology
 * on them (chaos/cluster.ts), and a population of shoppers (chaos/clients.ts). Each phase: a fresh concert goes
 * on sale, the shoppers buy for `--warm` seconds, the fault is injected (chaos/faults.ts), the shoppers go on for
 * `--after` seconds after it is over, the load stops, the platform settles (sagas terminal, outbox drained, the
 * consistency check clean, at most `--settle` seconds), and the invariants and availability figures are recorded
 * (chaos/checks.ts). The table goes to stdout and, as JSON, to chaos/results/.
 *
 *   npm run chaos -- all
 *   npm run chaos -- kill-booking,nats-restart --clients 16 --warm 10 --after 15
 *   npm run chaos -- --list
 *
 * Exit code 1 when any invariant was violated. Every server and process it started is stopped, and the run's
 * directory removed (`--keep` keeps it, with each server's data and the cluster's log).
 */
import fs from "fs";
import os from "os";
import path from "path";
import { Sql, type Check } from "../bench/checks";
import { freePort } from "../test/support/nats-server";
import { availability, invariantChecks, settle, type Availability } from "./checks";
import { Population } from "./clients";
import { CHAOS_ADMIN, CHAOS_DB_PREFIX, startCluster, type ChaosCluster } from "./cluster";
import { FAULTS, faultsNamed, type Fault } from "./faults";
import { startServers, type Servers } from "./servers";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

export interface ChaosOptions {
	faults: string[];
	clients: number;
	warmS: number;
	afterS: number;
	settleS: number;
	/** Multiplies the faults' own durations (25 s stop, 8 s NATS outage...); 1 is the issue's figures. */
	scale: number;
	keep: boolean;
	log: (s: string) => void;
}

export interface PhaseResult {
	fault: string;
	what: string;
	from: "fault" | "back";
	faultS: number;
	confirmed: number;
	availability: Availability;
	/** Every answer from the fault to the end of the load, per operation and status (type): where the errors were. */
	answers: Record<string, Record<string, number>>;
	settledS: number;
	checks: Check[];
	ok: boolean;
}

export interface ChaosResult {
	startedAt: string;
	machine: string;
	options: Omit<ChaosOptions, "log">;
	phases: PhaseResult[];
	ok: boolean;
}

export async function runChaos(opts: ChaosOptions, onStop: (fn: () => Promise<void>) => void = () => undefined): Promise<ChaosResult> {
	const faults = faultsNamed(opts.faults);
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crp-chaos-"));
	let servers: Servers | undefined;
	let cluster: ChaosCluster | undefined;
	let pop: Population | undefined;
	let sql: Sql | undefined;
	const cleanup = async () => {
		await pop?.stop().catch(() => undefined);
		pop?.close();
		await sql?.close().catch(() => undefined);
		await cluster?.stop().catch(e => opts.log(`stopping the cluster: ${(e as Error).message}`));
		await servers?.stop();
		if (!opts.keep) fs.rmSync(dir, { recursive: true, force: true });
		else opts.log(`kept ${dir}`);
	};
	onStop(cleanup);
	const result: ChaosResult = {
		startedAt: new Date().toISOString(),
		machine: `${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
		options: {
			faults: faults.map(f => f.name),
			clients: opts.clients,
			warmS: opts.warmS,
			afterS: opts.afterS,
			settleS: opts.settleS,
			scale: opts.scale,
			keep: opts.keep
		},
		phases: [],
		ok: true
	};
	try {
		servers = await startServers(dir, opts.log);
		cluster = await startCluster(servers, { port: await freePort(), dataDir: path.join(dir, "cluster"), log: opts.log });
		sql = new Sql({ dialect: "mysql", prefix: CHAOS_DB_PREFIX, port: servers.mariadb.port });
		pop = new Population(cluster.api, opts.clients);
		const admin = await adminToken(pop);
		const consistency = async () => {
			const r = await pop!.send("check", "GET", "/admin/consistency?full=true", { token: admin });
			if (!r || r.status !== 200) throw new Error(`consistency check: HTTP ${r?.status}`);
			return r.body as { ok: boolean; checks: { name: string; ok: boolean; details: unknown }[] };
		};
		opts.log(`${opts.clients} shoppers sign up and charge points...`);
		await pop.setup();

		for (const fault of faults) {
			const phase = await runPhase(fault, { opts, servers, cluster, pop, sql, admin, consistency });
			result.phases.push(phase);
			result.ok &&= phase.ok;
			printPhase(phase, opts.log);
		}
	} catch (err) {
		if (cluster) opts.log(`cluster log (last lines):\n${cluster.tail().slice(-30).join("\n")}`);
		throw err;
	} finally {
		await cleanup();
	}
	return result;
}

interface PhaseContext {
	opts: ChaosOptions;
	servers: Servers;
	cluster: ChaosCluster;
	pop: Population;
	sql: Sql;
	admin: string;
	consistency: () => Promise<{ ok: boolean; checks: { name: string; ok: boolean; details: unknown }[] }>;
}

async function runPhase(fault: Fault, c: PhaseContext): Promise<PhaseResult> {
	const { opts, pop } = c;
	opts.log(`--- ${fault.name}: ${fault.what}`);
	const sale = await newSale(pop, c.admin, opts.clients);
	const confirmedBefore = pop.confirmations.length;
	pop.start(sale);
	await sleep(opts.warmS * 1000);
	const faultAt = pop.now();
	await fault.inject({ servers: c.servers, cluster: c.cluster, log: opts.log, scale: opts.scale });
	const backAt = pop.now();
	await sleep(opts.afterS * 1000);
	const endAt = pop.now();
	await pop.stop();
	opts.log(`load stopped; settling (at most ${opts.settleS} s)...`);
	const settled = await settle(c.sql, c.consistency, opts.settleS * 1000);
	const report = await c.consistency().catch(() => undefined);
	const checks = await invariantChecks(c.sql, pop, report);
	return {
		fault: fault.name,
		what: fault.what,
		from: fault.from,
		faultS: Math.round((backAt - faultAt) / 100) / 10,
		confirmed: pop.confirmations.length - confirmedBefore,
		availability: availability(pop.attempts, pop.confirmations, faultAt, backAt, endAt, fault.from),
		answers: answersBetween(pop, faultAt, endAt),
		settledS: Math.round(settled.ms / 100) / 10,
		checks,
		ok: checks.every(ch => ch.ok)
	};
}

function answersBetween(pop: Population, from: number, to: number): Record<string, Record<string, number>> {
	const out: Record<string, Record<string, number>> = {};
	for (const a of pop.attempts) {
		if (a.t < from || a.t > to) continue;
		const k = `${a.status}${a.type ? ` ${a.type}` : ""}`;
		out[a.op] ??= {};
		out[a.op][k] = (out[a.op][k] ?? 0) + 1;
	}
	return out;
}

async function adminToken(pop: Population): Promise<string> {
	for (let k = 0; k < 60; k++) {
		const r = await pop.send("login", "POST", "/auth/login", { body: CHAOS_ADMIN });
		if (r?.status === 200) return (r.body as { accessToken: string }).accessToken;
		await sleep(1000);
	}
	throw new Error("the admin account never became available");
}

/** A concert on sale now with enough seats for the phase (about 60 per shopper, at most one full hall: 26 x 60). */
async function newSale(pop: Population, admin: string, clients: number) {
	const perRow = 60;
	const rows = Math.min(26, Math.max(4, Math.ceil((clients * 60) / perRow)));
	const tag = `${Date.now().toString(36)}`;
	const r = await pop.send("check", "POST", "/admin/concerts", {
		token: admin,
		key: `concert-${tag}`,
		body: {
			title: `Chaos ${tag}`,
			artist: "Chaos",
			venue: { name: `Chaos Hall ${tag}` },
			schedules: [{ startsAt: new Date(Date.now() + 30 * 86400_000).toISOString() }],
			seats: { rows, perRow, price: 1000, grades: [{ grade: "VIP", rows: 1, price: 2500 }] }
		}
	});
	if (!r || r.status !== 201) throw new Error(`create concert: ${r?.status} ${JSON.stringify(r?.body)}`);
	const concert = r.body as { id: string; schedules: { id: string }[] };
	const seats = await pop.send("check", "GET", `/schedules/${concert.schedules[0].id}/seats`);
	if (!seats || seats.status !== 200) throw new Error(`seats: ${seats?.status}`);
	const ids = (seats.body as { id: string }[]).map(s => s.id);
	// Shuffled, so concurrent shoppers spread over rows and prices.
	for (let i = ids.length - 1; i > 0; i--) {
		const j = Math.floor(Math.random() * (i + 1));
		[ids[i], ids[j]] = [ids[j], ids[i]];
	}
	return { concertId: concert.id, scheduleId: concert.schedules[0].id, seats: ids };
}

function printPhase(p: PhaseResult, log: (s: string) => void): void {
	const a = p.availability;
	log(
		`${p.ok ? "OK  " : "FAIL"} ${p.fault}: ${p.confirmed} confirmed; baseline ${a.baselinePerSec}/s; errors ${JSON.stringify(a.errors)} of ${a.attempts} attempts; ` +
			`first success ${a.firstSuccessS ?? "-"} s, half rate ${a.halfRateS ?? "-"} s after the ${p.from === "fault" ? "fault" : "server's return"}; settled in ${p.settledS} s`
	);
	const refused = Object.entries(p.answers)
		.map(([op, byStatus]) => [op, Object.entries(byStatus).filter(([k]) => !/^2/.test(k))] as const)
		.filter(([, list]) => list.length > 0)
		.map(([op, list]) => `${op} ${list.map(([k, n]) => `${n}x ${k}`).join(", ")}`);
	if (refused.length > 0) log(`     non-2xx after the fault: ${refused.join("; ")}`);
	for (const ch of p.checks) if (!ch.ok) log(`     violated: ${ch.name}: ${ch.details}`);
}

/** RELIABILITY.md's table rows for a run. */
export function markdownRows(r: ChaosResult): string {
	const fmt = (v: number | null) => (v === null ? "never" : `${v} s`);
	return r.phases
		.map(p => {
			const a = p.availability;
			const errs = Object.entries(a.errors)
				.sort((x, y) => y[1] - x[1])
				.map(([k, n]) => `${n}x ${k}`)
				.join(", ");
			const bad = p.checks.filter(c => !c.ok).map(c => c.name);
			return `| ${p.fault} | ${bad.length === 0 ? `all ${p.checks.length} hold` : `**${bad.length} violated**: ${bad.join("; ")}`} | ${p.confirmed} | ${a.baselinePerSec}/s | ${errs || "none"} | ${fmt(a.firstSuccessS)} | ${fmt(a.halfRateS)} | ${p.settledS} s |`;
		})
		.join("\n");
}

function parseArgs(argv: string[]): ChaosOptions & { list: boolean } {
	const o: ChaosOptions & { list: boolean } = {
		faults: [],
		clients: 24,
		warmS: 15,
		afterS: 20,
		settleS: 240,
		scale: 1,
		keep: false,
		log: s => process.stdout.write(`${s}\n`),
		list: false
	};
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const num = () => {
			const v = Number(argv[++i]);
			if (!Number.isFinite(v) || v <= 0) throw new Error(`${a} needs a positive number`);
			return v;
		};
		if (a === "--clients") o.clients = Math.round(num());
		else if (a === "--warm") o.warmS = num();
		else if (a === "--after") o.afterS = num();
		else if (a === "--settle") o.settleS = num();
		else if (a === "--scale") o.scale = num();
		else if (a === "--keep") o.keep = true;
		else if (a === "--list") o.list = true;
		else if (a.startsWith("--")) throw new Error(`unknown option ${a}`);
		else o.faults.push(...a.split(",").filter(Boolean));
	}
	return o;
}

async function main(): Promise<void> {
	let o: ReturnType<typeof parseArgs>;
	try {
		o = parseArgs(process.argv.slice(2));
		if (o.list || o.faults.length === 0) {
			process.stdout.write(
				`usage: npm run chaos -- <fault>[,<fault>...]|all [--clients 24] [--warm 15] [--after 20] [--settle 240] [--scale 1] [--keep]\nfaults:\n${FAULTS.map(f => `  ${f.name.padEnd(22)} ${f.what}`).join("\n")}\n`
			);
			process.exit(o.list ? 0 : 2);
		}
		faultsNamed(o.faults);
	} catch (err) {
		process.stderr.write(`${(err as Error).message}\n`);
		process.exit(2);
	}
	let stop: (() => Promise<void>) | undefined;
	const interrupted = async () => {
		process.stdout.write("\ninterrupted: stopping the cluster and the servers...\n");
		await stop?.().catch(() => undefined);
		process.exit(130);
	};
	process.once("SIGINT", interrupted);
	process.once("SIGTERM", interrupted);
	const result = await runChaos(o, fn => (stop = fn));
	const outDir = path.join(__dirname, "results");
	fs.mkdirSync(outDir, { recursive: true });
	const file = path.join(outDir, `chaos-${result.startedAt.replace(/[:.]/g, "-")}.json`);
	fs.writeFileSync(file, JSON.stringify(result, null, 2));
	process.stdout.write(
		`\n| fault | invariants | confirmed | baseline | errors during the fault | first success | half rate | settled |\n|---|---|---|---|---|---|---|---|\n${markdownRows(result)}\n\nresults: ${path.relative(process.cwd(), file)}\n`
	);
	process.exit(result.ok ? 0 : 1);
}

if (require.main === module) {
	main().catch(err => {
		process.stderr.write(`${(err as Error).stack ?? err}\n`);
		process.exit(1);
	});
}
