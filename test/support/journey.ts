/**
 * The booking journey as one measured unit, the same on every setup (single servers, Redis Cluster, NATS cluster,
 * a database per service), so their figures stand side by side: each fan signs up, tops up and gets an ACTIVE
 * waiting-room token (the set-up), then holds seats, pays and reads the reservation back CONFIRMED (the checkout).
 * Fans run `concurrency` at a time; every checkout's latency is kept. A journey that does not end CONFIRMED, or a
 * balance that is not the top-up minus the price, throws: a figure is only given for a journey that worked.
 */
import { balance, pay, reservation, reserve, seats, shopper, type Shopper } from "./booking";

export interface JourneyOptions {
	concertId: string;
	scheduleId: string;
	/** Fans, each booking `seatsEach` distinct seats of the schedule (it must have that many available). */
	fans: number;
	concurrency?: number;
	seatsEach?: number;
	/** Points each fan tops up; the seats' price is taken from the seat map. */
	points?: number;
}

export interface JourneyRun {
	/** ms per fan: sign-up, top-up, queue token. */
	setupMs: number[];
	/** ms per fan: hold, pay, read back CONFIRMED. */
	checkoutMs: number[];
	/** Wall time of the whole run (ms). */
	wallMs: number;
	reservationIds: string[];
	/** The seats each fan bought, in fan order. */
	seatIds: string[][];
	fans: Shopper[];
}

export async function runJourney(api: string, opts: JourneyOptions): Promise<JourneyRun> {
	const per = opts.seatsEach ?? 1;
	const points = opts.points ?? 100_000;
	const map = (await seats(api, opts.scheduleId)).filter(s => s.status === "AVAILABLE");
	if (map.length < opts.fans * per) throw new Error(`journey needs ${opts.fans * per} available seats, the schedule has ${map.length}`);
	const run: JourneyRun = { setupMs: [], checkoutMs: [], wallMs: 0, reservationIds: [], seatIds: [], fans: [] };
	const started = Date.now();
	let next = 0;
	const worker = async () => {
		for (let i = next++; i < opts.fans; i = next++) {
			const mine = map.slice(i * per, (i + 1) * per);
			const t0 = performance.now();
			const fan = await shopper(api, opts.concertId, points, "journey");
			const t1 = performance.now();
			const held = await reserve(
				api,
				fan,
				opts.scheduleId,
				mine.map(s => s.id)
			);
			if (held.status !== 201) throw new Error(`journey hold: ${held.status} ${JSON.stringify(held.body)}`);
			const paid = await pay(api, fan, held.body.id);
			if (paid.status !== 201) throw new Error(`journey pay: ${paid.status} ${JSON.stringify(paid.body)}`);
			const read = await reservation(api, fan, held.body.id);
			if (read.status !== "CONFIRMED") throw new Error(`journey read back: ${JSON.stringify(read)}`);
			const t2 = performance.now();
			const price = mine.reduce((sum, s) => sum + s.price, 0);
			const left = await balance(api, fan);
			if (left !== points - price) throw new Error(`journey balance: ${left}, expected ${points - price}`);
			run.setupMs[i] = t1 - t0;
			run.checkoutMs[i] = t2 - t1;
			run.reservationIds[i] = held.body.id;
			run.seatIds[i] = mine.map(s => s.id);
			run.fans[i] = fan;
		}
	};
	await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 1) }, worker));
	run.wallMs = Date.now() - started;
	return run;
}

/** p50 / p95 / max of a list of ms, rounded. */
export function percentiles(ms: number[]): { p50: number; p95: number; max: number } {
	const s = [...ms].sort((a, b) => a - b);
	const at = (q: number) => Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0);
	return { p50: at(0.5), p95: at(0.95), max: Math.round(s[s.length - 1] ?? 0) };
}

/** One line for a test's output and the closing figures: `<label>: 20 fans, checkout p50 … ms, … journeys/s`. */
export function journeyLine(label: string, run: JourneyRun): string {
	const c = percentiles(run.checkoutMs);
	const s = percentiles(run.setupMs);
	const perSec = (run.checkoutMs.length / (run.wallMs / 1000)).toFixed(1);
	return `${label}: ${run.checkoutMs.length} fans, checkout p50 ${c.p50} ms p95 ${c.p95} ms max ${c.max} ms, set-up p50 ${s.p50} ms, ${perSec} journeys/s`;
}
