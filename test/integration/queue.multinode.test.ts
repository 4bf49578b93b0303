/**
 * Three queue nodes (two in-process brokers and one separate OS process started by moleculer-runner) over the
 * real NATS, sharing the real Redis, called round-robin by a fourth broker. Concurrent entries, leaves, saga
 * expiries, status polling and lapsing tokens; a sampler reads the size of the active set straight from Redis
 * throughout. The claims: the cap is never exceeded, nobody is admitted twice, nobody is skipped or lost.
 */
import type { ServiceBroker } from "moleculer";
import { RedisStore } from "../../lib/store";
import { queueKey } from "../../services/queue/queue.store";
import { testEnv, waitFor, type TestEnv } from "../support/harness";
import { REDIS_URL } from "../support/isolation";
import { concertId, fakeConcertService, testUser, type TestUser } from "../support/queue";

const CAP = 100;
const TTL_SEC = 3;
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
const jitter = (min: number, max: number) => sleep(min + Math.floor(Math.random() * (max - min)));

interface TokenView {
	token: string;
	status: "ACTIVE" | "WAITING";
	position: number;
}

describe("waiting room on three queue nodes over NATS with real Redis", () => {
	let env: TestEnv;
	let caller: ServiceBroker;
	let raw: RedisStore;
	const concerts = [concertId("seed"), concertId("churn")];

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: { QUEUE_MAX_ACTIVE: String(CAP), QUEUE_ACTIVE_TTL_SEC: String(TTL_SEC) } });
		caller = await env.broker([]);
		await caller.createService(fakeConcertService(concerts).schema);
		await Promise.all([env.broker(["queue"]), env.broker(["queue"]), env.spawn(["queue"])]);
		await waitFor(() => caller.registry.getActionEndpoints("queue.enter")?.count() === 3, 20_000, "three queue nodes");
		raw = new RedisStore({ url: REDIS_URL, prefix: env.config.storePrefix });
	}, 90_000);

	afterAll(async () => {
		await raw?.close();
		await env.cleanup();
	}, 60_000);

	const as = (u: TestUser) => ({ meta: { user: { id: u.id, email: u.email, role: u.role } } });
	const enter = (u: TestUser, concert: string) => caller.call<TokenView, { concertId: string }>("queue.enter", { concertId: concert }, as(u));
	const status = (u: TestUser, token: string) => caller.call<TokenView, { token: string }>("queue.status", { token }, as(u)).catch(() => null);
	const leave = (u: TestUser, token: string) => caller.call("queue.leave", { token }, as(u)).catch(() => null);
	const slotsTaken = (concert: string) => raw.redis.zcard(queueKey(concert, "active"));

	it("when 150 users enter at once through three nodes with a cap of 100, then exactly 100 are ACTIVE and 50 wait at 1..50", async () => {
		const concert = concerts[0];
		const users = Array.from({ length: 150 }, () => testUser(env.config.jwt.secret!));
		const entered = await Promise.all(users.map(u => enter(u, concert)));
		expect(entered.filter(v => v.status === "ACTIVE")).toHaveLength(100);
		const waiting = entered.filter(v => v.status === "WAITING");
		expect(waiting.map(v => v.position).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
		// Arrival order is the store's INCR sequence: the line in Redis lists the waiting tokens by exactly those positions.
		const line = await raw.redis.zrange(queueKey(concert, "wait"), 0, -1);
		const byPosition = waiting
			.slice()
			.sort((a, b) => a.position - b.position)
			.map(v => v.token.split(".")[1]);
		expect(line).toEqual(byPosition);
		expect(await caller.call("queue.stats", { concertId: concert })).toMatchObject({ waiting: 50, active: 100, maxActive: CAP });
	});

	it("when 300 users enter, poll, leave, expire and lapse concurrently, then the cap holds and every admission happens exactly once", async () => {
		const concert = concerts[1];
		const users = Array.from({ length: 300 }, () => testUser(env.config.jwt.secret!));
		const tokens = new Map<string, string>();
		const quitters = new Set<string>();

		let maxSeen = 0;
		let samples = 0;
		let sampling = true;
		const sampler = (async () => {
			while (sampling) {
				maxSeen = Math.max(maxSeen, await slotsTaken(concert));
				samples++;
				await sleep(2);
			}
		})();

		await Promise.all(
			users.map(async (u, i) => {
				await jitter(0, 300);
				const first = await enter(u, concert);
				const token = first.token;
				tokens.set(u.id, token.split(".")[1]);
				if (i % 10 === 0) {
					// Gives up while (probably) still waiting.
					quitters.add(u.id);
					await jitter(0, 300);
					await leave(u, token);
					return;
				}
				let view: TokenView | null = first;
				while (view && view.status === "WAITING") {
					await jitter(100, 250);
					view = await status(u, token);
				}
				if (!view) throw new Error(`user ${i} lost their token while waiting`);
				await jitter(100, 250);
				if (i % 10 === 1) return; // keeps the slot until it lapses: the sweep frees it
				if (i % 2 === 0) await leave(u, token);
				else expect(await caller.call("queue.expire", { token })).toEqual({ expired: true });
			})
		);
		// Lapsed tokens are freed by the sweeps within TTL + about a second.
		await waitFor(async () => (await slotsTaken(concert)) === 0, (TTL_SEC + 5) * 1000, "every slot to be freed");
		sampling = false;
		await sampler;

		const admitted = await raw.redis.zrange(queueKey(concert, "admlog"), 0, -1);
		const stats = await caller.call<{ waiting: number; active: number; admittedTotal: number }, { concertId: string }>("queue.stats", {
			concertId: concert
		});
		const issued = new Set(tokens.values());
		const admittedSet = new Set(admitted);

		expect(samples).toBeGreaterThan(100);
		expect(maxSeen).toBeLessThanOrEqual(CAP);
		// The cap was really reached, so an overshoot had its chance to show.
		expect(maxSeen).toBe(CAP);
		expect(stats).toMatchObject({ waiting: 0, active: 0 });
		// Nobody admitted twice: the counter of admissions equals the number of distinct admitted tokens.
		expect(stats.admittedTotal).toBe(admittedSet.size);
		// Nobody skipped or lost: everyone who stayed in line was admitted; nothing was admitted that was not issued.
		for (const u of users) if (!quitters.has(u.id)) expect(admittedSet.has(tokens.get(u.id)!)).toBe(true);
		for (const t of admitted) expect(issued.has(t)).toBe(true);
		expect(admittedSet.size).toBeGreaterThanOrEqual(300 - quitters.size);
	}, 60_000);
});
