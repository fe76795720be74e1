//! The simulator's own control endpoint, beside the launcher's API: `POST /_sim/faults` with
//! `{"faults": ["start-latency=35s", "stop-error"]}` replaces the faults (an empty list heals
//! it); `GET /_sim/counters` answers what it saw, per room too.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{json_response, Fault, SipMediaGwSim};

pub(super) async fn set_faults(State(sim): State<SipMediaGwSim>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(texts) = request.get("faults").and_then(Value::as_array) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "expected {\"faults\": [\"busy\", \"start-latency=35s\", …]}"}),
        );
    };
    let parsed: Result<Vec<Fault>, String> = texts
        .iter()
        .map(|t| t.as_str().unwrap_or_default().parse())
        .collect();
    match parsed {
        Ok(faults) => {
            sim.set_faults(&faults);
            json_response(StatusCode::OK, json!({"faults": texts}))
        }
        Err(error) => json_response(StatusCode::BAD_REQUEST, json!({"error": error})),
    }
}

pub(super) async fn counters(State(sim): State<SipMediaGwSim>) -> Response {
    json_response(StatusCode::OK, json!(sim.counters()))
}
