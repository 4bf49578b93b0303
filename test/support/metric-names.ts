/**
 * The metric names the shipped dashboard and alert rules may use (test/unit/observability.config.test.ts checks
 * they use nothing else), and that a real cluster must export (test/integration/metrics.test.ts scrapes them), so
 * the list cannot drift from either side.
 *
 * The names the platform exports (Moleculer's Prometheus reporter: dots become underscores, counters keep their
 * name without `_total`, histograms add `_bucket`), plus `up`, which Prometheus writes per target
 * (PROMETHEUS_ONLY: not on any node's endpoint).
 */
export const EXPORTED = new Set([
	// Moleculer: broker, requests (by action), process
	"moleculer_broker_started",
	"moleculer_request_total",
	"moleculer_request_time_bucket",
	"process_cpu_seconds_total",
	"process_memory_rss",
	"process_eventloop_lag_seconds",
	// saga service
	"saga_started",
	"saga_completed",
	"saga_compensated",
	"saga_failed",
	"saga_retried",
	"saga_recovered",
	"saga_step_duration_bucket",
	// concert service
	"concert_hold_requests",
	"concert_hold_seats",
	// ops service
	"ops_queue_waiting",
	"ops_queue_active",
	"ops_queue_admitted_per_minute",
	"ops_outbox_backlog",
	"ops_outbox_oldest_age_seconds",
	"ops_dead_letters_open",
	"ops_consistency_findings",
	"ops_consistency_ok",
	"ops_sagas_stuck",
	// durable events (JetStream)
	"events_consumer_pending",
	"events_consumer_ack_pending",
	"events_dlq_messages",
	// Prometheus
	"up"
]);

export const PROMETHEUS_ONLY = new Set(["up"]);
