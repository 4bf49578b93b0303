/**
 * Fault injection for integration tests: a broker middleware that, for the actions a test names, throws an error
 * or delays the answer, a given number of times. The real service code runs; only its outcome is disturbed.
 *
 *   const faults = new Faults();
 *   await env.broker(["payment"], { middlewares: [faults.middleware()] });
 *   faults.fail("payment.pay", () => new Errors.MoleculerClientError("boom", 409, "INJECTED_FAULT"));
 *   faults.delayAfter("payment.pay", 3500, { times: 1 });   // runs the handler, then answers late
 */
import type { Context, Middleware } from "moleculer";

interface Rule {
	kind: "fail" | "delayAfter";
	error?: () => Error;
	ms?: number;
	/** Remaining times; undefined = every call. */
	times?: number;
}

export class Faults {
	private readonly rules = new Map<string, Rule>();
	/** Calls seen per action (all, faulted or not). */
	readonly calls = new Map<string, number>();

	fail(action: string, error: () => Error, opts: { times?: number } = {}): void {
		this.rules.set(action, { kind: "fail", error, times: opts.times });
	}

	delayAfter(action: string, ms: number, opts: { times?: number } = {}): void {
		this.rules.set(action, { kind: "delayAfter", ms, times: opts.times });
	}

	clear(): void {
		this.rules.clear();
		this.calls.clear();
	}

	middleware(): Middleware {
		const self = this;
		return {
			name: "TestFaults",
			localAction(next: (ctx: Context) => Promise<unknown>, action: { name: string }) {
				return async function (ctx: Context) {
					self.calls.set(action.name, (self.calls.get(action.name) ?? 0) + 1);
					const rule = self.rules.get(action.name);
					const active = rule && (rule.times === undefined || rule.times > 0);
					if (!rule || !active) return next(ctx);
					if (rule.times !== undefined) rule.times--;
					if (rule.kind === "fail") throw rule.error!();
					const result = await next(ctx);
					await new Promise(r => setTimeout(r, rule.ms));
					return result;
				};
			}
		} as unknown as Middleware;
	}
}
