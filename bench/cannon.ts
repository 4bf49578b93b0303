/**
 * Fixed-duration closed-loop load with autocannon (its own HTTP parser: about three times the requests per CPU
 * second of node:http on this machine, which matters when the target is tens of thousands of reads per second).
 * Every answer is recorded in a Recorder, so the figures are computed exactly as for the other phases.
 */
import autocannon from "autocannon";
import { Progress, Recorder } from "./load";

export async function cannon(opts: {
	url: string;
	connections: number;
	seconds: number;
	name: string;
	/** Called for every request: the path and headers to send. */
	next: () => { path: string; headers: Record<string, string> };
	ok?: (status: number) => boolean;
}): Promise<{ rec: Recorder; seconds: number }> {
	const rec = new Recorder(opts.name);
	const ok = opts.ok ?? (s => s === 200);
	const t0 = performance.now();
	const instance = autocannon({
		url: opts.url,
		connections: opts.connections,
		duration: opts.seconds,
		timeout: 30,
		requests: [
			{
				method: "GET",
				setupRequest: req => {
					const n = opts.next();
					return { ...req, path: n.path, headers: n.headers };
				}
			}
		]
	});
	instance.on("response", (_client: unknown, status: number, _bytes: number, ms: number) => rec.add(ms, ok(status), status));
	const bar = new Progress(
		opts.name,
		opts.seconds,
		() => Math.floor((performance.now() - t0) / 1000),
		() => `${rec.count} requests, ${rec.errors} errors`
	);
	const result = await instance;
	bar.stop();
	for (let i = 0; i < result.errors + result.timeouts; i++) rec.add(0, false, "connection error");
	return { rec, seconds: (performance.now() - t0) / 1000 };
}
