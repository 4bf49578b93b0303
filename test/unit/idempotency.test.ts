import { MemoryStore, type CoordinationStore } from "../../lib/store";
import { canonicalJson, fingerprint, idempotencyMiddleware } from "../../services/api/idempotency";

describe("idempotency fingerprints", () => {
	it("when two bodies differ only in key order, then their fingerprints match", () => {
		expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}');
		expect(fingerprint("POST /x", { a: 1, b: 2 })).toBe(fingerprint("POST /x", { b: 2, a: 1 }));
	});

	it("when a value is what JSON.stringify writes, then the canonical form is the same text", () => {
		for (const v of [null, 0, -1.5, 'a"b', true, [], {}, [[], [{}]], { "k\n": ["x", 1, null] }, "\u0000"]) {
			expect(canonicalJson(v)).toBe(JSON.stringify(v));
		}
	});

	it("when the body, route or method differ, then the fingerprints differ", () => {
		const base = fingerprint("POST /x", { a: 1 });
		expect(fingerprint("POST /x", { a: 2 })).not.toBe(base);
		expect(fingerprint("POST /y", { a: 1 })).not.toBe(base);
		expect(fingerprint("DELETE /x", { a: 1 })).not.toBe(base);
	});

	it("when a body is nested 100,000 levels deep, then the fingerprint is computed without recursion", () => {
		const deep = JSON.parse("[".repeat(100_000) + "]".repeat(100_000));
		expect(() => fingerprint("POST /x", deep)).not.toThrow();
		expect(canonicalJson(deep)).toHaveLength(200_000);
	});
});

describe("idempotency middleware on the memory store", () => {
	type Res = {
		statusCode: number;
		headers: Record<string, string>;
		body?: string;
		setHeader(k: string, v: string): void;
		getHeader(k: string): string | undefined;
		writeHead(s: number): void;
		end(chunk?: string): Res;
		ended: Promise<void>;
	};
	function fakeRes(): Res {
		let done!: () => void;
		const res: Res = {
			statusCode: 200,
			headers: {},
			setHeader(k, v) {
				this.headers[k.toLowerCase()] = v;
			},
			getHeader(k) {
				return this.headers[k.toLowerCase()];
			},
			writeHead(s) {
				this.statusCode = s;
			},
			end(chunk) {
				this.body = chunk;
				done();
				return this;
			},
			ended: new Promise<void>(r => (done = r))
		};
		return res;
	}
	const req = (body: unknown) => ({
		method: "POST",
		url: "/api/things",
		originalUrl: "/api/things",
		headers: { "idempotency-key": "k-1" } as Record<string, string>,
		body,
		socket: { remoteAddress: "10.0.0.1" }
	});

	/**
	 * A middleware over a memory store whose clock `advance` moves (or the jest clock, with `clock: "jest"`).
	 * `inFlightMaxMs: 0` turns renewals off.
	 */
	function setup(
		inFlightLeaseMs = 60_000,
		opts: { inFlightMaxMs?: number; clock?: "own" | "jest"; store?: MemoryStore; storeFor?: (s: MemoryStore) => CoordinationStore } = {}
	) {
		let now = 1_000_000;
		const store = opts.store ?? new MemoryStore({ prefix: "t:", now: opts.clock === "jest" ? () => Date.now() : () => now, sweepIntervalMs: 0 });
		const mw = idempotencyMiddleware({
			store: opts.storeFor ? opts.storeFor(store) : store,
			jwtSecret: "x".repeat(40),
			ttlSec: 3600,
			inFlightLeaseMs,
			inFlightMaxMs: opts.inFlightMaxMs ?? 60_000,
			required: [],
			exempt: [],
			clientAddress: r => r.socket.remoteAddress ?? "?",
			matchRoute: () => ({ template: "POST /things", params: {}, key: "POST /things" })
		});
		/** Runs one request; `answer` is what the handler does once called. */
		const run = async (body: unknown, answer?: (res: Res) => void | Promise<void>) => {
			const res = fakeRes();
			let handled = false;
			await mw(req(body) as never, res as never, () => {
				handled = true;
			});
			if (handled && answer) await answer(res);
			if (handled || res.body !== undefined) await res.ended;
			return { res, handled };
		};
		return { mw, run, store, advance: (ms: number) => (now += ms) };
	}

	it("when the first answer is 202 (still running), then it is not stored: the retry runs again", async () => {
		const { run } = setup();
		await run({ a: 1 }, res => {
			res.writeHead(202);
			res.end('{"status":"RUNNING"}');
		});
		const retry = await run({ a: 1 }, res => {
			res.writeHead(201);
			res.end('{"done":true}');
		});
		expect(retry.handled).toBe(true);
		expect(retry.res.statusCode).toBe(201);
		const replay = await run({ a: 1 });
		expect(replay.handled).toBe(false);
		expect(replay.res.headers["idempotent-replayed"]).toBe("true");
		expect(replay.res.body).toBe('{"done":true}');
	});

	it("when a request outlives its slot and then fails, then it does not delete the answer of the request that took the key after it", async () => {
		const { mw, run, advance } = setup(1000, { inFlightMaxMs: 0 });
		// A starts and hangs past its in-flight slot's lifetime.
		const a = fakeRes();
		let aHandled = false;
		await mw(req({ a: 1 }) as never, a as never, () => {
			aHandled = true;
		});
		expect(aHandled).toBe(true);
		advance(1500);
		// B takes the key and completes.
		const b = await run({ a: 1 }, res => {
			res.writeHead(201);
			res.end('{"from":"B"}');
		});
		expect(b.handled).toBe(true);
		// A finally fails with a 5xx: releasing its slot must leave B's stored answer alone.
		a.writeHead(503);
		a.end('{"type":"SERVICE_UNAVAILABLE"}');
		await a.ended;
		await new Promise(r => setImmediate(r));
		const replay = await run({ a: 1 });
		expect(replay.handled).toBe(false);
		expect(replay.res.body).toBe('{"from":"B"}');
	});

	describe("the in-flight slot is a lease its process renews", () => {
		beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
		afterEach(() => jest.useRealTimers());

		it("when a request runs far longer than its lease, then its slot is renewed and a retry is told it is in progress", async () => {
			const { mw, run } = setup(1000, { clock: "jest" });
			const a = fakeRes();
			let aHandled = false;
			await mw(req({ a: 1 }) as never, a as never, () => {
				aHandled = true;
			});
			expect(aHandled).toBe(true);
			await jest.advanceTimersByTimeAsync(20_000);
			const retry = await run({ a: 1 });
			expect(retry.handled).toBe(false);
			expect(retry.res.statusCode).toBe(409);
			expect(JSON.parse(retry.res.body!).type).toBe("IDEMPOTENCY_KEY_IN_PROGRESS");
			expect(retry.res.headers["retry-after"]).toBe("1");
			// The first finishes: its answer is what the retry gets, and it ran once.
			a.writeHead(201);
			a.end('{"from":"A"}');
			await a.ended;
			await jest.advanceTimersByTimeAsync(0);
			const replay = await run({ a: 1 });
			expect(replay.handled).toBe(false);
			expect(replay.res.body).toBe('{"from":"A"}');
		});

		it("when the process running a request dies (its renewals stop), then the slot is free once its lease ends and the retry runs", async () => {
			// The dying process: it took the slot, and nothing it does reaches the store after that.
			const survivor = setup(1000, { clock: "jest" });
			const dying = setup(1000, {
				clock: "jest",
				store: survivor.store,
				storeFor: s => Object.assign(Object.create(s) as MemoryStore, { acquireLease: () => Promise.reject(new Error("process gone")) })
			});
			const a = fakeRes();
			await dying.mw(req({ a: 1 }) as never, a as never, () => undefined);
			expect((await survivor.run({ a: 1 })).res.statusCode).toBe(409);
			await jest.advanceTimersByTimeAsync(1001);
			const retry = await survivor.run({ a: 1 }, res => {
				res.writeHead(201);
				res.end('{"from":"retry"}');
			});
			expect(retry.handled).toBe(true);
			expect(retry.res.statusCode).toBe(201);
		});
	});
});
