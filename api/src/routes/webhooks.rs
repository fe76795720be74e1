//! `POST /bbb/webhooks`: bbb-webhooks' deliveries (see `webinar_infra::bbb_webhooks`).
//!
//! Answers: 200 when applied; 401 for an unsigned or forged delivery (bbb-webhooks counts a 401
//! as delivered, so a misconfigured secret is not retried for minutes — the refusal is counted and
//! logged instead); 503 when our database cannot take it, so that bbb-webhooks retries; 404 when
//! webhooks are off.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use webinar_infra::bbb_webhooks::read_delivery;
use webinar_infra::metrics::BBB_WEBHOOK_DELIVERIES;

use super::Shared;

fn outcome(name: &'static str) {
    metrics::counter!(BBB_WEBHOOK_DELIVERIES, "outcome" => name).increment(1);
}

pub async fn deliveries(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(verifier) = shared.state.services().webhooks.as_ref() else {
        return (StatusCode::NOT_FOUND, "webhooks are not enabled").into_response();
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(refused) = verifier.verify(query.as_deref(), authorization, &body) {
        outcome(refused.as_str());
        tracing::warn!(
            reason = refused.as_str(),
            "bbb-webhooks delivery refused: check WEBINAR_BBB_SECRET and the callback URL"
        );
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let watcher = shared.state.watcher();
    for news in read_delivery(&body) {
        if let Err(error) = watcher.apply(news).await {
            outcome("failed");
            tracing::error!(%error, "a bbb-webhooks delivery could not be applied; it will be retried");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
    }
    outcome("accepted");
    (StatusCode::OK, "ok").into_response()
}
