//! GraphiQL at `GET /graphql`, served entirely from this binary: the page, its scripts and styles
//! (`api/assets/graphiql/`, versions and licences in its README) at `/graphql/assets/{file}`. No
//! request leaves for a CDN, and the page's CSP allows scripts from our own origin only.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// What `/graphql/assets/{file}` serves: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "graphiql-3.8.3.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphiql-3.8.3.min.js"),
    ),
    (
        "graphiql-3.8.3.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphiql-3.8.3.min.css"),
    ),
    (
        "react-18.3.1.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/react-18.3.1.production.min.js"),
    ),
    (
        "react-dom-18.3.1.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/react-dom-18.3.1.production.min.js"),
    ),
    (
        INIT,
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/init.js"),
    ),
];

/// Ours, and unversioned: it may change with any release, so it is revalidated.
const INIT: &str = "init.js";

/// The page. React and GraphiQL inject inline styles, hence `style-src 'unsafe-inline'` (and the
/// small `<style>` here); scripts are only the files above. GraphiQL's fonts and icons are `data:`
/// URLs. `connect-src 'self'` covers `/graphql` and the same-origin `ws:`/`wss:` of `/ws`.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>webinar GraphiQL</title>
<link rel="stylesheet" href="/graphql/assets/graphiql-3.8.3.min.css">
<style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="/graphql/assets/react-18.3.1.production.min.js"></script>
<script src="/graphql/assets/react-dom-18.3.1.production.min.js"></script>
<script src="/graphql/assets/graphiql-3.8.3.min.js"></script>
<script src="/graphql/assets/init.js"></script>
</body>
</html>
"#;

pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; img-src 'self' data:; \
     font-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let Some((name, content_type, bytes)) = ASSETS.iter().find(|(name, ..)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    // The vendor files carry their version in their name: a new version is a new URL, so they
    // may be cached for good.
    let cache = if *name == INIT {
        "no-cache"
    } else {
        "public, max-age=31536000, immutable"
    };
    let mut response = (*bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
