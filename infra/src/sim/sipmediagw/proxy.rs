//! SIPMediaGW v1.8's proxy (`deploy/proxyAPI/proxy.py`, v1.8.4): a bearer token (`^Bearer `), then
//! `POST /start` picks a registered gateway container in state `started` and forwards the start
//! to its launcher, answering the launcher's body (with the `gw_id` it picked); `POST /stop` and
//! `POST /command` take that `gw_id`; `GET /status` finds a container by `gw_id` or by `room` and
//! answers the proxy's own record (`gw_state` `started`, `working` or `stopped`). Its faults:
//! 503 "No available gateways" when every container is taken, and 503 "Faild to parse Gateway
//! Json response" (sic) for any launcher failure.
//!
//! One simplification: the real proxy's monitor makes a stopped container `started` again within
//! 30 s; here it is at once.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{json_response, Container, Fault, SipMediaGwSim};

fn error(status: StatusCode, detail: String) -> Response {
    json_response(
        status,
        json!({"status": "error", "error": {"code": status.as_u16(), "detail": detail}, "data": null}),
    )
}

/// The proxy's `authorize`: `Authorization` must match `^Bearer ` and carry the token.
fn authorized(sim: &SipMediaGwSim, headers: &HeaderMap) -> Result<(), Response> {
    let expected = sim.with(|i| i.token.clone()).unwrap_or_default();
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given.strip_prefix("Bearer ") == Some(expected.as_str()) {
        return Ok(());
    }
    sim.with(|i| i.counters.unauthorized += 1);
    Err((
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""),
        ],
        json!({"error": "authorization error"}).to_string(),
    )
        .into_response())
}

/// The token, then the JSON body and its required fields (400 "Missing '<field>' parameter").
async fn call(
    sim: &SipMediaGwSim,
    headers: &HeaderMap,
    body: &Bytes,
    required: &[&str],
) -> Result<Value, Response> {
    sim.delay().await;
    authorized(sim, headers)?;
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    for field in required {
        if value
            .get(*field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("Missing '{field}' parameter"),
            ));
        }
    }
    Ok(value)
}

fn state_name(container: &Container) -> (&'static str, String) {
    match container {
        Container::Idle => ("started", "None".into()),
        Container::Streaming(room) => ("working", room.clone()),
        Container::Exited => ("stopped", "None".into()),
    }
}

pub(super) async fn start(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = match call(&sim, &headers, &body, &["room", "main_app", "browsing"]).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let room = request["room"].as_str().unwrap_or_default().to_owned();
    sim.count(&room, |all, one| {
        all.starts += 1;
        one.starts += 1;
    });
    let picked = sim.with(|i| {
        i.containers
            .iter()
            .find(|(_, c)| !matches!(c, Container::Streaming(_)))
            .map(|(id, _)| id.clone())
    });
    let Some(gw_id) = picked.filter(|_| !sim.has(Fault::Busy)) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "No available gateways".into(),
        );
    };
    if sim.has(Fault::LaunchFailed) || sim.has(Fault::Html500) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Faild to parse Gateway Json response".into(),
        );
    }
    let rtmp = request["rtmp_dst"].as_str().unwrap_or_default().to_owned();
    let browsing = request["browsing_name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Launch failures were answered above, as the proxy does.
    sim.start_container(gw_id.clone(), room, browsing, rtmp)
        .await;
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
    let request = match call(&sim, &headers, &body, &["gw_id"]).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let gw_id = request["gw_id"].as_str().unwrap_or_default().to_owned();
    let room = match sim.container(&gw_id) {
        None => {
            return error(
                StatusCode::NOT_FOUND,
                format!("No mapping found for gateway '{gw_id}'"),
            )
        }
        // The launcher's answer, passed through.
        Some(Container::Exited) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no running container for gw_id={gw_id}"),
            )
        }
        Some(Container::Streaming(room)) => room,
        Some(Container::Idle) => gw_id.clone(),
    };
    sim.count(&room, |all, one| {
        all.stops += 1;
        one.stops += 1;
    });
    if sim.has(Fault::StopError) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to stop gateway: docker compose exited with status 1".into(),
        );
    }
    sim.with(|i| i.containers.insert(gw_id, Container::Exited));
    sim.count(&room, |_, one| one.successful_stops += 1);
    json_response(
        StatusCode::OK,
        json!({"status": "success", "error": null, "data": {"processing_state": "stopped"}}),
    )
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
    let found = match (query.get("gw_id"), query.get("room")) {
        (_, Some(room)) => sim
            .with(|i| {
                i.containers
                    .iter()
                    .find(|(_, c)| **c == Container::Streaming(room.clone()))
                    .map(|(id, c)| (id.clone(), c.clone()))
            })
            .ok_or_else(|| format!("No gateway found for room '{room}'")),
        (Some(id), None) => sim
            .container(id)
            .map(|c| (id.clone(), c))
            .ok_or_else(|| format!("Gateway '{id}' not found")),
        (None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Missing 'gw_id' or 'room' parameter".into(),
            )
        }
    };
    match found {
        Ok((gw_id, container)) => {
            let (state, room) = state_name(&container);
            json_response(
                StatusCode::OK,
                json!({"status": "success", "data": {"gw_id": gw_id, "gw_state": state, "room": room,
                    "media_duration": "", "transcript_progress": ""}}),
            )
        }
        Err(detail) => error(StatusCode::NOT_FOUND, detail),
    }
}

pub(super) async fn command(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = match call(&sim, &headers, &body, &["gw_id"]).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let gw_id = request["gw_id"].as_str().unwrap_or_default().to_owned();
    let room = match sim.container(&gw_id) {
        None => {
            return error(
                StatusCode::NOT_FOUND,
                format!("Gateway '{gw_id}' not found"),
            )
        }
        Some(Container::Streaming(room)) => room,
        Some(_) => {
            return error(
                StatusCode::FORBIDDEN,
                format!("Gateway '{gw_id}' is stopped, cannot send commands"),
            )
        }
    };
    sim.run_command(room, &request["payload"]).await
}
