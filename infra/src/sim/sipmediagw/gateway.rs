//! The FastAPI launcher of SIPMediaGW v1.8+ (PROTOCOLS.md, A.4): `POST /gateway/start|stop|command`,
//! `GET /gateway/status`, JSON errors `{"status":"error","error":{"code","detail"},"data":null}`,
//! 422 for invalid input. The launcher itself has no auth; a token, when set, is the proxy's.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{json_response, Fault, SipMediaGwSim};

fn error(status: StatusCode, detail: String) -> Response {
    json_response(
        status,
        json!({"status": "error", "error": {"code": status.as_u16(), "detail": detail}, "data": null}),
    )
}

fn invalid(message: Vec<Value>) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"status": "error", "error": "Invalid input", "message": message}),
    )
}

/// The proxy's check: `^Bearer <token>$`.
fn authorized(sim: &SipMediaGwSim, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = sim.with(|i| i.token.clone()) else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given.strip_prefix("Bearer ") == Some(expected.as_str()) {
        Ok(())
    } else {
        sim.with(|i| i.counters.unauthorized += 1);
        Err(error(
            StatusCode::UNAUTHORIZED,
            "Invalid or missing token".into(),
        ))
    }
}

/// The latency fault, the token, and a JSON body with the `required` string fields.
async fn call(
    sim: &SipMediaGwSim,
    headers: &HeaderMap,
    body: &Bytes,
    required: &[&str],
) -> Result<(Value, String), Response> {
    sim.delay().await;
    authorized(sim, headers)?;
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let missing: Vec<Value> = required
        .iter()
        .filter(|k| value.get(**k).and_then(Value::as_str).is_none())
        .map(|k| json!({"type": "missing", "loc": ["body", k], "msg": "Field required"}))
        .collect();
    if !missing.is_empty() {
        return Err(invalid(missing));
    }
    let gw_id = value["gw_id"].as_str().unwrap_or_default().to_owned();
    Ok((value, gw_id))
}

pub(super) async fn start(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (request, gw_id) = match call(&sim, &headers, &body, &["room", "gw_id", "main_app"]).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    sim.count(&gw_id, |all, one| {
        all.starts += 1;
        one.starts += 1;
    });
    if sim.has(Fault::Html500) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/html")],
            "<html>Internal Server Error</html>",
        )
            .into_response();
    }
    let failed = || {
        error(
            StatusCode::NOT_FOUND,
            "Failed to start gateway container".into(),
        )
    };
    if !sim.take_slot(&gw_id) {
        return failed();
    }
    let rtmp = request["rtmp_dst"].as_str().unwrap_or_default().to_owned();
    let browsing = request["browsing_name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !sim.finish_start(gw_id.clone(), browsing, rtmp).await {
        return failed();
    }
    json_response(
        StatusCode::OK,
        json!({"status": "success", "error": null, "data": {"processing_state": "working", "gw_id": gw_id}}),
    )
}

pub(super) async fn stop(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, gw_id) = match call(&sim, &headers, &body, &["gw_id"]).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    match sim.stop_room(gw_id.clone()).await {
        Ok(true) => json_response(
            StatusCode::OK,
            json!({"status": "success", "error": null, "data": {"processing_state": "stopped"}}),
        ),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no running container for gw_id={gw_id}"),
        ),
        Err(()) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to stop gateway: docker compose exited with status 1".into(),
        ),
    }
}

pub(super) async fn status(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    sim.delay().await;
    if let Err(response) = authorized(&sim, &headers) {
        return response;
    }
    let Some(gw_id) = query.get("gw_id").cloned() else {
        return invalid(vec![]);
    };
    let state = if sim.is_running(&gw_id) {
        json!({"gw_state": "up", "gw_id": gw_id, "browsing": "", "room": ""})
    } else {
        json!({"gw_state": "down", "detail": "exited"})
    };
    json_response(
        StatusCode::OK,
        json!({"status": "success", "error": null, "data": state}),
    )
}

pub(super) async fn command(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (request, gw_id) = match call(&sim, &headers, &body, &["gw_id"]).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    if !sim.is_running(&gw_id) {
        return error(StatusCode::FORBIDDEN, "Gateway is stopped".into());
    }
    let command = request["payload"]["command"].as_str().unwrap_or_default();
    let param = request["payload"]["param1"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if command == "sendChat" {
        sim.chat_delay().await;
    }
    sim.with(|i| match command {
        "sendChat" => i.counters.chats.push((gw_id.clone(), param)),
        _ => i.counters.toggles += 1,
    });
    json_response(StatusCode::OK, json!({"ack": true, "gw_id": gw_id}))
}
