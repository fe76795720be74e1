//! Isolation: one slow, dead or refusing gateway holds up only its own webinars; retries are
//! scheduled, never slept; a leader killed during a start call does not start a room twice; many
//! streams start at once.

use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use serde_json::{json, Value};
use webinar_infra::sim::sipmediagw::{Api, Fault};

use crate::harness::{
    captured_logs, events_of, register_live_gateway as register, sipmediagw, stream, test_settings,
    wait_until, webinar, KillableServer, TestApp, TestDb,
};

const SCHEDULE: &str =
    "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }";
const START: &str = "mutation($id: ID!) { startWebinar(id: $id) { joinUrl } }";

fn owner(app: &TestApp) -> String {
    app.token("owner", &["faculty"], &[], &[])
}

/// Tomorrow at `hour`:00 UTC.
fn tomorrow(hour: u32) -> String {
    let day = Utc::now().date_naive() + Days::new(1);
    day.and_hms_opt(hour, 0, 0)
        .expect("valid")
        .and_utc()
        .to_rfc3339()
}

async fn schedule(app: &TestApp, token: &str, title: &str, start: &str) -> String {
    let body = app
        .gql(
            Some(token),
            SCHEDULE,
            json!({ "input": { "title": title, "startAt": start, "durationMinutes": 60 } }),
        )
        .await;
    body["data"]["scheduleWebinar"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

async fn set_enabled(app: &TestApp, gateway: &str, enabled: bool) {
    let body = app
        .gql(
            Some(&app.admin()),
            "mutation($id: ID!, $on: Boolean!) { setGatewayEnabled(id: $id, enabled: $on) { id } }",
            json!({ "id": gateway, "on": enabled }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
}

async fn control(app: &TestApp, token: &str, mutation: &str, id: &str) -> Value {
    app.gql(
        Some(token),
        &format!("mutation($id: ID!) {{ {mutation}(id: $id) {{ status streamState }} }}"),
        json!({ "id": id }),
    )
    .await
}

async fn room_of(app: &TestApp, id: &str) -> String {
    app.state
        .webinars()
        .load(id.parse().expect("webinar id"))
        .await
        .expect("load")
        .room
        .expect("a room")
}

#[tokio::test]
async fn a_gateway_that_hangs_and_fails_holds_up_only_its_own_webinars() {
    let app = TestApp::spawn_with(|s| {
        s.stream_retry_ms = 200;
        s.stream_stop_attempts = 3;
    })
    .await;
    let (x, x_url, _x) = sipmediagw(Api::Legacy, Some("1234")).await;
    let x = x.with_slots(3);
    x.set_faults(&[
        Fault::StartLatency(Duration::from_secs(35)),
        Fault::StopError,
    ]);
    let (y, y_url, _y) = sipmediagw(Api::Legacy, Some("1234")).await;
    let y = y.with_slots(3);
    let gx = register(&app, "X", &x_url, Some("1234"), "LEGACY").await;
    let gy = register(&app, "Y", &y_url, Some("1234"), "LEGACY").await;
    let token = owner(&app);
    // Three webinars on each gateway, at the same three hours: neither can take the other's.
    set_enabled(&app, &gy, false).await;
    let mut on_x = Vec::new();
    for hour in [8, 9, 10] {
        on_x.push(schedule(&app, &token, &format!("X{hour}"), &tomorrow(hour)).await);
    }
    set_enabled(&app, &gy, true).await;
    set_enabled(&app, &gx, false).await;
    let mut on_y = Vec::new();
    for hour in [8, 9, 10] {
        on_y.push(schedule(&app, &token, &format!("Y{hour}"), &tomorrow(hour)).await);
    }
    set_enabled(&app, &gx, true).await;

    // All six started at once.
    let starts = on_x.iter().chain(&on_y).map(|id| {
        let (app, token) = (&app, token.clone());
        async move {
            let asked = Instant::now();
            let body = app.gql(Some(&token), START, json!({ "id": id })).await;
            assert!(body["errors"].is_null(), "{body}");
            asked
        }
    });
    let asked = futures::future::join_all(starts).await;
    for (id, asked) in on_y.iter().zip(&asked[3..]) {
        wait_until(&app, id, Duration::from_secs(10), stream("LIVE")).await;
        let took = asked.elapsed();
        eprintln!("a webinar on the healthy gateway: LIVE {took:?} after its start");
        assert!(
            took < Duration::from_secs(2),
            "a webinar on the healthy gateway went LIVE {took:?} after its start"
        );
    }
    let stopped = Instant::now();
    let body = control(&app, &token, "stopLive", &on_y[0]).await;
    assert!(body["errors"].is_null(), "{body}");
    wait_until(&app, &on_y[0], Duration::from_secs(10), stream("STOPPED")).await;
    eprintln!(
        "stopLive on the healthy gateway: STOPPED in {:?}",
        stopped.elapsed()
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "stopLive took {:?}",
        stopped.elapsed()
    );
    // …while the webinars on X are still failing.
    for id in &on_x {
        let state = webinar(&app, id).await;
        assert_eq!(state["streamState"], json!("STARTING"), "{state}");
    }
    assert_eq!(y.counters().successful_starts, 3);
    assert_eq!(x.counters().successful_starts, 0);
}

#[tokio::test]
async fn a_stop_that_keeps_failing_ends_in_stream_stop_failed_and_can_be_asked_again() {
    let app = TestApp::spawn_with(|s| {
        s.stream_retry_ms = 50;
        s.stream_stop_attempts = 3;
    })
    .await;
    let (sim, url, _sim) = sipmediagw(Api::Legacy, Some("1234")).await;
    register(&app, "Stops", &url, Some("1234"), "LEGACY").await;
    let token = owner(&app);
    let id = schedule(&app, &token, "Stops", &Utc::now().to_rfc3339()).await;
    app.gql(Some(&token), START, json!({ "id": id })).await;
    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
    let room = room_of(&app, &id).await;

    for (ask, then) in [("stopLive", "LIVE"), ("endWebinar", "ENDED")] {
        sim.set_faults(&[Fault::StopError]);
        let stops_before = sim.room(&room).stops;
        let body = control(&app, &token, ask, &id).await;
        assert!(body["errors"].is_null(), "{body}");
        let (failed, _) = wait_until(&app, &id, Duration::from_secs(10), |w| {
            w["streamError"]
                .as_str()
                .is_some_and(|e| e.contains("stopping the stream failed"))
                && w["streamState"] == json!("LIVE")
        })
        .await;
        assert_eq!(failed["status"], json!(then), "{failed}");
        assert_eq!(
            sim.room(&room).stops - stops_before,
            3,
            "the configured attempts"
        );
        let stop_failed: Vec<Value> = events_of(&app, &id)
            .await
            .into_iter()
            .filter(|(t, _)| t == "StreamStopFailed")
            .map(|(_, p)| p)
            .collect();
        assert_eq!(
            stop_failed
                .last()
                .map(|p| p["StreamStopFailed"]["attempts"].clone()),
            Some(json!(3))
        );
        assert!(sim.is_running(&room), "the stream still runs");

        // The gateway recovers: asking again stops it.
        sim.set_faults(&[]);
        let body = control(&app, &token, ask, &id).await;
        assert!(body["errors"].is_null(), "{body}");
        wait_until(&app, &id, Duration::from_secs(10), stream("STOPPED")).await;
        assert!(!sim.is_running(&room));
        if ask == "stopLive" {
            control(&app, &token, "restartLive", &id).await;
            wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
        }
    }
}

#[tokio::test]
async fn a_refused_token_is_not_tried_again_on_that_gateway_and_the_token_shows_nowhere() {
    let app = TestApp::spawn().await;
    let right = format!("right-{}", uuid::Uuid::new_v4().simple());
    let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    let (sim, url, _sim) = sipmediagw(Api::Legacy, Some(&right)).await;
    register(&app, "Refusing", &url, Some(&wrong), "LEGACY").await;
    let token = owner(&app);
    let id = schedule(&app, &token, "Refused", &Utc::now().to_rfc3339()).await;
    let body = app.gql(Some(&token), START, json!({ "id": id })).await;
    let (failed, _) = wait_until(&app, &id, Duration::from_secs(10), stream("FAILED")).await;
    let error = failed["streamError"].as_str().unwrap_or_default();
    assert!(error.contains("refused the token (401)"), "{failed}");
    let events = events_of(&app, &id).await;
    let failures: Vec<&Value> = events
        .iter()
        .filter(|(t, _)| t == "StreamFailed")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(failures.len(), 1, "not retried: {events:?}");
    assert_eq!(failures[0]["StreamFailed"]["final"], json!(true));
    // Asked once, refused, never started on it.
    assert_eq!(sim.counters().unauthorized, 1);
    assert_eq!(sim.counters().starts, 0);
    let logs = captured_logs();
    assert!(
        logs.lines()
            .any(|l| l.contains(&id) && l.contains("refused the token (401)")),
        "the log names the authentication failure"
    );
    let stored: Vec<String> =
        sqlx::query_scalar("select payload::text || metadata::text from events")
            .fetch_all(&app.db.pool)
            .await
            .expect("events");
    for place in [
        logs,
        stored.join("\n"),
        body.to_string(),
        failed.to_string(),
    ] {
        assert!(!place.contains(&wrong) && !place.contains(&right));
    }
}

#[tokio::test]
async fn a_stream_reactor_leader_killed_during_a_start_call_starts_the_room_exactly_once() {
    let db = TestDb::create().await;
    let (sim, url, _sim) = sipmediagw(Api::Legacy, Some("1234")).await;
    sim.set_faults(&[Fault::StartLatency(Duration::from_millis(1500))]);
    let (spare, spare_url, _spare) = sipmediagw(Api::Legacy, Some("1234")).await;
    let configure = |s: &mut webinar_infra::config::Settings| {
        // Real-sized pauses: a start's answer takes a while to be lost.
        s.stream_retry_ms = 1_000;
    };
    // The first instance takes every consumer's lock: it leads the stream reactor.
    let mut settings = test_settings(&db);
    configure(&mut settings);
    let leader = KillableServer::start(settings);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let app = TestApp::spawn_over(db, configure).await;
    let slow = register(&app, "Slow", &url, Some("1234"), "LEGACY").await;
    let token = owner(&app);
    let id = schedule(&app, &token, "Killed", &Utc::now().to_rfc3339()).await;
    // The spare gateway comes after, so that the webinar is on the slow one.
    register(&app, "Spare", &spare_url, Some("1234"), "LEGACY").await;
    app.gql(Some(&token), START, json!({ "id": id })).await;
    let room = room_of(&app, &id).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.room(&room).starts == 0 {
        assert!(Instant::now() < deadline, "the leader never called /start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    leader.kill();
    let killed = Instant::now();
    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
    let took = killed.elapsed();
    eprintln!("leader killed mid-start: LIVE {took:?} after the kill");
    assert!(
        took < Duration::from_secs(5),
        "LIVE {took:?} after the kill"
    );
    assert_eq!(sim.room(&room).successful_starts, 1, "started once");
    assert!(sim.is_running(&room));
    assert_eq!(spare.counters().starts, 0, "never failed over");
    assert_eq!(webinar(&app, &id).await["gateway"]["id"], json!(slow));
}

// The server, fifty simulators and the test share this runtime: give it both cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_streams_whose_starts_take_two_seconds_start_together() {
    // A start call may take its two seconds without timing out.
    let app = TestApp::spawn_with(|s| s.sipmediagw_timeout_seconds = 10).await;
    let mut sims = Vec::new();
    for n in 0..50 {
        let (sim, url, stop) = sipmediagw(Api::Legacy, Some("1234")).await;
        sim.set_faults(&[Fault::StartLatency(Duration::from_secs(2))]);
        register(&app, &format!("G{n}"), &url, Some("1234"), "LEGACY").await;
        sims.push((sim, stop));
    }
    let token = owner(&app);
    let start = Utc::now().to_rfc3339();
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(schedule(&app, &token, &format!("W{n}"), &start).await);
    }
    let began = Instant::now();
    let starts = ids.iter().map(|id| {
        let (app, token) = (&app, token.clone());
        async move { app.gql(Some(&token), START, json!({ "id": id })).await }
    });
    for body in futures::future::join_all(starts).await {
        assert!(body["errors"].is_null(), "{body}");
    }
    for id in &ids {
        wait_until(&app, id, Duration::from_secs(30), stream("LIVE")).await;
    }
    let took = began.elapsed();
    eprintln!("50 streams of 2 s each: all LIVE in {took:?}");
    assert!(took < Duration::from_secs(6), "all LIVE after {took:?}");
    let started: u32 = sims
        .iter()
        .map(|(s, _)| s.counters().successful_starts)
        .sum();
    assert_eq!(started, 50);
}
