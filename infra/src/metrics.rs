//! Process metrics: recorded through the `metrics` facade anywhere in the code, rendered in the
//! Prometheus text format by `metrics-exporter-prometheus` on `/metrics`.
//!
//! Histograms are exported with buckets (`_bucket`, `_sum`, `_count`), so that percentiles can be
//! aggregated across instances. The names are listed here, with their help text, so that an
//! operator finds every series in one place.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const GRAPHQL_REQUESTS: &str = "webinar_graphql_requests_total";
pub const GRAPHQL_DURATION: &str = "webinar_graphql_request_duration_seconds";
pub const COMMANDS: &str = "webinar_commands_total";
pub const COMMAND_DURATION: &str = "webinar_command_duration_seconds";
pub const COMMAND_CONFLICT_RETRIES: &str = "webinar_command_conflict_retries_total";
pub const PROJECTOR_BATCH_DURATION: &str = "webinar_projector_batch_duration_seconds";
pub const PROJECTOR_EVENTS: &str = "webinar_projector_events_total";
pub const PROJECTOR_POSITION: &str = "webinar_projector_position";
pub const CONSUMER_FAILURES: &str = "webinar_consumer_failures_total";
pub const CONSUMER_LAG: &str = "webinar_consumer_lag_events";
pub const REACTOR_GIVE_UPS: &str = "webinar_reactor_give_ups_total";
pub const OUTSIDE_CALL_DURATION: &str = "webinar_outside_call_duration_seconds";
pub const DATABASE_UP: &str = "webinar_database_up";
pub const BBB_WEBHOOK_DELIVERIES: &str = "webinar_bbb_webhook_deliveries_total";
pub const LIVE_PAGE_CACHE: &str = "webinar_live_page_cache_total";
pub const CAPACITY_SHORTFALL: &str = "webinar_gateway_capacity_shortfall";

/// Bucket bounds in seconds: from a fast read (1 ms) to a SIPMediaGW start that blocks (30 s).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn describe() {
    describe_counter!(
        LIVE_PAGE_CACHE,
        "Live page reads served from memory (outcome=hit) or read from PostgreSQL (outcome=miss)."
    );
    describe_counter!(GRAPHQL_REQUESTS, "GraphQL requests, by outcome.");
    describe_histogram!(
        GRAPHQL_DURATION,
        Unit::Seconds,
        "GraphQL operations, by root field."
    );
    describe_counter!(COMMANDS, "Commands executed, by aggregate and outcome.");
    describe_histogram!(
        COMMAND_DURATION,
        Unit::Seconds,
        "Commands, conflict retries included, by aggregate."
    );
    describe_counter!(
        COMMAND_CONFLICT_RETRIES,
        "Commands retried after losing an optimistic-lock race."
    );
    describe_histogram!(
        PROJECTOR_BATCH_DURATION,
        Unit::Seconds,
        "Projector batches (read, apply, checkpoint), by projector."
    );
    describe_counter!(PROJECTOR_EVENTS, "Events read by a projector.");
    describe_gauge!(
        PROJECTOR_POSITION,
        "Global position of the last event a projector applied."
    );
    describe_counter!(
        CONSUMER_FAILURES,
        "Batches a projector or reactor failed to handle (retried)."
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Events in the log beyond a consumer's checkpoint (approximate)."
    );
    describe_counter!(
        REACTOR_GIVE_UPS,
        "Events a reactor gave up on (logged), by reactor."
    );
    describe_histogram!(
        OUTSIDE_CALL_DURATION,
        Unit::Seconds,
        "Calls to BigBlueButton and SIPMediaGW, by system, call and outcome."
    );
    describe_gauge!(DATABASE_UP, "Whether the database answered the scrape.");
    describe_counter!(
        BBB_WEBHOOK_DELIVERIES,
        "bbb-webhooks deliveries, by outcome (accepted, unsigned, bad_signature, failed)."
    );
    describe_gauge!(
        CAPACITY_SHORTFALL,
        "Most gateways missing at any moment of the coming capacity horizon (booked webinars \
         plus the margin, less enabled gateways); 0 when every slot is covered. Set by the \
         instance that leads the capacity monitor."
    );
}

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = match PrometheusBuilder::new().set_buckets(BUCKETS) {
            Ok(builder) => builder,
            // Only an empty bucket list is refused; ours is not.
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        handle
    })
}

/// The metrics in the Prometheus text format.
pub fn render() -> String {
    install().render()
}

/// Keeps histogram storage bounded between scrapes.
pub async fn run_upkeep(cancel: tokio_util::sync::CancellationToken) {
    let handle = install();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
        }
    }
}

/// Runs `call` to an outside system and records its duration with its outcome.
pub async fn outside_call<T, E>(
    system: &'static str,
    call: &'static str,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = future.await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!(OUTSIDE_CALL_DURATION, "system" => system, "call" => call, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_with_buckets() {
        install();
        metrics::histogram!(COMMAND_DURATION, "aggregate" => "Probe").record(0.003);
        metrics::counter!(COMMANDS, "aggregate" => "Probe", "outcome" => "ok").increment(1);
        let text = render();
        assert!(
            text.contains(
                "webinar_command_duration_seconds_bucket{aggregate=\"Probe\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("webinar_commands_total{aggregate=\"Probe\",outcome=\"ok\"} 1"),
            "{text}"
        );
    }
}
