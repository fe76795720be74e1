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

/// The name form. `#joinFormName` is what SIPMediaGW's browser fills (v1.7 and main); `#id_name`
/// is the field of Pod's form, which later browsing scripts fill.
pub async fn join_page(State(shared): State<Shared>, Path(key): Path<String>) -> Response {
    let Some((title, _)) = room(&shared, &key).await else {
        return not_found();
    };
    let title = escape(&title);
    let key = escape(&key);
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>\
         <h1>{title}</h1><button id=\"okcookie\" type=\"button\">OK</button>\
         <form id=\"join\" method=\"get\" action=\"/live/join/{key}/go\">\
         <label for=\"joinFormName\">Name</label><input id=\"joinFormName\" name=\"name\" type=\"text\">\
         <input id=\"id_name\" name=\"id_name\" type=\"text\" aria-label=\"Name\">\
         <button type=\"submit\">Join</button></form></body></html>"
    ))
    .into_response()
}

/// Submits the form: to the BBB meeting as a VIEWER under the given name.
pub async fn join_go(
    State(shared): State<Shared>,
    Path(key): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
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
    let name = ["name", "id_name"]
        .iter()
        .filter_map(|k| query.get(*k))
        .map(|n| n.trim())
        .find(|n| !n.is_empty())
        .unwrap_or("streaming");
    let name: String = name.chars().filter(|c| !c.is_control()).take(100).collect();
    let url = meetings.join_url(
        &meeting,
        &name,
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
