/** The part of autocannon 8's API the bench uses (the package ships no types). */
declare module "autocannon" {
	import type { EventEmitter } from "events";

	interface RequestData {
		method?: string;
		path?: string;
		headers?: Record<string, string>;
		body?: string;
	}
	interface Options {
		url: string;
		connections?: number;
		duration?: number;
		amount?: number;
		timeout?: number;
		requests?: (RequestData & { setupRequest?: (req: RequestData) => RequestData })[];
	}
	interface Result {
		requests: { total: number; average: number };
		errors: number;
		timeouts: number;
		non2xx: number;
		duration: number;
	}
	interface Instance extends EventEmitter, PromiseLike<Result> {
		stop(): void;
	}
	function autocannon(opts: Options): Instance;
	export = autocannon;
}
