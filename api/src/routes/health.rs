//! Liveness, readiness and metrics for operators.

use std::time::Duration;

use ::metrics::gauge;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use webinar_infra::metrics;
use webinar_infra::{consumer, event_log};

use super::Shared;

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// How long the readiness probe may take: a load balancer must hear "not ready" within a second
/// when PostgreSQL is down, whatever the pool's own acquire timeout.
const READINESS_TIMEOUT: Duration = Duration::from_millis(800);

/// The database answers and every migration is applied.
pub async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    let probe = webinar_infra::db::migrations_applied(shared.state.pool());
    match tokio::time::timeout(READINESS_TIMEOUT, probe).await {
        Ok(Ok(true)) => (StatusCode::OK, "ready"),
        Ok(Ok(false)) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
        Err(_) => {
            tracing::warn!("readiness check: no answer from the database in time");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}

/// Prometheus text format. Consumer lag is measured at scrape time.
pub async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    let pool = shared.state.pool();
    let lag = async {
        let head = event_log::last_global_position(pool).await?;
        let checkpoints = consumer::checkpoints(pool).await?;
        Ok::<_, sqlx::Error>((head, checkpoints))
    };
    match lag.await {
        Ok((head, checkpoints)) => {
            for checkpoint in checkpoints {
                let behind = (head - checkpoint.global_position).max(0);
                gauge!(metrics::CONSUMER_LAG, "consumer" => checkpoint.name).set(behind as f64);
            }
            gauge!(metrics::DATABASE_UP).set(1.0);
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: cannot read checkpoints");
            gauge!(metrics::DATABASE_UP).set(0.0);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
}
