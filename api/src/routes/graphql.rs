//! GraphQL over HTTP (`POST /graphql`), GraphiQL (`GET /graphql`) and graphql-transport-ws (`/ws`).
//!
//! The body is read here rather than by async-graphql-axum's extractor so that an oversized or
//! malformed request gets a GraphQL error with a code, like every other failure.

use async_graphql::http::{GraphiQLSource, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{BatchRequest, BatchResponse, Data, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::body::{to_bytes, Body};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
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

/// Errors async-graphql raises itself (parse, validation, depth and complexity limits, argument
/// coercion) carry no code; they are all faults of the request.
fn code_uncoded(errors: &mut [ServerError]) {
    for error in errors {
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
            return reject(
                StatusCode::BAD_REQUEST,
                "BAD_USER_INPUT",
                &format!("the request body is not a GraphQL request: {error}"),
            )
        }
    };
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
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let request_id = request_id(&headers);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            let schema = shared.schema.clone();
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload: serde_json::Value| async move {
                    let header = ["Authorization", "authorization"]
                        .iter()
                        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
                        .or_else(|| {
                            payload
                                .get("token")
                                .and_then(|v| v.as_str())
                                .map(|t| format!("Bearer {t}"))
                        });
                    let caller = caller(&shared, header.as_deref())
                        .map_err(|e| async_graphql::Error::new(e.to_string()))?;
                    let mut data = Data::default();
                    data.insert(RequestContext { caller, request_id });
                    Ok(data)
                })
                .serve()
        })
}
