//! Subscriptions over graphql-transport-ws, fed by the projectors' change notifications.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{receive, register_gateway, silent, subscribe, TestApp};

fn schedule_input(title: &str, restricted: bool) -> Value {
    let start = chrono::Utc::now() + chrono::Duration::days(3);
    json!({ "input": { "title": title, "startAt": start.to_rfc3339(), "durationMinutes": 60,
                       "restricted": restricted } })
}

const SCHEDULE: &str =
    "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }";

#[tokio::test]
async fn live_event_changes_reach_subscribers_who_may_see_them_and_only_them() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "s1", None).await;
    register_gateway(&app, "s2", None).await;
    let query = "subscription { liveEventChanged { id title status restricted } }";
    let mut anonymous = subscribe(&app, None, query, json!({})).await;
    let student = app.token("stu", &["student"], &[], &[]);
    let mut signed_in = subscribe(&app, Some(&student), query, json!({})).await;
    // Let both subscriptions register before anything changes.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let owner = app.token("prof", &["faculty"], &[], &[]);
    let body = app
        .gql(Some(&owner), SCHEDULE, schedule_input("Hidden", true))
        .await;
    let hidden = body["data"]["scheduleWebinar"]["id"]
        .as_str()
        .expect("scheduled")
        .to_owned();
    let next = receive(&mut signed_in).await;
    assert_eq!(next["type"], json!("next"), "{next}");
    assert_eq!(
        next["payload"]["data"]["liveEventChanged"]["id"],
        json!(hidden)
    );
    assert!(
        silent(&mut anonymous, Duration::from_millis(500)).await,
        "an anonymous subscriber must not hear of a restricted event"
    );

    let body = app
        .gql(Some(&owner), SCHEDULE, schedule_input("Open", false))
        .await;
    let open = body["data"]["scheduleWebinar"]["id"]
        .as_str()
        .expect("scheduled")
        .to_owned();
    let next = receive(&mut anonymous).await;
    assert_eq!(
        next["payload"]["data"]["liveEventChanged"]["id"],
        json!(open),
        "{next}"
    );
    assert_eq!(
        next["payload"]["data"]["liveEventChanged"]["status"],
        json!("UPCOMING")
    );
}

#[tokio::test]
async fn webinar_changed_follows_one_webinar_for_its_hosts() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "w", None).await;
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let body = app
        .gql(Some(&owner), SCHEDULE, schedule_input("Watched", false))
        .await;
    let id = body["data"]["scheduleWebinar"]["id"]
        .as_str()
        .expect("scheduled")
        .to_owned();

    let query = "subscription($id: ID!) { webinarChanged(id: $id) { id title status } }";
    let mut socket = subscribe(&app, Some(&owner), query, json!({ "id": id })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.gql(
        Some(&owner),
        "mutation($id: ID!) { updateWebinar(id: $id, input: { title: \"Renamed\" }) { id } }",
        json!({ "id": id }),
    )
    .await;
    // The scheduling's own notification may still be on its way when the subscription starts:
    // a subscriber hears of the webinar as it is at each change, the rename among them.
    let mut next = receive(&mut socket).await;
    for _ in 0..3 {
        if next["payload"]["data"]["webinarChanged"]["title"] != json!("Watched") {
            break;
        }
        next = receive(&mut socket).await;
    }
    assert_eq!(
        next["payload"]["data"]["webinarChanged"]["title"],
        json!("Renamed"),
        "{next}"
    );

    // Someone else may not follow it.
    let stranger = app.token("other", &["faculty"], &[], &[]);
    let mut refused = subscribe(&app, Some(&stranger), query, json!({ "id": id })).await;
    let answer = receive(&mut refused).await;
    assert_eq!(answer["payload"]["data"], json!(null), "{answer}");
    assert_eq!(
        answer["payload"]["errors"][0]["extensions"]["code"],
        json!("NOT_FOUND"),
        "{answer}"
    );
}

/// A change is read once and judged per subscriber in memory: hundreds of subscribers, the public
/// ones all told, the restricted change told to none of the anonymous ones.
#[tokio::test]
async fn three_hundred_subscribers_hear_of_a_change_each_as_the_policy_says() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "many-1", None).await;
    register_gateway(&app, "many-2", None).await;
    let query = "subscription { liveEventChanged { id title } }";
    let mut sockets = Vec::new();
    for _ in 0..300 {
        sockets.push(subscribe(&app, None, query, json!({})).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let body = app
        .gql(Some(&owner), SCHEDULE, schedule_input("Closed", true))
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let body = app
        .gql(Some(&owner), SCHEDULE, schedule_input("For all", false))
        .await;
    let open = body["data"]["scheduleWebinar"]["id"].clone();
    assert!(open.is_string(), "{body}");
    let started = std::time::Instant::now();
    let heard = futures::future::join_all(sockets.iter_mut().map(|socket| async move {
        match tokio::time::timeout(Duration::from_secs(10), receive(socket)).await {
            Ok(message) => message["payload"]["data"]["liveEventChanged"]["id"].clone(),
            Err(_) => Value::Null,
        }
    }))
    .await;
    let told = heard.iter().filter(|id| **id == open).count();
    assert_eq!(
        told,
        heard.len(),
        "only the public event, to everyone: {heard:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    app.stop().await;
}

/// A subscriber that stops reading is disconnected (4429) once a send to it has waited
/// `ws_send_timeout_ms`; another subscriber meanwhile hears of every change, without delay.
#[tokio::test]
async fn a_subscriber_that_does_not_read_is_dropped_without_delaying_others() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let app = TestApp::spawn_with(|s| s.ws_send_timeout_ms = 300).await;
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let mut ids = Vec::new();
    for i in 0..4 {
        register_gateway(&app, &format!("slow-{i}"), None).await;
        let mut input = schedule_input(&format!("Big {i}"), false);
        // Big messages fill the socket buffers in a few hundred changes.
        input["input"]["description"] = json!("x".repeat(9_000));
        let body = app.gql(Some(&owner), SCHEDULE, input).await;
        ids.push(
            body["data"]["scheduleWebinar"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let query = "subscription { liveEventChanged { id title description } }";
    const DROPPED: &str = "a subscriber that does not read was disconnected";

    // The slow client: a tiny receive buffer, and it never reads after subscribing.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(app.address).await.expect("connect");
    let mut request = format!("ws://{}/ws", app.address)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut slow, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("handshake");
    crate::harness::send(&mut slow, json!({"type": "connection_init", "payload": {}})).await;
    assert_eq!(receive(&mut slow).await["type"], json!("connection_ack"));
    crate::harness::send(
        &mut slow,
        json!({"id": "1", "type": "subscribe", "payload": {"query": query}}),
    )
    .await;

    // The reader hears of every change.
    let mut fast = subscribe(&app, None, query, json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = fast.next().await {
            if let Message::Text(text) = message {
                if text.contains("liveEventChanged") {
                    let _ = heard_tx.send(std::time::Instant::now());
                }
            }
        }
    });

    const UPDATE: &str = "mutation($id: ID!, $input: UpdateWebinarInput!) {
        updateWebinar(id: $id, input: $input) { id } }";
    let started = std::time::Instant::now();
    let mut changes = 0;
    let mut slowest = Duration::ZERO;
    let dropped = loop {
        let sent = std::time::Instant::now();
        let id = &ids[changes % ids.len()];
        let body = app
            .gql(
                Some(&owner),
                UPDATE,
                json!({"id": id, "input": {"title": format!("Change {changes}")}}),
            )
            .await;
        assert!(body["errors"].is_null(), "{body}");
        changes += 1;
        let at = tokio::time::timeout(Duration::from_secs(5), heard.recv())
            .await
            .expect("the reader hears of each change")
            .expect("reader alive");
        slowest = slowest.max(at.saturating_duration_since(sent));
        // Is the slow client disconnected yet? (Without reading from it: that would drain it.)
        if crate::harness::captured_logs().contains(DROPPED) {
            break changes;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not disconnected after {changes} changes"
        );
    };
    assert!(dropped > 0);
    // Reading now, the slow client finds what was buffered, then the close frame.
    let code = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match slow.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the socket ends");
    eprintln!("the slow subscriber was dropped after {dropped} changes (close {code:?}); the reader waited at most {slowest:?}");
    assert!(matches!(code, Some(4429) | None), "{code:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "the reader waited {slowest:?} for a change"
    );
    reader.abort();
    app.stop().await;
}
