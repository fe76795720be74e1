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
    let next = receive(&mut socket).await;
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
