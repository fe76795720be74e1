//! What BigBlueButton and SIPMediaGW call: the end callback, and the join page the SIPMediaGW
//! browser opens (`https://<domain>/<room>`) to enter the meeting as the "streaming" viewer.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use webinar_domain::ports::MeetingRole;
use webinar_domain::webinar::EndReason;
use webinar_domain::WebinarId;

use super::Shared;

/// BBB's end callback: `GET /callbacks/bbb/end/{webinar}?sig=…[&recordingmarks=…]`.
pub async fn bbb_end(
    State(shared): State<Shared>,
    Path(webinar): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Ok(id) = webinar.parse::<WebinarId>() else {
        return (StatusCode::NOT_FOUND, "no such webinar").into_response();
    };
    let signed = query
        .get("sig")
        .is_some_and(|sig| shared.state.signer().verify(id, sig));
    if !signed {
        tracing::warn!(webinar = %id, "end callback with a bad signature refused");
        return (StatusCode::FORBIDDEN, "bad signature").into_response();
    }
    match shared.state.watcher().end(id, EndReason::BbbCallback).await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(error) => {
            tracing::error!(webinar = %id, %error, "end callback failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not end the webinar",
            )
                .into_response()
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!doctype html><html><head><title>Not found</title></head><body><h1>No such live room</h1>\
              <p>This webinar does not exist or has ended.</p></body></html>"),
    )
        .into_response()
}

/// The webinar behind `room` while it can still be joined: (title, live meeting id).
async fn room(shared: &Shared, room: &str) -> Option<(String, Option<String>)> {
    match webinar_projections::webinars::joinable_room(shared.state.pool(), room).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(%error, "join page: cannot read the webinar");
            None
        }
    }
}

/// The name the streaming participant has in the meeting, whatever the form says: the room key
/// lets its holder in, but not under a name of their choosing (`Admin`, a presenter's).
pub const STREAMING_NAME: &str = "streaming";

/// The origin (`https://host[:port]`) of an absolute http(s) URL, if it has one that is safe to
/// put in a header.
fn origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    (!host.is_empty() && host.chars().all(plain)).then(|| &url[..scheme.len() + 3 + host.len()])
}

/// The join page's policy: no scripts, no styles, nothing loaded; the form may only go to us,
/// and, as browsers also check `form-action` on the redirect that follows, on to BBB.
fn join_csp(shared: &Shared) -> String {
    let bbb = shared
        .state
        .settings()
        .bbb_url
        .as_deref()
        .and_then(origin)
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default();
    format!("default-src 'none'; form-action 'self'{bbb}; frame-ancestors 'none'; base-uri 'none'")
}

/// The name form. `#joinFormName` is what SIPMediaGW's browser fills (v1.7 and main); `#id_name`
/// is the field of Pod's form, which later browsing scripts fill. The names they fill are
/// ignored: see [`STREAMING_NAME`].
pub async fn join_page(State(shared): State<Shared>, Path(key): Path<String>) -> Response {
    let Some((title, _)) = room(&shared, &key).await else {
        return not_found();
    };
    let csp = join_csp(&shared);
    let title = escape(&title);
    let key = escape(&key);
    let mut response = Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>\
         <h1>{title}</h1><button id=\"okcookie\" type=\"button\">OK</button>\
         <form id=\"join\" method=\"get\" action=\"/live/join/{key}/go\">\
         <label for=\"joinFormName\">Name</label><input id=\"joinFormName\" name=\"name\" type=\"text\">\
         <input id=\"id_name\" name=\"id_name\" type=\"text\" aria-label=\"Name\">\
         <button type=\"submit\">Join</button></form></body></html>"
    ))
    .into_response();
    if let Ok(csp) = header::HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// Submits the form: to the BBB meeting as a VIEWER named [`STREAMING_NAME`] (the submitted
/// name is ignored).
pub async fn join_go(State(shared): State<Shared>, Path(key): Path<String>) -> Response {
    let Some((_, Some(meeting))) = room(&shared, &key).await else {
        return not_found();
    };
    let Some(meetings) = &shared.state.services().meetings else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "BigBlueButton is not configured",
        )
            .into_response();
    };
    let url = meetings.join_url(
        &meeting,
        STREAMING_NAME,
        &format!("streaming-{key}"),
        MeetingRole::Viewer,
    );
    let mut response = Redirect::to(&url).into_response();
    // A 302, as BBB's own join does; the page must not be cached with its signed URL.
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn the_bbb_origin_is_taken_from_its_api_url() {
        assert_eq!(
            origin("https://bbb.example.org/bigbluebutton/api"),
            Some("https://bbb.example.org")
        );
        assert_eq!(
            origin("http://127.0.0.1:8101/bigbluebutton/api"),
            Some("http://127.0.0.1:8101")
        );
        assert_eq!(
            origin("https://bbb.example.org"),
            Some("https://bbb.example.org")
        );
        assert_eq!(origin("https://bbb.example.org; script-src *"), None);
        assert_eq!(origin("javascript:alert(1)"), None);
        assert_eq!(origin("https:///path"), None);
    }
}
