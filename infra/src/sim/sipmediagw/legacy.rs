//! The web.py launcher of SIPMediaGW v1.6/v1.7 (PROTOCOLS.md, A.2): `GET /start|/stop|/progress`,
//! `GET /chat?toggle`, `POST /chat`; bearer token checked the web.py way; errors under HTTP 200.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{json_response, Fault, SipMediaGwSim};

fn unauthorized() -> Response {
    // web.py sends no Content-Type here.
    let mut response = Response::new(axum::body::Body::from(
        r#"{"Error": "authorization error"}"#,
    ));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

/// web.py's debug page (500), which echoes the request's Authorization header.
fn debug_page(headers: &HeaderMap, path: &str) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let page = format!(
        "<html><head><title>web.py debug</title></head><body><h1>JSONDecodeError at {path}</h1>\
         <table><tr><td>HTTP_AUTHORIZATION</td><td>{auth}</td></tr></table>{}</body></html>",
        "<p>Traceback (most recent call last)</p>".repeat(20)
    );
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html")],
        page,
    )
        .into_response()
}

/// The latency fault, web.py's check (`re.sub('^Bearer ', '', header) == token`, so a bare
/// token passes too), and the room (required, not `0`).
async fn call(
    sim: &SipMediaGwSim,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<String, Response> {
    sim.delay().await;
    if let Some(expected) = sim.with(|i| i.token.clone()) {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if given.strip_prefix("Bearer ").unwrap_or(given) != expected {
            sim.with(|i| i.counters.unauthorized += 1);
            return Err(unauthorized());
        }
    }
    query
        .get("room")
        .filter(|r| !r.is_empty() && r.as_str() != "0")
        .cloned()
        .ok_or_else(|| {
            json_response(
                StatusCode::BAD_REQUEST,
                json!({"Error": "a room name must be specified"}),
            )
        })
}

fn script_error(kind: &str) -> Response {
    json_response(
        StatusCode::OK,
        json!({"status": "success", "details": {"res": "error", "type": kind}}),
    )
}

pub(super) async fn start(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let room = match call(&sim, &headers, &query).await {
        Ok(room) => room,
        Err(response) => return response,
    };
    sim.count(&room, |all, one| {
        all.starts += 1;
        one.starts += 1;
    });
    if sim.has(Fault::Html500) {
        return debug_page(&headers, "/start");
    }
    if !sim.take_slot(&room) {
        return script_error("No free resources found");
    }
    let rtmp = query.get("rtmpDst").cloned().unwrap_or_default();
    let domain = query.get("domain").cloned().unwrap_or_default();
    if !sim.finish_start(room, domain, rtmp.clone()).await {
        return script_error("The gateway failed to launch");
    }
    json_response(
        StatusCode::OK,
        json!({"status": "success", "details": {"res": "ok", "app": "streaming", "uri": rtmp}}),
    )
}

pub(super) async fn stop(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let room = match call(&sim, &headers, &query).await {
        Ok(room) => room,
        Err(response) => return response,
    };
    match sim.stop_room(room.clone()).await {
        Ok(true) => json_response(
            StatusCode::OK,
            json!({"status": "success", "details": {"res": " Container gw0  Stopping =>  Container gw0  Stopped"}}),
        ),
        Ok(false) => json_response(
            StatusCode::BAD_REQUEST,
            json!({"Error": format!("no running container for room={room}")}),
        ),
        // The compose call raised: web.py's debug page.
        Err(()) => debug_page(&headers, "/stop"),
    }
}

pub(super) async fn progress(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let room = match call(&sim, &headers, &query).await {
        Ok(room) => room,
        Err(response) => return response,
    };
    // v1.7: no `gw_state` key at all while the room's containers run.
    let body = if sim.is_running(&room) {
        json!({"status": "success", "transcript_progress": "0%"})
    } else {
        json!({"status": "success", "gw_state": "down"})
    };
    json_response(StatusCode::OK, body)
}

pub(super) async fn toggle(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = call(&sim, &headers, &query).await {
        return response;
    }
    if !query.contains_key("toggle") {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"Error": "toggle parameter is expected"}),
        );
    }
    sim.with(|i| i.counters.toggles += 1);
    json_response(StatusCode::OK, json!({"res": "ok"}))
}

/// `POST /chat` has no `@authorize` in web.py.
pub(super) async fn chat(State(sim): State<SipMediaGwSim>, body: Bytes) -> Response {
    sim.delay().await;
    let parsed: Option<(String, String)> =
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
            Some((
                v.get("room")?.as_str()?.to_owned(),
                v.get("msg")?.as_str()?.to_owned(),
            ))
        });
    match parsed {
        Some((room, msg)) => {
            sim.chat_delay().await;
            sim.with(|i| i.counters.chats.push((room, msg)));
            json_response(StatusCode::OK, json!({"res": "ok"}))
        }
        None => json_response(
            StatusCode::BAD_REQUEST,
            json!({"Error": "message missing or not readable"}),
        ),
    }
}
