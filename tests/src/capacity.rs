//! Capacity warnings: the `capacity` report, the `webinar_gateway_capacity_shortfall` gauge and
//! the `CapacityWatch` events; a warning never stops a booking.

use std::time::Duration;

use chrono::{DateTime, Days, Utc};
use serde_json::{json, Value};
use tokio::time::Instant;
use webinar_domain::capacity::CapacityWatchId;

use crate::harness::{error_code, events_of, register_gateway, TestApp};

const SCHEDULE: &str =
    "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id gateway { id } } }";

const CAPACITY: &str = "query($from: DateTime!, $to: DateTime!) {
    capacity(from: $from, to: $to) {
      from to enabledGateways margin
      shortfalls { from to booked available margin missing webinars }
      unavailableGateways { gateway { id enabled } reason detail bookedWebinars } } }";

/// `days` from today at `hour`:00 UTC.
fn at(days: u64, hour: i64) -> DateTime<Utc> {
    let day = Utc::now().date_naive() + Days::new(days);
    day.and_hms_opt(0, 0, 0).expect("valid").and_utc() + chrono::Duration::hours(hour)
}

/// Schedules a webinar as `owner`; returns its id and its gateway's.
async fn schedule(
    app: &TestApp,
    owner: &str,
    title: &str,
    start: DateTime<Utc>,
) -> (String, String) {
    let body = app
        .gql(
            Some(owner),
            SCHEDULE,
            json!({ "input": { "title": title, "startAt": start.to_rfc3339(), "durationMinutes": 60 } }),
        )
        .await;
    assert!(body["errors"].is_null(), "scheduling {title}: {body}");
    let webinar = &body["data"]["scheduleWebinar"];
    (
        webinar["id"].as_str().expect("an id").to_owned(),
        webinar["gateway"]["id"]
            .as_str()
            .expect("a gateway")
            .to_owned(),
    )
}

async fn capacity(app: &TestApp, from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    let body = app
        .gql(
            Some(&app.admin()),
            CAPACITY,
            json!({ "from": from.to_rfc3339(), "to": to.to_rfc3339() }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["capacity"].clone()
}

/// The default site's gauge on `/metrics`, if it is there.
async fn gauge(app: &TestApp) -> Option<f64> {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("read /metrics");
    text.lines()
        .find_map(|line| line.strip_prefix("webinar_gateway_capacity_shortfall{site=\"default\"} "))
        .and_then(|value| value.trim().parse().ok())
}

/// The capacity watch's events, once `done` holds for them (or fails after 10 s).
async fn watch_events(
    app: &TestApp,
    done: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let id = CapacityWatchId::ALL_GATEWAYS.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = events_of(app, &id).await;
        if done(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "capacity watch: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sorted(ids: &[&str]) -> Value {
    let mut ids: Vec<&str> = ids.to_vec();
    ids.sort_unstable();
    json!(ids)
}

#[tokio::test]
async fn three_webinars_on_two_gateways_are_reported_counted_and_recorded_and_scheduling_goes_on() {
    let app = TestApp::spawn_with(|s| s.capacity_check_ms = 200).await;
    // Administrators see which gateway a webinar holds (its owner sees only the name).
    let teacher = app.admin();
    for suffix in ["cap-a", "cap-b", "cap-c"] {
        register_gateway(&app, suffix, None).await;
    }
    // Three webinars at once tomorrow: each takes one of the three gateways.
    let (start, end) = (at(1, 10), at(1, 11));
    let mut webinars = Vec::new();
    for title in ["Algebra", "Biology", "Chemistry"] {
        webinars.push(schedule(&app, &teacher, title, start).await);
    }
    let (from, to) = (at(1, 0), at(2, 0));
    let report = capacity(&app, from, to).await;
    assert_eq!(report["enabledGateways"], json!(3), "{report}");
    assert_eq!(report["shortfalls"], json!([]), "{report}");
    assert_eq!(report["unavailableGateways"], json!([]), "{report}");

    // A gateway goes into maintenance: its webinar stays booked on it, three on two gateways.
    let (on_leave, leaving) = webinars[2].clone();
    let body = app
        .gql(
            Some(&app.admin()),
            "mutation($id: ID!) { setGatewayEnabled(id: $id, enabled: false, reason: \"maintenance\") { enabled } }",
            json!({ "id": leaving }),
        )
        .await;
    assert_eq!(
        body["data"]["setGatewayEnabled"]["enabled"],
        json!(false),
        "{body}"
    );

    let report = capacity(&app, from, to).await;
    let ids: Vec<&str> = webinars.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(report["enabledGateways"], json!(2), "{report}");
    assert_eq!(report["margin"], json!(0), "{report}");
    let shortfalls = report["shortfalls"].as_array().expect("a list");
    assert_eq!(shortfalls.len(), 1, "{report}");
    let shortfall = &shortfalls[0];
    assert_eq!(
        (
            shortfall["booked"].clone(),
            shortfall["available"].clone(),
            shortfall["missing"].clone()
        ),
        (json!(3), json!(2), json!(1)),
        "{report}"
    );
    let instant = |v: &Value| {
        v.as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    };
    assert_eq!(instant(&shortfall["from"]), Some(start.into()), "{report}");
    assert_eq!(instant(&shortfall["to"]), Some(end.into()), "{report}");
    assert_eq!(shortfall["webinars"], sorted(&ids), "{report}");
    assert_eq!(
        report["unavailableGateways"],
        json!([{ "gateway": { "id": leaving, "enabled": false }, "reason": "DISABLED",
                 "detail": "maintenance", "bookedWebinars": [on_leave] }]),
        "{report}"
    );
    // A window that does not reach the slot sees nothing wrong; one that cuts it, the cut part.
    let before = capacity(&app, at(1, 0), start).await;
    assert_eq!(before["shortfalls"], json!([]), "{before}");
    let cut = capacity(&app, at(1, 0), start + chrono::Duration::minutes(30)).await;
    assert_eq!(
        instant(&cut["shortfalls"][0]["to"]),
        Some((start + chrono::Duration::minutes(30)).into()),
        "{cut}"
    );

    // The gauge shows the missing gateway (the webinars are within the monitor's 7 days).
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge(&app).await != Some(1.0) {
        assert!(Instant::now() < deadline, "gauge: {:?}", gauge(&app).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The log says so, once.
    let appeared = |events: &[(String, Value)]| {
        events
            .iter()
            .filter(|(kind, _)| kind == "CapacityShortfallAppeared")
            .count()
    };
    let events = watch_events(&app, |events| appeared(events) == 1).await;
    let payload = &events[0].1["CapacityShortfallAppeared"];
    assert_eq!(
        (
            payload["booked"].clone(),
            payload["available"].clone(),
            payload["margin"].clone()
        ),
        (json!(3), json!(2), json!(0)),
        "{events:?}"
    );
    assert_eq!(instant(&payload["from"]), Some(start.into()), "{events:?}");
    // Many more looks later, nothing more was recorded.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        events_of(&app, &CapacityWatchId::ALL_GATEWAYS.to_string())
            .await
            .len(),
        1
    );

    // Scheduling still works: another webinar, at another time, is booked.
    let (_, gateway) = schedule(&app, &teacher, "Drama", at(2, 14)).await;
    assert_ne!(gateway, leaving);
    // In the short slot every enabled gateway is taken: that refusal is the scheduler's, as
    // before, not the warning's.
    let body = app
        .gql(
            Some(&teacher),
            SCHEDULE,
            json!({ "input": { "title": "Economics", "startAt": start.to_rfc3339(), "durationMinutes": 60 } }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NO_GATEWAY_AVAILABLE"), "{body}");

    // The gateway is back: the shortfall clears, in the report and in the log.
    let body = app
        .gql(
            Some(&app.admin()),
            "mutation($id: ID!) { setGatewayEnabled(id: $id, enabled: true) { enabled } }",
            json!({ "id": leaving }),
        )
        .await;
    assert_eq!(
        body["data"]["setGatewayEnabled"]["enabled"],
        json!(true),
        "{body}"
    );
    let report = capacity(&app, from, to).await;
    assert_eq!(report["shortfalls"], json!([]), "{report}");
    let events = watch_events(&app, |events| events.len() == 2).await;
    assert_eq!(events[1].0, "CapacityShortfallCleared", "{events:?}");
    assert_eq!(
        events[1].1["CapacityShortfallCleared"]["reason"],
        json!("RESOLVED"),
        "{events:?}"
    );
    // Auditors see the watch's history like any other.
    let auditor = app.token("aud-cap", &[], &[], &["auditor"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = app
            .gql(
                Some(&auditor),
                "query($f: AuditFilter) { auditLog(filter: $f) { edges { node { eventType actorId } } } }",
                json!({ "f": { "aggregateId": CapacityWatchId::ALL_GATEWAYS.to_string() } }),
            )
            .await;
        let edges = body["data"]["auditLog"]["edges"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if edges.len() == 2 {
            assert_eq!(
                edges[0]["node"]["eventType"],
                json!("CapacityShortfallAppeared"),
                "{body}"
            );
            assert_eq!(
                edges[0]["node"]["actorId"],
                json!("system:capacity-monitor"),
                "{body}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_margin_warns_without_refusing_the_booking_that_uses_the_last_spare() {
    let app = TestApp::spawn_with(|s| s.capacity_margin = 1).await;
    let teacher = app.admin();
    register_gateway(&app, "margin-a", None).await;
    register_gateway(&app, "margin-b", None).await;
    // Beyond the monitor's 7 days: the report sees it, the process-wide gauge stays out of it.
    let start = at(20, 9);
    let (first, _) = schedule(&app, &teacher, "First", start).await;
    let report = capacity(&app, at(20, 0), at(21, 0)).await;
    assert_eq!(
        report["shortfalls"],
        json!([]),
        "one webinar and a spare: {report}"
    );
    // The second takes the spare: warned about, and booked all the same.
    let (second, _) = schedule(
        &app,
        &teacher,
        "Second",
        start + chrono::Duration::minutes(30),
    )
    .await;
    let report = capacity(&app, at(20, 0), at(21, 0)).await;
    assert_eq!(report["margin"], json!(1), "{report}");
    let shortfalls = report["shortfalls"].as_array().expect("a list");
    assert_eq!(shortfalls.len(), 1, "{report}");
    assert_eq!(
        (
            shortfalls[0]["booked"].clone(),
            shortfalls[0]["available"].clone(),
            shortfalls[0]["margin"].clone(),
            shortfalls[0]["missing"].clone()
        ),
        (json!(2), json!(2), json!(1), json!(1)),
        "{report}"
    );
    assert_eq!(
        shortfalls[0]["webinars"],
        sorted(&[&first, &second]),
        "{report}"
    );
}

#[tokio::test]
async fn only_administrators_ask_about_capacity_and_only_over_a_sensible_window() {
    let app = TestApp::spawn().await;
    let vars = json!({ "from": at(1, 0).to_rfc3339(), "to": at(2, 0).to_rfc3339() });
    let body = app.gql(None, CAPACITY, vars.clone()).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
    let teacher = app.token("prof-nosy", &["faculty"], &[], &[]);
    let body = app.gql(Some(&teacher), CAPACITY, vars).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    for (from, to) in [
        (at(2, 0), at(1, 0)),
        (at(1, 0), at(1, 0)),
        (at(1, 0), at(368, 0)),
    ] {
        let body = app
            .gql(
                Some(&app.admin()),
                CAPACITY,
                json!({ "from": from.to_rfc3339(), "to": to.to_rfc3339() }),
            )
            .await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["field"],
            json!("to"),
            "{body}"
        );
    }
    let year = capacity(&app, at(0, 0), at(366, 0)).await;
    assert_eq!(year["shortfalls"], json!([]), "{year}");
}

#[tokio::test]
async fn a_gateway_whose_live_stream_failed_or_cannot_be_watched_is_reported_unhealthy() {
    let app = TestApp::spawn().await;
    let gateway = register_gateway(&app, "ailing", None).await;
    let start = Utc::now() + chrono::Duration::minutes(5);
    let (webinar, _) = schedule(&app, &app.admin(), "Ailing", start).await;
    let window = (Utc::now(), Utc::now() + chrono::Duration::days(1));
    assert_eq!(
        capacity(&app, window.0, window.1).await["unavailableGateways"],
        json!([])
    );
    // What the stream reactor and the health watcher would have projected; written here directly,
    // as streaming for real is their tests' business.
    let project = |state: &'static str, health: &'static str| {
        sqlx::query(
            "update webinars set status = 'LIVE', stream_state = $2, stream_error = $3,
                    stream_health = $4, stream_health_detail = $5
              where webinar_id = $1",
        )
        .bind(webinar.parse::<uuid::Uuid>().expect("a uuid"))
        .bind(state)
        .bind((state == "FAILED").then_some("SIPMediaGW answered 500"))
        .bind(health)
        .bind((health != "UNKNOWN").then_some("the playlist stopped at 41"))
        .execute(&app.db.pool)
    };
    project("LIVE", "STALLED").await.expect("project");
    let report = capacity(&app, window.0, window.1).await;
    assert_eq!(
        report["unavailableGateways"],
        json!([{ "gateway": { "id": gateway, "enabled": true }, "reason": "STREAM_UNHEALTHY",
                 "detail": "STALLED: the playlist stopped at 41", "bookedWebinars": [webinar] }]),
        "{report}"
    );
    // Unhealthy still counts as enabled: one webinar on one gateway is no shortfall.
    assert_eq!(report["enabledGateways"], json!(1), "{report}");
    assert_eq!(report["shortfalls"], json!([]), "{report}");
    project("FAILED", "UNKNOWN").await.expect("project");
    let report = capacity(&app, window.0, window.1).await;
    assert_eq!(
        (
            report["unavailableGateways"][0]["reason"].clone(),
            report["unavailableGateways"][0]["detail"].clone()
        ),
        (json!("STREAM_FAILED"), json!("SIPMediaGW answered 500")),
        "{report}"
    );
}
