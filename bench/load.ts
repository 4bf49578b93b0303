/**
 * The load generator's parts: a keep-alive HTTP client (node:http, cheaper per request than fetch), latency
 * recorders with percentiles, a closed-loop runner (N workers, each sending its next request when the last one
 * answered), and a one-line progress bar on stderr.
 */
import http from "http";

export interface Reply {
	status: number;
	/** Parsed JSON (or the text): the scenario states the shape it expects. */
	body: unknown;
	ms: number;
}

export class Client {
	private readonly agent: http.Agent;
	private readonly host: string;
	private readonly port: number;
	private readonly base: string;

	/** `timeoutMs`: how long one request may go unanswered before it fails as a client timeout (default 60 s). */
	constructor(
		api: string,
		maxSockets: number,
		private readonly timeoutMs = 60_000
	) {
		const url = new URL(api);
		this.host = url.hostname;
		this.port = Number(url.port || 80);
		this.base = url.pathname.replace(/\/+$/, "");
		this.agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
	}

	request(method: string, path: string, opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Reply> {
		const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
		const headers: Record<string, string | number> = { ...opts.headers };
		if (opts.token) headers.authorization = `Bearer ${opts.token}`;
		if (payload !== undefined) {
			headers["content-type"] = "application/json";
			headers["content-length"] = Buffer.byteLength(payload);
		}
		const t0 = performance.now();
		return new Promise<Reply>((resolve, reject) => {
			const req = http.request({ host: this.host, port: this.port, method, path: this.base + path, headers, agent: this.agent }, res => {
				const chunks: Buffer[] = [];
				res.on("data", (c: Buffer) => chunks.push(c));
				res.on("end", () => {
					const text = Buffer.concat(chunks).toString("utf8");
					let body: unknown = text;
					try {
						body = text ? JSON.parse(text) : undefined;
					} catch {
						/* not JSON */
					}
					resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - t0 });
				});
				res.on("error", reject);
			});
			req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`client timeout after ${this.timeoutMs / 1000} s`)));
			req.on("error", reject);
			if (payload !== undefined) req.write(payload);
			req.end();
		});
	}

	close(): void {
		this.agent.destroy();
	}
}

export interface Figures {
	count: number;
	ok: number;
	errors: number;
	seconds: number;
	perSecond: number;
	p50: number;
	p95: number;
	p99: number;
	max: number;
	statuses: Record<string, number>;
}

/** Latencies and outcomes of one kind of request. */
export class Recorder {
	private readonly ms: number[] = [];
	ok = 0;
	errors = 0;
	readonly statuses: Record<string, number> = {};
	private first = 0;
	private last = 0;

	constructor(readonly name: string) {}

	add(ms: number, ok: boolean, status: number | string): void {
		const now = performance.now();
		if (this.ms.length === 0) this.first = now - ms;
		this.last = now;
		this.ms.push(ms);
		if (ok) this.ok++;
		else this.errors++;
		this.statuses[status] = (this.statuses[status] ?? 0) + 1;
	}

	get count(): number {
		return this.ms.length;
	}

	/** `seconds` defaults to the span from the first request's start to the last answer. */
	figures(seconds?: number): Figures {
		const sorted = Float64Array.from(this.ms).sort();
		const at = (q: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
		const span = seconds ?? (this.last - this.first) / 1000;
		return {
			count: sorted.length,
			ok: this.ok,
			errors: this.errors,
			seconds: round(span),
			perSecond: span > 0 ? Math.round(this.ok / span) : 0,
			p50: at(0.5),
			p95: at(0.95),
			p99: at(0.99),
			max: round(sorted[sorted.length - 1] ?? 0),
			statuses: this.statuses
		};
	}
}

export const round = (n: number, d = 2) => Math.round(n * 10 ** d) / 10 ** d;

/**
 * Open loop: item i is due at `i / ratePerSec` seconds after the start, whether or not earlier ones have finished,
 * as a crowd arrives. `step(i, dueAt)` gets its due time so that its latency is counted from it (an arrival the
 * system kept waiting is slow, not absent: no coordinated omission). At most `maxInFlight` run at once; an arrival
 * past that waits for a free place and counts as `late` (the offered rate was not met). Resolves with the seconds
 * from the start to the last completion, and how many were late.
 */
export async function openLoop(
	ratePerSec: number,
	total: number,
	step: (i: number, dueAt: number) => Promise<void>,
	maxInFlight = 2048
): Promise<{ seconds: number; late: number }> {
	const t0 = performance.now();
	const running = new Set<Promise<void>>();
	let late = 0;
	for (let i = 0; i < total; i++) {
		const dueAt = t0 + (i * 1000) / ratePerSec;
		const wait = dueAt - performance.now();
		if (wait > 0) await new Promise(r => setTimeout(r, wait));
		if (running.size >= maxInFlight) {
			late++;
			while (running.size >= maxInFlight) await Promise.race(running);
		}
		const p: Promise<void> = step(i, dueAt).finally(() => running.delete(p));
		running.add(p);
	}
	await Promise.all(running);
	return { seconds: (performance.now() - t0) / 1000, late };
}

/**
 * Closed loop: `workers` loops, each taking the next item index until `total` is reached (or the deadline
 * passes), running `step(i)` and waiting for it before taking the next.
 */
export async function closedLoop(workers: number, total: number, step: (i: number, worker: number) => Promise<void>, deadlineMs = Infinity): Promise<number> {
	let next = 0;
	const t0 = performance.now();
	await Promise.all(
		Array.from({ length: Math.min(workers, total) }, async (_, w) => {
			for (let i = next++; i < total && performance.now() - t0 < deadlineMs; i = next++) await step(i, w);
		})
	);
	return (performance.now() - t0) / 1000;
}

/** A progress bar on stderr (only when it is a terminal, otherwise a line every few seconds). */
export class Progress {
	private timer?: NodeJS.Timeout;
	private readonly t0 = performance.now();
	private lastLine = 0;

	constructor(
		private readonly label: string,
		private readonly total: number,
		private readonly done: () => number,
		private readonly extra: () => string = () => ""
	) {
		this.timer = setInterval(() => this.draw(false), 250);
		this.timer.unref();
	}

	private draw(final: boolean): void {
		const done = this.done();
		const frac = this.total > 0 ? Math.min(1, done / this.total) : 0;
		const secs = (performance.now() - this.t0) / 1000;
		const width = 30;
		const filled = Math.round(frac * width);
		const line = `${this.label.padEnd(14)} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${String(done).padStart(6)}/${this.total} ${secs.toFixed(1).padStart(6)} s ${this.extra()}`;
		if (process.stderr.isTTY) process.stderr.write(`\r${line}\x1b[K${final ? "\n" : ""}`);
		else if (final || secs - this.lastLine >= 5) {
			this.lastLine = secs;
			process.stderr.write(`${line}\n`);
		}
	}

	stop(): void {
		if (this.timer) clearInterval(this.timer);
		this.timer = undefined;
		this.draw(true);
	}
}
