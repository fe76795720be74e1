//! The FastAPI launcher of SIPMediaGW v1.8+ (PROTOCOLS.md, A.4): `POST /gateway/start|stop|command`,
//! `GET /gateway/status`, JSON errors `{"status":"error","error":{"code","detail"},"data":null}`,
//! 422 for invalid input. The launcher itself has no auth; a token, when set, is the proxy's.
//! Its backend is the production one (`DockerGateway`), not `MODE=fake`: only the initialised
//! containers exist.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{json_response, Container, Fault, Release, SipMediaGwSim};

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

fn html_500() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html")],
        "<html>Internal Server Error</html>",
    )
        .into_response()
}

/// `POST /gateway/start`: `SIPMediaGW.sh -g <gw_id>` finds the container by its compose project
/// (any other id makes the script fail: 404) and recreates it with the room.
pub(super) async fn start(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (request, gw_id) = match call(&sim, &headers, &body, &["room", "gw_id", "main_app"]).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let room = request["room"].as_str().unwrap_or_default().to_owned();
    sim.count(&room, |all, one| {
        all.starts += 1;
        one.starts += 1;
    });
    if sim.has(Fault::Html500) {
        return html_500();
    }
    let failed = || {
        error(
            StatusCode::NOT_FOUND,
            "Failed to start gateway container".into(),
        )
    };
    if sim.container(&gw_id).is_none() || sim.has(Fault::Busy) {
        return failed();
    }
    let rtmp = request["rtmp_dst"].as_str().unwrap_or_default().to_owned();
    let browsing = request["browsing_name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let started = sim
        .start_container(gw_id.clone(), room, browsing, rtmp)
        .await;
    if !started {
        return failed();
    }
    json_response(
        StatusCode::OK,
        json!({"status": "success", "error": null, "data": {"processing_state": "working", "gw_id": gw_id}}),
    )
}

/// `POST /gateway/stop`: `docker compose -p <gw_id> stop gw` when the project runs; otherwise 404.
pub(super) async fn stop(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, gw_id) = match call(&sim, &headers, &body, &["gw_id"]).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let not_running = || {
        error(
            StatusCode::NOT_FOUND,
            format!("no running container for gw_id={gw_id}"),
        )
    };
    let room = match sim.container(&gw_id) {
        Some(Container::Streaming(room)) => Some(room),
        Some(Container::Idle) => None,
        Some(Container::Exited) | None => return not_running(),
    };
    let key = room.clone().unwrap_or_else(|| gw_id.clone());
    sim.count(&key, |all, one| {
        all.stops += 1;
        one.stops += 1;
    });
    let latency = sim.fault_duration(|f| match f {
        Fault::StopLatency(d) => Some(*d),
        _ => None,
    });
    let fails = sim.has(Fault::StopError);
    let worker = sim.clone();
    let id = gw_id.clone();
    let stopped = super::detached(async move {
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
        }
        if fails {
            return false;
        }
        worker.with(|i| i.containers.insert(id, Container::Exited));
        worker.count(&key, |_, one| one.successful_stops += 1);
        true
    })
    .await
    .unwrap_or(false);
    if stopped {
        json_response(
            StatusCode::OK,
            json!({"status": "success", "error": null, "data": {"processing_state": "stopped"}}),
        )
    } else {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to stop gateway: docker compose exited with status 1".into(),
        )
    }
}

/// `GET /gateway/status?gw_id=`: what `docker compose ls -a` says of the project.
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
        return invalid(vec![
            json!({"type": "missing", "loc": ["query", "gw_id"], "msg": "Field required"}),
        ]);
    };
    let release = sim.with(|i| i.release);
    let data = match (sim.container(&gw_id), release) {
        (None, Release::V1_8_4) => {
            // `'exited' in status` with status None.
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "argument of type 'NoneType' is not iterable".into(),
            );
        }
        (None, Release::Main) => {
            return error(StatusCode::NOT_FOUND, "Gateway not found".into());
        }
        (Some(Container::Exited), _) => json!({"gw_state": "down", "detail": "exited"}),
        (Some(_), Release::V1_8_4) => json!({"gw_state": "up", "gw_id": gw_id}),
        (Some(Container::Idle), Release::Main) => {
            json!({"gw_state": "up", "gw_id": gw_id, "browsing": "", "room": ""})
        }
        (Some(Container::Streaming(room)), Release::Main) => {
            json!({"gw_state": "up", "gw_id": gw_id, "browsing": "bigbluebutton", "room": room})
        }
    };
    json_response(
        StatusCode::OK,
        json!({"status": "success", "error": null, "data": data}),
    )
}

/// `POST /gateway/command`: acknowledged while the container runs.
pub(super) async fn command(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (request, gw_id) = match call(&sim, &headers, &body, &["gw_id"]).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let room = match sim.container(&gw_id) {
        Some(Container::Streaming(room)) => room,
        Some(Container::Idle) => gw_id.clone(),
        Some(Container::Exited) | None => {
            return error(StatusCode::NOT_FOUND, "Gateway not found".into())
        }
    };
    sim.run_command(room, &request["payload"]).await
}
