//! `Idempotency-Key`: a retried mutation answers what the first answered and writes nothing new,
//! per caller, also when the first answer never reached the client.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use crate::harness::{register_gateway, TestApp};

const SCHEDULE: &str =
    "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id title } }";

fn schedule_body(title: &str) -> Value {
    json!({ "query": SCHEDULE, "variables": { "input": { "title": title,
        "startAt": (Utc::now() + chrono::Duration::days(3)).to_rfc3339(), "durationMinutes": 60 } } })
}

async fn post(
    app: &TestApp,
    token: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let mut request = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("POST /graphql");
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotency-replayed")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, replayed, response.json().await.expect("JSON"))
}

/// A server with `n` gateways, so that `n` webinars can share a slot.
async fn app_with_gateways(n: usize) -> TestApp {
    let app = TestApp::spawn().await;
    for i in 0..n {
        register_gateway(&app, &format!("g{i}"), None).await;
    }
    app
}

async fn scheduled(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from events where event_type = 'Scheduled'")
        .fetch_one(&app.db.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_first_answer_and_writes_nothing() {
    let app = app_with_gateways(3).await;
    let owner = app.token("owner", &["faculty"], &[], &[]);
    let body = schedule_body("Once");
    let (status, replayed, first) = post(&app, &owner, Some("retry-1"), &body).await;
    assert_eq!((status, replayed), (200, None), "{first}");
    let id = first["data"]["scheduleWebinar"]["id"].clone();
    assert!(id.is_string(), "{first}");
    // The same body, spaced and ordered differently, is the same request.
    let respelled: Value = serde_json::from_str(&format!(
        "{{ \"variables\": {} , \"query\": {} }}",
        body["variables"], body["query"]
    ))
    .expect("json");
    let (status, replayed, again) = post(&app, &owner, Some("retry-1"), &respelled).await;
    assert_eq!((status, replayed.as_deref()), (200, Some("true")));
    assert_eq!(again, first);
    assert_eq!(scheduled(&app).await, 1);

    // Another request under the same key is refused, naming the header, and writes nothing.
    let (status, _, refused) = post(&app, &owner, Some("retry-1"), &schedule_body("Twice")).await;
    assert_eq!(status, 422);
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        json!("BAD_USER_INPUT")
    );
    assert_eq!(
        refused["errors"][0]["extensions"]["field"],
        json!("Idempotency-Key")
    );
    assert_eq!(scheduled(&app).await, 1);

    // Keys are per caller: someone else's same key is theirs.
    let other = app.token("other", &["faculty"], &[], &[]);
    let (_, replayed, theirs) = post(&app, &other, Some("retry-1"), &body).await;
    assert_eq!(replayed, None);
    assert_ne!(theirs["data"]["scheduleWebinar"]["id"], id);
    assert_eq!(scheduled(&app).await, 2);

    // Without a key, or on a query, nothing is remembered.
    post(&app, &owner, None, &body).await;
    assert_eq!(scheduled(&app).await, 3);
    let query = json!({ "query": "{ me { id } }" });
    let (_, replayed, _) = post(&app, &owner, Some("q-1"), &query).await;
    assert_eq!(replayed, None);
    let (_, replayed, _) = post(&app, &owner, Some("q-1"), &query).await;
    assert_eq!(replayed, None, "queries are not stored");

    // A malformed key is refused before anything runs.
    for bad in ["has space", &"k".repeat(129)] {
        let (status, _, refused) = post(&app, &owner, Some(bad), &body).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(
            refused["errors"][0]["extensions"]["field"],
            json!("Idempotency-Key")
        );
    }
    assert_eq!(scheduled(&app).await, 3);
    app.stop().await;
}

#[tokio::test]
async fn a_retry_after_a_lost_answer_gets_the_answer_and_one_set_of_events() {
    let app = app_with_gateways(1).await;
    let owner = app.token("owner", &["faculty"], &[], &[]);
    let body = schedule_body("Lost answer");
    // The first request is sent on a raw connection, which is dropped as soon as its write has
    // committed, unread: its answer is lost.
    let payload = body.to_string();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {owner}\r\nIdempotency-Key: lost-1\r\n\
         Content-Length: {}\r\n\r\n{payload}",
        app.address,
        payload.len()
    );
    let mut socket = tokio::net::TcpStream::connect(app.address)
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut socket, request.as_bytes())
        .await
        .expect("send");
    let started = std::time::Instant::now();
    while scheduled(&app).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never committed"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(socket);
    // The retry waits for the first run if it is still going, then gets its answer.
    let (status, _, answer) = post(&app, &owner, Some("lost-1"), &body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["data"]["scheduleWebinar"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    // Whatever the timing, one webinar was scheduled: the one the retry names.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: Vec<String> =
        sqlx::query_scalar("select aggregate_id from events where event_type = 'Scheduled'")
            .fetch_all(&app.db.pool)
            .await
            .expect("ids");
    assert_eq!(ids, vec![id]);
    app.stop().await;
}
