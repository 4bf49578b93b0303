/**
 * The live seat map (issue 20): `GET /api/schedules/:id/seats/events`, Server-Sent Events from the gateway.
 *
 * Each stream gets `event: seats` with `{scheduleId, seats: [{id, status}]}`: the whole status list at once, then
 * again after every change of that schedule, so a client only ever replaces what it shows. The concert service
 * broadcasts `concert.seatsChanged` (`{scheduleIds}`, coalesced per 100 ms on its node) when a hold, a release, a
 * sale or an un-sale of a schedule goes through; a gateway with streams open for one of them reads its seat list
 * once (concert.seats) and writes it to all of them. Holds that simply expire make no event, so a schedule with
 * streams is also read again every `refreshMs`; a comment line every 15 s keeps proxies from closing a quiet stream.
 *
 * SSE rather than WebSocket: one direction is all a seat map needs, it is plain HTTP through any proxy, and the
 * browser's EventSource reconnects by itself; the page polls GET /api/schedules/:id/seats when it cannot stream.
 * Written here rather than with a library: moleculer-web answers each request from one action call, and a stream
 * that lasts as long as the page is open is not one; the gateway hands these requests to this class instead
 * (api.service.ts), which bounds the streams per client address and per process.
 */
import type { IncomingMessage, ServerResponse } from "http";
import type { ServiceBroker } from "moleculer";

export interface SeatFeedOptions {
	/** Streams one process serves at most (past it: 503). */
	maxStreams: number;
	/** Streams one client address may hold open at once (past it: 429). */
	maxPerAddress: number;
	/** A schedule with open streams is read again this often (expired holds make no event). */
	refreshMs: number;
	/** Changes of one schedule within this long are sent as one. */
	debounceMs: number;
	heartbeatMs: number;
}

export const SEAT_FEED_DEFAULTS: SeatFeedOptions = { maxStreams: 2000, maxPerAddress: 8, refreshMs: 5000, debounceMs: 100, heartbeatMs: 15_000 };

/** The path of a schedule's stream; the id as the route's `:id`. */
export const SEAT_EVENTS_PATH = /^\/api\/schedules\/([^/?#]{1,200})\/seats\/events\/?(?:\?.*)?$/;

interface Stream {
	res: ServerResponse;
	address: string;
}

interface SeatRow {
	id: string;
	status: string;
}

export class SeatFeed {
	private readonly bySchedule = new Map<string, Set<Stream>>();
	private readonly perAddress = new Map<string, number>();
	private readonly pending = new Map<string, NodeJS.Timeout>();
	private readonly timers: NodeJS.Timeout[] = [];
	private streams = 0;
	private closed = false;

	constructor(
		private readonly broker: ServiceBroker,
		private readonly opts: SeatFeedOptions = SEAT_FEED_DEFAULTS
	) {
		const refresh = setInterval(() => {
			for (const id of this.bySchedule.keys()) this.changed(id);
		}, opts.refreshMs);
		const heartbeat = setInterval(() => {
			for (const set of this.bySchedule.values()) for (const s of set) s.res.write(": ping\n\n");
		}, opts.heartbeatMs);
		refresh.unref();
		heartbeat.unref();
		this.timers.push(refresh, heartbeat);
	}

	/** Open streams (for tests and the figures). */
	get open(): number {
		return this.streams;
	}

	/**
	 * Serves one stream: validates the schedule (its seat list answers 404 for an unknown one), then keeps the
	 * response open until the client goes. Errors before the stream starts are answered as JSON by `fail`.
	 */
	async serve(req: IncomingMessage, res: ServerResponse, rawId: string, address: string, fail: (err: unknown) => void): Promise<void> {
		if (req.method !== "GET") return fail(Object.assign(new Error("Only GET streams seats"), { code: 405, type: "METHOD_NOT_ALLOWED" }));
		if (this.closed || this.streams >= this.opts.maxStreams) {
			return fail(
				Object.assign(new Error("Too many seat streams on this gateway; poll the seat list instead"), { code: 503, type: "SERVICE_UNAVAILABLE" })
			);
		}
		if ((this.perAddress.get(address) ?? 0) >= this.opts.maxPerAddress) {
			return fail(Object.assign(new Error("Too many seat streams from this address"), { code: 429, type: "RATE_LIMITED" }));
		}
		let scheduleId: string;
		try {
			scheduleId = decodeURIComponent(rawId);
		} catch {
			return fail(Object.assign(new Error("schedule not found"), { code: 404, type: "NOT_FOUND", data: { resource: "schedule" } }));
		}
		let seats: SeatRow[];
		try {
			seats = await this.read(scheduleId);
		} catch (err) {
			return fail(err);
		}
		if (this.closed || req.destroyed) return;
		res.writeHead(200, {
			"Content-Type": "text/event-stream; charset=utf-8",
			"Cache-Control": "no-store",
			Connection: "keep-alive",
			// nginx and friends: pass each event on at once.
			"X-Accel-Buffering": "no"
		});
		// A browser reconnects after 2 s when the stream breaks.
		res.write("retry: 2000\n\n");
		this.send(res, scheduleId, seats);
		const stream: Stream = { res, address };
		let set = this.bySchedule.get(scheduleId);
		if (!set) this.bySchedule.set(scheduleId, (set = new Set()));
		set.add(stream);
		this.streams++;
		this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
		const gone = () => {
			if (!set!.delete(stream)) return;
			this.streams--;
			const n = (this.perAddress.get(address) ?? 1) - 1;
			if (n <= 0) this.perAddress.delete(address);
			else this.perAddress.set(address, n);
			if (set!.size === 0) this.bySchedule.delete(scheduleId);
		};
		req.on("close", gone);
		res.on("close", gone);
		res.on("error", gone);
	}

	/** A schedule changed: its streams get the new list once the debounce has passed (nothing when none is open). */
	changed(scheduleId: string): void {
		if (this.closed || !this.bySchedule.has(scheduleId) || this.pending.has(scheduleId)) return;
		const t = setTimeout(() => {
			this.pending.delete(scheduleId);
			void this.push(scheduleId);
		}, this.opts.debounceMs);
		t.unref();
		this.pending.set(scheduleId, t);
	}

	/** Ends every stream (the gateway is stopping): browsers reconnect to another gateway. */
	close(): void {
		this.closed = true;
		for (const t of this.timers) clearInterval(t);
		for (const t of this.pending.values()) clearTimeout(t);
		this.pending.clear();
		for (const set of this.bySchedule.values()) for (const s of set) s.res.end();
		this.bySchedule.clear();
		this.perAddress.clear();
		this.streams = 0;
	}

	private async push(scheduleId: string): Promise<void> {
		const set = this.bySchedule.get(scheduleId);
		if (!set || set.size === 0) return;
		try {
			const seats = await this.read(scheduleId);
			for (const s of set) this.send(s.res, scheduleId, seats);
		} catch (err) {
			// The next change or refresh tries again; the streams stay open.
			this.broker.logger.debug(`seat feed: reading schedule ${scheduleId} failed: ${(err as Error).message}`);
		}
	}

	private async read(scheduleId: string): Promise<SeatRow[]> {
		const seats = await this.broker.call<{ id: string; status: string }[], { id: string }>("concert.seats", { id: scheduleId }, { timeout: 5000 });
		return seats.map(s => ({ id: s.id, status: s.status }));
	}

	private send(res: ServerResponse, scheduleId: string, seats: SeatRow[]): void {
		res.write(`event: seats\ndata: ${JSON.stringify({ scheduleId, seats })}\n\n`);
	}
}
