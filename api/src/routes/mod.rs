//! HTTP routes: GraphQL over HTTP and WebSocket, health, readiness and metrics, and what BBB and
//! SIPMediaGW call (the end callback, bbb-webhooks' deliveries, the join page).

mod graphiql;
mod graphql;
mod health;
mod live;
mod live_responses;
mod viewer;
mod webhooks;
mod ws;

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

pub use live_responses::LiveResponses;

use crate::graphql::AppSchema;
use crate::state::AppState;

/// Everything a handler needs: the state and the schema built on it.
#[derive(Clone)]
pub struct Shared {
    pub state: AppState,
    pub schema: AppSchema,
    /// Anonymous live-page answers, as sent.
    pub live_responses: live_responses::LiveResponses,
}

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/graphql", get(graphql::graphiql).post(graphql::graphql))
        .route("/graphql/assets/{file}", get(graphiql::asset))
        .route("/ws", get(ws::subscriptions))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/callbacks/bbb/end/{webinar}", get(live::bbb_end))
        .route("/bbb/webhooks", axum::routing::post(webhooks::deliveries))
        .route("/live/join/{room}", get(live::join_page))
        .route("/live/join/{room}/go", get(live::join_go))
        .route("/live/{webinar}/index.m3u8", get(viewer::playlist))
        .with_state(shared)
        .layer(axum::middleware::map_response(security_headers))
}

/// What an HTML page gets when its handler set no policy of its own (the join page's "not found",
/// the end callback's answers): nothing may load, nothing may frame it.
const HTML_CSP: &str =
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `nosniff` on every answer (none of ours should be read as anything but its declared type);
/// on HTML pages also a Content-Security-Policy (the handler's, or [`HTML_CSP`]), no framing
/// (clickjacking) and no `Referer` (the join page's URL holds the room key).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"));
    if html {
        headers
            .entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(HTML_CSP));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}
