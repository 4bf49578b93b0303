/**
 * Fault injection for integration tests: a broker middleware that, for the actions a test names, throws an error
 * or delays the answer, a given number of times. The real service code runs; only its outcome is disturbed.
 *
 *   const faults = new Faults();
 *   await env.broker(["payment"], { middlewares: [faults.middleware()] });
 *   faults.fail("payment.pay", () => new Errors.MoleculerClientError("boom", 409, "INJECTED_FAULT"));
 *   faults.delayAfter("payment.pay", 3500, { times: 1 });   // runs the handler, then answers late
 *   faults.delayBefore("concert.hold", 2000, { times: 4 });  // waits (a queued or slow node), then runs the handler
 */
import type { Context, Middleware } from "moleculer";

interface Rule {
	kind: "fail" | "failAfter" | "delayAfter" | "delayBefore";
	error?: () => Error;
	ms?: number;
	/** Remaining times; undefined = every call. */
	times?: number;
}

export class Faults {
	private readonly rules = new Map<string, Rule>();
	/** Calls seen per action (all, faulted or not). */
	readonly calls = new Map<string, number>();
	/** Calls per action whose handler has finished (answered or thrown), however late. */
	readonly finished = new Map<string, number>();

	fail(action: string, error: () => Error, opts: { times?: number } = {}): void {
		this.rules.set(action, { kind: "fail", error, times: opts.times });
	}

	/** The handler runs (its effect lands), then the caller gets `error` instead of the answer (a lost reply). */
	failAfter(action: string, error: () => Error, opts: { times?: number } = {}): void {
		this.rules.set(action, { kind: "failAfter", error, times: opts.times });
	}

	delayAfter(action: string, ms: number, opts: { times?: number } = {}): void {
		this.rules.set(action, { kind: "delayAfter", ms, times: opts.times });
	}

	/** The handler runs only after `ms`, long after a caller with a shorter timeout gave up on it. */
	delayBefore(action: string, ms: number, opts: { times?: number } = {}): void {
		this.rules.set(action, { kind: "delayBefore", ms, times: opts.times });
	}

	/** Drops the rule of one action (calls already delayed stay delayed); the counters stay. */
	heal(action: string): void {
		this.rules.delete(action);
	}

	clear(): void {
		this.rules.clear();
		this.calls.clear();
		this.finished.clear();
	}

	middleware(): Middleware {
		const self = this;
		return {
			name: "TestFaults",
			localAction(next: (ctx: Context) => Promise<unknown>, action: { name: string }) {
				const run = async (ctx: Context) => {
					self.calls.set(action.name, (self.calls.get(action.name) ?? 0) + 1);
					const rule = self.rules.get(action.name);
					const active = rule && (rule.times === undefined || rule.times > 0);
					if (!rule || !active) return next(ctx);
					if (rule.times !== undefined) rule.times--;
					if (rule.kind === "fail") throw rule.error!();
					if (rule.kind === "delayBefore") {
						await new Promise(r => setTimeout(r, rule.ms));
						return next(ctx);
					}
					const result = await next(ctx);
					if (rule.kind === "failAfter") throw rule.error!();
					await new Promise(r => setTimeout(r, rule.ms));
					return result;
				};
				return async function (ctx: Context) {
					try {
						return await run(ctx);
					} finally {
						self.finished.set(action.name, (self.finished.get(action.name) ?? 0) + 1);
					}
				};
			}
		} as unknown as Middleware;
	}
}
