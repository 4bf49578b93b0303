/**
 * The physical reference for checkout: confirmations built directly from the primitives (see
 * bench/baseline-worker.ts), on the same MariaDB, Redis and NATS servers, with as many worker processes as the
 * platform's booking group has replicas (2), driven by the same closed loop as the checkout scenario.
 * Setup (untimed): a private database with wallets, PAYING reservations, seat holds and ACTIVE tokens.
 * Checks: every reservation CONFIRMED once, debits = sum of amounts, every hold and token gone.
 */
import { ChildProcess, spawn } from "child_process";
import crypto from "crypto";
import path from "path";
import Redis from "ioredis";
import mysql from "mysql2/promise";
import { connect, JSONCodec } from "nats";
import type { Check } from "./checks";
import { closedLoop, Progress, Recorder, type Figures } from "./load";
import { clearKeys, cpuSecondsOf, machineJiffies, MARIADB, mariadbStatus, memoryOf, NATS_URL, REDIS_URL, serverPids } from "./target";

export interface BaselineResult {
	workers: number;
	concurrency: number;
	confirmations: number;
	confirm: Figures;
	sequential: Figures;
	checks: Check[];
	memory: Record<string, number>;
	cpuSeconds: Record<string, number>;
	/** ms of CPU per confirmation over the concurrent phase: workers, servers, this process, and the whole machine. */
	cpuMsPerConfirmation: Record<string, number>;
	/** Server-wide MariaDB counter deltas over the concurrent phase. */
	mariadb: Record<string, number>;
	/** One-row autocommit INSERTs: the server's commit (redo-log fsync) rate alone, 1 and `concurrency` at a time. */
	commitProbe: { sequential: Figures; concurrent: Figures };
}

const ROOT = path.resolve(__dirname, "..");
const codec = JSONCodec<Record<string, unknown>>();
const PRICE = 1000;

export async function runBaseline(opts: {
	concurrency: number;
	total: number;
	workers: number;
	log: (s: string) => void;
	onStop: (fn: () => Promise<void>) => void;
}): Promise<BaselineResult> {
	const id = `b${Date.now().toString(36)}${crypto.randomBytes(2).toString("hex")}`;
	const db = `${id}_base`;
	const prefix = `crp-bench:${id}:`;
	const subject = `crpbench.${id}`;
	const seq = 200;
	const total = opts.total + seq;
	const admin = await mysql.createConnection({ ...MARIADB, multipleStatements: true });
	const redis = new Redis(REDIS_URL);
	const workers: ChildProcess[] = [];
	const cleanup = async () => {
		for (const w of workers) if (w.exitCode === null) w.kill("SIGTERM");
		await Promise.all(workers.map(w => (w.exitCode !== null ? null : new Promise(r => w.once("exit", r)))));
		await admin.query(`DROP DATABASE IF EXISTS \`${db}\``).catch(() => undefined);
		await admin.end().catch(() => undefined);
		await clearKeys(prefix).catch(() => undefined);
		redis.disconnect();
	};
	opts.onStop(cleanup);
	try {
		opts.log(`baseline: database ${db}, ${total} reservations, ${opts.workers} worker processes`);
		await admin.query(`CREATE DATABASE \`${db}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; USE \`${db}\`;
			CREATE TABLE wallets (user_id VARCHAR(64) PRIMARY KEY, balance BIGINT NOT NULL, version INT NOT NULL DEFAULT 0, updated_at DATETIME(3) NOT NULL);
			CREATE TABLE point_transactions (seq BIGINT AUTO_INCREMENT PRIMARY KEY, id VARCHAR(36) NOT NULL UNIQUE, user_id VARCHAR(64) NOT NULL, type VARCHAR(8) NOT NULL,
				amount BIGINT NOT NULL, balance_after BIGINT NOT NULL, ref VARCHAR(255) NOT NULL, payment_id VARCHAR(36), created_at DATETIME(3) NOT NULL,
				UNIQUE KEY once (user_id, type, ref), KEY user_seq (user_id, seq));
			CREATE TABLE payments (id VARCHAR(36) PRIMARY KEY, saga_id VARCHAR(100) NOT NULL UNIQUE, reservation_id VARCHAR(100), user_id VARCHAR(64), amount BIGINT NOT NULL,
				status VARCHAR(10) NOT NULL, created_at DATETIME(3) NOT NULL, updated_at DATETIME(3) NOT NULL);
			CREATE TABLE reservations (id VARCHAR(36) PRIMARY KEY, user_id VARCHAR(64) NOT NULL, status VARCHAR(12) NOT NULL, amount BIGINT NOT NULL, updated_at DATETIME(3) NOT NULL);
			CREATE TABLE outbox_events (id VARCHAR(36) PRIMARY KEY, aggregate_type VARCHAR(40) NOT NULL, aggregate_id VARCHAR(64) NOT NULL, event_type VARCHAR(60) NOT NULL,
				payload TEXT NOT NULL, version INT NOT NULL, processed TINYINT NOT NULL DEFAULT 0, created_at DATETIME(3) NOT NULL, processed_at DATETIME(3), KEY pending (processed, created_at));`);

		// One user per reservation, as in the checkout scenario; each with a hold on its own seat and an ACTIVE token.
		const items = Array.from({ length: total }, (_, i) => ({
			reservationId: crypto.randomUUID(),
			userId: `u${i}-${id}`,
			amount: PRICE,
			scheduleId: "sched",
			seatId: `seat${i}`,
			token: `tok${i}`,
			concertId: "concert"
		}));
		const now = new Date();
		for (let i = 0; i < items.length; i += 500) {
			const chunk = items.slice(i, i + 500);
			await admin.query("INSERT INTO wallets (user_id, balance, version, updated_at) VALUES ?", [chunk.map(it => [it.userId, 10 * PRICE, 0, now])]);
			await admin.query("INSERT INTO reservations (id, user_id, status, amount, updated_at) VALUES ?", [
				chunk.map(it => [it.reservationId, it.userId, "PAYING", it.amount, now])
			]);
			const p = redis.pipeline();
			for (const it of chunk) {
				p.set(`${prefix}hold:${it.scheduleId}:${it.seatId}`, it.reservationId, "EX", 3600);
				p.zadd(`${prefix}queue:${it.concertId}:active`, Date.now() + 600_000, it.token);
				p.hset(`${prefix}queue:${it.concertId}:owners`, it.token, it.userId);
				p.hset(`${prefix}queue:${it.concertId}:users`, it.userId, it.token);
			}
			await p.exec();
		}

		for (let w = 0; w < opts.workers; w++) {
			const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "bench/baseline-worker.ts"], {
				cwd: ROOT,
				env: { ...process.env, BASE_DB: db, BASE_PREFIX: prefix, BASE_SUBJECT: subject, BASE_POOL: "5" },
				stdio: ["ignore", "pipe", "inherit"]
			});
			workers.push(child);
			await new Promise<void>((resolve, reject) => {
				child.stdout!.on("data", (d: Buffer) => {
					if (d.toString().includes("ready")) resolve();
				});
				child.once("exit", code => reject(new Error(`baseline worker exited (${code})`)));
			});
		}

		const nc = await connect({ servers: new URL(NATS_URL).host });
		const confirm = async (i: number, rec: Recorder) => {
			const t0 = performance.now();
			try {
				const m = await nc.request(`${subject}.confirm`, codec.encode(items[i] as unknown as Record<string, unknown>), { timeout: 30_000 });
				const reply = codec.decode(m.data);
				rec.add(performance.now() - t0, !reply.error, reply.error ? String(reply.error) : "ok");
			} catch (err) {
				rec.add(performance.now() - t0, false, (err as Error).message);
			}
		};

		// Warm-up and single-user latency: the first `seq` confirmations one at a time.
		const sequential = new Recorder("baseline sequential");
		for (let i = 0; i < 20; i++) await confirm(i, new Recorder("warm-up"));
		for (let i = 20; i < seq; i++) await confirm(i, sequential);

		const rec = new Recorder("baseline confirm");
		const db0 = await mariadbStatus();
		const cpu0 = workers.map(w => cpuSecondsOf(w.pid!) ?? 0);
		const servers = [...serverPids(), { name: "bench (load generator)", pid: process.pid }];
		const srv0 = servers.map(p => cpuSecondsOf(p.pid) ?? 0);
		const mach0 = machineJiffies();
		const bar = new Progress(
			"baseline",
			opts.total,
			() => rec.count,
			() => `${rec.errors} errors`
		);
		const seconds = await closedLoop(opts.concurrency, opts.total, async i => confirm(seq + i, rec));
		bar.stop();
		const cpu = Object.fromEntries(workers.map((w, k) => [`worker-${k + 1}`, Number(((cpuSecondsOf(w.pid!) ?? 0) - cpu0[k]).toFixed(2))]));
		const mach1 = machineJiffies();
		const cpuMsPerConfirmation: Record<string, number> = {
			workers: Number(((1000 * Object.values(cpu).reduce((a, x) => a + x, 0)) / opts.total).toFixed(2))
		};
		servers.forEach((p, k) => (cpuMsPerConfirmation[p.name] = Number(((1000 * ((cpuSecondsOf(p.pid) ?? 0) - srv0[k])) / opts.total).toFixed(2))));
		// Jiffies are 1/100 s of one CPU: busy jiffies * 10 = CPU ms.
		cpuMsPerConfirmation["machine (all processes)"] = Number(((10 * (mach1.busy - mach0.busy)) / opts.total).toFixed(2));
		const memory = Object.fromEntries(workers.map((w, k) => [`worker-${k + 1}`, Math.round(memoryOf(w.pid!)?.peakMb ?? 0)]));
		const db1 = await mariadbStatus();
		const mariadb = Object.fromEntries(Object.keys(db1).map(k => [k, db1[k] - (db0[k] ?? 0)]));
		await nc.drain();

		// The commit probe: what the disk allows for durable commits, without any other work.
		await admin.query("CREATE TABLE probe (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(36) NOT NULL)");
		const probePool = mysql.createPool({ ...MARIADB, database: db, connectionLimit: opts.concurrency });
		const probe = async (conc: number, count: number) => {
			const r = new Recorder("commit");
			const secs = await closedLoop(conc, count, async () => {
				const t = performance.now();
				await probePool.execute("INSERT INTO probe (v) VALUES (?)", [crypto.randomUUID()]);
				r.add(performance.now() - t, true, "ok");
			});
			return r.figures(secs);
		};
		const commitProbe = { sequential: await probe(1, 300), concurrent: await probe(opts.concurrency, 3000) };
		await probePool.end();

		// Checks: every reservation confirmed once, the debits equal the amounts, holds and tokens gone.
		const [[r]] = (await admin.query(
			`SELECT (SELECT COUNT(*) FROM reservations WHERE status = 'CONFIRMED') AS confirmed, (SELECT COALESCE(SUM(amount),0) FROM point_transactions WHERE type = 'PAYMENT') AS debits,
			 (SELECT COUNT(*) FROM outbox_events) AS outbox, (SELECT COALESCE(SUM(balance),0) FROM wallets) AS wallets`
		)) as unknown as [{ confirmed: number; debits: number; outbox: number; wallets: number }[]];
		const okCount = sequential.ok + rec.ok + 20;
		const holdsLeft = (await redis.keys(`${prefix}hold:*`)).length;
		const activeLeft = await redis.zcard(`${prefix}queue:concert:active`);
		const checks: Check[] = [
			{
				name: "baseline: each confirmation once",
				ok: Number(r.confirmed) === total && Number(r.outbox) === total && okCount === total,
				details: `${r.confirmed} confirmed, ${r.outbox} outbox rows, ${okCount} answered ok of ${total}`
			},
			{
				name: "baseline: money conserved",
				ok: Number(r.debits) === total * PRICE && Number(r.wallets) === total * 9 * PRICE,
				details: `debits ${r.debits}, wallets ${r.wallets}`
			},
			{
				name: "baseline: holds and tokens released",
				ok: holdsLeft === 0 && activeLeft === 0,
				details: `${holdsLeft} holds, ${activeLeft} active tokens left`
			}
		];
		return {
			workers: opts.workers,
			concurrency: opts.concurrency,
			confirmations: opts.total,
			confirm: rec.figures(seconds),
			sequential: sequential.figures(),
			checks,
			memory,
			cpuSeconds: cpu,
			cpuMsPerConfirmation,
			mariadb,
			commitProbe
		};
	} finally {
		await cleanup();
	}
}
