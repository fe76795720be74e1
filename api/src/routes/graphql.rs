//! GraphQL over HTTP (`POST /graphql`), GraphiQL (`GET /graphql`) and graphql-transport-ws (`/ws`).
//!
//! The body is read here rather than by async-graphql-axum's extractor so that an oversized or
//! malformed request gets a GraphQL error with a code, like every other failure.

use std::str::FromStr;

use async_graphql::http::{GraphiQLSource, WebSocketProtocols, WsMessage, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{BatchRequest, BatchResponse, Data, ServerError};
use axum::body::{to_bytes, Body};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use webinar_domain::Caller;
use webinar_infra::auth::AuthError;
use webinar_infra::metrics::GRAPHQL_REQUESTS;

use super::Shared;
use crate::graphql::RequestContext;

pub async fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/ws")
            .finish(),
    )
}

fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })
}

fn reject(status: StatusCode, code: &str, message: &str) -> Response {
    metrics::counter!(GRAPHQL_REQUESTS, "outcome" => "rejected").increment(1);
    let mut response = (status, axum::Json(error_body(code, message))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    response
}

/// The caller named by an `Authorization` header (anonymous without one).
fn caller(shared: &Shared, authorization: Option<&str>) -> Result<Caller, AuthError> {
    match authorization {
        None => Ok(Caller::Anonymous),
        Some(value) => shared.state.jwt().verify_header(value).map(Caller::User),
    }
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Longest error message sent back, in bytes.
const MAX_ERROR_MESSAGE: usize = 300;

/// Errors async-graphql raises itself (parse, validation, depth and complexity limits, argument
/// coercion) carry no code; they are all faults of the request.
fn code_uncoded(errors: &mut [ServerError]) {
    for error in errors {
        // async-graphql quotes values it could not coerce (an enum, a scalar): never echo a
        // client's megabytes back.
        if error.message.len() > MAX_ERROR_MESSAGE {
            let mut end = MAX_ERROR_MESSAGE;
            while !error.message.is_char_boundary(end) {
                end -= 1;
            }
            error.message.truncate(end);
            error.message.push('…');
        }
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|ext| ext.get("code").is_some());
        if !has_code {
            let field = input_field(&error.message);
            let extensions = error.extensions.get_or_insert_with(Default::default);
            extensions.set("code", "BAD_USER_INPUT");
            if let Some(field) = field {
                extensions.set("field", field);
                error.message = format!(
                    "{field}: must be an RFC 3339 date-time with a time zone, like \
                     2030-01-07T10:00:00+01:00 ({})",
                    error.message
                );
            }
        }
    }
}

/// async-graphql names the input type, not the field, when a scalar inside an input object fails
/// to parse. Each of our inputs has one `DateTime`, so the field can be named for the client.
fn input_field(message: &str) -> Option<&'static str> {
    let datetime = message.starts_with("Failed to parse \"DateTime\"");
    let in_webinar_input =
        message.contains("\"ScheduleWebinarInput\"") || message.contains("\"UpdateWebinarInput\"");
    (datetime && in_webinar_input).then_some("input.startAt")
}

pub async fn graphql(State(shared): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let authorization = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => {
            return reject(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                &AuthError::Malformed.to_string(),
            )
        }
    };
    let caller = match caller(&shared, authorization) {
        Ok(caller) => caller,
        Err(error) => {
            return reject(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                &error.to_string(),
            )
        }
    };
    let limit = shared.state.settings().max_body_bytes;
    let bytes = match to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BAD_USER_INPUT",
                &format!("the request body is larger than {limit} bytes"),
            )
        }
    };
    let batch: BatchRequest = match serde_json::from_slice(&bytes) {
        Ok(batch) => batch,
        Err(error) => {
            // serde quotes the offending value: keep the message short whatever was sent.
            let reason: String = error.to_string().chars().take(160).collect();
            return reject(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                &format!("the request body is not a GraphQL request: {reason}"),
            );
        }
    };
    let max_batch = shared.state.settings().max_batch_operations;
    if let BatchRequest::Batch(requests) = &batch {
        if requests.len() > max_batch {
            return reject(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                &format!("a batch may hold at most {max_batch} operations"),
            );
        }
    }
    let context = RequestContext {
        caller,
        request_id: request_id(&headers),
    };
    let mut response = shared.schema.execute_batch(batch.data(context)).await;
    let outcome = match &mut response {
        BatchResponse::Single(r) => {
            code_uncoded(&mut r.errors);
            r.errors.is_empty()
        }
        BatchResponse::Batch(rs) => rs.iter_mut().fold(true, |ok, r| {
            code_uncoded(&mut r.errors);
            ok && r.errors.is_empty()
        }),
    };
    let outcome = if outcome { "ok" } else { "error" };
    metrics::counter!(GRAPHQL_REQUESTS, "outcome" => outcome).increment(1);
    axum::Json(response).into_response()
}

/// graphql-transport-ws. The bearer token travels in `connection_init`'s payload as
/// `{"Authorization": "Bearer …"}` (or `authorization`, or `token`).
pub async fn subscriptions(
    State(shared): State<Shared>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let request_id = request_id(&headers);
    // The first sub-protocol we speak, as async-graphql-axum's extractor picks it.
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
        });
    let Some(protocol) = protocol else {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws",
        )
            .into_response();
    };
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve_socket(shared, socket, protocol, request_id))
}

/// Where a socket stands: waiting for `connection_init`, or open until its token expires (never,
/// for an anonymous one).
#[derive(Debug, Clone, Copy)]
enum Session {
    Waiting,
    Open { expires: Option<DateTime<Utc>> },
}

/// Runs the protocol on `socket`, closing it when `connection_init` does not come in time (4408,
/// as graphql-transport-ws says) or when the caller's token expires (4401): a subscription must
/// not outlive the authorization it was opened with.
async fn serve_socket(
    shared: Shared,
    socket: WebSocket,
    protocol: WebSocketProtocols,
    request_id: Option<String>,
) {
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|received| futures::future::ready(received.is_ok()))
        .filter_map(|received| {
            futures::future::ready(match received {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });
    let (session_tx, mut session) = watch::channel(Session::Waiting);
    let init = {
        let shared = shared.clone();
        move |payload: serde_json::Value| async move {
            let header = ["Authorization", "authorization"]
                .iter()
                .find_map(|k| payload.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
                .or_else(|| {
                    payload
                        .get("token")
                        .and_then(|v| v.as_str())
                        .map(|t| format!("Bearer {t}"))
                });
            let (caller, expires) = match header {
                None => (Caller::Anonymous, None),
                Some(header) => {
                    let verified = shared
                        .state
                        .jwt()
                        .verify_header_until(&header)
                        .map_err(|e| async_graphql::Error::new(e.to_string()))?;
                    (Caller::User(verified.actor), Some(verified.expires_at))
                }
            };
            let _ = session_tx.send(Session::Open { expires });
            let mut data = Data::default();
            data.insert(RequestContext { caller, request_id });
            Ok(data)
        }
    };
    let messages = async_graphql::http::WebSocket::new(shared.schema.clone(), input, protocol)
        .on_connection_init(init);
    futures::pin_mut!(messages);
    let init_deadline = Instant::now() + shared.state.settings().ws_init_timeout();
    loop {
        let (deadline, code, reason) = match *session.borrow_and_update() {
            Session::Waiting => (init_deadline, 4408, "Connection initialisation timeout"),
            Session::Open { expires: Some(at) } => {
                let left = (at - Utc::now()).to_std().unwrap_or_default();
                (Instant::now() + left, 4401, "the bearer token has expired")
            }
            // Anonymous: nothing to expire (a day is as good as never, and re-checked then).
            Session::Open { expires: None } => (
                Instant::now() + std::time::Duration::from_secs(86_400),
                4401,
                "",
            ),
        };
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { break };
                let message = match message {
                    WsMessage::Text(text) => Message::Text(text.into()),
                    WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })),
                };
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            changed = session.changed() => {
                if changed.is_err() {
                    // The init callback is gone: the protocol already decided.
                    continue;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if reason.is_empty() {
                    continue;
                }
                let close = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
                let _ = sink.send(close).await;
                break;
            }
        }
    }
}
