/**
 * Per-process CPU and event-loop lag on the Prometheus endpoint, which Moleculer's built-in process metrics lack
 * (it exports memory, uptime and handles, but no CPU time of the process and no loop delay). The dashboard's
 * per-node CPU panel and the EventLoopLagHigh alert read these two:
 *   process_cpu_seconds_total                       user + system CPU seconds of this process (a counter)
 *   process_eventloop_lag_seconds{stat=p50|p99|max} the event loop's delay over the last window
 * The loop delay comes from Node's own `perf_hooks.monitorEventLoopDelay` (a histogram sampled by libuv), so there is
 * nothing to write but the refresh: every `intervalMs` the CPU counter is set and the delay histogram is read and
 * reset, so each window's figures stand alone (a stall an hour ago does not keep the p99 up).
 */
import { monitorEventLoopDelay, type IntervalHistogram } from "perf_hooks";
import type { ServiceBroker } from "moleculer";

export const CPU_SECONDS = "process.cpu.seconds.total";
export const EVENTLOOP_LAG = "process.eventloop.lag.seconds";

export interface ProcessMetrics {
	/** Reads the figures now (also done by the timer). */
	refresh(): void;
	stop(): void;
}

export function startProcessMetrics(broker: ServiceBroker, intervalMs = 5000): ProcessMetrics | undefined {
	if (!broker.isMetricsEnabled()) return undefined;
	const metrics = broker.metrics;
	if (!metrics.hasMetric(CPU_SECONDS))
		metrics.register({ type: "counter", name: CPU_SECONDS, description: "User and system CPU time of this process (seconds)" });
	if (!metrics.hasMetric(EVENTLOOP_LAG))
		metrics.register({
			type: "gauge",
			name: EVENTLOOP_LAG,
			labelNames: ["stat"],
			description: "Event-loop delay of this process over the last refresh window (seconds), by statistic"
		});
	const loop: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
	loop.enable();
	// Until the first window has samples the series read 0, so a scrape right after start finds them.
	for (const stat of ["p50", "p99", "max"]) metrics.set(EVENTLOOP_LAG, 0, { stat });
	const refresh = () => {
		const cpu = process.cpuUsage();
		metrics.set(CPU_SECONDS, (cpu.user + cpu.system) / 1e6);
		// The histogram is in nanoseconds; an empty window (no sample yet) reads 0, not NaN.
		const s = (ns: number) => (Number.isFinite(ns) ? ns / 1e9 : 0);
		if (loop.count > 0) {
			metrics.set(EVENTLOOP_LAG, s(loop.percentile(50)), { stat: "p50" });
			metrics.set(EVENTLOOP_LAG, s(loop.percentile(99)), { stat: "p99" });
			metrics.set(EVENTLOOP_LAG, s(loop.max), { stat: "max" });
		}
		loop.reset();
	};
	refresh();
	const timer = setInterval(refresh, intervalMs);
	timer.unref();
	return {
		refresh,
		stop() {
			clearInterval(timer);
			loop.disable();
		}
	};
}
