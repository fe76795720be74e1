//! The stable viewer URL: `GET /live/{webinarId}/index.m3u8` redirects (302, never cached) to the
//! playlist of the gateway the webinar streams on now.
//!
//! A redirect rather than a proxied playlist: the audience's media traffic (thousands of players,
//! a segment every few seconds each) goes straight to the live server, never through us, and the
//! segments' relative URIs resolve against the gateway's own address. Players (hls.js, AVPlayer,
//! ExoPlayer) reload a live playlist from the address they were given, so each reload comes back
//! here and, after a restart or a fail-over, lands on the new gateway. What we serve is a lookup
//! on the cached live page: one small response per player per target duration.
//!
//! Only a live webinar redirects: a gateway streams another webinar before and after, and a player
//! must never be sent to someone else's stream. Visibility is the live page's: a restricted event
//! needs an `Authorization` header (404 otherwise, as for an unknown id).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use webinar_domain::webinar::LiveEventStatus;
use webinar_domain::WebinarId;

use super::graphql::caller;
use super::Shared;

fn answer(status: StatusCode, text: &'static str) -> Response {
    let mut response = (status, text).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn playlist(
    State(shared): State<Shared>,
    Path(webinar): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = webinar.parse::<WebinarId>() else {
        return answer(StatusCode::NOT_FOUND, "no such live event");
    };
    let Ok(caller) = caller(&shared, &headers, &uri) else {
        return answer(StatusCode::UNAUTHORIZED, "invalid token");
    };
    let event = match shared.state.reads().live_event(&caller, id).await {
        Ok(Some(event)) => event,
        Ok(None) => return answer(StatusCode::NOT_FOUND, "no such live event"),
        Err(error) => {
            tracing::error!(webinar = %id, %error, "viewer URL lookup failed");
            return answer(StatusCode::SERVICE_UNAVAILABLE, "try again");
        }
    };
    if event.status != LiveEventStatus::Live {
        return answer(StatusCode::NOT_FOUND, "this webinar is not live");
    }
    let Ok(location) = HeaderValue::from_str(&event.hls_url) else {
        return answer(StatusCode::NOT_FOUND, "no stream address");
    };
    let mut response = answer(StatusCode::FOUND, "");
    response.headers_mut().insert(header::LOCATION, location);
    response
}
