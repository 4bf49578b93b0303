/**
 * Flash-sale benchmark (issue 10). One command per scenario:
 *
 *   npm run bench -- <queue|hold|checkout|flashsale|baseline|logins> [--target embedded|cluster|url] [--url http://host:port]
 *        [--users N] [--seats M] [--concurrency C] [--seconds S] [--repeat K] [--port 3300] [--metrics-port 0]
 *        [--runtime compiled|ts-node] [--cpu-prof] [--log-level warn] [--rate N (checkout: open loop, N/s)]
 *
 * The bench starts its own instance (bench/target.ts: own ports, namespace, database prefix, store prefix, data
 * dir; the gateway's rate limit off), sets users, points and waiting-room tokens up before the timed phase,
 * drives the timed phase from this process (closed loop), prints a table, writes JSON under bench/results/, checks
 * the invariants (bench/checks.ts plus the scenario's own), and exits non-zero when one fails. Ctrl-C stops the
 * instance and removes its data. `checkout` also runs `baseline` first and reports the ratio to it.
 */
import { spawn } from "child_process";
import fs from "fs";
import os from "os";
import path from "path";
import crypto from "crypto";
import { hashPassword, signAccessToken, type Role } from "../lib/auth";
import { runBaseline, type BaselineResult } from "./baseline";
import { commonChecks, Sql, type Check, type Totals } from "./checks";
import { cannon } from "./cannon";
import { Client, closedLoop, openLoop, Progress, Recorder, round, type Figures, type Reply } from "./load";
import { cpuSecondsOf, machineJiffies, mariadbStatus, memoryOf, serverPids, startTarget, type Target, type TargetKind } from "./target";

type Scenario = "queue" | "hold" | "checkout" | "flashsale" | "baseline" | "logins";

interface Options {
	scenario: Scenario;
	target: TargetKind;
	url?: string;
	users?: number;
	seats?: number;
	concurrency: number;
	seconds: number;
	repeat: number;
	port: number;
	metricsPort: number;
	cpuProf: boolean;
	sqlCount: boolean;
	logLevel: string;
	baseline: boolean;
	runtime: "ts-node" | "compiled";
	/** --rate N: checkout as an open loop, N arrivals per second (latency at a fixed arrival rate), instead of a closed loop. */
	rate?: number;
	/** --env KEY=VALUE,KEY=VALUE: extra environment for every node (experiments such as DB_POOL_MAX). */
	env: Record<string, string>;
}

function parseArgs(argv: string[]): Options {
	const [scenario, ...rest] = argv;
	if (!["queue", "hold", "checkout", "flashsale", "baseline", "logins"].includes(scenario)) {
		throw new Error(`usage: npm run bench -- <queue|hold|checkout|flashsale|baseline|logins> [options] (got "${scenario ?? ""}")`);
	}
	const flags = new Map<string, string>();
	for (let i = 0; i < rest.length; i++) {
		const a = rest[i];
		if (!a.startsWith("--")) throw new Error(`unexpected argument "${a}"`);
		const [k, v] = a.slice(2).split("=", 2);
		if (v !== undefined) flags.set(k, v);
		else if (rest[i + 1] !== undefined && !rest[i + 1].startsWith("--")) flags.set(k, rest[++i]);
		else flags.set(k, "true");
	}
	const num = (k: string, def?: number) => (flags.has(k) ? Number(flags.get(k)) : def);
	const target = (flags.get("target") ?? (flags.has("url") ? "url" : "cluster")) as TargetKind;
	if (flags.has("rate") && (scenario !== "checkout" || !(Number(flags.get("rate")) > 0))) throw new Error("--rate N (N > 0) is for checkout only");
	if (!["embedded", "cluster", "url"].includes(target)) throw new Error(`--target must be embedded, cluster or url`);
	return {
		scenario: scenario as Scenario,
		target,
		url: flags.get("url"),
		users: num("users"),
		seats: num("seats"),
		concurrency: num("concurrency", 64)!,
		seconds: num("seconds", 10)!,
		repeat: num("repeat", 1)!,
		port: num("port", 3300)!,
		metricsPort: num("metrics-port", 0)!,
		cpuProf: flags.has("cpu-prof"),
		sqlCount: flags.has("sql-count"),
		logLevel: flags.get("log-level") ?? "info",
		baseline: flags.get("baseline") !== "false",
		rate: num("rate"),
		runtime: flags.get("runtime") === "ts-node" ? "ts-node" : "compiled",
		env: Object.fromEntries(
			(flags.get("env") ?? "")
				.split(",")
				.filter(Boolean)
				.map(kv => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])
		)
	};
}

const log = (s: string) => process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

// Users, concerts, points, tokens (setup, untimed)

interface User {
	id: string;
	email: string;
	token: string;
	queueToken?: string;
}

/**
 * The bench's users: accounts written straight into the user service's database (with a password hash nobody can
 * log in with) and tokens signed with the instance's secret, as a login would give them. Registering 10,000 users
 * over HTTP would cost 10,000 password hashes of setup; the gateway checks that a token's user exists, so the
 * rows are real.
 */
async function makeUsers(target: Target, n: number, role: Role = "user", passwordHash = "bench-no-login"): Promise<User[]> {
	if (!target.jwtSecret) throw new Error("the bench signs its users' tokens: set JWT_SECRET for a --url target");
	if (!target.sql) throw new Error("the bench writes its users into the user database: set BENCH_DB_PREFIX for a --url target");
	const users = Array.from({ length: n }, () => {
		const id = crypto.randomUUID();
		return { id, email: `${id}@bench.example.com`, role };
	});
	const sql = new Sql(target.sql);
	try {
		const now = new Date().toISOString().slice(0, 23).replace("T", " ");
		for (let i = 0; i < users.length; i += 500) {
			const batch = users.slice(i, i + 500);
			await sql.execute(
				"user",
				`INSERT INTO users (id, email, name, password_hash, role, created_at, updated_at) VALUES ${batch.map(() => "(?, ?, ?, ?, ?, ?, ?)").join(", ")}`,
				batch.flatMap(u => [u.id, u.email, "Bench", passwordHash, u.role, now, now])
			);
		}
	} finally {
		await sql.close();
	}
	return users.map(u => ({ id: u.id, email: u.email, token: signAccessToken(u, target.jwtSecret!, 3600) }));
}

function expect(r: Reply, status: number | number[], what: string): Record<string, unknown> {
	const ok = Array.isArray(status) ? status.includes(r.status) : r.status === status;
	if (!ok) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
	return r.body as Record<string, unknown>;
}

interface SeatView {
	id: string;
	label: string;
	price: number;
	status: string;
}

async function createConcert(c: Client, admin: User, rows: number, perRow: number, schedules = 1): Promise<{ concertId: string; scheduleIds: string[] }> {
	const tag = `${Date.now().toString(36)}-${crypto.randomBytes(3).toString("hex")}`;
	const start = Date.now() + 30 * 86400_000;
	const body = expect(
		await c.request("POST", "/admin/concerts", {
			token: admin.token,
			body: {
				title: `Bench ${tag}`,
				artist: "Bench",
				venue: { name: `Bench Hall ${tag}` },
				schedules: Array.from({ length: schedules }, (_, i) => ({ startsAt: new Date(start + i * 86400_000).toISOString() })),
				// The front rows cost more, so "money conserved" is checked against a price mix, not a count.
				seats: { rows, perRow, price: 1000, grades: rows > 2 ? [{ grade: "VIP", rows: Math.max(1, Math.floor(rows / 5)), price: 2500 }] : undefined }
			}
		}),
		201,
		"create concert"
	);
	return { concertId: String(body.id), scheduleIds: (body.schedules as { id: string }[]).map(s => s.id) };
}

async function seatsOf(c: Client, scheduleId: string): Promise<SeatView[]> {
	return expect(await c.request("GET", `/schedules/${scheduleId}/seats`), 200, "seats") as unknown as SeatView[];
}

async function setup(label: string, _c: Client, items: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
	let done = 0;
	const bar = new Progress(label, items, () => done);
	try {
		await closedLoop(concurrency, items, async i => {
			await fn(i);
			done++;
		});
	} finally {
		bar.stop();
	}
}

async function charge(c: Client, u: User, amount: number): Promise<void> {
	expect(
		await c.request("POST", "/points/charge", { token: u.token, body: { amount }, headers: { "idempotency-key": `bench-charge-${u.id}` } }),
		200,
		"charge"
	);
}

async function enter(c: Client, u: User, concertId: string): Promise<Record<string, unknown>> {
	const body = expect(await c.request("POST", "/queue/tokens", { token: u.token, body: { concertId } }), [200, 201], "enter");
	u.queueToken = String(body.token);
	return body;
}

// Resource sampling: RSS and CPU of every node, and of the servers

interface NodeStats {
	peakRssMb: number;
	rssEndMb: number;
	cpuSeconds: number;
}

class Sampler {
	private readonly peak = new Map<string, number>();
	private readonly cpu0 = new Map<string, number>();
	private timer?: NodeJS.Timeout;
	private readonly servers: { name: string; pid: number }[];
	private t0 = 0;

	constructor(
		private readonly target: Target,
		private readonly sqlCount = process.env.BENCH_SQL_COUNT === "1"
	) {
		this.servers = serverPids(target.natsPid);
	}

	/** With --sql-count, each node writes a snapshot of its statement counts on SIGUSR2 (bench/preload.js). */
	private signalNodes(): void {
		if (!this.sqlCount) return;
		for (const p of this.target.nodes()) {
			try {
				process.kill(p.pid, "SIGUSR2");
			} catch {
				/* gone */
			}
		}
	}

	private procs(): { name: string; pid: number }[] {
		return [...this.target.nodes(), ...this.servers, { name: "bench (load generator)", pid: process.pid }];
	}

	private db0: Record<string, number> = {};
	private stat0 = { busy: 0, total: 0 };
	/** CLOCK_MONOTONIC in µs, the time base of V8's CPU profiles: the timed window for bench/profile-summary.ts. */
	private mono0 = 0;

	async start(): Promise<void> {
		this.signalNodes();
		this.stat0 = machineJiffies();
		this.db0 = await mariadbStatus();
		this.t0 = performance.now();
		this.mono0 = Number(process.hrtime.bigint() / 1000n);
		for (const p of this.procs()) this.cpu0.set(p.name, cpuSecondsOf(p.pid) ?? 0);
		const sample = () => {
			for (const p of this.target.nodes()) {
				const m = memoryOf(p.pid);
				if (m) this.peak.set(p.name, Math.max(this.peak.get(p.name) ?? 0, m.rssMb));
			}
		};
		sample();
		this.timer = setInterval(sample, 250);
		this.timer.unref();
	}

	async stop(): Promise<{
		seconds: number;
		nodes: Record<string, NodeStats>;
		cpuPercent: Record<string, number>;
		mariadb: Record<string, number>;
		profileWindowUs: number[];
	}> {
		if (this.timer) clearInterval(this.timer);
		this.signalNodes();
		const db1 = await mariadbStatus();
		const mariadb = Object.fromEntries(Object.keys(db1).map(k => [k, db1[k] - (this.db0[k] ?? 0)]));
		const seconds = (performance.now() - this.t0) / 1000;
		const nodes: Record<string, NodeStats> = {};
		const cpuPercent: Record<string, number> = {};
		for (const p of this.procs()) {
			const cpu = (cpuSecondsOf(p.pid) ?? 0) - (this.cpu0.get(p.name) ?? 0);
			cpuPercent[p.name] = Math.round((100 * cpu) / seconds);
			if (this.target.nodes().some(n => n.pid === p.pid)) {
				const m = memoryOf(p.pid);
				nodes[p.name] = {
					peakRssMb: Math.round(Math.max(this.peak.get(p.name) ?? 0, m?.rssMb ?? 0)),
					rssEndMb: Math.round(m?.rssMb ?? 0),
					cpuSeconds: round(cpu)
				};
			}
		}
		// The whole machine's busy time over the same window: what is not ours is the other tenants' load.
		const stat1 = machineJiffies();
		const machineBusy = Math.round((100 * os.cpus().length * (stat1.busy - this.stat0.busy)) / Math.max(1, stat1.total - this.stat0.total));
		const ours = Object.values(cpuPercent).reduce((a, b) => a + b, 0);
		cpuPercent["machine (all processes)"] = machineBusy;
		cpuPercent["others on the machine"] = Math.max(0, machineBusy - ours);
		return { seconds: round(seconds), nodes, cpuPercent, mariadb, profileWindowUs: [this.mono0, Number(process.hrtime.bigint() / 1000n)] };
	}
}

// Scenarios

interface ScenarioResult {
	figures: Record<string, Figures>;
	facts: Record<string, unknown>;
	checks: Check[];
	totals?: Totals;
}

/** queue: N users enter one concert's waiting room, then poll their status for S seconds; FIFO checked. */
async function queueScenario(o: Options, target: Target, c: Client): Promise<ScenarioResult> {
	const n = o.users ?? 5000;
	const [admin] = await makeUsers(target, 1, "admin");
	const { concertId } = await createConcert(c, admin, 1, 1);
	const warm = await createConcert(c, admin, 1, 1);
	const users = await makeUsers(target, n);
	const maxActive = Number(o.target === "url" ? 100 : (instanceEnv(o).QUEUE_MAX_ACTIVE ?? 100));

	// Warm-up on another concert: JIT, connections, scripts, the concert-id cache.
	const warmUsers = await makeUsers(target, Math.min(1000, n));
	await setup("warm-up", c, warmUsers.length, o.concurrency, async i => void (await enter(c, warmUsers[i], warm.concertId)));
	await setup("warm-up reads", c, 2000, o.concurrency, async i => {
		const u = warmUsers[i % warmUsers.length];
		expect(await c.request("GET", `/queue/tokens/${encodeURIComponent(u.queueToken!)}`, { token: u.token }), 200, "status");
	});

	const sampler = new Sampler(target);
	await sampler.start();
	const enterRec = new Recorder("enter");
	const entered: { status: string; position: number }[] = new Array(n);
	const bar = new Progress(
		"enter",
		n,
		() => enterRec.count,
		() => `${enterRec.errors} errors`
	);
	const enterSecs = await closedLoop(o.concurrency, n, async i => {
		const u = users[i];
		try {
			const r = await c.request("POST", "/queue/tokens", { token: u.token, body: { concertId } });
			const b = r.body as { token?: string; status?: string; position?: number };
			enterRec.add(r.ms, r.status === 201, r.status);
			u.queueToken = b.token;
			entered[i] = { status: String(b.status), position: Number(b.position) };
		} catch (err) {
			enterRec.add(0, false, (err as Error).message);
		}
	});
	bar.stop();

	// Status reads with autocannon (the cheapest client available here), each request a random user's own token.
	const origin = new URL(target.api).origin;
	const apiPath = new URL(target.api).pathname;
	const reads = await cannon({
		url: origin,
		connections: o.concurrency,
		seconds: o.seconds,
		name: "status read",
		next: () => {
			const u = users[Math.floor(Math.random() * n)];
			return { path: `${apiPath}/queue/tokens/${encodeURIComponent(u.queueToken!)}`, headers: { authorization: `Bearer ${u.token}` } };
		}
	});
	const readRec = reads.rec;
	const readSecs = reads.seconds;
	const resources = await sampler.stop();

	// FIFO: exactly maxActive ACTIVE at entry, the WAITING positions 1..n-maxActive each once; then `free` active
	// users leave and exactly the first `free` in line (by position) become ACTIVE, the rest move up by `free`.
	const active = entered.filter(e => e?.status === "ACTIVE").length;
	const positions = entered
		.filter(e => e?.status === "WAITING")
		.map(e => e.position)
		.sort((a, b) => a - b);
	const contiguous = positions.every((p, i) => p === i + 1);
	const checks: Check[] = [
		{ name: "queue: admitted up to the cap at entry", ok: active === Math.min(n, maxActive), details: `${active} ACTIVE of ${n} (cap ${maxActive})` },
		{
			name: "queue: each waiting position given once (1..n)",
			ok: contiguous && positions.length === n - active,
			details: `${positions.length} WAITING, contiguous ${contiguous}`
		}
	];
	const free = Math.min(50, active, n - active);
	if (free > 0) {
		const leavers = users.filter((_, i) => entered[i]?.status === "ACTIVE").slice(0, free);
		for (const u of leavers) expect(await c.request("DELETE", `/queue/tokens/${encodeURIComponent(u.queueToken!)}`, { token: u.token }), 204, "leave");
		const watch = users.map((u, i) => ({ u, e: entered[i] })).filter(x => x.e?.status === "WAITING" && x.e.position <= free + 50);
		let wrong = 0;
		for (const { u, e } of watch) {
			const s = expect(await c.request("GET", `/queue/tokens/${encodeURIComponent(u.queueToken!)}`, { token: u.token }), 200, "status") as {
				status: string;
				position: number;
			};
			const expected = e.position <= free ? { status: "ACTIVE", position: 0 } : { status: "WAITING", position: e.position - free };
			if (s.status !== expected.status || s.position !== expected.position) wrong++;
		}
		checks.push({ name: "queue: FIFO kept on admission", ok: wrong === 0, details: `${free} left; ${watch.length} watched, ${wrong} out of order` });
	}
	checks.push({
		name: "queue: no failed request",
		ok: enterRec.errors === 0 && readRec.errors === 0,
		details: `enter ${JSON.stringify(enterRec.statuses)}, read ${JSON.stringify(readRec.statuses)}`
	});
	// The ceiling of this machine for any HTTP read: a bare node:http server in its own process answering a
	// token-status-sized JSON, driven by the same client at the same concurrency for the same time.
	const bare = await bareHttpReference(o.concurrency, Math.min(o.seconds, 5));
	return {
		figures: { enter: enterRec.figures(enterSecs), "status read": readRec.figures(readSecs), "reference: bare node:http": bare.figures },
		facts: { users: n, resources, bareHttpCpuPercent: bare.cpuPercent },
		checks
	};
}

async function bareHttpReference(concurrency: number, seconds: number): Promise<{ figures: Figures; cpuPercent: Record<string, number> }> {
	const server = spawn(
		process.execPath,
		[
			"-e",
			`const body = JSON.stringify({ token: "c".repeat(60), concertId: "c".repeat(36), status: "WAITING", position: 1234, etaSeconds: 60, expiresAt: null });
			 require("http").createServer((req, res) => { req.resume(); req.on("end", () => { res.setHeader("content-type", "application/json"); res.end(body); }); })
			   .listen(0, "127.0.0.1", function () { process.stdout.write(String(this.address().port) + "\\n"); });`
		],
		{ stdio: ["ignore", "pipe", "inherit"] }
	);
	try {
		const port = await new Promise<number>(resolve => server.stdout!.once("data", (d: Buffer) => resolve(Number(d.toString().trim()))));
		const cpu0 = { server: cpuSecondsOf(server.pid!) ?? 0, bench: cpuSecondsOf(process.pid) ?? 0 };
		const token = `Bearer ${"x".repeat(200)}`;
		const { rec, seconds: secs } = await cannon({
			url: `http://127.0.0.1:${port}`,
			connections: concurrency,
			seconds,
			name: "bare",
			next: () => ({ path: `/api/queue/tokens/${"c".repeat(60)}`, headers: { authorization: token } })
		});
		const cpuPercent = {
			"bare server": Math.round((100 * ((cpuSecondsOf(server.pid!) ?? 0) - cpu0.server)) / secs),
			"bench (load generator)": Math.round((100 * ((cpuSecondsOf(process.pid) ?? 0) - cpu0.bench)) / secs)
		};
		return { figures: rec.figures(secs), cpuPercent };
	} finally {
		server.kill("SIGTERM");
	}
}

/** hold: N users with ACTIVE tokens race for M seats (user i asks for seat i mod M): exactly M winners. */
async function holdScenario(o: Options, target: Target, c: Client): Promise<ScenarioResult> {
	const n = o.users ?? 1000;
	const m = o.seats ?? 1;
	const [admin] = await makeUsers(target, 1, "admin");
	const rows = Math.ceil(m / 50);
	const { concertId, scheduleIds } = await createConcert(c, admin, rows, Math.min(m, 50));
	const seats = (await seatsOf(c, scheduleIds[0])).slice(0, m);
	const users = await makeUsers(target, n);
	await setup("tokens", c, n, o.concurrency, async i => {
		const b = await enter(c, users[i], concertId);
		if (b.status !== "ACTIVE") throw new Error(`user ${i} not ACTIVE: raise QUEUE_MAX_ACTIVE`);
	});
	// Warm-up: holds on another concert's seats (and their reservations), so the race starts with a warm JIT.
	const warm = await createConcert(c, admin, 4, 50);
	const warmSeats = await seatsOf(c, warm.scheduleIds[0]);
	const warmUsers = await makeUsers(target, Math.min(200, warmSeats.length));
	await setup("warm-up", c, warmUsers.length, o.concurrency, async i => {
		await enter(c, warmUsers[i], warm.concertId);
		expect(
			await c.request("POST", "/reservations", {
				token: warmUsers[i].token,
				body: { scheduleId: warm.scheduleIds[0], seatIds: [warmSeats[i].id] },
				headers: { "x-queue-token": warmUsers[i].queueToken! }
			}),
			201,
			"warm-up hold"
		);
	});

	const sampler = new Sampler(target);
	await sampler.start();
	const rec = new Recorder("hold");
	const winners: { user: number; seat: string }[] = [];
	const bar = new Progress(
		"hold race",
		n,
		() => rec.count,
		() => `${winners.length} winners`
	);
	const secs = await closedLoop(o.concurrency, n, async i => {
		const u = users[i];
		const seat = seats[i % m].id;
		try {
			const r = await c.request("POST", "/reservations", {
				token: u.token,
				body: { scheduleId: scheduleIds[0], seatIds: [seat] },
				headers: { "x-queue-token": u.queueToken! }
			});
			const type = (r.body as { type?: string }).type;
			rec.add(r.ms, r.status === 201 || (r.status === 409 && type === "SEAT_UNAVAILABLE"), r.status === 409 ? `409 ${type}` : r.status);
			if (r.status === 201) winners.push({ user: i, seat });
		} catch (err) {
			rec.add(0, false, (err as Error).message);
		}
	});
	bar.stop();
	const resources = await sampler.stop();

	const seatsWon = new Set(winners.map(w => w.seat));
	const after = await seatsOf(c, scheduleIds[0]);
	const held = after.filter(s => s.status === "HELD").length;
	const checks: Check[] = [
		{ name: "hold: exactly M winners", ok: winners.length === Math.min(m, n), details: `${winners.length} winners for ${m} seats, ${n} users` },
		{ name: "hold: no seat held twice", ok: seatsWon.size === winners.length, details: `${seatsWon.size} distinct seats among ${winners.length} winners` },
		{ name: "hold: the seat map agrees", ok: held === winners.length, details: `${held} HELD seats` },
		{ name: "hold: every loser got 409 SEAT_UNAVAILABLE", ok: rec.errors === 0, details: JSON.stringify(rec.statuses) }
	];
	const pending = await countPending(target);
	if (pending !== undefined)
		checks.push({
			name: "hold: one PENDING reservation per winner",
			ok: pending === winners.length + warmUsers.length,
			details: `${pending} PENDING (${warmUsers.length} from warm-up)`
		});
	return { figures: { hold: rec.figures(secs) }, facts: { users: n, seats: m, resources }, checks };
}

async function countPending(target: Target): Promise<number | undefined> {
	if (!target.sql) return undefined;
	const sql = new Sql(target.sql);
	try {
		return await sql.scalar("reservation", "SELECT COUNT(*) FROM reservations WHERE status = 'PENDING'");
	} finally {
		await sql.close();
	}
}

/** After a 202 from POST /api/payments: the reservation's status once it leaves PAYING (or after 30 s). */
async function settled(c: Client, u: User, reservationId: string): Promise<string | undefined> {
	let status: string | undefined;
	for (let k = 0; k < 120; k++) {
		await sleep(250);
		const r = await c.request("GET", `/reservations/${reservationId}`, { token: u.token });
		status = (r.body as { status?: string }).status;
		if (status !== "PAYING" && status !== "PENDING") break;
	}
	return status;
}

/** checkout: users with points and ACTIVE tokens each hold their own seat and pay (closed loop, C at a time). */
async function checkoutScenario(o: Options, target: Target, c: Client): Promise<ScenarioResult> {
	const n = o.users ?? o.concurrency * 25;
	const [admin] = await makeUsers(target, 1, "admin");
	const perSchedule = 26 * 60;
	const { concertId, scheduleIds } = await createConcert(c, admin, 26, 60, Math.ceil(n / perSchedule));
	const seats: { scheduleId: string; seat: SeatView }[] = [];
	for (const s of scheduleIds) for (const seat of await seatsOf(c, s)) seats.push({ scheduleId: s, seat });
	const users = await makeUsers(target, n);
	await setup("points", c, n, o.concurrency, i => charge(c, users[i], 10_000));
	await setup("tokens", c, n, o.concurrency, async i => {
		const b = await enter(c, users[i], concertId);
		if (b.status !== "ACTIVE") throw new Error(`user ${i} not ACTIVE: raise QUEUE_MAX_ACTIVE`);
	});
	// Warm-up: 100 checkouts on another concert (JIT, pools, lazily created statements), not measured.
	const warm = await createConcert(c, admin, 2, 50);
	const warmSeats = await seatsOf(c, warm.scheduleIds[0]);
	const warmUsers = await makeUsers(target, warmSeats.length);
	await setup("warm-up", c, warmUsers.length, o.concurrency, async i => {
		const u = warmUsers[i];
		await charge(c, u, 10_000);
		await enter(c, u, warm.concertId);
		const h = expect(
			await c.request("POST", "/reservations", {
				token: u.token,
				body: { scheduleId: warm.scheduleIds[0], seatIds: [warmSeats[i].id] },
				headers: { "x-queue-token": u.queueToken! }
			}),
			201,
			"warm-up hold"
		);
		expect(
			await c.request("POST", "/payments", {
				token: u.token,
				body: { reservationId: h.id },
				headers: { "x-queue-token": u.queueToken!, "idempotency-key": `pay-${h.id}` }
			}),
			[201, 202],
			"warm-up pay"
		);
	});

	const sampler = new Sampler(target);
	await sampler.start();
	const holdRec = new Recorder("hold");
	const payRec = new Recorder("pay");
	const journey = new Recorder("hold + pay");
	const bar = new Progress(
		"checkout",
		n,
		() => journey.count,
		() => `${payRec.ok} confirmed, ${journey.errors} failed`
	);
	const checkout = async (i: number, dueAt?: number) => {
		const u = users[i];
		const { scheduleId, seat } = seats[i];
		// Open loop: from the arrival's due time, so time spent waiting for a free connection counts too.
		const t0 = dueAt ?? performance.now();
		try {
			const h = await c.request("POST", "/reservations", {
				token: u.token,
				body: { scheduleId, seatIds: [seat.id] },
				headers: { "x-queue-token": u.queueToken! }
			});
			holdRec.add(h.ms, h.status === 201, h.status);
			if (h.status !== 201) return journey.add(performance.now() - t0, false, `hold ${h.status}`);
			const id = String((h.body as { id: string }).id);
			const p = await c.request("POST", "/payments", {
				token: u.token,
				body: { reservationId: id },
				headers: { "x-queue-token": u.queueToken!, "idempotency-key": `pay-${id}` }
			});
			payRec.add(p.ms, p.status === 201 || p.status === 202, p.status);
			// 202: the saga outlived the request's wait (8 s); the client follows the reservation until it settles,
			// and the journey's time runs until then.
			const confirmed = p.status === 201 || (p.status === 202 && (await settled(c, u, id)) === "CONFIRMED");
			journey.add(performance.now() - t0, confirmed, p.status === 202 ? `202 then ${confirmed ? "CONFIRMED" : "not confirmed"}` : p.status);
		} catch (err) {
			journey.add(performance.now() - t0, false, (err as Error).message);
		}
	};
	let secs: number;
	let openLoopFacts: { rate: number; late: number } | undefined;
	if (o.rate) {
		const run = await openLoop(o.rate, n, checkout);
		secs = run.seconds;
		openLoopFacts = { rate: o.rate, late: run.late };
	} else {
		secs = await closedLoop(o.concurrency, n, i => checkout(i));
	}
	bar.stop();
	const resources = await sampler.stop();
	const checks: Check[] = [
		{
			name: "checkout: every journey confirmed (201)",
			ok: journey.errors === 0,
			details: `hold ${JSON.stringify(holdRec.statuses)}, pay ${JSON.stringify(payRec.statuses)}`
		}
	];
	if (openLoopFacts) {
		checks.push({
			name: `checkout: the offered rate was kept (${o.rate}/s)`,
			ok: openLoopFacts.late === 0,
			details: `${openLoopFacts.late} arrivals waited for one of the 2048 places in flight`
		});
	}
	return {
		figures: { "confirmed (hold + pay)": journey.figures(secs), hold: holdRec.figures(secs), pay: payRec.figures(secs) },
		facts: { users: n, warmUpCheckouts: warmUsers.length, ...(openLoopFacts ? { openLoop: openLoopFacts } : {}), resources },
		checks
	};
}

/**
 * flashsale: 10,000 users, 1,000 seats, one concert, the default queue cap. Each user enters the waiting room,
 * polls until ACTIVE (at an interval that grows with its position, like a client following the ETA), then holds
 * one seat it believes free (the bench's shared view of the seat map, updated by every answer, stands in for a
 * live seat map) and pays; a user who finds every seat taken leaves the line. Timed until the last seat is sold.
 */
async function flashsaleScenario(o: Options, target: Target, c: Client): Promise<ScenarioResult> {
	const n = o.users ?? 10_000;
	const m = o.seats ?? 1000;
	const [admin] = await makeUsers(target, 1, "admin");
	const perRow = Math.min(50, m);
	if (m % perRow !== 0) throw new Error("--seats must be a multiple of 50 (or below 50)");
	const { concertId, scheduleIds } = await createConcert(c, admin, m / perRow, perRow);
	const scheduleId = scheduleIds[0];
	const seats = await seatsOf(c, scheduleId);
	const users = await makeUsers(target, n);
	await setup("points", c, n, o.concurrency, i => charge(c, users[i], 5_000));

	const taken = new Set<string>();
	const sold = new Set<string>();
	const soldSeatsByUser = new Map<number, string>();
	const pickSeat = (): SeatView | undefined => {
		if (taken.size >= seats.length) return undefined;
		for (let tries = 0; tries < 20; tries++) {
			const s = seats[Math.floor(Math.random() * seats.length)];
			if (!taken.has(s.id)) return s;
		}
		return seats.find(s => !taken.has(s.id));
	};

	const sampler = new Sampler(target);
	await sampler.start();
	const enterRec = new Recorder("enter");
	const pollRec = new Recorder("status poll");
	const holdRec = new Recorder("hold");
	const payRec = new Recorder("pay");
	const leaveRec = new Recorder("leave");
	const t0 = performance.now();
	let soldOutAt = 0;
	let finished = 0;
	let toldSoldOut = 0;
	let stillWaiting = 0;
	const bar = new Progress(
		"flash sale",
		m,
		() => sold.size,
		() => `entered ${enterRec.count}, polls ${pollRec.count}, holds ${holdRec.ok}/${holdRec.count}, done ${finished}/${n}`
	);
	const deadline = t0 + Math.max(120, o.seconds) * 1000;

	const journey = async (i: number): Promise<void> => {
		const u = users[i];
		const e = await c.request("POST", "/queue/tokens", { token: u.token, body: { concertId } });
		enterRec.add(e.ms, e.status === 201, e.status);
		if (e.status !== 201) return;
		let view = e.body as { token: string; status: string; position: number; etaSeconds?: number };
		u.queueToken = view.token;
		while (view.status !== "ACTIVE") {
			// The platform says when nothing is left: the line closes SOLD_OUT (issue 16), the client stops there.
			if (view.status === "SOLD_OUT") {
				toldSoldOut++;
				return;
			}
			if (performance.now() > deadline) {
				stillWaiting++;
				return;
			}
			// A client polls sooner when it is near the front: 20 ms per place ahead, between 0.5 s and 5 s.
			await sleep(Math.min(5000, Math.max(500, view.position * 20)) * (0.8 + Math.random() * 0.4));
			const r = await c.request("GET", `/queue/tokens/${encodeURIComponent(u.queueToken)}`, { token: u.token });
			pollRec.add(r.ms, r.status === 200, r.status);
			if (r.status !== 200) return;
			view = r.body as typeof view;
		}
		for (;;) {
			const seat = pickSeat();
			if (!seat || performance.now() > deadline) {
				const l = await c.request("DELETE", `/queue/tokens/${encodeURIComponent(u.queueToken)}`, { token: u.token });
				// 404: the line closed SOLD_OUT meanwhile and freed the token.
				leaveRec.add(l.ms, l.status === 204 || l.status === 404, l.status);
				return;
			}
			taken.add(seat.id);
			const h = await c.request("POST", "/reservations", {
				token: u.token,
				body: { scheduleId, seatIds: [seat.id] },
				headers: { "x-queue-token": u.queueToken }
			});
			const type = (h.body as { type?: string }).type;
			holdRec.add(h.ms, h.status === 201 || type === "SEAT_UNAVAILABLE" || type === "SOLD_OUT", h.status === 409 ? `409 ${type}` : h.status);
			if (type === "SOLD_OUT") return;
			if (h.status === 409 && type === "SEAT_UNAVAILABLE") continue;
			if (h.status !== 201) return;
			const id = String((h.body as { id: string }).id);
			const p = await c.request("POST", "/payments", {
				token: u.token,
				body: { reservationId: id },
				headers: { "x-queue-token": u.queueToken, "idempotency-key": `pay-${id}` }
			});
			payRec.add(p.ms, p.status === 201 || p.status === 202, p.status);
			// 202: the saga outlived the request's wait; the client follows the reservation until it settles.
			const confirmed = p.status === 201 || (p.status === 202 && (await settled(c, u, id)) === "CONFIRMED");
			if (confirmed) {
				sold.add(seat.id);
				soldSeatsByUser.set(i, seat.id);
				if (sold.size === seats.length && !soldOutAt) soldOutAt = performance.now();
			}
			return;
		}
	};
	// Every user starts at once (the sale opens); the client's socket pool (--concurrency) bounds what is in flight.
	await Promise.all(
		users.map((_, i) =>
			journey(i)
				.catch(err => enterRec.add(0, false, (err as Error).message))
				.finally(() => finished++)
		)
	);
	bar.stop();
	const resources = await sampler.stop();
	const soldOutSeconds = soldOutAt ? round((soldOutAt - t0) / 1000) : null;

	const checks: Check[] = [
		{ name: "flashsale: sold out", ok: sold.size === m, details: `${sold.size}/${m} seats paid` },
		{ name: "flashsale: under 30 s", ok: soldOutSeconds !== null && soldOutSeconds < 30, details: `${soldOutSeconds ?? "not sold out"} s` },
		{ name: "flashsale: every user entered", ok: enterRec.ok === n, details: JSON.stringify(enterRec.statuses) },
		{
			name: "flashsale: the waiting users are told SOLD_OUT, none left waiting",
			ok: stillWaiting === 0 && toldSoldOut > 0,
			details: `${toldSoldOut} told SOLD_OUT, ${stillWaiting} still waiting at the deadline`
		},
		{
			name: "flashsale: at most one seat per buyer (each buys one; the limit is 4)",
			ok: soldSeatsByUser.size === sold.size,
			details: `${soldSeatsByUser.size} buyers, ${sold.size} seats`
		},
		{
			name: "flashsale: no unexpected answer",
			ok: holdRec.errors === 0 && payRec.errors === 0 && pollRec.errors === 0,
			details: `hold ${JSON.stringify(holdRec.statuses)}, pay ${JSON.stringify(payRec.statuses)}, poll ${JSON.stringify(pollRec.statuses)}`
		}
	];
	return {
		figures: {
			enter: enterRec.figures(),
			"status poll": pollRec.figures(),
			hold: holdRec.figures(),
			pay: payRec.figures(),
			leave: leaveRec.figures()
		},
		facts: { users: n, seats: m, soldOutSeconds, soldOutPerSecond: soldOutSeconds ? Math.round(m / soldOutSeconds) : null, resources, expectedSold: m },
		checks
	};
}

/**
 * logins: a burst of N logins at once (distinct accounts, right passwords) while other users keep reading the
 * catalog and their balance: the latency of those other requests before and during the burst, and what the
 * logins got. Password hashing is bounded per process (PASSWORD_HASH_CONCURRENCY, PASSWORD_HASH_QUEUE); for the
 * unbounded behaviour of before, run it with --env PASSWORD_HASH_CONCURRENCY=64,PASSWORD_HASH_QUEUE=100000.
 * The instance's per-address login limit is off for this scenario (every bench user comes from one address).
 */
const BENCH_PASSWORD = "bench-password-1";
async function loginsScenario(o: Options, target: Target, c: Client): Promise<ScenarioResult> {
	const n = o.users ?? 150;
	const [admin] = await makeUsers(target, 1, "admin");
	const { concertId } = await createConcert(c, admin, 1, 10);
	const accounts = await makeUsers(target, n, "user", await hashPassword(BENCH_PASSWORD));
	const readers = await makeUsers(target, 200);
	const read = (i: number) =>
		i % 2 === 0 ? c.request("GET", `/concerts/${concertId}`) : c.request("GET", "/points", { token: readers[i % readers.length].token });
	// Warm-up: JIT, connections, the gateway's user lookups of the readers.
	await setup("warm-up", c, 2000, o.concurrency, async i => void expect(await read(i), 200, "warm-up read"));

	const sampler = new Sampler(target);
	await sampler.start();
	const rec = {
		before: new Recorder("other requests before the burst"),
		during: new Recorder("other requests during the burst"),
		logins: new Recorder("login")
	};
	let phase: "before" | "during" | "after" = "before";
	let stop = false;
	let k = 0;
	const background = Promise.all(
		Array.from({ length: o.concurrency }, async () => {
			while (!stop) {
				const at = phase;
				const r = await read(k++).catch(err => ({ status: (err as Error).message, ms: 0 }) as unknown as Reply);
				if (at !== "after") rec[at].add(r.ms, r.status === 200, r.status);
			}
		})
	);
	await sleep(o.seconds * 500);
	phase = "during";
	// Its own sockets: the burst must not wait behind the readers' connection pool.
	const burst = new Client(target.api, n);
	try {
		await Promise.all(
			accounts.map(async u => {
				const r = await burst.request("POST", "/auth/login", { body: { email: u.email, password: BENCH_PASSWORD } });
				const body = r.body as { type?: string };
				rec.logins.add(r.ms, r.status === 200, r.status === 200 ? 200 : `${r.status} ${body?.type ?? ""}`);
			})
		);
	} finally {
		burst.close();
	}
	phase = "after";
	stop = true;
	await background;
	const resources = await sampler.stop();
	const logins = rec.logins.figures();
	const refusedOk = Object.keys(logins.statuses).every(s => s === "200" || /^429 (AUTH_BUSY|LOGIN_THROTTLED)$/.test(s));
	return {
		figures: { "reads before the burst": rec.before.figures(), "reads during the burst": rec.during.figures(), login: logins },
		facts: { burst: n, readers: o.concurrency, resources },
		checks: [
			{ name: "logins: every answer a login or a 429 (never a 5xx)", ok: refusedOk, details: JSON.stringify(logins.statuses) },
			{
				name: "logins: the other requests all answered",
				ok: rec.before.errors === 0 && rec.during.errors === 0,
				details: `before ${JSON.stringify(rec.before.statuses)}, during ${JSON.stringify(rec.during.statuses)}`
			}
		]
	};
}

// The run

function instanceEnv(o: Options): Record<string, string> {
	const env: Record<string, string> = { ...o.env };
	// hold and checkout give every user an ACTIVE token before the timed phase: the cap must let them all in.
	if (o.scenario === "hold") env.QUEUE_MAX_ACTIVE = String((o.users ?? 1000) + 500);
	if (o.scenario === "checkout") env.QUEUE_MAX_ACTIVE = String((o.users ?? o.concurrency * 25) + 500);
	if (o.scenario === "logins") env.LOGIN_LIMIT_PER_ADDRESS ??= "0";
	return env;
}

function printTable(title: string, figures: Record<string, Figures>): void {
	const rows = Object.entries(figures).map(([k, f]) => ({
		"": k,
		count: f.count,
		ok: f.ok,
		errors: f.errors,
		"per s": f.perSecond,
		"p50 ms": f.p50,
		"p95 ms": f.p95,
		"p99 ms": f.p99,
		"max ms": f.max,
		seconds: f.seconds
	}));
	process.stdout.write(`\n${title}\n`);
	const cols = Object.keys(rows[0] ?? {});
	const width = cols.map(col => Math.max(col.length, ...rows.map(r => String(r[col as keyof typeof r]).length)));
	const line = (vals: string[]) => vals.map((v, i) => (i === 0 ? v.padEnd(width[i]) : v.padStart(width[i]))).join("  ");
	process.stdout.write(`${line(cols)}\n${line(width.map(w => "-".repeat(w)))}\n`);
	for (const r of rows) process.stdout.write(`${line(cols.map(col => String(r[col as keyof typeof r])))}\n`);
}

/**
 * With --metrics-port: each node's Prometheus endpoint (base port + node index, as scripts/cluster.ts assigns
 * them), summed per action and per saga step: calls and mean latency, the profile of where a request's time goes.
 */
async function metricsDigest(base: number, nodes: number): Promise<{ name: string; calls: number; meanMs: number; totalS: number }[]> {
	const sums = new Map<string, { sum: number; count: number }>();
	for (let i = 0; i < nodes; i++) {
		const text = await fetch(`http://127.0.0.1:${base + i}/metrics`)
			.then(r => r.text())
			.catch(() => "");
		for (const line of text.split("\n")) {
			const m = /^(moleculer_request_time|saga_step_duration)_(sum|count)\{([^}]*)\} ([0-9.eE+-]+)/.exec(line);
			if (!m) continue;
			const labels = Object.fromEntries([...m[3].matchAll(/(\w+)="([^"]*)"/g)].map(x => [x[1], x[2]]));
			const key = m[1] === "saga_step_duration" ? `saga step ${labels.step} (${labels.phase}, ${labels.outcome})` : `action ${labels.action}`;
			const e = sums.get(key) ?? { sum: 0, count: 0 };
			if (m[2] === "sum") e.sum += Number(m[4]);
			else e.count += Number(m[4]);
			sums.set(key, e);
		}
	}
	return [...sums.entries()]
		.filter(([, v]) => v.count > 0)
		.map(([name, v]) => ({ name, calls: v.count, meanMs: round(v.sum / v.count), totalS: round(v.sum / 1000) }))
		.sort((a, b) => b.totalS - a.totalS);
}

/** Timed-phase statement counts (snapshot 2 minus snapshot 1 of every node), summed over the nodes. */
function sqlDigest(dir: string): { total: number; byDatabase: Record<string, number>; top: { statement: string; count: number }[] } {
	const sum = new Map<string, number>();
	const files = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
	for (const f of files.filter(x => x.endsWith(".2.json"))) {
		const end = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) as Record<string, number>;
		const startFile = path.join(dir, f.replace(/\.2\.json$/, ".1.json"));
		const start = fs.existsSync(startFile) ? (JSON.parse(fs.readFileSync(startFile, "utf8")) as Record<string, number>) : {};
		for (const [k, v] of Object.entries(end)) sum.set(k, (sum.get(k) ?? 0) + v - (start[k] ?? 0));
	}
	const byDatabase: Record<string, number> = {};
	let total = 0;
	for (const [k, v] of sum) {
		const db = k.split(" | ")[0].replace(/^[^_]+_/, "");
		byDatabase[db] = (byDatabase[db] ?? 0) + v;
		total += v;
	}
	const top = [...sum.entries()]
		.filter(([, v]) => v > 0)
		.sort((a, b) => b[1] - a[1])
		.map(([statement, count]) => ({ statement: statement.replace(/^[^_]+_/, ""), count }));
	return { total, byDatabase, top };
}

function loadAvg(): string {
	return os
		.loadavg()
		.map(l => l.toFixed(2))
		.join(" ");
}

async function main(): Promise<void> {
	const o = parseArgs(process.argv.slice(2));
	if (o.sqlCount) process.env.BENCH_SQL_COUNT = "1";
	const stops: (() => Promise<void>)[] = [];
	let interrupted = false;
	const onSignal = (sig: string) => {
		if (interrupted) return;
		interrupted = true;
		log(`\n${sig}: stopping the instance and removing its data...`);
		Promise.allSettled(stops.map(s => s())).then(() => process.exit(130));
	};
	process.on("SIGINT", () => onSignal("SIGINT"));
	process.on("SIGTERM", () => onSignal("SIGTERM"));

	const started = new Date().toISOString();
	const loadBefore = loadAvg();
	const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: round(os.totalmem() / 2 ** 30, 1), node: process.version, loadBefore };
	log(`bench ${o.scenario} on ${o.target} (${o.runtime}): ${machine.cpus} cores, node ${machine.node}, load average ${loadBefore}`);

	const result: Record<string, unknown> = { scenario: o.scenario, target: o.target, runtime: o.runtime, options: o, machine, started };
	let checks: Check[] = [];

	let baseline: BaselineResult | undefined;
	if (o.scenario === "baseline" || (o.scenario === "checkout" && o.baseline && o.target !== "embedded")) {
		baseline = await runBaseline({
			concurrency: o.concurrency,
			total: o.users ?? Math.max(2000, o.concurrency * 40),
			workers: 2,
			log,
			onStop: fn => stops.push(fn)
		});
		result.baseline = baseline;
		checks.push(...baseline.checks);
		printTable(`baseline: one confirmation from the primitives (${baseline.workers} worker processes, ${baseline.concurrency} concurrent)`, {
			"confirm (concurrent)": baseline.confirm,
			"confirm (one at a time)": baseline.sequential,
			"MariaDB 1-row commit (one at a time)": baseline.commitProbe.sequential,
			"MariaDB 1-row commit (concurrent)": baseline.commitProbe.concurrent
		});
		process.stdout.write(`${JSON.stringify({ cpuMsPerConfirmation: baseline.cpuMsPerConfirmation, mariadb: baseline.mariadb })}\n`);
	}

	if (o.scenario !== "baseline") {
		const profDir = path.join(__dirname, "results", `prof-${o.scenario}-${o.target}-${Date.now()}`);
		const sqlDir = path.join(__dirname, "results", `sql-${o.scenario}-${o.target}-${Date.now()}`);
		const target = await startTarget(
			{
				kind: o.target,
				url: o.url,
				port: o.port,
				env: instanceEnv(o),
				metricsPort: o.metricsPort,
				nodeArgs: o.cpuProf || o.sqlCount ? ["--require", path.join(__dirname, "preload.js")] : [],
				profDir: o.cpuProf ? profDir : undefined,
				sqlCountDir: o.sqlCount ? sqlDir : undefined,
				logLevel: o.logLevel,
				runtime: o.runtime
			},
			log,
			stop => stops.push(stop)
		);
		// An open loop keeps as many requests in flight as the arrivals need (up to its cap of 2048).
		const c = new Client(target.api, o.scenario === "flashsale" ? Math.max(o.concurrency, 256) : o.rate ? 2048 : o.concurrency);
		try {
			const runs: { figures: Record<string, Figures>; facts: Record<string, unknown>; rssAfterMb: Record<string, number> }[] = [];
			for (let r = 0; r < o.repeat; r++) {
				const fn = { queue: queueScenario, hold: holdScenario, checkout: checkoutScenario, flashsale: flashsaleScenario, logins: loginsScenario }[
					o.scenario
				];
				const res = await fn(o, target, c);
				checks.push(...res.checks.map(ch => (o.repeat > 1 ? { ...ch, name: `run ${r + 1}: ${ch.name}` } : ch)));
				if (target.sql) {
					const sql = new Sql(target.sql);
					try {
						const common = await commonChecks(sql);
						checks.push(...common.checks.map(ch => (o.repeat > 1 ? { ...ch, name: `run ${r + 1}: ${ch.name}` } : ch)));
						res.facts.totals = common.totals;
						if (o.scenario === "flashsale") {
							const sold = await sql.scalar("concert", "SELECT COUNT(*) FROM seat_sales");
							const expectedSold = Number(res.facts.expectedSold) * (r + 1);
							checks.push({
								name: `${o.repeat > 1 ? `run ${r + 1}: ` : ""}flashsale: sold exactly (database)`,
								ok: sold === expectedSold,
								details: `${sold} sale rows, expected ${expectedSold}`
							});
						}
					} finally {
						await sql.close();
					}
				}
				const rssAfterMb = Object.fromEntries(target.nodes().map(p => [p.name, Math.round(memoryOf(p.pid)?.rssMb ?? 0)]));
				runs.push({ figures: res.figures, facts: res.facts, rssAfterMb });
				printTable(`${o.scenario} on ${o.target}${o.repeat > 1 ? `, run ${r + 1}/${o.repeat}` : ""} (load average ${loadAvg()})`, res.figures);
				const facts = { ...res.facts };
				delete facts.totals;
				process.stdout.write(`${JSON.stringify(facts)}\n`);
			}
			if (o.sqlCount) {
				await sleep(300);
				const digest = sqlDigest(sqlDir);
				result.sqlStatements = digest;
				process.stdout.write(
					`\nSQL statements sent by the nodes during the timed phase: ${digest.total} (by database: ${JSON.stringify(digest.byDatabase)})\n`
				);
				for (const d of digest.top.slice(0, 30)) process.stdout.write(`  ${String(d.count).padStart(7)}  ${d.statement}\n`);
			}
			if (o.metricsPort > 0) {
				// One port per worker process (lib/runner.ts metricsOffsets); the process list also holds each primary, so
				// it reaches every port, and a port nobody listens on reads as empty.
				const digest = await metricsDigest(o.metricsPort, Math.max(1, target.nodes().length));
				result.metrics = digest;
				process.stdout.write(`\nwhere the time goes (metrics endpoints, whole run incl. setup; top 25 by total time)\n`);
				for (const d of digest.slice(0, 25))
					process.stdout.write(
						`  ${d.name.padEnd(60)} ${String(d.calls).padStart(7)} calls  mean ${String(d.meanMs).padStart(8)} ms  total ${d.totalS} s\n`
					);
			}
			const peak = Object.fromEntries(target.nodes().map(p => [p.name, Math.round(memoryOf(p.pid)?.peakMb ?? 0)]));
			result.peakRssMb = peak;
			result.runs = runs;
			process.stdout.write(`\npeak RSS per node (MiB, VmHWM): ${JSON.stringify(peak)}\n`);
			const limit = o.target === "embedded" ? 400 : 200;
			if (o.target !== "url")
				checks.push({ name: `memory: every node under ${limit} MB`, ok: Object.values(peak).every(v => v < limit), details: JSON.stringify(peak) });
			if (o.repeat > 1) {
				const first = runs[0].rssAfterMb;
				const last = runs[runs.length - 1].rssAfterMb;
				const growth = Object.fromEntries(Object.keys(last).map(k => [k, (last[k] ?? 0) - (first[k] ?? 0)]));
				result.rssGrowthMb = growth;
				process.stdout.write(`RSS after each run (MiB): ${JSON.stringify(runs.map(r => r.rssAfterMb))}\n`);
				// Informational: RSS also moves with the V8 heap's own sizing; the JSON keeps every run's figures.
				checks.push({
					name: "memory: no growth across runs (< 40 MB from run 1 to the last)",
					ok: Object.values(growth).every(g => g < 40),
					details: JSON.stringify(growth)
				});
			}
			if (baseline && o.scenario === "checkout") {
				const confirmed = runs[0].figures["confirmed (hold + pay)"];
				result.ratioToBaseline = round(confirmed.perSecond / baseline.confirm.perSecond);
				process.stdout.write(`\ncheckout ${confirmed.perSecond}/s vs baseline ${baseline.confirm.perSecond}/s: ratio ${result.ratioToBaseline}\n`);
				// The same comparison in CPU per confirmation, which the other tenants' load moves much less.
				const res = runs[0].facts.resources as { seconds: number; cpuPercent: Record<string, number> };
				const ours = Object.entries(res.cpuPercent)
					.filter(([k]) => !k.startsWith("machine") && !k.startsWith("others"))
					.reduce((a, [, v]) => a + v, 0);
				const checkoutCpuMs = round((10 * ours * res.seconds) / Math.max(1, confirmed.ok));
				const baseCpuMs = Object.entries(baseline.cpuMsPerConfirmation)
					.filter(([k]) => !k.startsWith("machine"))
					.reduce((a, [, v]) => a + v, 0);
				result.cpuMsPerConfirmation = { checkout: checkoutCpuMs, baseline: round(baseCpuMs), ratio: round(baseCpuMs / checkoutCpuMs) };
				process.stdout.write(
					`CPU per confirmation: checkout ${checkoutCpuMs} ms, baseline ${round(baseCpuMs)} ms (all our processes and the servers): ratio ${round(baseCpuMs / checkoutCpuMs)}\n`
				);
			}
		} finally {
			c.close();
			await target.stop();
		}
	}

	result.loadAfter = loadAvg();
	result.checks = checks;
	result.ok = checks.every(ch => ch.ok);
	process.stdout.write("\nchecks\n");
	for (const ch of checks) process.stdout.write(`  ${ch.ok ? "ok  " : "FAIL"} ${ch.name}: ${ch.details}\n`);
	const dir = path.join(__dirname, "results");
	fs.mkdirSync(dir, { recursive: true });
	const file = path.join(dir, `${o.scenario}-${o.target}${o.runtime === "compiled" ? "-compiled" : ""}-${started.replace(/[:.]/g, "-")}.json`);
	fs.writeFileSync(file, JSON.stringify(result, null, 2));
	process.stdout.write(`\nresults: ${path.relative(process.cwd(), file)}; load average ${loadBefore} -> ${result.loadAfter}\n`);
	if (!result.ok) process.exitCode = 1;
}

main().then(
	() => process.exit(process.exitCode ?? 0),
	err => {
		log(`${(err as Error).stack ?? err}`);
		process.exit(2);
	}
);
