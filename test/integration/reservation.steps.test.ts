/**
 * The reservation's saga participants against late arrivals: a timed-out attempt of a forward step that is still
 * queued here and applies after its saga's compensation ran must change nothing (review findings 2 and 4), and a
 * request retried with its Idempotency-Key after its answer was lost answers from its saga.
 */
import crypto from "crypto";
import type { ServiceBroker } from "moleculer";
import { adminToken, ownConcert, pay, reserve, seats, shopper } from "../support/booking";
import { gatewayUrl, testEnv, type TestEnv } from "../support/harness";

const ADMIN = { ADMIN_EMAIL: "ops@example.com", ADMIN_PASSWORD: "ops-password" };

describe.each([
	["embedded", false],
	["cluster", true]
])("reservation steps and late arrivals (%s)", (_mode, cluster) => {
	let env: TestEnv;
	let broker: ServiceBroker;
	let api: string;
	let admin: string;

	beforeAll(async () => {
		env = testEnv({ cluster, env: ADMIN });
		broker = await env.broker(["api", "user", "queue", "concert", "payment", "saga", "reservation"]);
		api = gatewayUrl(broker);
		admin = await adminToken(api, ADMIN.ADMIN_EMAIL, ADMIN.ADMIN_PASSWORD);
	}, 120_000);
	afterAll(() => env.cleanup(), 60_000);

	async function pending(): Promise<{ id: string; u: Awaited<ReturnType<typeof shopper>> }> {
		const { concertId, scheduleId } = await ownConcert(api, admin, 1, 4, 500);
		const u = await shopper(api, concertId, 5000);
		const held = await reserve(api, u, scheduleId, [(await seats(api, scheduleId))[0].id]);
		return { id: held.body.id, u };
	}
	const step = (action: string, params: Record<string, unknown>, sagaId: string) =>
		broker.call<{ status: string | null }, Record<string, unknown>>(`reservation.${action}`, params, { meta: { sagaId } });
	const status = async (id: string) =>
		(await broker.call<{ status: string }, { id: string }>("reservation.get", { id }, { meta: { user: { id: await ownerOf(id) } } })).status;
	const owners = new Map<string, string>();
	const ownerOf = async (id: string) => owners.get(id)!;

	it("when markPaying arrives after its saga's revertPaying, then it is refused and the reservation stays PENDING", async () => {
		const { id, u } = await pending();
		owners.set(id, u.userId);
		const saga = crypto.randomUUID();
		await step("markPaying", { reservationId: id }, saga);
		await step("revertPaying", { reservationId: id }, saga);
		expect(await status(id)).toBe("PENDING");
		await expect(step("markPaying", { reservationId: id }, saga)).rejects.toMatchObject({ type: "RESERVATION_NOT_PAYABLE" });
		expect(await status(id)).toBe("PENDING");
		// Another saga can still pay it.
		await step("markPaying", { reservationId: id }, crypto.randomUUID());
		expect(await status(id)).toBe("PAYING");
	});

	it("when the confirm step was in doubt and its compensation ran first, then the reservation is PENDING and a late confirm is refused", async () => {
		const { id, u } = await pending();
		owners.set(id, u.userId);
		const saga = crypto.randomUUID();
		await step("markPaying", { reservationId: id }, saga);
		await step("voidConfirmation", { reservationId: id }, saga);
		expect(await status(id)).toBe("PENDING");
		await expect(step("confirm", { reservationId: id, paymentId: crypto.randomUUID() }, saga)).rejects.toMatchObject({ code: 409 });
		expect(await status(id)).toBe("PENDING");
	});

	it("when beginCancel arrives after its saga's abortCancel, then it is refused and the reservation keeps its status", async () => {
		const { id, u } = await pending();
		owners.set(id, u.userId);
		const saga = crypto.randomUUID();
		await step("beginCancel", { reservationId: id, expect: "PENDING" }, saga);
		await step("abortCancel", { reservationId: id }, saga);
		expect(await status(id)).toBe("PENDING");
		await expect(step("beginCancel", { reservationId: id, expect: "PENDING" }, saga)).rejects.toMatchObject({ type: "RESERVATION_NOT_CANCELLABLE" });
		expect(await status(id)).toBe("PENDING");
	});

	it("when a paid request is retried with its key after the answer was lost, then it answers the same payment, not 409", async () => {
		const { id, u } = await pending();
		const first = await pay(api, u, id, "lost-answer");
		expect(first.status).toBe(201);
		// The gateway kept no answer (as after a 5xx): the service itself is asked again with the same key.
		const again = await broker.call<{ id: string; status: string }, { reservationId: string }>(
			"reservation.pay",
			{ reservationId: id },
			{ meta: { user: { id: u.userId, email: "x@example.com", role: "user" }, idempotencyKey: "lost-answer", queueToken: u.queueToken } }
		);
		expect(again).toMatchObject({ id: first.body.id, status: "COMPLETED" });
	});
});
