//! Liveness, readiness and metrics for operators.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use webinar_infra::metrics::Metrics;

use super::Shared;

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The database answers and every migration is applied.
pub async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    match webinar_infra::db::migrations_applied(shared.state.pool()).await {
        Ok(true) => (StatusCode::OK, "ready"),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending"),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}

/// Prometheus text format. Projector lag is measured at scrape time.
pub async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    let metrics = Metrics::global();
    let lag: Result<Vec<(String, i64)>, sqlx::Error> = sqlx::query_as(
        "select c.name, greatest(coalesce((select max(global_position) from events), 0)
                                 - c.global_position, 0)
           from projection_checkpoints c",
    )
    .fetch_all(shared.state.pool())
    .await;
    match lag {
        Ok(rows) => {
            for (name, behind) in rows {
                metrics.set(
                    "webinar_consumer_lag_events",
                    "Events in the log beyond a consumer's checkpoint (approximate).",
                    &[("consumer", &name)],
                    behind as f64,
                );
            }
            metrics.set(
                "webinar_database_up",
                "Whether the database answered the scrape.",
                &[],
                1.0,
            );
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: cannot read checkpoints");
            metrics.set(
                "webinar_database_up",
                "Whether the database answered the scrape.",
                &[],
                0.0,
            );
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}
