//! Liveness, readiness and metrics for operators.

use std::time::Duration;

use ::metrics::gauge;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
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

/// Whether `headers` carry `Authorization: Bearer <token>`. Compared in constant time (over
/// SHA-256 digests, so that not even the length leaks), as the token guards every scrape.
fn bearer_matches(headers: &HeaderMap, token: &SecretString) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
    else {
        return false;
    };
    let given = Sha256::digest(given.trim().as_bytes());
    let expected = Sha256::digest(token.expose_secret().as_bytes());
    bool::from(given.ct_eq(&expected))
}

/// Prometheus text format. Consumer lag is measured at scrape time. With `metrics_token` set,
/// only a scraper that presents it is answered.
pub async fn metrics(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(token) = &shared.state.settings().metrics_token {
        if !bearer_matches(&headers, token) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")],
                "a bearer token is required",
            )
                .into_response();
        }
    }
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
        .into_response()
}
