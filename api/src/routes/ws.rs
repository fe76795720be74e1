//! GraphQL subscriptions over WebSocket (`/ws`, graphql-transport-ws and the older graphql-ws):
//! the Origin check, small buffers, and one loop that serves the protocol and closes the socket
//! when `connection_init` does not come in time, the caller's token expires, or the client stops
//! reading.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{WebSocketProtocols, WsMessage, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::Data;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use webinar_domain::{Caller, Site};

use super::graphql::request_id;
use super::Shared;
use crate::graphql::RequestContext;

/// graphql-transport-ws. The bearer token travels in `connection_init`'s payload as
/// `{"Authorization": "Bearer …"}` (or `authorization`, or `token`).
pub async fn subscriptions(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&shared.state.settings().ws_allowed_origins, &headers) {
        tracing::warn!("/ws: upgrade from an origin not in ws_allowed_origins refused");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let request_id = request_id(&headers);
    // The site of the host the socket was opened on (a token's `site` claim overrides it).
    let site = shared
        .state
        .sites()
        .site_of(super::graphql::request_host(&headers, &uri));
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
    // tungstenite's defaults (128 KiB read and write buffers, 64 MiB messages) cost an idle
    // subscriber of the live page more than its whole session; a client sends a few small JSON
    // messages (a query is at most `max_query_bytes`), and ours are written out at once.
    let max_message = shared.state.settings().max_query_bytes.saturating_add(4096);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| serve_socket(shared, socket, protocol, request_id, site))
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
    site: Site,
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
    // The sender outlives the init callback (which async-graphql drops once called): a closed
    // channel would make `changed()` ready forever and the loop below spin.
    let (session_tx, mut session) = watch::channel(Session::Waiting);
    let session_tx = Arc::new(session_tx);
    let init = {
        let shared = shared.clone();
        let session_tx = Arc::clone(&session_tx);
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
                None => (Caller::Anonymous(site), None),
                Some(header) => {
                    let verified = shared
                        .state
                        .jwt()
                        .verify_header_until(&header)
                        .map_err(|e| async_graphql::Error::new(e.to_string()))?;
                    let expires = verified.expires_at;
                    let actor = verified
                        .actor_at(&site)
                        .map_err(|e| async_graphql::Error::new(e.to_string()))?;
                    (Caller::User(actor), Some(expires))
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
    let send_timeout = Duration::from_millis(shared.state.settings().ws_send_timeout_ms.max(1));
    loop {
        // When the socket must close, and how; an anonymous socket has nothing to expire.
        let closing = match *session.borrow_and_update() {
            Session::Waiting => Some((init_deadline, 4408, "Connection initialisation timeout")),
            Session::Open { expires: Some(at) } => {
                let left = (at - Utc::now()).to_std().unwrap_or_default();
                Some((Instant::now() + left, 4401, "the bearer token has expired"))
            }
            Session::Open { expires: None } => None,
        };
        let deadline = async {
            match closing {
                Some((at, _, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
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
                // A client that does not read holds only its own socket: past the send timeout
                // it is closed (4429), and its subscriptions with it.
                match tokio::time::timeout(send_timeout, sink.send(message)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        tracing::info!("/ws: a subscriber that does not read was disconnected");
                        let close = Message::Close(Some(CloseFrame {
                            code: 4429,
                            reason: "too slow: messages were not read".into(),
                        }));
                        let _ = tokio::time::timeout(Duration::from_millis(100), sink.send(close))
                            .await;
                        break;
                    }
                }
            }
            // A new session state: the deadline is recomputed above.
            _ = session.changed() => {}
            _ = deadline => {
                let Some((_, code, reason)) = closing else { continue };
                let close = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
                let _ = sink.send(close).await;
                break;
            }
        }
    }
}

/// A browser sends `Origin` on every WebSocket handshake and lets any page open one, cookies or
/// not: with `ws_allowed_origins` set, only those pages may. Clients that are not browsers send
/// no `Origin` and are let through (they could forge one anyway).
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => origin.to_str().is_ok_and(|origin| {
            allowed
                .iter()
                .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
        }),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn origins_are_checked_only_when_listed_and_sent() {
        let allowed = vec!["https://pod.example.org/".to_owned()];
        let from = |origin: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
            headers
        };
        assert!(origin_allowed(&allowed, &from("https://pod.example.org")));
        assert!(!origin_allowed(&allowed, &from("https://evil.example.org")));
        assert!(!origin_allowed(&allowed, &from("null")));
        assert!(origin_allowed(&allowed, &HeaderMap::new()));
        assert!(origin_allowed(&[], &from("https://evil.example.org")));
    }
}
