/**
 * Durable events end to end on the real servers (cluster) and in one process (embedded): producers commit rows
 * and their outbox events, three relay nodes publish them to JetStream, consumer groups (ranking, notification and
 * a test sink, each on two nodes) apply them once. Outages, redeliveries, out-of-order events, a poison event and
 * its replay, and the HTTP routes of ranking, notifications, alerts and the event dead-letter queue.
 */
import { spawn } from "child_process";
import path from "path";
import type { ServiceBroker } from "moleculer";
import { FakeConcertService, FakeReservationService } from "../support/event-services/fakes.service";
import { ProducerService, PRODUCER_PREFIX } from "../support/event-services/producer.service";
import { sinkSchema, type SinkStats } from "../support/event-services/sink.service";
import { deleteEventStreams, EventNodes, catalogEvent, publishRaw, streamEvents, tokenFor } from "../support/events";
import { userDirectory } from "../support/queue";
import { gatewayUrl, http, testEnv, waitFor, type TestEnv } from "../support/harness";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

describe("durable events (cluster: NATS JetStream, MariaDB, Redis)", () => {
	let env: TestEnv;
	let nodes: EventNodes;
	let relays: ServiceBroker[];
	let a: ServiceBroker;
	let api: string;
	let admin: string;

	beforeAll(async () => {
		env = testEnv({ cluster: true, env: { OUTBOX_POLL_MS: "100" } });
		nodes = new EventNodes(env);
		// Consumers first, so their durable groups exist; the groups start at the first message either way.
		const consumerServices = ["ranking", "notification", sinkSchema("sink", { maxAttempts: 3 })];
		[a] = await Promise.all([
			nodes.node(["api", ...consumerServices, FakeConcertService, FakeReservationService, userDirectory()]),
			nodes.node(consumerServices)
		]);
		relays = await Promise.all([0, 1, 2].map(() => nodes.node([ProducerService])));
		api = gatewayUrl(a);
		admin = tokenFor(env, "admin").token;
	}, 90_000);

	afterAll(async () => {
		await nodes?.stop();
		await deleteEventStreams(env.config.namespace).catch(() => undefined);
		await env?.cleanup();
	}, 60_000);

	const sink = (ids: string[]) => a.call<SinkStats, { ids: string[] }>("sink-sink.stats", { ids });
	const pending = () => relays[0].call<number>("evproducer.pending");
	const publishCount = async (ids: string[]) => {
		const { createStore } = await import("../../lib/store");
		const store = createStore(env.config);
		try {
			return await Promise.all(ids.map(async id => Number((await store.get(`${PRODUCER_PREFIX}published:${id}`)) ?? 0)));
		} finally {
			await store.close();
		}
	};

	type Spec = { eventType: string; payload: Record<string, unknown> };
	const testEvents =
		(versions: number) =>
		(k: number): Spec[] =>
			Array.from({ length: versions }, (_, v) => ({ eventType: "test.happened", payload: { k, v } }));

	/** Appends each aggregate's events in order; aggregates side by side; the producer nodes in turn. */
	async function appendMany(prefix: string, aggregates: number, eventsOf: (k: number) => Spec[]) {
		const ids: string[] = [];
		await Promise.all(
			Array.from({ length: aggregates }, async (_, k) => {
				const specs = eventsOf(k);
				for (let v = 0; v < specs.length; v++) {
					const node = relays[(k + v) % relays.length];
					const res = await node.call<{ id: string }, unknown>("evproducer.append", { aggregateId: `${prefix}-${k}`, ...specs[v] });
					ids.push(res.id);
				}
			})
		);
		return ids;
	}

	/** In stream order, every aggregate's versions are 1, 2, 3... with nothing missing and nothing before its time. */
	async function expectStreamOrder(prefix: string, aggregates: number, versionsOf: (k: number) => number) {
		const seen = new Map<string, number[]>();
		for (const e of await streamEvents(env.config.namespace)) {
			if (!e.aggregateId.startsWith(`${prefix}-`)) continue;
			seen.set(e.aggregateId, [...(seen.get(e.aggregateId) ?? []), e.version]);
		}
		expect(seen.size).toBe(aggregates);
		for (const [agg, vs] of seen) {
			const k = Number(agg.slice(prefix.length + 1));
			expect({ agg, vs }).toEqual({ agg, vs: Array.from({ length: versionsOf(k) }, (_, i) => i + 1) });
		}
	}

	const setPublishing = (up: boolean) => Promise.all(relays.map(r => r.call("evproducer.setPublishing", { up }, { nodeID: r.nodeID })));
	const relayStates = () => Promise.all(relays.map(r => r.call<{ backingOff: boolean }, object>("evproducer.relayState", {}, { nodeID: r.nodeID })));

	it("when the broker is unreachable while reservations are held, confirmed and cancelled, then nothing is lost and, once it is back, every event is applied exactly once", async () => {
		const user = tokenFor(env);
		// Each reservation: held (v1), confirmed (v2); every even one then cancelled (v3). 2 seats each.
		const lifecycle = (k: number): Spec[] => {
			const p = { reservationId: `outage-${k}`, userId: user.id, concertId: "c-outage", scheduleId: "s", seatIds: ["a", "b"], amount: 20 };
			const out: Spec[] = [
				{ eventType: "reservation.held", payload: { ...p, reservedAt: new Date().toISOString(), expiresAt: new Date().toISOString() } },
				{ eventType: "reservation.confirmed", payload: p }
			];
			if (k % 2 === 0) out.push({ eventType: "reservation.cancelled", payload: { ...p, wasConfirmed: true, refundAmount: 20, reason: "USER" } });
			return out;
		};
		await setPublishing(false);
		const ids = await appendMany("outage", 10, lifecycle);
		// Every relay claimed rows, failed to publish them and backs off: each had its chance to lose them.
		await waitFor(async () => (await relayStates()).every(s => s.backingOff), 10_000, "every relay to find the broker unreachable");
		// Nothing got through, nothing was dropped: every row still waits in the outbox.
		expect(await pending()).toBe(25);
		expect((await sink(ids)).applied).toEqual(Object.fromEntries(ids.map(id => [id, 0])));
		expect(await rankingScore("c-outage")).toBe(0);
		const states = (await setPublishing(true)) as { backingOff: boolean }[];
		expect(states.every(s => s.backingOff)).toBe(true);

		await waitFor(async () => Object.values((await sink(ids)).applied).every(n => n === 1), 20_000, "every event applied");
		expect(await pending()).toBe(0);
		await waitFor(async () => (await http("GET", `${api}/notifications?pageSize=100`, { token: user.token })).body.total >= 25, 10_000, "25 notifications");
		await waitFor(async () => (await rankingScore("c-outage")) === 10, 10_000, "the ranking to settle");
		await settle();
		expect(Object.values((await sink(ids)).applied)).toEqual(ids.map(() => 1));
		// The five reservations still confirmed, two seats each: nothing counted twice, no cancel missed.
		expect(await rankingScore("c-outage")).toBe(10);
		const inbox = await http("GET", `${api}/notifications?pageSize=100`, { token: user.token });
		expect(inbox.body.total).toBe(25);
		await expectStreamOrder("outage", 10, k => (k % 2 === 0 ? 3 : 2));
	}, 40_000);

	it("when a relay node is killed -9 in the middle of a batch, then the rows it held are published by the others, each applied once", async () => {
		const doomedId = `${env.id}-doomed`;
		const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "test/support/event-services/producer-node.ts"], {
			cwd: path.resolve(__dirname, "../.."),
			env: { ...process.env, ...env.env, NODE_ID: doomedId, LOG_LEVEL: "error" },
			stdio: ["ignore", "pipe", "pipe"]
		});
		let out = "";
		child.stdout!.on("data", d => (out += d.toString()));
		child.stderr!.on("data", d => (out += d.toString()));
		const exited = new Promise(resolve => child.once("exit", resolve));
		try {
			await waitFor(() => out.includes("producer node ready") || child.exitCode !== null, 45_000, "the doomed node");
			await waitFor(() => a.registry.getServiceList({ onlyAvailable: true }).filter(s => s.name === "evproducer").length === 4, 10_000, "4 producers");
			await setPublishing(false);
			await a.call("evproducer.setPublishing", { up: true, hang: true }, { nodeID: doomedId });
			const ids: string[] = [];
			for (let k = 0; k < 12; k++) {
				const res = await a.call<{ id: string }, unknown>(
					"evproducer.append",
					{ aggregateId: `crash-${k}`, eventType: "test.happened", payload: { k } },
					{ nodeID: doomedId }
				);
				ids.push(res.id);
			}
			// The doomed node claimed a batch and hangs in it (its rows locked) before the others may publish.
			await waitFor(
				async () => (await a.call<{ hanging: number }, object>("evproducer.relayState", {}, { nodeID: doomedId })).hanging > 0,
				10_000,
				"the doomed node to hang in its batch"
			);
			await setPublishing(true);
			// The others publish what they can claim (once out of their backoff); the rows in the doomed node's open
			// batch stay locked, unpublished.
			const appliedCount = async () => Object.values((await sink(ids)).applied).filter(n => n === 1).length;
			// Settled: the same counts for longer than the others' longest backoff (2 s at a 100 ms poll).
			let held = 0;
			let last = "";
			let since = Date.now();
			await waitFor(
				async () => {
					held = await pending();
					const applied = await appliedCount();
					if (`${held}/${applied}` !== last) {
						last = `${held}/${applied}`;
						since = Date.now();
						return false;
					}
					return applied === 12 - held && Date.now() - since >= 2500;
				},
				20_000,
				"the free rows published around the doomed node's batch"
			);
			expect(held).toBeGreaterThan(0);

			child.kill("SIGKILL");
			await exited;
			await waitFor(async () => Object.values((await sink(ids)).applied).every(n => n === 1), 20_000, "every event applied after the crash");
			expect(await pending()).toBe(0);
			expect(await publishCount(ids)).toEqual(ids.map(() => 1));
		} finally {
			if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
		}
	}, 60_000);

	it("when three relay nodes publish a steady stream at once, then each event is published once, in order per aggregate, and applied once", async () => {
		const ids = await appendMany("multi", 30, testEvents(5));
		expect(new Set(ids).size).toBe(150);
		await waitFor(async () => Object.values((await sink(ids)).applied).every(n => n === 1), 20_000, "every event applied");
		expect(await pending()).toBe(0);
		// No relay published a row another relay had claimed: exactly one publish per event.
		expect(await publishCount(ids)).toEqual(ids.map(() => 1));
		await expectStreamOrder("multi", 30, () => 5);
		expect(Object.values((await sink(ids)).applied)).toEqual(ids.map(() => 1));
	}, 40_000);

	const rankingScore = async (concertId: string) => {
		const res = await http("GET", `${api}/rankings/concerts?limit=100`);
		expect(res.status).toBe(200);
		return (res.body as { concertId: string; score: number }[]).find(r => r.concertId === concertId)?.score ?? 0;
	};
	/** Publishes a marker event after the others and waits until ranking applied it: the earlier ones had their turn. */
	async function settle() {
		const marker = `c-marker-${Math.random().toString(36).slice(2)}`;
		await publishRaw(env.config.namespace, [
			catalogEvent("reservation.confirmed", `m-${marker}`, 2, {
				reservationId: `m-${marker}`,
				userId: "nobody",
				concertId: marker,
				scheduleId: "s",
				seatIds: ["s1"],
				amount: 100
			})
		]);
		await waitFor(async () => (await rankingScore(marker)) === 1, 10_000, "the marker");
		// A sleep on purpose: a late second apply of an earlier event (in flight on the group's other node) has time to show.
		await sleep(300);
	}

	it("when the same confirmation is delivered 3 times, then ranking, inbox and sink apply it once", async () => {
		const user = tokenFor(env);
		const e = catalogEvent("reservation.confirmed", "r-dup", 2, {
			reservationId: "r-dup",
			userId: user.id,
			concertId: "c-dup",
			scheduleId: "s",
			seatIds: ["a", "b"],
			amount: 200
		});
		await publishRaw(env.config.namespace, [e, e, e]);
		await waitFor(async () => (await sink([e.id])).delivered[e.id] === 3, 10_000, "3 deliveries to the sink");
		await waitFor(async () => (await rankingScore("c-dup")) === 2, 10_000, "the ranking");
		await waitFor(async () => (await http("GET", `${api}/notifications`, { token: user.token })).body.total === 1, 10_000, "the inbox");
		await settle();
		expect((await sink([e.id])).applied[e.id]).toBe(1);
		expect(await rankingScore("c-dup")).toBe(2);
		const inbox = await http("GET", `${api}/notifications`, { token: user.token });
		expect(inbox.status).toBe(200);
		expect(inbox.body.total).toBe(1);
		expect(inbox.body.rows[0]).toEqual({
			id: expect.any(String),
			type: "RESERVATION_CONFIRMED",
			message: expect.any(String),
			createdAt: expect.any(String),
			readAt: null
		});
	}, 30_000);

	it("when a cancel arrives before its confirm (and again later), then the ranking never counts the cancelled seats", async () => {
		const base = { userId: "u-order", concertId: "c-order", scheduleId: "s", amount: 300 };
		await publishRaw(env.config.namespace, [
			catalogEvent("reservation.confirmed", "r-keep", 2, { ...base, reservationId: "r-keep", seatIds: ["k1"] }),
			catalogEvent("reservation.cancelled", "r-late", 3, {
				...base,
				reservationId: "r-late",
				seatIds: ["x", "y", "z"],
				wasConfirmed: true,
				refundAmount: 300,
				reason: "USER"
			}),
			catalogEvent("reservation.confirmed", "r-late", 2, { ...base, reservationId: "r-late", seatIds: ["x", "y", "z"] })
		]);
		await waitFor(async () => (await rankingScore("c-order")) === 1, 10_000, "the kept reservation counted");
		await settle();
		expect(await rankingScore("c-order")).toBe(1);
		// The cancel once more (a redelivery): no deflation below the truth either.
		await publishRaw(env.config.namespace, [
			catalogEvent("reservation.cancelled", "r-late", 3, {
				...base,
				reservationId: "r-late",
				seatIds: ["x", "y", "z"],
				wasConfirmed: true,
				reason: "USER"
			})
		]);
		await settle();
		expect(await rankingScore("c-order")).toBe(1);
	}, 30_000);

	it("when an event keeps failing, then it is dead-lettered after 3 tries with an admin alert, and once fixed a replay applies it once", async () => {
		const { id } = await relays[1].call<{ id: string }, unknown>("evproducer.append", {
			aggregateId: "poison-1",
			eventType: "test.happened",
			payload: { poison: true }
		});
		let letter: { id: string; group: string; attempts: number; event: { id: string } } | undefined;
		await waitFor(
			async () => {
				const res = await http("GET", `${api}/admin/event-dead-letters?group=sink`, { token: admin });
				letter = (res.body as (typeof letter)[]).find(l => l!.event.id === id);
				return !!letter;
			},
			15_000,
			"the dead letter"
		);
		expect(letter).toMatchObject({ group: "sink", attempts: 3 });
		expect(await sink([id])).toMatchObject({ delivered: { [id]: 3 }, applied: { [id]: 0 } });
		await waitFor(
			async () => {
				const res = await http("GET", `${api}/admin/alerts?pageSize=100`, { token: admin });
				return (res.body.rows as { type: string; data: { eventId?: string } }[]).some(r => r.type === "ADMIN_ALERT" && r.data.eventId === id);
			},
			5_000,
			"the admin alert"
		);
		const user = tokenFor(env);
		expect((await http("GET", `${api}/admin/event-dead-letters`, { token: user.token })).status).toBe(403);
		expect((await http("POST", `${api}/admin/event-dead-letters/${letter!.id}/replay`, { token: user.token })).status).toBe(403);

		await a.call("sink-sink.fix");
		const replay = await http("POST", `${api}/admin/event-dead-letters/${letter!.id}/replay`, { token: admin });
		expect(replay.status).toBe(202);
		expect(replay.body).toMatchObject({ id: letter!.id, group: "sink", eventId: id, replayed: true });
		await waitFor(async () => (await sink([id])).applied[id] === 1, 10_000, "the replay applied");
		const again = await http("POST", `${api}/admin/event-dead-letters/${letter!.id}/replay`, { token: admin });
		expect(again.status).toBe(404);
		expect(again.body.type).toBe("NOT_FOUND");
		// A sleep on purpose: it shows that no second apply follows the replay.
		await sleep(500);
		expect((await sink([id])).applied[id]).toBe(1);
		const left = await http("GET", `${api}/admin/event-dead-letters`, { token: admin });
		expect((left.body as { event: { id: string } }[]).some(l => l.event.id === id)).toBe(false);
		expect((await http("POST", `${api}/admin/event-dead-letters/abc/replay`, { token: admin })).status).toBe(422);
	}, 40_000);

	it("when the catalog is down, then the ranking still answers its scores with null titles; a rebuild resets it to the truth", async () => {
		let rows = (await http("GET", `${api}/rankings/concerts?limit=100`)).body as { rank: number; concertId: string; title: string | null; score: number }[];
		expect(rows.find(r => r.concertId === "c-dup")).toMatchObject({ title: "Title of c-dup", score: 2 });
		expect(rows.map(r => r.rank)).toEqual(rows.map((_, i) => i + 1));
		await a.call("concert.fakeDown", { down: true });
		await publishRaw(env.config.namespace, [
			catalogEvent("reservation.confirmed", "r-fresh", 2, {
				reservationId: "r-fresh",
				userId: "u",
				concertId: "c-fresh",
				scheduleId: "s",
				seatIds: ["1", "2", "3"],
				amount: 300
			})
		]);
		await waitFor(async () => (await rankingScore("c-fresh")) === 3, 10_000, "c-fresh scored");
		rows = (await http("GET", `${api}/rankings/concerts?limit=100`)).body;
		expect(rows.find(r => r.concertId === "c-fresh")).toMatchObject({ title: null, score: 3 });
		await a.call("concert.fakeDown", { down: false });
		expect((await http("GET", `${api}/rankings/concerts?limit=0`)).status).toBe(422);

		await a.call("reservation.fakeSold", {
			sold: [
				{ concertId: "c-truth", seats: 7 },
				{ concertId: "c-dup", seats: 2 }
			]
		});
		expect((await a.call<{ ok: boolean }>("ranking.verify")).ok).toBe(false);
		expect((await http("POST", `${api}/admin/rankings/rebuild`, { token: tokenFor(env).token })).status).toBe(403);
		const rebuilt = await http("POST", `${api}/admin/rankings/rebuild`, { token: admin });
		expect(rebuilt.status).toBe(200);
		expect(rebuilt.body).toEqual({ concerts: 2, seats: 9 });
		rows = (await http("GET", `${api}/rankings/concerts?limit=10`)).body;
		expect(rows).toEqual([
			{ rank: 1, concertId: "c-truth", title: "Title of c-truth", score: 7 },
			{ rank: 2, concertId: "c-dup", title: "Title of c-dup", score: 2 }
		]);
		expect((await a.call<{ ok: boolean }>("ranking.verify")).ok).toBe(true);
	}, 30_000);

	it("when events of a user arrive, then only that user's inbox lists them, paginated; a failed saga raises an admin alert", async () => {
		const u1 = tokenFor(env);
		const u2 = tokenFor(env);
		await publishRaw(env.config.namespace, [
			catalogEvent("reservation.held", "r-in", 1, {
				reservationId: "r-in",
				userId: u1.id,
				concertId: "c-in",
				scheduleId: "s",
				seatIds: ["a"],
				amount: 100,
				reservedAt: new Date().toISOString(),
				expiresAt: new Date().toISOString()
			}),
			catalogEvent("payment.completed", "p-in", 1, {
				paymentId: "p-in",
				sagaId: "g-in",
				reservationId: "r-in",
				userId: u1.id,
				amount: 100,
				paymentDate: new Date().toISOString()
			}),
			catalogEvent("reservation.expired", "r-in2", 2, {
				reservationId: "r-in2",
				userId: u1.id,
				concertId: "c-in",
				scheduleId: "s",
				seatIds: ["b"],
				amount: 100
			})
		]);
		await waitFor(async () => (await http("GET", `${api}/notifications`, { token: u1.token })).body.total === 3, 10_000, "3 notifications");
		const page = await http("GET", `${api}/notifications?page=2&pageSize=2`, { token: u1.token });
		expect(page.body).toMatchObject({ page: 2, pageSize: 2, total: 3 });
		expect(page.body.rows).toHaveLength(1);
		const all = await http("GET", `${api}/notifications?pageSize=100`, { token: u1.token });
		expect(all.body.rows.map((r: { type: string }) => r.type).sort()).toEqual(["PAYMENT_COMPLETED", "RESERVATION_EXPIRED", "RESERVATION_HELD"]);
		expect((await http("GET", `${api}/notifications`, { token: u2.token })).body).toMatchObject({ rows: [], total: 0 });
		expect((await http("GET", `${api}/notifications`)).status).toBe(401);
		expect((await http("GET", `${api}/notifications?pageSize=101`, { token: u1.token })).status).toBe(422);

		await relays[2].emit("saga.failed", {
			sagaId: "saga-x",
			type: "ConfirmReservation",
			key: "k",
			step: "refund",
			deadLetterId: "dl-1",
			error: { type: "X" }
		});
		await waitFor(
			async () =>
				((await http("GET", `${api}/admin/alerts?pageSize=100`, { token: admin })).body.rows as { data: { sagaId?: string } }[]).some(
					r => r.data.sagaId === "saga-x"
				),
			5_000,
			"the saga alert"
		);
		// The durable copy of the same alert (the saga service's outbox): still one alert.
		await publishRaw(env.config.namespace, [
			{
				...catalogEvent("saga.failed", "saga-x", 1, {
					sagaId: "saga-x",
					type: "ConfirmReservation",
					key: "k",
					step: "refund",
					phase: "compensate",
					deadLetterId: "dl-1",
					error: null
				}),
				aggregateType: "saga"
			}
		]);
		// A saga failure known only from the outbox (its broker event was lost): alerted too.
		await publishRaw(env.config.namespace, [
			{
				...catalogEvent("saga.failed", "saga-y", 1, {
					sagaId: "saga-y",
					type: "CancelReservation",
					key: "k2",
					step: "refund",
					phase: "compensate",
					deadLetterId: "dl-2",
					error: null
				}),
				aggregateType: "saga"
			}
		]);
		const sagaAlerts = async () =>
			((await http("GET", `${api}/admin/alerts?pageSize=100`, { token: admin })).body.rows as { data: { sagaId?: string } }[]).filter(r =>
				r.data.sagaId?.startsWith("saga-")
			);
		await waitFor(async () => (await sagaAlerts()).some(r => r.data.sagaId === "saga-y"), 10_000, "the outbox-only saga alert");
		await settle();
		expect((await sagaAlerts()).map(r => r.data.sagaId).sort()).toEqual(["saga-x", "saga-y"]);
		expect((await http("GET", `${api}/admin/alerts`, { token: u1.token })).status).toBe(403);
	}, 30_000);

	it("when the reservation service is gone, then a rebuild answers 503 and leaves the ranking as it was", async () => {
		const before = (await http("GET", `${api}/rankings/concerts?limit=100`)).body;
		await a.destroyService(a.getLocalService("reservation")!);
		const res = await http("POST", `${api}/admin/rankings/rebuild`, { token: admin });
		expect(res.status).toBe(503);
		expect(res.body.type).toBe("SERVICE_UNAVAILABLE");
		expect((await http("GET", `${api}/rankings/concerts?limit=100`)).body).toEqual(before);
	});
});

describe("durable events (embedded: one process, SQLite, in-process bus)", () => {
	let env: TestEnv;
	let nodes: EventNodes;
	let node: ServiceBroker;
	let api: string;
	let admin: string;

	beforeAll(async () => {
		env = testEnv({ cluster: false, env: { OUTBOX_POLL_MS: "100" } });
		nodes = new EventNodes(env);
		node = await nodes.node([
			"api",
			"ranking",
			"notification",
			sinkSchema("sink", { maxAttempts: 3 }),
			ProducerService,
			FakeConcertService,
			FakeReservationService,
			userDirectory()
		]);
		api = gatewayUrl(node);
		admin = tokenFor(env, "admin").token;
	}, 60_000);

	afterAll(async () => {
		await nodes?.stop();
		await env?.cleanup();
	}, 30_000);

	it("when a producer commits a confirmation and a poison event, then ranking and inbox apply the confirmation once and the poison is dead-lettered and replayed once", async () => {
		const user = tokenFor(env);
		const payload = { reservationId: "r-e1", userId: user.id, concertId: "c-emb", scheduleId: "s", seatIds: ["a", "b"], amount: 20 };
		await node.call("evproducer.append", { aggregateId: "r-e1", eventType: "reservation.confirmed", payload });
		const { id: poisonId } = await node.call<{ id: string }, unknown>("evproducer.append", {
			aggregateId: "p-e1",
			eventType: "test.happened",
			payload: { poison: true }
		});
		await waitFor(async () => ((await http("GET", `${api}/rankings/concerts`)).body as { score: number }[])[0]?.score === 2, 5_000, "the ranking");
		expect((await http("GET", `${api}/rankings/concerts`)).body).toEqual([{ rank: 1, concertId: "c-emb", title: "Title of c-emb", score: 2 }]);
		await waitFor(async () => (await http("GET", `${api}/notifications`, { token: user.token })).body.total === 1, 5_000, "the inbox");

		let letters: { id: string; event: { id: string } }[] = [];
		await waitFor(
			async () => {
				letters = (await http("GET", `${api}/admin/event-dead-letters`, { token: admin })).body;
				return letters.some(l => l.event.id === poisonId);
			},
			5_000,
			"the dead letter"
		);
		expect((await node.call<SinkStats, { ids: string[] }>("sink-sink.stats", { ids: [poisonId] })).delivered[poisonId]).toBe(3);
		await node.call("sink-sink.fix");
		const letter = letters.find(l => l.event.id === poisonId)!;
		expect((await http("POST", `${api}/admin/event-dead-letters/${letter.id}/replay`, { token: admin })).status).toBe(202);
		expect((await http("POST", `${api}/admin/event-dead-letters/${letter.id}/replay`, { token: admin })).status).toBe(404);
		await waitFor(
			async () => (await node.call<SinkStats, { ids: string[] }>("sink-sink.stats", { ids: [poisonId] })).applied[poisonId] === 1,
			5_000,
			"the replay"
		);
		// A sleep on purpose: it shows that no second apply follows the replay.
		await sleep(200);
		expect((await node.call<SinkStats, { ids: string[] }>("sink-sink.stats", { ids: [poisonId] })).applied[poisonId]).toBe(1);
		expect(await node.call("evproducer.pending")).toBe(0);
	}, 30_000);
});

describe("durable events (embedded): the scheduled dead-letter redrive", () => {
	let env: TestEnv;
	let nodes: EventNodes;
	let node: ServiceBroker;

	beforeAll(async () => {
		env = testEnv({ cluster: false, env: { OUTBOX_POLL_MS: "100", DLQ_REDRIVE_SEC: "1", DLQ_REDRIVE_MAX: "1" } });
		nodes = new EventNodes(env);
		node = await nodes.node(["notification", sinkSchema("sink", { maxAttempts: 2 }), ProducerService, FakeReservationService, userDirectory()]);
	}, 60_000);

	afterAll(async () => {
		await nodes?.stop();
		await env?.cleanup();
	}, 30_000);

	const stats = (id: string) => node.call<SinkStats, { ids: string[] }>("sink-sink.stats", { ids: [id] });
	const letters = () => node.call<{ id: string; redrives: number; event: { id: string } }[], object>("notification.eventDeadLetters", {});

	it("when an event was dead-lettered and its cause is fixed, then it is sent back by itself and applied once; a poison one stops after DLQ_REDRIVE_MAX", async () => {
		const { id } = await node.call<{ id: string }, unknown>("evproducer.append", {
			aggregateId: "auto-1",
			eventType: "test.happened",
			payload: { poison: true }
		});
		await waitFor(async () => (await letters()).some(l => l.event.id === id), 5_000, "the dead letter");
		// Still failing: the redrive sends it back once (2 more deliveries), then it stays, marked as redriven once.
		await waitFor(async () => (await letters()).some(l => l.event.id === id && l.redrives === 1), 10_000, "the letter after its one redrive");
		expect((await stats(id)).delivered[id]).toBe(4);
		// A sleep on purpose: it shows that no further redrive comes while two redrive periods (1 s) pass.
		await sleep(2_500);
		expect((await stats(id)).delivered[id]).toBe(4);
		const alerts = await node.call<{ rows: { data: { eventId?: string; autoRedrive?: boolean; redrives?: number } }[] }, object>("notification.alerts", {
			pageSize: 100
		});
		expect(
			alerts.rows
				.filter(r => r.data.eventId === id)
				.map(r => [r.data.redrives, r.data.autoRedrive])
				.sort()
		).toEqual([
			[0, true],
			[1, false]
		]);

		// A second one, fixed before its redrive: applied once by the redrive alone, no operator.
		const second = await node.call<{ id: string }, unknown>("evproducer.append", {
			aggregateId: "auto-2",
			eventType: "test.happened",
			payload: { poison: true }
		});
		await waitFor(async () => (await letters()).some(l => l.event.id === second.id), 5_000, "the second dead letter");
		await node.call("sink-sink.fix");
		await waitFor(async () => (await stats(second.id)).applied[second.id] === 1, 10_000, "the redriven event applied");
		// A sleep on purpose: it shows that the redriven event is not applied a second time by a later round.
		await sleep(1_500);
		expect((await stats(second.id)).applied[second.id]).toBe(1);
		expect((await letters()).some(l => l.event.id === second.id)).toBe(false);
	}, 40_000);
});
