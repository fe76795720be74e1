//! GraphQL over HTTP (`POST /graphql`) and the GraphiQL page (`GET /graphql`); `/ws` is in
//! [`super::ws`].
//!
//! The body is read here rather than by async-graphql-axum's extractor so that an oversized or
//! malformed request gets a GraphQL error with a code, like every other failure.

use async_graphql::{BatchRequest, BatchResponse, ServerError};
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use webinar_domain::{Caller, Site};
use webinar_infra::auth::AuthError;
use webinar_infra::config::Introspection;
use webinar_infra::idempotency::{fingerprint, Claim, IdempotencyError, IdempotencyKey};
use webinar_infra::metrics::GRAPHQL_REQUESTS;

use super::live_responses::Lookup;
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

/// The host a request was sent to: its `Host` header, or (HTTP/2) its URI's authority.
pub(super) fn request_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// The caller named by an `Authorization` header (anonymous without one): a token's own site,
/// or the site of the host the request came to (see [`Verified::actor_at`]).
///
/// [`Verified::actor_at`]: webinar_infra::auth::Verified::actor_at
pub(super) fn caller(shared: &Shared, headers: &HeaderMap, uri: &Uri) -> Result<Caller, AuthError> {
    let site = shared.state.sites().site_of(request_host(headers, uri));
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(Caller::Anonymous(site)),
        Some(value) => shared
            .state
            .jwt()
            .verify_header_until(value)
            .and_then(|verified| verified.actor_at(&site))
            .map(Caller::User),
    }
}

pub(super) fn request_id(headers: &HeaderMap) -> Option<String> {
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

pub async fn graphql(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !declares_json(&headers) {
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_USER_INPUT",
            "a GraphQL request must be sent with `Content-Type: application/json`",
        );
    }
    if headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.to_str().is_err())
    {
        return reject(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            &AuthError::Malformed.to_string(),
        );
    }
    let caller = match caller(&shared, &headers, &uri) {
        Ok(caller) => caller,
        Err(error) => {
            return reject(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                &error.to_string(),
            )
        }
    };
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => match value.to_str().map(IdempotencyKey::parse) {
            Ok(Ok(key)) => Some(key),
            _ => {
                return refuse_key(
                    StatusCode::BAD_REQUEST,
                    "BAD_USER_INPUT",
                    &IdempotencyError::Malformed,
                )
            }
        },
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
    // The live page asked without a token: maybe an answer already sent, still current.
    // Kept answers are the default site's: another site's anonymous readers skip them (their
    // rows still come from the live page cache).
    let anonymous =
        matches!(&caller, Caller::Anonymous(site) if *site == Site::default()) && key.is_none();
    let lookup = if anonymous {
        shared.live_responses.lookup(&bytes).await
    } else {
        Lookup::Pass
    };
    if let Lookup::Hit(answer) = lookup {
        metrics::counter!(GRAPHQL_REQUESTS, "outcome" => "ok").increment(1);
        return json_bytes(answer);
    }
    // With a key, the body's JSON is kept for its fingerprint.
    let parsed = match &key {
        Some(_) => serde_json::from_slice::<Value>(&bytes)
            .and_then(|body| Ok((fingerprint(&body), serde_json::from_value(body)?)))
            .map(|(fingerprint, batch)| (Some(fingerprint), batch)),
        None => serde_json::from_slice(&bytes).map(|batch| (None, batch)),
    };
    let (fingerprint, mut batch): (Option<Vec<u8>>, BatchRequest) = match parsed {
        Ok(parsed) => parsed,
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
    let keep = match lookup {
        Lookup::Keep(stamp) => Some(stamp),
        Lookup::Unknown => match shared.live_responses.admit(&bytes, &mut batch).await {
            Lookup::Keep(stamp) => Some(stamp),
            _ => None,
        },
        _ => None,
    };
    let caller_id = caller
        .actor()
        .map_or_else(|| "anonymous".to_owned(), |actor| actor.id.clone());
    let idempotent_write = key.is_some() && writes(&mut batch);
    let context = RequestContext {
        caller,
        request_id: request_id(&headers),
    };
    let batch = batch.data(context);
    match (key, fingerprint) {
        (Some(key), Some(fingerprint)) if idempotent_write => {
            idempotent(shared, caller_id, key, fingerprint, batch).await
        }
        _ => {
            let response = execute(&shared, batch).await;
            match keep {
                Some(stamp) if response.is_ok() => {
                    let Ok(answer) = serde_json::to_vec(&response) else {
                        return axum::Json(response).into_response();
                    };
                    let answer = Bytes::from(answer);
                    shared.live_responses.keep(&bytes, stamp, &answer);
                    json_bytes(answer)
                }
                _ => axum::Json(response).into_response(),
            }
        }
    }
}

/// A JSON answer already serialized.
fn json_bytes(answer: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        answer,
    )
        .into_response()
}

/// Whether any operation of the batch is a mutation (an `Idempotency-Key` on a query changes
/// nothing: reading again is harmless).
fn writes(batch: &mut BatchRequest) -> bool {
    use async_graphql::parser::types::OperationType;
    batch.iter_mut().any(|request| {
        request.parsed_query().is_ok_and(|doc| {
            doc.operations
                .iter()
                .any(|(_, operation)| operation.node.ty == OperationType::Mutation)
        })
    })
}

fn refuse_key(status: StatusCode, code: &str, error: &IdempotencyError) -> Response {
    metrics::counter!(GRAPHQL_REQUESTS, "outcome" => "rejected").increment(1);
    let body = serde_json::json!({ "errors": [{ "message": error.to_string(),
        "extensions": { "code": code, "field": "Idempotency-Key" } }] });
    (status, axum::Json(body)).into_response()
}

/// Runs a mutation at most once per caller and `Idempotency-Key` (see
/// `webinar_infra::idempotency`). The run is a task of its own: a client that hangs up does not
/// cancel it, so its answer is stored for the retry.
async fn idempotent(
    shared: Shared,
    caller: String,
    key: IdempotencyKey,
    fingerprint: Vec<u8>,
    batch: BatchRequest,
) -> Response {
    let store = shared.state.services().idempotency.clone();
    let wait = shared.state.settings().read_your_writes_timeout();
    match store.claim(&caller, &key, &fingerprint, wait).await {
        Ok(Claim::Answered(answer)) => {
            let mut response = axum::Json(answer).into_response();
            response
                .headers_mut()
                .insert("idempotency-replayed", HeaderValue::from_static("true"));
            return response;
        }
        Ok(Claim::Won) => {}
        Err(error @ IdempotencyError::Reused) => {
            return refuse_key(StatusCode::UNPROCESSABLE_ENTITY, "BAD_USER_INPUT", &error)
        }
        Err(error @ IdempotencyError::InProgress) => {
            return refuse_key(StatusCode::CONFLICT, "CONFLICT", &error)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot claim an idempotency key");
            return reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the database cannot be reached: nothing was written, retry",
            );
        }
    }
    let run = tokio::spawn(async move {
        let response = execute(&shared, batch).await;
        // `UNAVAILABLE`: nothing was written; the key is freed for a real retry.
        let unavailable = has_code(&response, "UNAVAILABLE");
        let answer = serde_json::to_value(&response).unwrap_or(Value::Null);
        for attempt in 1..=3 {
            let stored = if unavailable {
                store.release(&caller, &key).await
            } else {
                store.finish(&caller, &key, &answer).await
            };
            match stored {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, attempt, "cannot store an idempotent answer");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                }
            }
        }
        answer
    });
    match run.await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => {
            tracing::error!(%error, "an idempotent mutation's task failed");
            reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "the request failed; retry with the same Idempotency-Key",
            )
        }
    }
}

/// Whether any error of the response carries `code`.
fn has_code(response: &BatchResponse, code: &str) -> bool {
    let responses: Vec<&async_graphql::Response> = match response {
        BatchResponse::Single(r) => vec![r],
        BatchResponse::Batch(rs) => rs.iter().collect(),
    };
    responses.iter().flat_map(|r| &r.errors).any(|error| {
        error
            .extensions
            .as_ref()
            .and_then(|ext| ext.get("code"))
            .is_some_and(|value| *value == async_graphql::Value::from(code))
    })
}

/// Executes the batch; errors async-graphql raised itself get their code.
async fn execute(shared: &Shared, batch: BatchRequest) -> BatchResponse {
    let mut response = shared.schema.execute_batch(batch).await;
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
    response
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
}
