//! Hostile clients: what one request may cost, input that cannot reach the database, tokens that
//! claim too much, subscriptions that outlive their authorization, and limits that hold across
//! instances.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use webinar_infra::auth::claims;

use crate::harness::{
    error_code, receive, register_gateway, register_live_gateway, sipmediagw, subscribe, TestApp,
    TestDb,
};

const SCHEDULE: &str =
    "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }";

fn lecture(title: &str) -> Value {
    let start = Utc::now() + chrono::Duration::days(2);
    json!({ "title": title, "startAt": start.to_rfc3339(), "durationMinutes": 60 })
}

/// `{ ...F<levels> }` where each fragment spreads the one below twice: 2^levels fields.
fn fragment_bomb(levels: usize) -> String {
    let mut query = format!("{{ ...F{levels} }} fragment F0 on Query {{ __typename }} ");
    for i in 1..=levels {
        query.push_str(&format!(
            "fragment F{i} on Query {{ ...F{j} ...F{j} }} ",
            j = i - 1
        ));
    }
    query
}

/// A refusal: one coded error, a short message that does not quote the query.
fn assert_refused(body: &Value, code: &str, quoted: &str) {
    assert_eq!(error_code(body), Some(code), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.len() < 300, "a long message: {message}");
    assert!(!message.contains(quoted), "the input was echoed: {message}");
    assert!(
        body["data"].is_null() || body["data"] == json!({}),
        "{body}"
    );
}

#[tokio::test]
async fn costly_queries_are_refused_before_any_work_with_a_coded_error() {
    let app = TestApp::spawn().await;
    for levels in [20, 25, 30] {
        let query = fragment_bomb(levels);
        // The best of three: the bound is on our work, not on a busy test machine's scheduling.
        let mut fastest = Duration::MAX;
        let mut body = Value::Null;
        for _ in 0..3 {
            let started = Instant::now();
            body = app.gql(None, &query, json!({})).await;
            fastest = fastest.min(started.elapsed());
        }
        assert_refused(&body, "BAD_USER_INPUT", "fragment F1");
        assert_eq!(
            body["errors"][0]["extensions"]["limit"],
            json!("max_query_fields")
        );
        assert!(
            fastest < Duration::from_millis(50),
            "level {levels}: refused after {fastest:?}"
        );
    }

    // A batch over the limit runs nothing.
    let batch: Vec<Value> = (0..11)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let (status, body) = app.gql_raw(None, Value::Array(batch)).await;
    assert_eq!(status, 400);
    assert_refused(&body, "BAD_USER_INPUT", "__typename");
    let batch: Vec<Value> = (0..10)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let (status, body) = app.gql_raw(None, Value::Array(batch)).await;
    assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(10)));

    // Too long, too many aliases, too many directives.
    let long = format!("{{ __typename }} # {}", "x".repeat(40 * 1024));
    assert_refused(
        &app.gql(None, &long, json!({})).await,
        "BAD_USER_INPUT",
        "xxxx",
    );
    let aliases: String = (0..1_000).map(|i| format!("a{i}: __typename ")).collect();
    let body = app.gql(None, &format!("{{ {aliases} }}"), json!({})).await;
    assert_refused(&body, "BAD_USER_INPUT", "a999");
    assert_eq!(
        body["errors"][0]["extensions"]["limit"],
        json!("max_query_aliases")
    );
    let directives = "@skip(if: false)".repeat(20_000);
    let body = app
        .gql(None, &format!("{{ __typename {directives} }}"), json!({}))
        .await;
    assert_refused(&body, "BAD_USER_INPUT", "@skip(if: false)@skip");
    let body = app
        .gql(
            None,
            &format!("{{ __typename {} }}", "@skip(if: false)".repeat(60)),
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["limit"],
        json!("max_query_directives")
    );

    // `first` costs what it asks for: twenty pages of a hundred events is refused, one is not.
    let page =
        "edges { node { id title description status streamState startAt endAt restricted } }";
    let pages: String = (0..20)
        .map(|i| format!("p{i}: liveEvents(first: 100) {{ {page} }} "))
        .collect();
    let body = app.gql(None, &format!("{{ {pages} }}"), json!({})).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("complex")),
        "{body}"
    );
    let one = app
        .gql(
            None,
            &format!("{{ liveEvents(first: 100) {{ {page} }} }}"),
            json!({}),
        )
        .await;
    assert!(one["errors"].is_null(), "{one}");

    // One POST cannot create dozens of webinars.
    register_gateway(&app, "h", None).await;
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let writes: String = (0..11)
        .map(|i| format!("w{i}: scheduleWebinar(input: $input) {{ id }} "))
        .collect();
    let body = app
        .gql(
            Some(&owner),
            &format!("mutation($input: ScheduleWebinarInput!) {{ {writes} }}"),
            json!({ "input": lecture("Many") }),
        )
        .await;
    assert_refused(&body, "BAD_USER_INPUT", "scheduleWebinar(input");
    let (events,): (i64,) =
        sqlx::query_as("select count(*) from events where aggregate_type = 'Webinar'")
            .fetch_one(&app.db.pool)
            .await
            .expect("count");
    assert_eq!(events, 0, "a refused mutation wrote nothing");
}

#[tokio::test]
async fn control_characters_and_huge_lists_are_bad_input_naming_the_field() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "c", None).await;
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let admin = app.admin();
    let schedule = |input: Value| {
        let (app, owner) = (&app, owner.clone());
        async move {
            app.gql(Some(&owner), SCHEDULE, json!({ "input": input }))
                .await
        }
    };
    for (field, value) in [
        ("title", json!("Amphi\u{0}A")),
        ("title", json!("Amphi\u{1b}[2J")),
        ("title", json!("\u{200B}\u{200B}")),
        ("description", json!("line\u{0}")),
    ] {
        let mut input = lecture("Base");
        input[field] = value;
        let body = schedule(input).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{field}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["field"],
            json!(format!("input.{field}")),
            "{body}"
        );
    }
    let mut input = lecture("Groups");
    input["groups"] = json!(["L1\u{0}"]);
    let body = schedule(input).await;
    assert_eq!(
        body["errors"][0]["extensions"]["field"],
        json!("input.groups"),
        "{body}"
    );

    // 80,000 groups: refused at once, the list never walked.
    let mut input = lecture("Groups");
    input["groups"] = json!((0..80_000)
        .map(|i| format!("group-{i}"))
        .collect::<Vec<_>>());
    let started = Instant::now();
    let body = schedule(input).await;
    assert_eq!(
        body["errors"][0]["extensions"]["field"],
        json!("input.groups"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(body.to_string().len() < 1_000, "the list was echoed");

    // A reason, a filter.
    let gateway = register_gateway(&app, "d", None).await;
    let body = app
        .gql(
            Some(&admin),
            "mutation($id: ID!) { setGatewayEnabled(id: $id, enabled: false, reason: \"x\\u0000y\") { id } }",
            json!({ "id": gateway }),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["field"],
        json!("reason"),
        "{body}"
    );
    let body = app
        .gql(
            Some(&admin),
            "query($f: AuditFilter) { auditLog(filter: $f) { edges { cursor } } }",
            json!({ "f": { "actorId": "a\u{0}b" } }),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["field"],
        json!("filter.actorId"),
        "{body}"
    );
    let many_types: Vec<String> = (0..65).map(|i| format!("Type{i}")).collect();
    for (filter, field) in [
        (
            json!({ "eventTypes": ["Sched\u{0}uled"] }),
            "filter.eventTypes",
        ),
        (json!({ "eventTypes": many_types }), "filter.eventTypes"),
        (json!({ "correlationId": "c\u{1}" }), "filter.correlationId"),
    ] {
        let body = app
            .gql(
                Some(&admin),
                "query($f: AuditFilter) { auditLog(filter: $f) { edges { cursor } } }",
                json!({ "f": filter }),
            )
            .await;
        assert_eq!(
            body["errors"][0]["extensions"]["field"],
            json!(field),
            "{body}"
        );
    }

    // Nothing of it reached the database as an error.
    let log = crate::harness::captured_logs();
    assert!(
        !log.contains("invalid byte sequence"),
        "a NUL reached PostgreSQL"
    );
}

#[tokio::test]
async fn tokens_that_are_not_yet_valid_or_claim_a_component_are_refused() {
    let app = TestApp::spawn().await;
    let issue = |sub: &str, name: &str, nbf: Option<i64>| {
        let mut c = claims(sub, name, &[], &[], &["admin".to_owned()], 600);
        c.nbf = nbf;
        app.keys.issue(&c).expect("sign")
    };
    for (token, why) in [
        (issue("system:meeting-watcher", "Watcher", None), "reserved"),
        (
            issue("u1", "Ada", Some(Utc::now().timestamp() + 3600)),
            "not valid yet",
        ),
        (issue("u1", "A\u{0}da", None), "claim"),
    ] {
        let (status, body) = app
            .gql_raw(
                Some(&format!("Bearer {token}")),
                json!({ "query": "{ me { id } }" }),
            )
            .await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(why)),
            "{why}: {body}"
        );
    }
    let (status, body) = app
        .gql_raw(
            Some(&format!(
                "Bearer {}",
                issue("u1", "Ada", Some(Utc::now().timestamp() - 10))
            )),
            json!({ "query": "{ me { id } }" }),
        )
        .await;
    assert_eq!(
        (status, &body["data"]["me"]["id"]),
        (200, &json!("u1")),
        "{body}"
    );
}

#[tokio::test]
async fn a_removed_presenter_hears_nothing_more_and_the_subscription_completes() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "p", None).await;
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let mut input = lecture("Shared");
    input["presenters"] = json!([{ "id": "assistant", "name": "Assistant" }]);
    let body = app
        .gql(Some(&owner), SCHEDULE, json!({ "input": input }))
        .await;
    let id = body["data"]["scheduleWebinar"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let presenter = app.token("assistant", &["staff"], &[], &[]);
    let query = "subscription($id: ID!) { webinarChanged(id: $id) { id title } }";
    let mut socket = subscribe(&app, Some(&presenter), query, json!({ "id": id })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let update = "mutation($id: ID!, $input: UpdateWebinarInput!) { updateWebinar(id: $id, input: $input) { id } }";
    app.gql(
        Some(&owner),
        update,
        json!({ "id": id, "input": { "title": "Renamed" } }),
    )
    .await;
    let next = receive(&mut socket).await;
    assert_eq!(
        next["payload"]["data"]["webinarChanged"]["title"],
        json!("Renamed"),
        "{next}"
    );

    let body = app
        .gql(
            Some(&owner),
            update,
            json!({ "id": id, "input": { "title": "Secret plans", "presenters": [] } }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let end = receive(&mut socket).await;
    assert_eq!(end["type"], json!("complete"), "{end}");
    app.gql(
        Some(&owner),
        update,
        json!({ "id": id, "input": { "title": "More secret plans" } }),
    )
    .await;
    assert!(
        crate::harness::silent(&mut socket, Duration::from_millis(700)).await,
        "a removed presenter still hears of the webinar"
    );
}

/// The close frame the server sends next (ignoring pings and data).
async fn close_frame(socket: &mut crate::harness::Socket, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, socket.next())
            .await
            .expect("closed in time")
            .expect("a close frame before the end of the stream")
            .expect("a frame");
        if let Message::Close(frame) = message {
            let frame = frame.expect("a close code");
            return (u16::from(frame.code), frame.reason.to_string());
        }
    }
}

#[tokio::test]
async fn sockets_close_when_their_token_expires_or_they_never_initialise() {
    let app = TestApp::spawn_with(|s| s.ws_init_timeout_ms = 500).await;
    let short = app
        .keys
        .issue(&claims("stu", "Student", &[], &[], &[], 2))
        .expect("sign");
    let started = Instant::now();
    let mut socket = subscribe(
        &app,
        Some(&short),
        "subscription { liveEventChanged { id } }",
        json!({}),
    )
    .await;
    let (code, reason) = close_frame(&mut socket, Duration::from_secs(10)).await;
    assert_eq!(code, 4401);
    assert!(reason.contains("expired"), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_ne!(CloseCode::from(code), CloseCode::Normal);

    // A socket that never sends connection_init.
    let mut idle = crate::harness::open_ws(&app, None)
        .await
        .expect("connect /ws");
    let (code, _) = close_frame(&mut idle, Duration::from_secs(5)).await;
    assert_eq!(code, 4408);
}

#[tokio::test]
async fn two_instances_enforce_one_chat_limit_per_viewer_and_per_webinar() {
    let (_sim, sim_url, _stop) =
        sipmediagw(webinar_infra::sim::sipmediagw::Api::Legacy, None).await;
    let db = TestDb::create().await;
    let shared = db.shared();
    let limits = |s: &mut webinar_infra::config::Settings| {
        s.chat_rate_limit = 5;
        s.chat_rate_window_seconds = 60;
        s.chat_webinar_rate_limit = 8;
    };
    let first = TestApp::spawn_over(db, limits).await;
    let second = TestApp::spawn_over(shared, |s| {
        limits(s);
        s.run_reactors = false;
    })
    .await;
    register_live_gateway(&first, "chat", &sim_url, None, "LEGACY").await;
    let owner = first.token("prof", &["faculty"], &[], &[]);
    let mut input = lecture("Chatty");
    input["startAt"] = json!(Utc::now().to_rfc3339());
    input["enableChat"] = json!(true);
    let body = first
        .gql(Some(&owner), SCHEDULE, json!({ "input": input }))
        .await;
    let id = body["data"]["scheduleWebinar"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let started = first
        .gql(
            Some(&owner),
            "mutation($id: ID!) { startWebinar(id: $id) { joinUrl } }",
            json!({ "id": id }),
        )
        .await;
    assert!(started["errors"].is_null(), "{started}");
    crate::harness::wait_until(&first, &id, Duration::from_secs(10), |w| {
        w["status"] == json!("LIVE")
    })
    .await;

    let post = "mutation($id: ID!, $text: String!) { postChatMessage(webinarId: $id, text: $text) { id } }";
    let mut accepted = 0;
    let mut limited = 0;
    for i in 0..10 {
        let app = if i % 2 == 0 { &first } else { &second };
        let token = app.token("viewer", &["student"], &[], &[]);
        let body = app
            .gql(
                Some(&token),
                post,
                json!({ "id": id, "text": format!("hello {i}") }),
            )
            .await;
        match error_code(&body) {
            None => accepted += 1,
            Some("RATE_LIMITED") => limited += 1,
            other => panic!("unexpected {other:?}: {body}"),
        }
    }
    assert_eq!(
        (accepted, limited),
        (5, 5),
        "one viewer across two instances"
    );

    // The webinar's cap counts everyone: 8 in all, 5 of them already spent.
    let mut others = 0;
    for i in 0..6 {
        let app = if i % 2 == 0 { &first } else { &second };
        let token = app.token(&format!("other-{i}"), &["student"], &[], &[]);
        let body = app
            .gql(Some(&token), post, json!({ "id": id, "text": "hi" }))
            .await;
        if error_code(&body).is_none() {
            others += 1;
        } else {
            assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
        }
    }
    assert_eq!(others, 3);
    drop(second);
}

#[tokio::test]
async fn scheduling_has_a_horizon_and_a_quota_per_owner() {
    let app = TestApp::spawn_with(|s| {
        s.schedule_horizon_days = 30;
        s.max_upcoming_webinars_per_owner = 2;
    })
    .await;
    register_gateway(&app, "q1", None).await;
    register_gateway(&app, "q2", None).await;
    register_gateway(&app, "q3", None).await;
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let mut far = lecture("Year 9999");
    far["startAt"] = json!("9999-01-01T10:00:00Z");
    let body = app
        .gql(Some(&owner), SCHEDULE, json!({ "input": far }))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["field"],
        json!("input.startAt"),
        "{body}"
    );
    for title in ["One", "Two"] {
        let body = app
            .gql(Some(&owner), SCHEDULE, json!({ "input": lecture(title) }))
            .await;
        assert!(body["errors"].is_null(), "{body}");
    }
    let body = app
        .gql(Some(&owner), SCHEDULE, json!({ "input": lecture("Three") }))
        .await;
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
    // Another owner has a quota of their own.
    let colleague = app.token("prof-2", &["faculty"], &[], &[]);
    let body = app
        .gql(
            Some(&colleague),
            SCHEDULE,
            json!({ "input": lecture("Theirs") }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
}
