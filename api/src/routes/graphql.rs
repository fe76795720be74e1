//! GraphQL over HTTP (`POST /graphql`), GraphiQL (`GET /graphql`) and graphql-transport-ws (`/ws`).
//!
//! The body is read here rather than by async-graphql-axum's extractor so that an oversized or
//! malformed request gets a GraphQL error with a code, like every other failure.

use std::str::FromStr;

use async_graphql::http::{WebSocketProtocols, WsMessage, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{BatchRequest, BatchResponse, Data, ServerError};
use axum::body::{to_bytes, Body};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use webinar_domain::Caller;
use webinar_infra::auth::AuthError;
use webinar_infra::config::Introspection;
use webinar_infra::metrics::GRAPHQL_REQUESTS;

use super::Shared;
use crate::graphql::RequestContext;

/// GraphiQL, unless `graphql_introspection = "off"`: then the console is not offered at all.
pub async fn graphiql(State(shared): State<Shared>) -> Response {
    if shared.state.settings().graphql_introspection == Introspection::Off {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    super::graphiql::page().await
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

/// Whether the body is declared JSON: `application/json` or `application/graphql-response+json`,
/// with any parameters (`; charset=utf-8`). Anything else is refused unread, because a browser
/// sends `text/plain` and form bodies cross-origin without a CORS preflight (CSRF).
fn declares_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("application/graphql-response+json")
}

/// Whether the request's query (parsed here once; async-graphql keeps the parse) selects `__schema`
/// or `__type` at the root of an operation, directly or through fragments. A query that does not
/// parse is left to the schema to refuse.
fn introspects(request: &mut async_graphql::Request, max_bytes: usize) -> bool {
    use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
    fn walk<'a>(
        doc: &'a ExecutableDocument,
        set: &'a SelectionSet,
        seen: &mut Vec<&'a str>,
    ) -> bool {
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => {
                matches!(field.node.name.node.as_str(), "__schema" | "__type")
            }
            Selection::InlineFragment(inline) => walk(doc, &inline.node.selection_set.node, seen),
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                // Not validated yet: a fragment may spread itself.
                if seen.contains(&name) {
                    return false;
                }
                seen.push(name);
                doc.fragments
                    .get(&spread.node.fragment_name.node)
                    .is_some_and(|fragment| walk(doc, &fragment.node.selection_set.node, seen))
            }
        })
    }
    // An oversized query is refused by the query limits before anything runs; parsing it here
    // first would be the very work those limits exist to prevent.
    if request.query.len() > max_bytes {
        return false;
    }
    let Ok(doc) = request.parsed_query() else {
        return false;
    };
    doc.operations
        .iter()
        .any(|(_, operation)| walk(doc, &operation.node.selection_set.node, &mut Vec::new()))
}

pub async fn graphql(State(shared): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    if !declares_json(&headers) {
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_USER_INPUT",
            "a GraphQL request must be sent with `Content-Type: application/json`",
        );
    }
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
    let mut batch: BatchRequest = match serde_json::from_slice(&bytes) {
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
    // `authenticated` (the default): the schema is shown to callers with a token only; `off`: to
    // nobody. async-graphql, told so, hides the schema but gives no coded error a client can act
    // on, so the refusal is made here; disabling it in the request (and, for `off`, in the
    // schema) stays as the backstop.
    let refusal = match shared.state.settings().graphql_introspection {
        Introspection::On => None,
        Introspection::Authenticated if matches!(caller, Caller::User(_)) => None,
        Introspection::Authenticated => Some((
            "UNAUTHENTICATED",
            "introspection needs a bearer token (GraphiQL: put \
             {\"Authorization\": \"Bearer …\"} in its headers)",
        )),
        Introspection::Off => Some(("FORBIDDEN", "introspection is disabled on this server")),
    };
    if let Some((code, message)) = refusal {
        batch = batch.disable_introspection();
        let max_bytes = shared.state.settings().max_query_bytes;
        if batch
            .iter_mut()
            .any(|request| introspects(request, max_bytes))
        {
            return reject(StatusCode::OK, code, message);
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
    if !origin_allowed(&shared.state.settings().ws_allowed_origins, &headers) {
        tracing::warn!("/ws: upgrade from an origin not in ws_allowed_origins refused");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
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
    use super::*;

    fn introspects_query(query: &str) -> bool {
        introspects(&mut async_graphql::Request::new(query), 32 * 1024)
    }

    #[test]
    fn introspection_is_found_at_the_root_through_fragments_only() {
        assert!(introspects_query("{ __schema { types { name } } }"));
        assert!(introspects_query("{ t: __type(name: \"X\") { name } }"));
        assert!(introspects_query(
            "query A { me { id } } query B { __schema { queryType { name } } }"
        ));
        assert!(introspects_query(
            "{ ...F } fragment F on Query { ... on Query { __schema { types { name } } } }"
        ));
        assert!(!introspects_query("{ __typename me { id } }"));
        assert!(!introspects_query("{ me { __typename } }"));
        assert!(!introspects_query("{ ...F } fragment F on Query { ...F }"));
        assert!(!introspects_query("{ not graphql"));
    }

    /// The backstop behind [`introspects`]: a request with introspection disabled learns nothing
    /// of the schema, whatever shape its query takes.
    #[tokio::test]
    async fn a_request_with_introspection_disabled_sees_no_schema() {
        struct Q;
        #[async_graphql::Object]
        impl Q {
            async fn a(&self) -> i32 {
                1
            }
        }
        let schema = async_graphql::Schema::new(
            Q,
            async_graphql::EmptyMutation,
            async_graphql::EmptySubscription,
        );
        for query in [
            "{ __schema { types { name } } }",
            "{ ...F } fragment F on Q { s: __schema { types { name } } }",
            "{ __type(name: \"Q\") { name } }",
        ] {
            let request = async_graphql::Request::new(query).disable_introspection();
            let response =
                serde_json::to_string(&schema.execute(request).await).unwrap_or_default();
            assert!(!response.contains("\"name\""), "{query}: {response}");
        }
    }

    #[test]
    fn only_json_bodies_are_accepted() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            declares_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("APPLICATION/JSON"));
        assert!(with("application/graphql-response+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!with("multipart/form-data; boundary=x"));
        assert!(!with("application/jsonx"));
        assert!(!declares_json(&HeaderMap::new()));
    }

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
