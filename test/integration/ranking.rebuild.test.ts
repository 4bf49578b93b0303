/**
 * The ranking's rebuild against real Redis and JetStream (issue 15 item 6 and the self-rebuild): two ranking nodes,
 * the truth from a stand-in reservation service (its latest event per reservation, as `reservation.outboxLatest`
 * answers it). Events are published straight to the run's stream, so a test decides what is "in flight". A Redis
 * loss is the run's own key prefix deleted (never the shared server's other keys).
 */
import type { ServiceBroker } from "moleculer";
import { EventSigner } from "../../lib/cluster-auth";
import { JetStreamEventBus } from "../../lib/events";
import { createStore } from "../../lib/store";
import { createRankingStore } from "../../services/ranking/ranking.store";
import { FakeConcertService, FakeReservationService, type FakeReservation } from "../support/event-services/fakes.service";
import { deleteEventStreams, EventNodes, catalogEvent, publishRaw } from "../support/events";
import { TEST_CLUSTER_SECRET, testEnv, waitFor, type TestEnv } from "../support/harness";
import { NATS_URL } from "../support/isolation";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

describe("ranking rebuild (cluster: Redis, NATS JetStream)", () => {
	let env: TestEnv;
	let nodes: EventNodes;
	let a: ServiceBroker;

	beforeAll(async () => {
		env = testEnv({ cluster: true });
		nodes = new EventNodes(env);
		[a] = await Promise.all([nodes.node(["ranking", FakeReservationService, FakeConcertService]), nodes.node(["ranking"])]);
		// The tests start from a built (empty) ranking: the two nodes' start-up self-rebuild, which can race the
		// discovery of the fake reservation service and then wait out a build lease, is over before the first one.
		const store = createStore(env.config);
		try {
			const ranking = createRankingStore(store);
			await waitFor(() => ranking.ready(), 45_000, "the start-up rebuild");
		} finally {
			await store.close();
		}
	}, 90_000);

	afterAll(async () => {
		await nodes?.stop();
		await deleteEventStreams(env.config.namespace).catch(() => undefined);
		await env?.cleanup();
	}, 60_000);

	const score = async (concertId: string) =>
		(await a.call<{ concertId: string; score: number }[], object>("ranking.concerts", { limit: 100 })).find(r => r.concertId === concertId)?.score ?? 0;
	const confirmed = (reservationId: string, concertId: string, seats: number) =>
		catalogEvent("reservation.confirmed", reservationId, 2, {
			reservationId,
			userId: "u",
			concertId,
			scheduleId: "s",
			seatIds: Array.from({ length: seats }, (_, i) => `s${i}`),
			amount: 100 * seats
		});
	const cancelled = (reservationId: string, concertId: string, seats: number) =>
		catalogEvent("reservation.cancelled", reservationId, 3, {
			reservationId,
			userId: "u",
			concertId,
			scheduleId: "s",
			seatIds: Array.from({ length: seats }, (_, i) => `s${i}`),
			amount: 100 * seats,
			wasConfirmed: true,
			reason: "USER"
		});
	const truthIs = (reservations: FakeReservation[]) => a.call("reservation.fakeReservations", { reservations });
	const conf = (reservationId: string, concertId: string, seats: number): FakeReservation => ({
		reservationId,
		concertId,
		version: 2,
		type: "reservation.confirmed",
		seats
	});
	/** Redis came back without its data: every key of this run's prefix is gone. */
	const loseTheStore = async () => {
		const store = createStore(env.config);
		try {
			await store.clear();
		} finally {
			await store.close();
		}
	};
	/** A marker event after the others, applied: the earlier ones had their turn on both nodes' shared group. */
	async function settle() {
		const marker = `c-marker-${Math.random().toString(36).slice(2)}`;
		await publishRaw(env.config.namespace, [confirmed(`m-${marker}`, marker, 1)]);
		await waitFor(async () => (await score(marker)) === 1, 15_000, "the marker");
		// A sleep on purpose: a late second count of an earlier event (in flight on the other node) has time to show.
		await sleep(300);
	}

	it("when the store was lost and repaired, then cancelling a booking confirmed before the loss takes its seats off", async () => {
		await publishRaw(env.config.namespace, [confirmed("loss-a", "c-loss", 3), confirmed("loss-b", "c-loss", 1)]);
		await waitFor(async () => (await score("c-loss")) === 4, 15_000, "both bookings counted");
		await truthIs([conf("loss-a", "c-loss", 3), conf("loss-b", "c-loss", 1)]);
		await loseTheStore();
		expect(await a.call("ranking.rebuild", {})).toEqual({ concerts: 1, seats: 4 });
		expect(await score("c-loss")).toBe(4);

		await publishRaw(env.config.namespace, [cancelled("loss-a", "c-loss", 3)]);
		await truthIs([{ ...conf("loss-a", "c-loss", 3), version: 3, type: "reservation.cancelled", seats: 0 }, conf("loss-b", "c-loss", 1)]);
		await waitFor(async () => (await score("c-loss")) === 1, 15_000, "the cancel to take 3 seats off");
		expect((await a.call<{ ok: boolean }>("ranking.verify")).ok).toBe(true);
	}, 60_000);

	it("when an event the truth already counted arrives after the rebuild, then it counts once (truth 2, not 4)", async () => {
		await truthIs([conf("fly-a", "c-fly", 2)]);
		await a.call("ranking.rebuild", {});
		expect(await score("c-fly")).toBe(2);
		// Committed before the rebuild read the truth, delivered after it.
		await publishRaw(env.config.namespace, [confirmed("fly-a", "c-fly", 2)]);
		await settle();
		expect(await score("c-fly")).toBe(2);
	}, 60_000);

	it("when an event is applied while the rebuild reads the truth that missed it, then it still counts (truth 1, not 0)", async () => {
		await truthIs([]);
		await a.call("reservation.fakeHoldTruth", { hold: true });
		const rebuilt = a.call<{ seats: number }, object>("ranking.rebuild", {});
		await waitFor(
			async () => (await a.call<{ waiting: number }, object>("reservation.fakeHoldTruth", { hold: true })).waiting === 1,
			10_000,
			"the rebuild reading the truth"
		);
		// Committed after the truth's read, applied before the rebuild ends.
		await publishRaw(env.config.namespace, [confirmed("mid-a", "c-mid", 1)]);
		await waitFor(async () => (await score("c-mid")) === 1, 15_000, "the event applied to the live ranking");
		await a.call("reservation.fakeHoldTruth", { hold: false });
		await rebuilt;
		expect(await score("c-mid")).toBe(1);
		await settle();
		expect(await score("c-mid")).toBe(1);
	}, 60_000);

	it("when Redis comes back without its data, then the ranking rebuilds itself once (no admin) and the events of the outage count once", async () => {
		await truthIs([conf("self-a", "c-self", 2), conf("self-b", "c-self", 3), conf("self-c", "c-other", 1)]);
		await a.call("ranking.rebuild", {});
		expect(await score("c-self")).toBe(5);
		const before = (await a.call<{ reads: number }, object>("reservation.fakeHoldTruth", { hold: false })).reads;

		await loseTheStore();
		// A booking confirmed while the ranking had no store: its event fails until the ranking is back, then counts.
		await publishRaw(env.config.namespace, [confirmed("self-d", "c-self", 4)]);
		await truthIs([conf("self-a", "c-self", 2), conf("self-b", "c-self", 3), conf("self-c", "c-other", 1), conf("self-d", "c-self", 4)]);
		await waitFor(async () => (await score("c-self")) === 9 && (await score("c-other")) === 1, 20_000, "the ranking back at the confirmed sales");
		await settle();
		expect(await score("c-self")).toBe(9);
		expect(await score("c-other")).toBe(1);
		// Two nodes noticed; one rebuilt (one page of truth read).
		expect((await a.call<{ reads: number }, object>("reservation.fakeHoldTruth", { hold: false })).reads - before).toBe(1);
		// Nothing went to the dead-letter queue on the way.
		const bus = new JetStreamEventBus({ url: NATS_URL, namespace: env.config.namespace, signer: new EventSigner({ secret: TEST_CLUSTER_SECRET }) });
		try {
			expect(await bus.deadLetters({ group: "ranking" })).toEqual([]);
		} finally {
			await bus.close();
		}
	}, 60_000);
});
