/**
 * The coordination store on a Redis Cluster (issue 21), on private clusters this file starts and stops
 * (test/support/redis-cluster.ts), never the shared Redis:
 * - the store contract suites (coordination store, waiting room, seat holds, ranking) pass on three masters, so
 *   every multi-key script keeps its keys in one hash slot and SCAN-based clean-ups reach every master;
 * - the booking journey passes with three brokers on the cluster (its figure is printed), and the waiting rooms of
 *   different concerts land on different masters while each concert's keys stay on one;
 * - a failover: three masters with a replica each (cluster-node-timeout 1.5 s); fans compete for the seats of four
 *   schedules over HTTP while the master serving some of those schedules is SIGKILLed and its replica promoted.
 *   Then no seat is sold twice (checked in the databases), a hold Redis lost is caught by the database's sale, and
 *   the requests made during the failover were retried inside the store client rather than answered 5xx;
 * - the whole cluster down: commands fail at once as unavailable, and none of them runs late when it is back.
 */
import type { Cluster } from "ioredis";
import type { ServiceBroker } from "moleculer";
import type mysql from "mysql2/promise";
import { RedisStore } from "../../lib/store";
import { createHoldStore } from "../../services/concert/holds.store";
import { createQueueStore, queueKey } from "../../services/queue/queue.store";
import { createRankingStore } from "../../services/ranking/ranking.store";
import { adminToken, ownConcert, pay, reservation, reserve, seats, shopper, type Shopper } from "../support/booking";
import { holdContract } from "../support/contracts/holds";
import { queueContract } from "../support/contracts/queue";
import { rankingContract } from "../support/contracts/ranking";
import { storeContract } from "../support/contracts/store";
import { http, testEnv, waitFor, type TestEnv } from "../support/harness";
import { runId } from "../support/isolation";
import { journeyLine, runJourney } from "../support/journey";
import { OPS_ADMIN, opsCluster, schema, sqlOf } from "../support/ops";
import { startRedisCluster, type PrivateRedisCluster } from "../support/redis-cluster";

// ioredis' own slot function (a dependency of ioredis, without type declarations).
const keySlot: (key: string) => number = require("cluster-key-slot");

const sleep = (ms: number) => new Promise<void>(r => setTimeout(r, ms));

describe("redis cluster: store contracts on three masters", () => {
	let cluster: PrivateRedisCluster;
	const stores: RedisStore[] = [];
	const open = (label: string) => {
		const store = new RedisStore({ url: "redis://127.0.0.1", prefix: `crp-test:${runId(label)}:`, clusterNodes: cluster.nodes });
		stores.push(store);
		return store;
	};

	beforeAll(async () => {
		cluster = await startRedisCluster({ masters: 3 });
	}, 60_000);
	afterAll(async () => {
		await Promise.all(stores.map(s => s.close().catch(() => undefined)));
		await cluster?.stop();
	});

	storeContract("redis cluster", async () => open("st"));

	queueContract("redis cluster", async () => {
		const store = open("q");
		return {
			queue: createQueueStore(store),
			advance: sleep,
			close: async () => {
				await store.clear();
			},
			activeSize: async concertId => store.redis.zcard(queueKey(concertId, "active")),
			now: () => Date.now(),
			lineSize: async concertId => {
				const keys = await store.scanKeys(`queue:{${concertId}}:*`);
				return keys.filter(k => !k.endsWith(":state")).length;
			}
		};
	});

	holdContract("redis cluster", () => {
		const store = open("h");
		return {
			holds: createHoldStore(store),
			advance: sleep,
			now: Date.now,
			slackMs: 1000,
			close: async () => {
				await store.clear();
			}
		};
	});

	rankingContract("redis cluster", () => {
		const store = open("rk");
		return {
			ranking: createRankingStore(store),
			close: async () => {
				await store.clear();
			}
		};
	});

	it("when keys of many prefixes and slots exist, then clear() removes this install's keys on every master and no other", async () => {
		const mine = open("clr");
		const other = open("oth");
		await Promise.all(Array.from({ length: 60 }, (_, i) => mine.set(`k${i}`, "1")));
		await other.set("keep", "1");
		const perMaster = await Promise.all((mine.redis as Cluster).nodes("master").map(n => n.dbsize()));
		expect(perMaster.filter(n => n > 0).length).toBeGreaterThan(1);
		expect(await mine.clear()).toBe(60);
		expect(await mine.scanKeys("*")).toEqual([]);
		expect(await other.get("keep")).toBe("1");
		expect(await mine.del("a", "b", "c")).toBe(0);
	});
});

/** Concerts whose waiting-room keys live on each master, by the concert's hash tag. */
async function queueKeysPerMaster(store: RedisStore): Promise<Map<string, Set<string>>> {
	const out = new Map<string, Set<string>>();
	// A new cluster client knows its masters once it has the slot map: the ping waits for it.
	await store.ping();
	for (const node of (store.redis as Cluster).nodes("master")) {
		const addr = `${node.options.host}:${node.options.port}`;
		const concerts = new Set<string>();
		let cursor = "0";
		do {
			const [next, keys] = await node.scan(cursor, "MATCH", `${store.prefix}queue:{*`, "COUNT", 500);
			cursor = next;
			for (const k of keys) concerts.add(k.slice(k.indexOf("{") + 1, k.indexOf("}")));
		} while (cursor !== "0");
		out.set(addr, concerts);
	}
	return out;
}

describe("redis cluster: the booking journey", () => {
	let cluster: PrivateRedisCluster;
	let env: TestEnv;
	let api: string;

	beforeAll(async () => {
		cluster = await startRedisCluster({ masters: 3 });
		env = testEnv({ cluster: true, env: { REDIS_URL: "", ...cluster.env, ...OPS_ADMIN } });
		({ api } = await opsCluster(env));
	}, 90_000);
	afterAll(async () => {
		await env?.cleanup();
		await cluster?.stop();
	});

	it("when fans book on nodes whose store is the cluster, then every journey ends CONFIRMED and concerts spread over the masters", async () => {
		expect(env.config.redis?.clusterNodes).toEqual(cluster.nodes);
		const admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 12);
		const run = await runJourney(api, { concertId, scheduleId, fans: 8, concurrency: 4, seatsEach: 1 });
		console.log(journeyLine("redis cluster", run));
		expect(run.reservationIds.filter(Boolean)).toHaveLength(8);

		// More concerts, each with a waiting room: one fan enters each line.
		const others = await Promise.all(Array.from({ length: 5 }, () => ownConcert(api, admin, 1, 2)));
		const fan = await shopper(api, concertId, 0, "spread");
		for (const c of others) {
			const q = await http("POST", `${api}/queue/tokens`, { token: fan.token, body: { concertId: c.concertId } });
			expect(q.status).toBeLessThan(300);
		}
		const store = new RedisStore({ url: "redis://127.0.0.1", prefix: env.config.storePrefix, clusterNodes: cluster.nodes });
		try {
			const perMaster = await queueKeysPerMaster(store);
			const all = [concertId, ...others.map(c => c.concertId)];
			// Each concert's line is on exactly one master (its keys share a slot) ...
			for (const c of all) expect([...perMaster.values()].filter(s => s.has(c))).toHaveLength(1);
			// ... and the six lines are not all on one master (the odds of that by chance: 3 / 3^6).
			const used = [...perMaster.values()].filter(s => all.some(c => s.has(c))).length;
			console.log(`redis cluster: ${all.length} waiting rooms over ${used} of ${perMaster.size} masters`);
			expect(used).toBeGreaterThan(1);
		} finally {
			await store.close();
		}
	}, 90_000);
});

describe("redis cluster: a master fails over during a run of holds", () => {
	let cluster: PrivateRedisCluster;
	let env: TestEnv;
	let api: string;
	let brokers: ServiceBroker[];

	beforeAll(async () => {
		cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1500 });
		env = testEnv({ cluster: true, env: { REDIS_URL: "", ...cluster.env, ...OPS_ADMIN, HOLD_TTL_SEC: "60" } });
		({ api, brokers } = await opsCluster(env));
	}, 90_000);
	afterAll(async () => {
		await env?.cleanup();
		await cluster?.stop();
	});

	it("when a master is killed and its replica promoted under holds, then no seat is sold twice, lost holds are caught by the database, and requests are retried", async () => {
		expect(brokers).toHaveLength(3);
		const admin = await adminToken(api, OPS_ADMIN.ADMIN_EMAIL, OPS_ADMIN.ADMIN_PASSWORD);
		const SCHEDULES = 4;
		const FANS_PER = 4;
		const SEATS = 10;
		const QUOTA = 2;
		const shows = await Promise.all(Array.from({ length: SCHEDULES }, () => ownConcert(api, admin, 1, SEATS)));
		const seatIds = await Promise.all(shows.map(s => seats(api, s.scheduleId).then(m => m.map(x => x.id))));
		const fans: { fan: Shopper; show: number }[] = [];
		for (let i = 0; i < SCHEDULES; i++) {
			const made = await Promise.all(Array.from({ length: FANS_PER }, () => shopper(api, shows[i].concertId, 100_000, "fo")));
			fans.push(...made.map(fan => ({ fan, show: i })));
		}

		// The master serving the slots of the most schedules' holds (a hold's keys carry the `{scheduleId}` tag).
		const owners = await Promise.all(shows.map(s => cluster.ownerOf(keySlot(s.scheduleId))));
		const victim = [...new Set(owners)].sort((a, b) => owners.filter(o => o === b).length - owners.filter(o => o === a).length)[0];
		const affected = shows.filter((_, i) => owners[i] === victim).length;

		interface Call {
			kind: "hold" | "pay" | "queue";
			status: number;
			ms: number;
			at: number;
			retryAfter: string | null;
		}
		const calls: Call[] = [];
		const timed = async (kind: Call["kind"], f: () => Promise<{ status: number; headers: Headers; body: any }>) => {
			const t0 = Date.now();
			const r = await f();
			calls.push({ kind, status: r.status, ms: Date.now() - t0, at: t0, retryAfter: r.headers.get("retry-after") });
			return r;
		};

		// Each fan: hold a random seat of its schedule; when held, wait a moment (the hold lives across the kill) and
		// pay; stop once it bought QUOTA seats. Fans of one schedule compete for the same seats.
		const bought = new Map<string, { fan: Shopper; seatId: string }>();
		const boughtBy = (fan: Shopper) => [...bought.values()].filter(b => b.fan === fan).length;
		const stopAt = Date.now() + 10_000;
		let killedAt = 0;
		const fanLoop = async ({ fan, show }: { fan: Shopper; show: number }) => {
			while (Date.now() < stopAt && boughtBy(fan) < QUOTA) {
				const seat = seatIds[show][Math.floor(Math.random() * SEATS)];
				const held = await timed("hold", () => reserve(api, fan, shows[show].scheduleId, [seat]));
				if (held.status !== 201) {
					await sleep(50 + Math.random() * 100);
					continue;
				}
				await sleep(Math.random() * 1500);
				const paid = await timed("pay", () => pay(api, fan, held.body.id));
				if (paid.status !== 201) continue;
				bought.set(held.body.id, { fan, seatId: seat });
				// A purchase completes the fan's waiting-room token: it takes a new one for its next seat.
				const again = await http("POST", `${api}/queue/tokens`, { token: fan.token, body: { concertId: fan.concertId } });
				calls.push({ kind: "queue", status: again.status, ms: 0, at: Date.now(), retryAfter: again.headers.get("retry-after") });
				if (again.body?.status === "ACTIVE") fan.queueToken = again.body.token;
			}
		};
		const killer = (async () => {
			await sleep(700);
			killedAt = Date.now();
			expect(await cluster.killMaster(victim)).toBe(victim);
		})();
		// The gateway's health meanwhile: its store check is one PING to any node, so the failover of one master
		// (whose slots' commands are retried meanwhile) must not turn it red.
		const storeChecks: boolean[] = [];
		let polling = true;
		const healthPoll = (async () => {
			while (polling) {
				const h = await http("GET", `${api}/health`);
				storeChecks.push(h.body?.checks?.store?.ok === true);
				await sleep(250);
			}
		})();
		const load = Promise.all(fans.map(fanLoop));
		await killer;
		await cluster.waitForFailover(30_000);
		const failoverMs = Date.now() - killedAt;
		await load;
		polling = false;
		await healthPoll;
		expect(storeChecks.length).toBeGreaterThan(10);
		expect(storeChecks.filter(ok => !ok)).toEqual([]);
		const recoveredMs = Date.now() - killedAt;

		// A hold lost by Redis (the replica was promoted without it, as asynchronous replication allows): made here
		// on purpose by deleting one hold's keys behind the services' backs. Another fan then holds the same seat and
		// buys it; the first fan's payment must not sell it a second time.
		const store = new RedisStore({ url: "redis://127.0.0.1", prefix: env.config.storePrefix, clusterNodes: cluster.nodes });
		let lostCaught: { first: string; second: string; firstStatus: string };
		try {
			const show = owners.indexOf(victim);
			const sold = new Set([...bought.values()].map(b => b.seatId));
			const free = seatIds[show].find(id => !sold.has(id));
			expect(free).toBeDefined();
			const a = await shopper(api, shows[show].concertId, 100_000, "lost-a");
			const b = await shopper(api, shows[show].concertId, 100_000, "lost-b");
			const heldA = await reserve(api, a, shows[show].scheduleId, [free!]);
			expect(heldA.status).toBe(201);
			await store.del(`concert:h:{${shows[show].scheduleId}}:${free}`);
			await store.redis.zrem(`concert:hi:{${shows[show].scheduleId}}`, free!);
			const heldB = await reserve(api, b, shows[show].scheduleId, [free!]);
			expect(heldB.status).toBe(201);
			expect((await pay(api, b, heldB.body.id)).status).toBe(201);
			const paidA = await pay(api, a, heldA.body.id);
			expect(paidA.status).not.toBe(201);
			await waitFor(async () => (await reservation(api, a, heldA.body.id)).status !== "PENDING", 15_000, "the lost hold's reservation settled");
			lostCaught = { first: heldA.body.id, second: heldB.body.id, firstStatus: (await reservation(api, a, heldA.body.id)).status };
			expect(lostCaught.firstStatus).not.toBe("CONFIRMED");
			expect((await reservation(api, b, heldB.body.id)).status).toBe("CONFIRMED");
		} finally {
			await store.close();
		}

		// The databases: every sold seat once, and the confirmed reservations agree with the seat sales.
		let sql: mysql.Connection | undefined;
		let confirmedSeats: { seat_id: string; n: number }[];
		let sales: { schedule_id: string; seat_id: string }[];
		try {
			sql = await sqlOf(env, "reservation");
			const scheduleIds = shows.map(s => s.scheduleId);
			[confirmedSeats] = (await sql.query(
				`SELECT s.seat_id, COUNT(*) AS n FROM ${schema(env, "reservation")}.reservations r
				 JOIN ${schema(env, "reservation")}.reservation_seats s ON s.reservation_id = r.id
				 WHERE r.status = 'CONFIRMED' AND r.schedule_id IN (?) GROUP BY s.seat_id`,
				[scheduleIds]
			)) as unknown as [{ seat_id: string; n: number }[]];
			await sql.end();
			sql = await sqlOf(env, "concert");
			[sales] = (await sql.query(`SELECT schedule_id, seat_id FROM ${schema(env, "concert")}.seat_sales WHERE schedule_id IN (?)`, [
				scheduleIds
			])) as unknown as [{ schedule_id: string; seat_id: string }[]];
		} finally {
			await sql?.end();
		}
		expect(confirmedSeats.filter(r => Number(r.n) > 1)).toEqual([]);
		expect(new Set(sales.map(s => `${s.schedule_id}/${s.seat_id}`)).size).toBe(sales.length);
		expect(sales.map(s => s.seat_id).sort()).toEqual(confirmedSeats.map(r => r.seat_id).sort());
		// The fans' purchases (a payment answered late may have confirmed too) and the lost hold's second buyer.
		expect(confirmedSeats.length).toBeGreaterThanOrEqual(bought.size + 1);

		const during = calls.filter(c => c.at + c.ms >= killedAt && c.at <= killedAt + failoverMs);
		const fiveXX = calls.filter(c => c.status >= 500);
		const slowest = Math.max(...calls.map(c => c.ms));
		const byStatus = Object.entries(
			calls.reduce<Record<string, number>>((acc, c) => ((acc[`${c.kind} ${c.status}`] = (acc[`${c.kind} ${c.status}`] ?? 0) + 1), acc), {})
		)
			.map(([k, n]) => `${k}: ${n}`)
			.join(", ");
		console.log(
			`redis cluster failover: master ${victim} (holds of ${affected}/${SCHEDULES} schedules) killed; cluster ok again after ` +
				`${failoverMs} ms; ${calls.length} requests (${byStatus}; ${during.length} in flight during the failover), ${fiveXX.length} answered 5xx ` +
				`[${fiveXX.map(c => `${c.kind} ${c.status} retry-after ${c.retryAfter}`).join(", ")}], slowest ${slowest} ms; ` +
				`${bought.size} seats bought by ${fans.length} fans (${SCHEDULES} x ${SEATS} seats, up to ${QUOTA} each), the last ${recoveredMs} ms after the kill; lost hold: second buyer CONFIRMED, first ${lostCaught.firstStatus}`
		);
		// Retried inside the store client for up to its failover budget (8 s) rather than surfaced.
		expect(during.length).toBeGreaterThan(0);
		expect(fiveXX.filter(c => c.retryAfter === null)).toEqual([]);
		expect(fiveXX.length).toBe(0);
	}, 120_000);
});

describe("redis cluster: every server down", () => {
	let cluster: PrivateRedisCluster;
	let store: RedisStore | undefined;
	afterAll(async () => {
		await store?.close().catch(() => undefined);
		await cluster?.stop();
	});

	it("when the whole cluster is unreachable, then commands fail as unavailable within the budget and none runs when it is back", async () => {
		cluster = await startRedisCluster({ masters: 3 });
		store = new RedisStore({ url: "redis://127.0.0.1", prefix: `crp-test:${runId("down")}:`, clusterNodes: cluster.nodes, failoverBudgetMs: 2000 });
		await store.set("before", "1");
		await cluster.killAll();
		const started = Date.now();
		const writes = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => store!.set(`late-${i}`, "1")));
		const elapsed = Date.now() - started;
		expect(writes.map(w => (w.status === "rejected" ? (w.reason as Error).name : "written"))).toEqual(Array(20).fill("StoreUnavailableError"));
		// The budget (2 s) plus the store's deadline margin, with room for a slow machine.
		expect(elapsed).toBeLessThan(6000);

		await cluster.restartAll();
		await waitFor(
			() =>
				store!.ping().then(
					() => true,
					() => false
				),
			30_000,
			"the store to reach the restarted cluster",
			200
		);
		// Queued rather than failed, the writes would run now, long after their callers were answered 503.
		await sleep(1000);
		const late = await Promise.all(Array.from({ length: 20 }, (_, i) => store!.get(`late-${i}`)));
		expect(late.filter(v => v !== null)).toEqual([]);
		await store.set("after", "1");
		expect(await store.get("after")).toBe("1");
	}, 90_000);
});
