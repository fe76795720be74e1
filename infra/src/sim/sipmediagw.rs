//! A SIPMediaGW launcher: the web.py API of v1.6/v1.7 (`LEGACY`) or the FastAPI `/gateway/*` API of
//! v1.8+ (`GATEWAY`). One stream per server, as on a 4-vCPU host.

// Handlers return a finished response as their error: boxing it would only add noise here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

/// Which API the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Legacy,
    Gateway,
}

/// Injectable faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `/start` answers `res: error`, `The gateway failed to launch` (after a delay, like v1.7).
    LaunchFailed,
    /// `/start` answers web.py's HTML debug page with status 500 (echoing the Authorization header).
    Html500,
    /// Another room holds the only slot: "No free resources found".
    Busy,
    /// Every call waits this long before answering.
    Latency(Duration),
}

/// What the simulator saw, for assertions.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub starts: u32,
    pub successful_starts: u32,
    pub stops: u32,
    pub toggles: u32,
    pub unauthorized: u32,
    /// (room, message), in arrival order.
    pub chats: Vec<(String, String)>,
    /// Every `rtmpDst` and `domain` a successful start received.
    pub started_with: Vec<(String, String, String)>,
}

#[derive(Debug, Default)]
struct Inner {
    token: Option<String>,
    /// The room streaming in the only slot.
    running: Option<String>,
    faults: Vec<Fault>,
    counters: Counters,
}

/// A handle on a running simulator: set faults, read counters.
#[derive(Debug, Clone)]
pub struct SipMediaGwSim {
    api: Api,
    inner: Arc<Mutex<Inner>>,
}

impl SipMediaGwSim {
    /// `token`: the bearer token it requires (`None`: none, as the v1.8 launcher).
    pub fn new(api: Api, token: Option<&str>) -> Self {
        Self {
            api,
            inner: Arc::new(Mutex::new(Inner {
                token: token.map(str::to_owned),
                ..Inner::default()
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_faults(&self, faults: &[Fault]) {
        self.with(|i| i.faults = faults.to_vec());
    }

    pub fn counters(&self) -> Counters {
        self.with(|i| i.counters.clone())
    }

    /// The room streaming now, if any.
    pub fn running(&self) -> Option<String> {
        self.with(|i| i.running.clone())
    }

    pub fn router(&self) -> Router {
        let routes = match self.api {
            Api::Legacy => Router::new()
                .route("/start", get(legacy_start))
                .route("/stop", get(legacy_stop))
                .route("/progress", get(legacy_progress))
                .route("/chat", get(legacy_toggle).post(legacy_chat)),
            Api::Gateway => Router::new()
                .route("/gateway/start", post(gateway_start))
                .route("/gateway/stop", post(gateway_stop))
                .route("/gateway/status", get(gateway_status))
                .route("/gateway/command", post(gateway_command)),
        };
        routes
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    [(header::CONTENT_TYPE, "text/html")],
                    "not found",
                )
            })
            .with_state(self.clone())
    }

    async fn delay(&self) {
        let latency = self.with(|i| {
            i.faults.iter().find_map(|f| match f {
                Fault::Latency(d) => Some(*d),
                _ => None,
            })
        });
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
        }
    }

    fn has(&self, fault: Fault) -> bool {
        self.with(|i| i.faults.contains(&fault))
    }

    /// web.py's check: `re.sub('^Bearer ', '', header) == token` (so a bare token passes too).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = self.with(|i| i.token.clone()) else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let ok = given.strip_prefix("Bearer ").unwrap_or(given) == expected;
        if !ok {
            self.with(|i| i.counters.unauthorized += 1);
        }
        ok
    }
}

fn unauthorized_legacy() -> Response {
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

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn room_of(query: &HashMap<String, String>) -> Option<String> {
    query
        .get("room")
        .filter(|r| !r.is_empty() && r.as_str() != "0")
        .cloned()
}

async fn legacy_start(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    sim.delay().await;
    if !sim.authorized(&headers) {
        return unauthorized_legacy();
    }
    let Some(room) = room_of(&query) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"Error": "a room name must be specified"}),
        );
    };
    sim.with(|i| i.counters.starts += 1);
    if sim.has(Fault::Html500) {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let page = format!(
            "<html><head><title>web.py debug</title></head><body><h1>JSONDecodeError at /start</h1>\
             <table><tr><td>HTTP_AUTHORIZATION</td><td>{auth}</td></tr></table>{}</body></html>",
            "<p>Traceback (most recent call last)</p>".repeat(20)
        );
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/html")],
            page,
        )
            .into_response();
    }
    if sim.has(Fault::LaunchFailed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        return json_response(
            StatusCode::OK,
            json!({"status": "success", "details": {"res": "error", "type": "The gateway failed to launch"}}),
        );
    }
    let busy = sim.has(Fault::Busy) || sim.with(|i| i.running.is_some());
    if busy {
        return json_response(
            StatusCode::OK,
            json!({"status": "success", "details": {"res": "error", "type": "No free resources found"}}),
        );
    }
    let rtmp = query.get("rtmpDst").cloned().unwrap_or_default();
    let domain = query.get("domain").cloned().unwrap_or_default();
    sim.with(|i| {
        i.running = Some(room.clone());
        i.counters.successful_starts += 1;
        i.counters
            .started_with
            .push((room.clone(), domain, rtmp.clone()));
    });
    json_response(
        StatusCode::OK,
        json!({"status": "success", "details": {"res": "ok", "app": "streaming", "uri": rtmp}}),
    )
}

async fn legacy_stop(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    sim.delay().await;
    if !sim.authorized(&headers) {
        return unauthorized_legacy();
    }
    let Some(room) = room_of(&query) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"Error": "a room name must be specified"}),
        );
    };
    let stopped = sim.with(|i| {
        i.counters.stops += 1;
        if i.running.as_deref() == Some(room.as_str()) {
            i.running = None;
            true
        } else {
            false
        }
    });
    if stopped {
        json_response(
            StatusCode::OK,
            json!({"status": "success", "details": {"res": " Container gw0  Stopping =>  Container gw0  Stopped"}}),
        )
    } else {
        json_response(
            StatusCode::BAD_REQUEST,
            json!({"Error": format!("no running container for room={room}")}),
        )
    }
}

async fn legacy_progress(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    sim.delay().await;
    if !sim.authorized(&headers) {
        return unauthorized_legacy();
    }
    let Some(room) = room_of(&query) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"Error": "a room name must be specified"}),
        );
    };
    if sim.running().as_deref() == Some(room.as_str()) {
        json_response(
            StatusCode::OK,
            json!({"status": "success", "transcript_progress": "0%"}),
        )
    } else {
        json_response(
            StatusCode::OK,
            json!({"status": "success", "gw_state": "down"}),
        )
    }
}

async fn legacy_toggle(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    sim.delay().await;
    if !sim.authorized(&headers) {
        return unauthorized_legacy();
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
async fn legacy_chat(State(sim): State<SipMediaGwSim>, body: Bytes) -> Response {
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
            sim.with(|i| i.counters.chats.push((room, msg)));
            json_response(StatusCode::OK, json!({"res": "ok"}))
        }
        None => json_response(
            StatusCode::BAD_REQUEST,
            json!({"Error": "message missing or not readable"}),
        ),
    }
}

fn gateway_error(status: StatusCode, detail: String) -> Response {
    json_response(
        status,
        json!({"status": "error", "error": {"code": status.as_u16(), "detail": detail}, "data": null}),
    )
}

fn gateway_json(body: &Bytes, required: &[&str]) -> Result<Value, Response> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let missing: Vec<Value> = required
        .iter()
        .filter(|k| value.get(**k).and_then(Value::as_str).is_none())
        .map(|k| json!({"type": "missing", "loc": ["body", k], "msg": "Field required"}))
        .collect();
    if missing.is_empty() {
        Ok(value)
    } else {
        Err(json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"status": "error", "error": "Invalid input", "message": missing}),
        ))
    }
}

/// The v1.8 launcher has no auth; a token, when set, is the proxy's (`^Bearer ` required).
fn gateway_authorized(sim: &SipMediaGwSim, headers: &HeaderMap) -> Result<(), Response> {
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
        Err(gateway_error(
            StatusCode::UNAUTHORIZED,
            "Invalid or missing token".into(),
        ))
    }
}

async fn gateway_start(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.delay().await;
    if let Err(response) = gateway_authorized(&sim, &headers) {
        return response;
    }
    let request = match gateway_json(&body, &["room", "gw_id", "main_app"]) {
        Ok(v) => v,
        Err(response) => return response,
    };
    sim.with(|i| i.counters.starts += 1);
    if sim.has(Fault::Html500) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/html")],
            "<html>Internal Server Error</html>",
        )
            .into_response();
    }
    let gw_id = request["gw_id"].as_str().unwrap_or_default().to_owned();
    if sim.has(Fault::LaunchFailed) || sim.has(Fault::Busy) || sim.running().is_some() {
        return gateway_error(
            StatusCode::NOT_FOUND,
            "Failed to start gateway container".into(),
        );
    }
    let rtmp = request["rtmp_dst"].as_str().unwrap_or_default().to_owned();
    let domain = request["browsing_name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    sim.with(|i| {
        i.running = Some(gw_id.clone());
        i.counters.successful_starts += 1;
        i.counters.started_with.push((gw_id.clone(), domain, rtmp));
    });
    json_response(
        StatusCode::OK,
        json!({"status": "success", "error": null, "data": {"processing_state": "working", "gw_id": gw_id}}),
    )
}

async fn gateway_stop(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.delay().await;
    if let Err(response) = gateway_authorized(&sim, &headers) {
        return response;
    }
    let request = match gateway_json(&body, &["gw_id"]) {
        Ok(v) => v,
        Err(response) => return response,
    };
    let gw_id = request["gw_id"].as_str().unwrap_or_default().to_owned();
    let stopped = sim.with(|i| {
        i.counters.stops += 1;
        if i.running.as_deref() == Some(gw_id.as_str()) {
            i.running = None;
            true
        } else {
            false
        }
    });
    if stopped {
        json_response(
            StatusCode::OK,
            json!({"status": "success", "error": null, "data": {"processing_state": "stopped"}}),
        )
    } else {
        gateway_error(
            StatusCode::NOT_FOUND,
            format!("no running container for gw_id={gw_id}"),
        )
    }
}

async fn gateway_status(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    sim.delay().await;
    if let Err(response) = gateway_authorized(&sim, &headers) {
        return response;
    }
    let Some(gw_id) = query.get("gw_id").cloned() else {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"status": "error", "error": "Invalid input", "message": []}),
        );
    };
    let state = if sim.running().as_deref() == Some(gw_id.as_str()) {
        json!({"gw_state": "up", "gw_id": gw_id, "browsing": "", "room": ""})
    } else {
        json!({"gw_state": "down", "detail": "exited"})
    };
    json_response(
        StatusCode::OK,
        json!({"status": "success", "error": null, "data": state}),
    )
}

async fn gateway_command(
    State(sim): State<SipMediaGwSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.delay().await;
    if let Err(response) = gateway_authorized(&sim, &headers) {
        return response;
    }
    let request = match gateway_json(&body, &["gw_id"]) {
        Ok(v) => v,
        Err(response) => return response,
    };
    let gw_id = request["gw_id"].as_str().unwrap_or_default().to_owned();
    if sim.running().as_deref() != Some(gw_id.as_str()) {
        return gateway_error(StatusCode::FORBIDDEN, "Gateway is stopped".into());
    }
    let command = request["payload"]["command"].as_str().unwrap_or_default();
    let param = request["payload"]["param1"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    sim.with(|i| match command {
        "sendChat" => i.counters.chats.push((gw_id.clone(), param)),
        _ => i.counters.toggles += 1,
    });
    json_response(StatusCode::OK, json!({"ack": true, "gw_id": gw_id}))
}
