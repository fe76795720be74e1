//! The HTTP surface against hostile clients and pages: GraphiQL served from our own origin,
//! security headers on HTML pages, no room key in the logs and no chosen name in the meeting,
//! `/metrics` behind an optional token, JSON-only `POST /graphql`, introspection by setting, and
//! `/ws`'s Origin check and `connection_init` timeout.

use std::time::Duration;

use chrono::Utc;
use futures::{SinkExt, StreamExt};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use webinar_infra::config::Introspection;
use webinar_infra::sim::sipmediagw::Api;

use crate::harness::{
    captured_logs, error_code, open_ws, receive, register_gateway, register_live_gateway, send,
    silent, sipmediagw, subscribe, TestApp,
};

/// Every `src="…"` and `href="…"` of `html`.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let end = rest.find('"').expect("a closed attribute");
            found.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    found
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{name} missing on {}", response.url()))
}

/// Schedules a webinar starting now as a faculty member; returns its id and room key.
async fn schedule_now(app: &TestApp) -> (String, String, String) {
    let owner = app.token("owner", &["faculty"], &[], &[]);
    let body = app
        .gql(
            Some(&owner),
            "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }",
            json!({ "input": { "title": "Security lecture", "startAt": Utc::now().to_rfc3339(),
                "durationMinutes": 60 } }),
        )
        .await;
    let id = body["data"]["scheduleWebinar"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let room: String = sqlx::query_scalar("select room from webinars where webinar_id::text = $1")
        .bind(&id)
        .fetch_one(&app.db.pool)
        .await
        .expect("the webinar's room");
    (id, room, owner)
}

#[tokio::test]
async fn graphiql_is_served_from_our_own_origin_only() {
    let app = TestApp::spawn().await;
    let page = app
        .http
        .get(app.url("/graphql"))
        .send()
        .await
        .expect("GET /graphql");
    assert_eq!(page.status().as_u16(), 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let html = page.text().await.expect("the page");
    for outside in ["http://", "https://", "\"//", "'//"] {
        assert!(!html.contains(outside), "{outside} in:\n{html}");
    }
    let references = references(&html);
    assert!(
        references.len() >= 4,
        "GraphiQL, React, ReactDOM, its CSS and init.js: {references:?}"
    );
    for reference in references {
        assert!(
            reference.starts_with('/') && !reference.starts_with("//"),
            "{reference} is not a same-origin path"
        );
        let asset = app
            .http
            .get(app.url(&reference))
            .send()
            .await
            .expect("GET an asset");
        assert_eq!(asset.status().as_u16(), 200, "{reference}");
        let kind = header(&asset, "content-type").to_owned();
        assert!(
            kind.starts_with("text/javascript") || kind.starts_with("text/css"),
            "{reference}: {kind}"
        );
        assert!(
            header(&asset, "cache-control").contains("max-age") || reference.ends_with("init.js")
        );
        assert_eq!(header(&asset, "x-content-type-options"), "nosniff");
        let body = asset.bytes().await.expect("the asset");
        assert!(!body.is_empty(), "{reference} is empty");
    }
    let missing = app
        .http
        .get(app.url("/graphql/assets/nope.js"))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test]
async fn html_pages_carry_security_headers() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "headers", None).await;
    let (_, room, _) = schedule_now(&app).await;
    let bbb = app
        .state
        .settings()
        .bbb_url
        .clone()
        .expect("the simulator's URL");
    let bbb_origin = bbb.trim_end_matches("/bigbluebutton/api");
    for (path, status) in [
        ("/graphql".to_owned(), 200),
        (format!("/live/join/{room}"), 200),
        ("/live/join/nosuchroom".to_owned(), 404),
    ] {
        let response = app.http.get(app.url(&path)).send().await.expect("GET");
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert!(header(&response, "content-type").starts_with("text/html"));
        assert_eq!(header(&response, "x-frame-options"), "DENY", "{path}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer");
        let csp = header(&response, "content-security-policy");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("base-uri 'none'"), "{path}: {csp}");
        if path == "/graphql" {
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(csp.contains("connect-src 'self'"), "{csp}");
            assert!(!csp.contains("unsafe-eval"), "{csp}");
        } else {
            assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
        }
        if status == 200 && path != "/graphql" {
            // Browsers check form-action on the redirect into BBB, too.
            assert!(
                csp.contains(&format!("form-action 'self' {bbb_origin};")),
                "{csp}"
            );
        }
    }
    let health = app.http.get(app.url("/healthz")).send().await.expect("GET");
    assert_eq!(header(&health, "x-content-type-options"), "nosniff");
}

#[tokio::test]
async fn the_room_key_is_never_logged_and_the_streaming_name_is_ours() {
    let app = TestApp::spawn().await;
    let (_sim, url, _stop) = sipmediagw(Api::Legacy, None).await;
    register_live_gateway(&app, "keys", &url, None, "LEGACY").await;
    let (id, room, owner) = schedule_now(&app).await;
    let body = app
        .gql(
            Some(&owner),
            "mutation($id: ID!) { startWebinar(id: $id) { joinUrl } }",
            json!({ "id": id }),
        )
        .await;
    assert!(
        body["data"]["startWebinar"]["joinUrl"].is_string(),
        "{body}"
    );

    let page = app
        .http
        .get(app.url(&format!("/live/join/{room}")))
        .send()
        .await
        .expect("join page");
    assert_eq!(page.status().as_u16(), 200);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let go = no_redirects
        .get(app.url(&format!("/live/join/{room}/go?name=Admin&id_name=Admin")))
        .send()
        .await
        .expect("submit the form");
    assert_eq!(go.status().as_u16(), 302);
    let location = header(&go, "location").to_owned();
    assert!(
        location.contains("role=VIEWER") && location.contains("fullName=streaming&"),
        "{location}"
    );
    assert!(!location.contains("Admin"), "{location}");
    // The simulated BBB accepts the join (checksum and meeting).
    let joined = no_redirects.get(&location).send().await.expect("join BBB");
    assert!(joined.status().is_redirection(), "{}", joined.status());

    let logs = captured_logs();
    assert!(
        logs.contains("\"route\":\"/live/join/{room}/go\""),
        "the request is logged by its route"
    );
    assert!(!logs.contains(&room), "the room key {room} was logged");
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let app = TestApp::spawn_with(|settings| {
        settings.metrics_token = Some(SecretString::from("scrape-me-s3cret".to_owned()));
    })
    .await;
    let scrape = |authorization: Option<&'static str>| {
        let app = &app;
        async move {
            let mut request = app.http.get(app.url("/metrics"));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let response = request.send().await.expect("GET /metrics");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        }
    };
    assert_eq!(scrape(None).await.0, 401);
    assert_eq!(scrape(Some("Bearer wrong")).await.0, 401);
    assert_eq!(scrape(Some("Bearer scrape-me-s3cre")).await.0, 401);
    assert_eq!(scrape(Some("Basic scrape-me-s3cret")).await.0, 401);
    let (status, text) = scrape(Some("Bearer scrape-me-s3cret")).await;
    assert_eq!(status, 200);
    assert!(text.contains("webinar_database_up"), "{text}");
    drop(app);

    let open = TestApp::spawn().await;
    let response = open
        .http
        .get(open.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status().as_u16(), 200, "no token set: public");
}

#[tokio::test]
async fn graphql_posts_must_declare_json() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let mutation = json!({ "query": "mutation { registerGateway(input: { name: \"csrf\", \
        rtmpUrl: \"rtmp://live.example.org/live/csrf\", hlsUrl: \"https://live.example.org/csrf.m3u8\", \
        broadcaster: \"csrf\", sipmediagwUrl: \"https://csrf.example.org\", api: LEGACY }) { id } }" })
    .to_string();
    for content_type in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = app
            .http
            .post(app.url("/graphql"))
            .bearer_auth(&admin)
            .body(mutation.clone());
        if let Some(value) = content_type {
            request = request.header("content-type", value);
        }
        let response = request.send().await.expect("POST");
        assert_eq!(response.status().as_u16(), 415, "{content_type:?}");
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
        assert!(body["errors"][0]["message"].is_string(), "{body}");
    }
    let gateways = app
        .gql(Some(&admin), "{ gateways { id } }", json!({}))
        .await;
    assert_eq!(gateways["data"]["gateways"], json!([]), "nothing ran");

    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/graphql-response+json",
    ] {
        let response = app
            .http
            .post(app.url("/graphql"))
            .header("content-type", content_type)
            .body(json!({ "query": "{ me { id } }" }).to_string())
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 200, "{content_type}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body, json!({ "data": { "me": null } }), "{content_type}");
    }
}

const INTROSPECTION: &str = "{ __schema { types { name } } }";

fn introspected(body: &Value) -> bool {
    body["data"]["__schema"]["types"]
        .as_array()
        .is_some_and(|types| !types.is_empty())
}

#[tokio::test]
async fn introspection_needs_a_token_by_default() {
    let app = TestApp::spawn().await;
    let anonymous = app.gql(None, INTROSPECTION, json!({})).await;
    assert!(!introspected(&anonymous), "{anonymous}");
    assert_eq!(
        error_code(&anonymous),
        Some("UNAUTHENTICATED"),
        "{anonymous}"
    );
    // Hidden in a fragment, or asking for one type, is the same.
    let hidden = app
        .gql(
            None,
            "query { ...A } fragment A on Query { ... on Query { t: __type(name: \"Webinar\") { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&hidden), Some("UNAUTHENTICATED"), "{hidden}");
    assert!(hidden["data"].is_null(), "{hidden}");
    // Only the schema's own fields are introspection: `__typename` is not.
    let typename = app.gql(None, "{ __typename }", json!({})).await;
    assert_eq!(typename, json!({ "data": { "__typename": "Query" } }));
    let viewer = app.token("stu", &["student"], &[], &[]);
    let signed_in = app.gql(Some(&viewer), INTROSPECTION, json!({})).await;
    assert!(introspected(&signed_in), "{signed_in}");
    // The console is still offered: a token goes in its headers editor.
    let page = app.http.get(app.url("/graphql")).send().await.expect("GET");
    assert_eq!(page.status().as_u16(), 200);
}

#[tokio::test]
async fn introspection_on_lets_anyone_in_and_off_nobody() {
    let open = TestApp::spawn_with(|s| s.graphql_introspection = Introspection::On).await;
    let anonymous = open.gql(None, INTROSPECTION, json!({})).await;
    assert!(introspected(&anonymous), "{anonymous}");
    drop(open);

    let closed = TestApp::spawn_with(|s| s.graphql_introspection = Introspection::Off).await;
    let anonymous = closed.gql(None, INTROSPECTION, json!({})).await;
    assert!(!introspected(&anonymous), "{anonymous}");
    assert_eq!(error_code(&anonymous), Some("FORBIDDEN"), "{anonymous}");
    let admin = closed
        .gql(Some(&closed.admin()), INTROSPECTION, json!({}))
        .await;
    assert!(!introspected(&admin), "{admin}");
    assert_eq!(error_code(&admin), Some("FORBIDDEN"), "{admin}");
    let typed = closed
        .gql(
            Some(&closed.admin()),
            "{ __type(name: \"Webinar\") { fields { name } } }",
            json!({}),
        )
        .await;
    assert!(typed["data"]["__type"].is_null(), "{typed}");
    // Ordinary queries still work.
    let me = closed.gql(None, "{ me { id } }", json!({})).await;
    assert_eq!(me, json!({ "data": { "me": null } }));
    let page = closed
        .http
        .get(closed.url("/graphql"))
        .send()
        .await
        .expect("GET");
    assert_eq!(page.status().as_u16(), 404);
}

#[tokio::test]
async fn ws_refuses_origins_not_allowed() {
    let app = TestApp::spawn_with(|s| {
        s.ws_allowed_origins = vec!["https://pod.example.org".to_owned()];
    })
    .await;
    match open_ws(&app, Some("https://evil.example.com")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("a foreign origin must get 403: {:?}", other.map(|_| ())),
    }
    for origin in [Some("https://pod.example.org"), None] {
        let mut socket = open_ws(&app, origin).await.expect("allowed");
        send(
            &mut socket,
            json!({ "type": "connection_init", "payload": {} }),
        )
        .await;
        assert_eq!(
            receive(&mut socket).await["type"],
            json!("connection_ack"),
            "{origin:?}"
        );
    }
}

#[tokio::test]
async fn ws_closes_sockets_that_never_initialise() {
    let app = TestApp::spawn_with(|s| s.ws_init_timeout_ms = 300).await;
    let mut idle = open_ws(&app, None).await.expect("open /ws");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match idle.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("a close frame expected, got {other:?}"),
            }
        }
    })
    .await
    .expect("closed within 5 s");
    let frame = closed.expect("a close code");
    assert_eq!(frame.code, CloseCode::from(4408));
    assert_eq!(frame.reason.as_str(), "Connection initialisation timeout");

    // Pings before initialising do not keep a socket open.
    let mut pinging = open_ws(&app, None).await.expect("open /ws");
    let started = std::time::Instant::now();
    let close = loop {
        assert!(started.elapsed() < Duration::from_secs(5), "never closed");
        // Not `send`: the server may have closed already, and that is what is awaited.
        let _ = pinging
            .send(Message::Text(json!({ "type": "ping" }).to_string().into()))
            .await;
        match tokio::time::timeout(Duration::from_millis(100), pinging.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) | Err(_) => continue,
            Ok(other) => panic!("a close frame expected, got {other:?}"),
        }
    };
    assert_eq!(close.expect("a close code").code, CloseCode::from(4408));

    // A socket that initialised in time lives on past the timeout.
    let mut live = subscribe(
        &app,
        None,
        "subscription { liveEventChanged { id } }",
        json!({}),
    )
    .await;
    assert!(silent(&mut live, Duration::from_millis(800)).await);
    send(&mut live, json!({ "type": "ping" })).await;
    assert_eq!(receive_any(&mut live).await["type"], json!("pong"));
}

/// The next text message, pings included.
async fn receive_any(socket: &mut crate::harness::Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}
