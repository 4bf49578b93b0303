/**
 * Shoppers that behave like real clients of the HTTP API: each registers and signs in, charges points, then loops
 * enter the waiting room -> hold one or two seats -> pay -> sometimes cancel, sometimes review. Every
 * state-changing request carries an Idempotency-Key; a 5xx, a 429, a 409 IDEMPOTENCY_KEY_IN_PROGRESS, a broken
 * connection or a client timeout is retried with the same key (backoff 250 ms doubling to 2 s) until a definitive
 * answer or `giveUpMs`; a 202 is followed by polling the reservation until it settles. Every attempt is recorded
 * (time, operation, status, error type), and each shopper keeps what it was told about its bookings, so the
 * harness can hold the platform to it afterwards.
 *
 * One seat in ten is asked for after someone else bought it: the 409 must change nothing.
 */
import crypto from "crypto";
import { Client, type Reply } from "../bench/load";

export type Op = "register" | "login" | "charge" | "enter" | "hold" | "pay" | "cancel" | "review" | "poll" | "check";

export interface Attempt {
	/** ms since the population's epoch, when the answer (or the failure) came. */
	t: number;
	op: Op;
	/** HTTP status, or "net" for a broken connection or a client timeout. */
	status: number | "net";
	type?: string;
	ms: number;
}

export type Told = "PENDING" | "CONFIRMED" | "CANCELLED" | "EXPIRED" | "NOT_PAID" | "UNKNOWN";

export interface Booking {
	id: string;
	concertId: string;
	amount: number;
	told: Told;
	/** Confirmed, then cancelled by the shopper (told CANCELLED after having been told CONFIRMED). */
	cancelledAfterConfirm?: boolean;
	/** The shopper asked to cancel it without learning the outcome: a later CANCELLED is its own doing. */
	cancelRequested?: boolean;
}

export interface Shopper {
	n: number;
	id: string;
	email: string;
	token: string;
	/** Points the platform said it credited (200 answers to charges). */
	charged: number;
	bookings: Map<string, Booking>;
	/** Holds that never got a definitive answer (gave up): each may or may not have created a reservation. */
	unresolvedHolds: number;
	/** Holds answered with a 4xx: each must have created nothing. */
	rejectedHolds: number;
	reviewed: Set<string>;
}

export interface Sale {
	concertId: string;
	scheduleId: string;
	seats: string[];
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
const PASSWORD = "chaos-shopper-password";

export class Population {
	readonly attempts: Attempt[] = [];
	/** ms since the epoch of every confirmation a shopper was told (201, or a 202 that settled CONFIRMED). */
	readonly confirmations: number[] = [];
	readonly shoppers: Shopper[] = [];
	readonly epoch = Date.now();
	private readonly http: Client;
	private stopping = false;
	private loops: Promise<void>[] = [];
	private sale?: Sale;
	private cursor = 0;
	private readonly sold: string[] = [];

	constructor(
		readonly api: string,
		readonly size: number,
		private readonly opts: { giveUpMs?: number; requestTimeoutMs?: number; seed?: number } = {}
	) {
		this.http = new Client(api, size + 8, opts.requestTimeoutMs ?? 20_000);
	}

	now(): number {
		return Date.now() - this.epoch;
	}

	/** Registers, signs in and charges every shopper (through the API, as a person would). */
	async setup(pointsEach = 1_000_000): Promise<void> {
		const tag = crypto.randomBytes(3).toString("hex");
		await Promise.all(
			Array.from({ length: this.size }, async (_, n) => {
				const email = `shopper-${tag}-${n}@chaos.example.com`;
				const reg = await this.send("register", "POST", "/auth/register", {
					body: { email, password: PASSWORD, name: `Shopper ${n}` },
					key: `register-${email}`
				});
				if (!reg || (reg.status !== 201 && reg.status !== 409)) throw new Error(`register ${email}: ${reg?.status} ${JSON.stringify(reg?.body)}`);
				const login = await this.send("login", "POST", "/auth/login", { body: { email, password: PASSWORD } });
				if (!login || login.status !== 200) throw new Error(`login ${email}: ${login?.status} ${JSON.stringify(login?.body)}`);
				const body = login.body as { accessToken: string; user: { id: string } };
				const s: Shopper = {
					n,
					id: body.user.id,
					email,
					token: body.accessToken,
					charged: 0,
					bookings: new Map(),
					unresolvedHolds: 0,
					rejectedHolds: 0,
					reviewed: new Set()
				};
				const charge = await this.send("charge", "POST", "/points/charge", { token: s.token, body: { amount: pointsEach }, key: `charge-${s.id}-0` });
				if (!charge || charge.status !== 200) throw new Error(`charge ${email}: ${charge?.status} ${JSON.stringify(charge?.body)}`);
				s.charged += pointsEach;
				this.shoppers[n] = s;
			})
		);
	}

	/** Starts every shopper's loop on this sale; `stop()` ends them after their current step. */
	start(sale: Sale): void {
		this.sale = sale;
		this.cursor = 0;
		this.sold.length = 0;
		this.stopping = false;
		this.loops = this.shoppers.map(s => this.shop(s));
	}

	async stop(): Promise<void> {
		this.stopping = true;
		await Promise.all(this.loops);
		this.loops = [];
	}

	close(): void {
		this.http.close();
	}

	/** Seats left to sell in the current sale. */
	get seatsLeft(): number {
		return this.sale ? this.sale.seats.length - this.cursor : 0;
	}

	private async shop(s: Shopper): Promise<void> {
		const sale = this.sale!;
		while (!this.stopping) {
			const entered = await this.send("enter", "POST", "/queue/tokens", {
				token: s.token,
				body: { concertId: sale.concertId },
				key: `enter-${crypto.randomUUID()}`
			});
			if (!entered || entered.status >= 300) {
				await sleep(500);
				continue;
			}
			const queueToken = String((entered.body as { token: string }).token);
			if ((entered.body as { status?: string }).status !== "ACTIVE") {
				await sleep(500);
				continue;
			}

			const contended = this.sold.length > 0 && Math.random() < 0.1;
			let seatIds: string[];
			if (contended) seatIds = [this.sold[Math.floor(Math.random() * this.sold.length)]];
			else {
				const want = Math.random() < 0.3 ? 2 : 1;
				seatIds = sale.seats.slice(this.cursor, this.cursor + want);
				this.cursor += seatIds.length;
				if (seatIds.length === 0) return; // sold out
			}
			const hold = await this.send("hold", "POST", "/reservations", {
				token: s.token,
				body: { scheduleId: sale.scheduleId, seatIds },
				headers: { "x-queue-token": queueToken },
				key: `hold-${crypto.randomUUID()}`
			});
			if (!hold) {
				s.unresolvedHolds++;
				continue;
			}
			if (hold.status !== 201) {
				s.rejectedHolds++;
				continue;
			}
			const held = hold.body as { id: string; amount: number };
			const booking: Booking = { id: held.id, concertId: sale.concertId, amount: Number(held.amount), told: "PENDING" };
			s.bookings.set(booking.id, booking);

			const paid = await this.send("pay", "POST", "/payments", {
				token: s.token,
				body: { reservationId: booking.id },
				headers: { "x-queue-token": queueToken },
				key: `pay-${booking.id}`
			});
			if (!paid) booking.told = "UNKNOWN";
			else if (paid.status === 201) booking.told = "CONFIRMED";
			else if (paid.status === 202) booking.told = await this.settle(s, booking.id);
			else booking.told = "NOT_PAID";
			if (booking.told === "NOT_PAID") {
				// A payment that did not go through leaves the reservation open, and a buyer has one open reservation per
				// show at a time: the shopper lets it go, as a person would, before trying other seats.
				const dropped = await this.send("cancel", "POST", `/reservations/${booking.id}/cancel`, { token: s.token, key: `drop-${booking.id}` });
				if (dropped?.status === 200) booking.told = "CANCELLED";
			}
			if (booking.told === "CONFIRMED") {
				this.confirmations.push(this.now());
				this.sold.push(...seatIds);
			}

			if (booking.told === "CONFIRMED" && Math.random() < 0.15) {
				const cancel = await this.send("cancel", "POST", `/reservations/${booking.id}/cancel`, { token: s.token, key: `cancel-${booking.id}` });
				if (cancel?.status === 200 || (cancel?.status === 202 && (await this.settle(s, booking.id)) === "CANCELLED")) {
					booking.told = "CANCELLED";
					booking.cancelledAfterConfirm = true;
				} else {
					// No answer, or one that does not say (a 4xx, a 202 that did not settle): the shopper looks at its booking, as a person would, and
					// believes what the platform shows (CONFIRMED if the cancel did not happen, CANCELLED if it did).
					booking.cancelRequested = true;
					const now = await this.send("poll", "GET", `/reservations/${booking.id}`, { token: s.token });
					const status = now?.status === 200 ? (now.body as { status: string }).status : undefined;
					if (status === "CANCELLED") booking.cancelledAfterConfirm = true;
					booking.told = status === "CONFIRMED" || status === "CANCELLED" ? status : "UNKNOWN";
				}
			} else if (booking.told === "CONFIRMED" && !s.reviewed.has(sale.concertId) && Math.random() < 0.05) {
				const review = await this.send("review", "POST", `/concerts/${sale.concertId}/reviews`, {
					token: s.token,
					body: { rating: 1 + Math.floor(Math.random() * 5), content: "Survived the chaos." },
					key: `review-${s.id}-${sale.concertId}`
				});
				// 403 before the show (a review needs the show to have taken place): the shopper stops asking.
				if (review?.status === 201 || review?.status === 409 || review?.status === 403) s.reviewed.add(sale.concertId);
			}
		}
	}

	/** Follows a reservation after a 202 until its saga is done: what the shopper is then told. */
	private async settle(s: Shopper, id: string): Promise<Told> {
		const until = Date.now() + (this.opts.giveUpMs ?? 90_000);
		while (Date.now() < until) {
			await sleep(300);
			const r = await this.send("poll", "GET", `/reservations/${id}`, { token: s.token });
			if (!r || r.status !== 200) continue;
			const v = r.body as { status: string; saga?: { status: string } };
			// A reservation reads CONFIRMED from the saga's third step on, before its seats are sold (the fourth): a
			// shopper is told it has a booking only once the saga is done, as a 201 would tell it.
			const sagaBusy = v.saga?.status === "RUNNING" || v.saga?.status === "COMPENSATING";
			if (sagaBusy) continue;
			if (v.status === "CONFIRMED" || v.status === "CANCELLED" || v.status === "EXPIRED") return v.status;
			if (v.status === "PENDING" && v.saga && v.saga.status !== "RUNNING" && v.saga.status !== "COMPENSATING") return "NOT_PAID";
		}
		return "UNKNOWN";
	}

	/**
	 * One request, retried like a careful client: same Idempotency-Key, backoff, until a definitive answer. Returns
	 * undefined when it gave up (the outcome is unknown to the client).
	 */
	async send(
		op: Op,
		method: string,
		path: string,
		opts: { token?: string; body?: unknown; headers?: Record<string, string>; key?: string } = {}
	): Promise<Reply | undefined> {
		const headers = { ...opts.headers, ...(opts.key ? { "idempotency-key": opts.key } : {}) };
		const until = Date.now() + (this.opts.giveUpMs ?? 90_000);
		for (let k = 0; ; k++) {
			let reply: Reply | undefined;
			const t0 = Date.now();
			try {
				reply = await this.http.request(method, path, { token: opts.token, body: opts.body, headers });
			} catch {
				reply = undefined;
			}
			const type = reply && typeof reply.body === "object" && reply.body !== null ? (reply.body as { type?: string }).type : undefined;
			this.attempts.push({ t: this.now(), op, status: reply?.status ?? "net", type, ms: Date.now() - t0 });
			const again = !reply || reply.status >= 500 || reply.status === 429 || (reply.status === 409 && type === "IDEMPOTENCY_KEY_IN_PROGRESS");
			if (!again) return reply;
			if (Date.now() > until || (this.stopping && op === "enter")) return undefined;
			await sleep(Math.min(2000, 250 * 2 ** Math.min(k, 3)));
		}
	}
}
