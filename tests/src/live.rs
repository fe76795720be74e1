//! Going live for real, end to end: the server, PostgreSQL, and the BBB and SIPMediaGW simulators
//! over HTTP on loopback.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use webinar_infra::sim::sipmediagw::{Api, Fault};

use crate::harness::{
    error_code, events_of, register_live_gateway as register, sipmediagw, stream, wait_until,
    webinar, TestApp,
};

const OWNER: (&str, &[&str]) = ("owner", &["faculty"]);

fn owner(app: &TestApp) -> String {
    app.token(OWNER.0, OWNER.1, &[], &[])
}

/// Schedules a webinar starting now and starts it as its owner; returns (id, joinUrl).
async fn schedule_and_start(app: &TestApp, chat: bool) -> (String, String) {
    let input = json!({ "title": "Live lecture", "startAt": Utc::now().to_rfc3339(),
        "durationMinutes": 60, "enableChat": chat });
    crate::harness::schedule_and_start(app, &owner(app), input).await
}

#[tokio::test]
async fn the_whole_lifecycle_from_schedule_to_live_to_ended() {
    let app = TestApp::spawn().await;
    let (sim, url, _stop) = sipmediagw(Api::Legacy, Some("s3cret-token")).await;
    register(&app, "amphi", &url, Some("s3cret-token"), "LEGACY").await;
    let (id, join) = schedule_and_start(&app, true).await;

    // The moderator join URL is one BBB accepts (the simulator verifies the checksum).
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(&join)
        .send()
        .await
        .expect("GET join");
    assert_eq!(
        redirect.status().as_u16(),
        303,
        "BBB redirects to its client"
    );
    assert_eq!(app.bbb.counters().checksum_errors, 0);

    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
    let started = sim.counters().started_with;
    assert_eq!(started.len(), 1);
    let (room, domain, rtmp) = &started[0];
    assert!(
        room.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{room}"
    );
    assert_eq!(domain, &format!("{}/live/join", app.address));
    assert_eq!(rtmp, "rtmp://live.example.org/live/amphi");

    // The join page the SIPMediaGW browser opens, and its form's redirect into BBB as a viewer.
    let page = app
        .http
        .get(app.url(&format!("/live/join/{room}")))
        .send()
        .await
        .expect("join page");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("id=\"joinFormName\"") && html.contains("id=\"id_name\""),
        "{html}"
    );
    let go = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url(&format!("/live/join/{room}/go?name=streaming")))
        .send()
        .await
        .expect("submit");
    assert_eq!(go.status().as_u16(), 302);
    let viewer = go.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(
        viewer.contains("role=VIEWER") && viewer.contains("fullName=streaming"),
        "{viewer}"
    );
    let unknown = app
        .http
        .get(app.url("/live/join/nosuchroom"))
        .send()
        .await
        .expect("404 page");
    assert_eq!(unknown.status().as_u16(), 404);

    // A chat message reaches the meeting through SIPMediaGW.
    let viewer_token = app.token("student", &["student"], &[], &[]);
    let post = "mutation($id: ID!, $text: String!) { postChatMessage(webinarId: $id, text: $text) { id status } }";
    let body = app
        .gql(
            Some(&viewer_token),
            post,
            json!({ "id": id, "text": "What about NP?" }),
        )
        .await;
    assert_eq!(
        body["data"]["postChatMessage"]["status"],
        json!("POSTED"),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.counters().chats.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the chat message never reached SIPMediaGW"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        sim.counters().chats,
        vec![(room.clone(), "(User student) What about NP?".to_owned())]
    );

    // Chat off: posts are refused, and the stream's chat panel is toggled.
    let body = app
        .gql(Some(&owner(&app)), "mutation($id: ID!) { updateWebinar(id: $id, input: { enableChat: false }) { enableChat } }", json!({ "id": id }))
        .await;
    assert_eq!(
        body["data"]["updateWebinar"]["enableChat"],
        json!(false),
        "{body}"
    );
    let body = app
        .gql(
            Some(&viewer_token),
            post,
            json!({ "id": id, "text": "Still there?" }),
        )
        .await;
    assert_eq!(error_code(&body), Some("INVALID_STATE"), "{body}");

    // stopLive answers at once with STOPPING, without waiting for SIPMediaGW (slow to stop here);
    // the stream then reaches STOPPED.
    sim.set_faults(&[Fault::Latency(Duration::from_millis(500))]);
    let clock = Instant::now();
    let body = app
        .gql(
            Some(&owner(&app)),
            "mutation($id: ID!) { stopLive(id: $id) { streamState } }",
            json!({ "id": id }),
        )
        .await;
    let answered = clock.elapsed();
    assert!(
        answered < Duration::from_millis(500),
        "stopLive waited for SIPMediaGW: {answered:?}"
    );
    assert_eq!(
        body["data"]["stopLive"]["streamState"],
        json!("STOPPING"),
        "{body}"
    );
    let (_, stopped) = wait_until(&app, &id, Duration::from_secs(10), stream("STOPPED")).await;
    eprintln!(
        "stopLive answered in {answered:?}; STOPPED {:?} later",
        stopped
    );
    assert!(sim.running().is_none(), "SIPMediaGW stopped the stream");

    let body = app
        .gql(
            Some(&owner(&app)),
            "mutation($id: ID!) { restartLive(id: $id) { streamState } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        body["data"]["restartLive"]["streamState"],
        json!("STARTING"),
        "{body}"
    );
    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
    assert_eq!(
        sim.counters().toggles,
        1,
        "one toggle for disabling the chat while live"
    );

    // BBB ends the meeting and calls back: the webinar ends and the stream stops within 5 s.
    let meeting = format!("webinar-{id}");
    let clock = Instant::now();
    assert!(
        app.bbb.end_from_bbb(&meeting).await,
        "the meeting existed in BBB"
    );
    let (state, took) = wait_until(&app, &id, Duration::from_secs(5), |w| {
        w["status"] == json!("ENDED") && w["streamState"] == json!("STOPPED")
    })
    .await;
    eprintln!(
        "end callback to ENDED and STOPPED: {took:?} (callback sent {:?} ago)",
        clock.elapsed()
    );
    assert_eq!(state["status"], json!("ENDED"));
    assert!(sim.running().is_none());
    let ended = events_of(&app, &id).await;
    assert!(
        ended
            .iter()
            .any(|(t, p)| t == "MeetingEnded"
                && p["MeetingEnded"]["reason"] == json!("BBB_CALLBACK")),
        "{ended:?}"
    );
    // A forged callback is refused.
    let forged = app
        .http
        .get(app.url(&format!("/callbacks/bbb/end/{id}?sig=00")))
        .send()
        .await
        .expect("callback");
    assert_eq!(forged.status().as_u16(), 403);
}

#[tokio::test]
async fn with_the_callback_lost_polling_ends_the_webinar() {
    let app = TestApp::spawn().await;
    let (_sim, url, _stop) = sipmediagw(Api::Gateway, None).await;
    register(&app, "poll", &url, None, "GATEWAY").await;
    let (id, _) = schedule_and_start(&app, false).await;
    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
    app.bbb.set_callbacks(false);
    let clock = Instant::now();
    assert!(app.bbb.end_from_bbb(&format!("webinar-{id}")).await);
    let poll = app.state.settings().meeting_poll_ms;
    let limit = Duration::from_millis(2 * poll) + Duration::from_secs(5);
    wait_until(&app, &id, limit, |w| w["status"] == json!("ENDED")).await;
    eprintln!(
        "lost callback: ENDED after {:?} (poll every {poll} ms)",
        clock.elapsed()
    );
    let events = events_of(&app, &id).await;
    assert!(
        events
            .iter()
            .any(|(t, p)| t == "MeetingEnded" && p["MeetingEnded"]["reason"] == json!("POLL")),
        "{events:?}"
    );
    assert!(app.bbb.counters().callbacks.is_empty());
}

/// Each SIPMediaGW fault: StreamFailed with its reason, retries, then fail-over to a working
/// gateway that goes LIVE.
#[tokio::test]
async fn every_sipmediagw_fault_fails_retries_and_fails_over_to_a_working_gateway() {
    let faults: Vec<(&str, Option<Fault>, &str)> = vec![
        ("down", None, "unreachable"),
        (
            "timeout",
            Some(Fault::Latency(Duration::from_secs(4))),
            "timed out",
        ),
        ("401", None, "401"),
        ("html500", Some(Fault::Html500), "error 500"),
        ("busy", Some(Fault::Busy), "busy"),
        ("launch", Some(Fault::LaunchFailed), "failed to launch"),
    ];
    for (name, fault, reason) in faults {
        let app = TestApp::spawn().await;
        let right = format!("right-{}", uuid::Uuid::new_v4().simple());
        let (bad, bad_url, stop_bad) = sipmediagw(Api::Legacy, Some(&right)).await;
        let bad_url = if name == "down" {
            stop_bad.cancel();
            tokio::time::sleep(Duration::from_millis(50)).await;
            bad_url
        } else {
            bad_url
        };
        if let Some(fault) = fault {
            bad.set_faults(&[fault]);
        }
        let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());
        let token = if name == "401" {
            wrong.as_str()
        } else {
            right.as_str()
        };
        let first = register(
            &app,
            &format!("bad-{name}"),
            &bad_url,
            Some(token),
            "LEGACY",
        )
        .await;
        let (id, _) = schedule_and_start(&app, false).await;
        assert_eq!(
            webinar(&app, &id).await["gateway"]["id"],
            json!(first),
            "scheduled on the faulty gateway"
        );

        // With no other gateway: FAILED, final, never stuck in STARTING.
        let (failed, _) = wait_until(&app, &id, Duration::from_secs(30), stream("FAILED")).await;
        let error = failed["streamError"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains(reason), "{name}: {error}");
        let events = events_of(&app, &id).await;
        let failures: Vec<&Value> = events
            .iter()
            .filter(|(t, _)| t == "StreamFailed")
            .map(|(_, p)| p)
            .collect();
        // A refused token will not change by itself: not retried on that gateway.
        let attempts = if name == "401" { 1 } else { 3 };
        assert_eq!(failures.len(), attempts, "{name}: {attempts} attempt(s)");
        assert_eq!(failures[attempts - 1]["StreamFailed"]["final"], json!(true));
        assert!(
            !error.contains(&right) && !error.contains("<html"),
            "no token, no page in the reason"
        );
        let logs = crate::harness::captured_logs();
        assert!(
            !logs.contains(&right) && !logs.contains(&wrong),
            "{name}: a token reached the logs"
        );
        let leaked: i64 = sqlx::query_scalar(
            "select count(*) from events where payload::text like '%' || $1 || '%'",
        )
        .bind(&right)
        .fetch_one(&app.db.pool)
        .await
        .expect("search events");
        assert_eq!(leaked, 0, "{name}: a token reached the event log");

        // A working gateway appears: restart fails over to it after the attempts and goes LIVE.
        let (good, good_url, _stop_good) = sipmediagw(Api::Legacy, Some("ok")).await;
        let second = register(
            &app,
            &format!("good-{name}"),
            &good_url,
            Some("ok"),
            "LEGACY",
        )
        .await;
        app.gql(
            Some(&owner(&app)),
            "mutation($id: ID!) { restartLive(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
        let (live, _) = wait_until(&app, &id, Duration::from_secs(30), stream("LIVE")).await;
        assert_eq!(live["gateway"]["id"], json!(second), "{name}: failed over");
        assert_eq!(good.counters().successful_starts, 1);
        let events = events_of(&app, &id).await;
        assert!(
            events.iter().any(|(t, _)| t == "GatewayReassigned"),
            "{name}: {events:?}"
        );
        // Only the new gateway holds the webinar, once the old one is freed.
        let deadline = Instant::now() + Duration::from_secs(10);
        let reservations = loop {
            let held: Vec<(uuid::Uuid,)> = sqlx::query_as(
                "select gateway_id from gateway_reservations where webinar_id = $1::uuid",
            )
            .bind(&id)
            .fetch_all(&app.db.pool)
            .await
            .expect("reservations");
            if held.len() == 1 || Instant::now() > deadline {
                break held;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(reservations.len(), 1, "{name}: {reservations:?}");
        assert_eq!(reservations[0].0.to_string(), second);
    }
}

#[tokio::test]
async fn a_restart_right_after_stream_start_requested_starts_exactly_once() {
    // The first server commits StreamStartRequested and dies before any reactor acts on it.
    let app = TestApp::spawn_with(|settings| settings.run_reactors = false).await;
    let (sim, url, _stop) = sipmediagw(Api::Legacy, Some("t")).await;
    register(&app, "crash", &url, Some("t"), "LEGACY").await;
    let (id, _) = schedule_and_start(&app, false).await;
    assert_eq!(webinar(&app, &id).await["streamState"], json!("STARTING"));
    assert_eq!(sim.counters().starts, 0);

    let app = app.restart(|_| {}).await;
    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
    assert_eq!(
        sim.counters().successful_starts,
        1,
        "exactly one successful start"
    );

    // And a second restart changes nothing.
    let app = app.restart(|_| {}).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.counters().successful_starts, 1);
    assert_eq!(webinar(&app, &id).await["streamState"], json!("LIVE"));
}

#[tokio::test]
async fn a_stream_started_but_not_recorded_before_a_crash_is_not_started_again() {
    let app = TestApp::spawn_with(|settings| settings.run_reactors = false).await;
    let (sim, url, _stop) = sipmediagw(Api::Legacy, Some("t")).await;
    register(&app, "half", &url, Some("t"), "LEGACY").await;
    let (id, _) = schedule_and_start(&app, false).await;
    let room: String = sqlx::query_scalar("select room from webinars where webinar_id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.db.pool)
        .await
        .expect("room");
    // The reactor's start reached SIPMediaGW, then the process died before recording it.
    let client = webinar_infra::sipmediagw::SipMediaGwClient::new(
        Duration::from_secs(2),
        crate::harness::loopback_gateways(),
    )
    .expect("client");
    let target = webinar_infra::sipmediagw::SipTarget {
        base_url: url.clone(),
        api: webinar_domain::gateway::GatewayApi::Legacy,
        token: Some(secrecy::SecretString::from("t".to_owned())),
        browsing_name: "bigbluebutton".to_owned(),
    };
    client
        .start(
            &target,
            webinar_domain::ports::StreamRef::new(&room, None),
            "d",
            "rtmp://x/y",
        )
        .await
        .expect("start");
    let app = app.restart(|_| {}).await;
    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
    assert_eq!(
        sim.counters().successful_starts,
        1,
        "not started a second time"
    );
}

#[tokio::test]
async fn chat_messages_are_relayed_exactly_once_across_interruptions() {
    let app = TestApp::spawn().await;
    let (sim, url, _stop) = sipmediagw(Api::Legacy, Some("t")).await;
    register(&app, "chat", &url, Some("t"), "LEGACY").await;
    let (id, _) = schedule_and_start(&app, true).await;
    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;

    // The relay is down while people post.
    let app = app.restart(|settings| settings.run_reactors = false).await;
    let post = "mutation($id: ID!, $text: String!) { postChatMessage(webinarId: $id, text: $text) { id } }";
    for n in 0..6 {
        let token = app.token(&format!("s{n}"), &["student"], &[], &[]);
        let body = app
            .gql(
                Some(&token),
                post,
                json!({ "id": id, "text": format!("message {n}") }),
            )
            .await;
        assert!(body["errors"].is_null(), "{body}");
    }
    assert!(sim.counters().chats.is_empty());
    // It comes back, is interrupted again part-way, and resumes.
    let app = app.restart(|_| {}).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.counters().chats.len() < 2 {
        assert!(Instant::now() < deadline, "relay did not resume");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let app = app.restart(|_| {}).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.counters().chats.len() < 6 {
        assert!(
            Instant::now() < deadline,
            "relay did not finish: {:?}",
            sim.counters().chats
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut texts: Vec<String> = sim
        .counters()
        .chats
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    texts.sort();
    let expected: Vec<String> = (0..6).map(|n| format!("(User s{n}) message {n}")).collect();
    assert_eq!(texts, expected, "each message exactly once");
    let statuses: Vec<String> =
        sqlx::query_scalar("select status from chat_messages order by posted_at")
            .fetch_all(&app.db.pool)
            .await
            .expect("statuses");
    assert!(statuses.iter().all(|s| s == "RELAYED"), "{statuses:?}");
}

#[tokio::test]
async fn the_audit_log_tells_who_did_what_and_what_it_caused() {
    let app = TestApp::spawn().await;
    let (_sim, url, _stop) = sipmediagw(Api::Legacy, Some("t")).await;
    register(&app, "audit", &url, Some("t"), "LEGACY").await;
    let (id, _) = schedule_and_start(&app, false).await;
    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
    app.gql(
        Some(&owner(&app)),
        "mutation($id: ID!) { endWebinar(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    wait_until(&app, &id, Duration::from_secs(10), stream("STOPPED")).await;

    let auditor = app.token("aud", &[], &[], &["auditor"]);
    let query = "query($filter: AuditFilter, $first: Int, $after: String) {
        auditLog(filter: $filter, first: $first, after: $after) {
          edges { cursor node { position aggregateId sequence eventType actorId actorName
                                correlationId causationId payload } }
          pageInfo { hasNextPage endCursor } } }";
    let stored: i64 = sqlx::query_scalar("select count(*) from events where aggregate_id = $1")
        .bind(&id)
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let body = app
            .gql(
                Some(&auditor),
                query,
                json!({ "filter": { "aggregateType": "Webinar", "aggregateId": id } }),
            )
            .await;
        let edges = body["data"]["auditLog"]["edges"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if edges.len() as i64 == stored {
            break edges;
        }
        assert!(Instant::now() < deadline, "audit log incomplete: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sequences: Vec<i64> = entries
        .iter()
        .map(|e| e["node"]["sequence"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(
        sequences,
        (1..=stored).collect::<Vec<_>>(),
        "all its events, in order"
    );
    for entry in &entries {
        assert!(
            entry["node"]["actorId"]
                .as_str()
                .is_some_and(|a| !a.is_empty()),
            "{entry}"
        );
        assert!(entry["node"]["correlationId"].as_str().is_some(), "{entry}");
    }

    // One correlation id: the start mutation's events and what the stream reactor did about them.
    let requested = entries
        .iter()
        .find(|e| e["node"]["eventType"] == json!("StreamStartRequested"))
        .expect("StreamStartRequested")["node"]
        .clone();
    let correlation = requested["correlationId"]
        .as_str()
        .expect("correlation")
        .to_owned();
    let body = app
        .gql(
            Some(&auditor),
            query,
            json!({ "filter": { "correlationId": correlation } }),
        )
        .await;
    let chain: Vec<Value> = body["data"]["auditLog"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    let types: Vec<&str> = chain
        .iter()
        .filter_map(|n| n["eventType"].as_str())
        .collect();
    assert_eq!(
        types,
        vec!["Started", "StreamStartRequested", "StreamStarted"],
        "{body}"
    );
    assert_eq!(chain[0]["actorId"], json!(OWNER.0));
    assert_eq!(chain[2]["actorId"], json!("system:stream-reactor"));
    assert_eq!(
        chain[2]["causationId"], requested["position"],
        "caused by StreamStartRequested"
    );

    // Pages follow one another without overlap.
    let page = |after: Value| {
        let (app, auditor, id) = (&app, auditor.clone(), id.clone());
        async move {
            app.gql(
                Some(&auditor),
                query,
                json!({ "filter": { "aggregateId": id }, "first": 2, "after": after }),
            )
            .await
        }
    };
    let first = page(Value::Null).await;
    let second = page(first["data"]["auditLog"]["pageInfo"]["endCursor"].clone()).await;
    assert_eq!(
        first["data"]["auditLog"]["edges"][1]["node"]["sequence"],
        json!(2)
    );
    assert_eq!(
        second["data"]["auditLog"]["edges"][0]["node"]["sequence"],
        json!(3)
    );

    // Bad input gets a coded error; others may not read it.
    for (variables, field) in [
        (
            json!({ "filter": { "from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z" } }),
            "filter.from",
        ),
        (
            json!({ "filter": { "aggregateType": "Teapot" } }),
            "filter.aggregateType",
        ),
        (json!({ "after": "not-a-cursor" }), "after"),
        (json!({ "first": 100000 }), "first"),
    ] {
        let body = app.gql(Some(&auditor), query, variables).await;
        assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["field"],
            json!(field),
            "{body}"
        );
    }
    let viewer = app.token("v", &["student"], &[], &[]);
    assert_eq!(
        error_code(&app.gql(Some(&viewer), query, json!({})).await),
        Some("FORBIDDEN")
    );
}

#[tokio::test]
async fn statistics_follow_a_live_webinar_and_the_documented_queries_run() {
    let app = TestApp::spawn().await;
    let (_sim, url, _stop) = sipmediagw(Api::Legacy, Some("t")).await;
    let gateway = register(&app, "stats", &url, Some("t"), "LEGACY").await;
    let (id, _) = schedule_and_start(&app, true).await;
    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
    let viewer = app.token("student", &["student"], &[], &[]);
    app.gql(
        Some(&viewer),
        "mutation($id: ID!) { postChatMessage(webinarId: $id, text: \"Hi\") { id } }",
        json!({ "id": id }),
    )
    .await;
    app.gql(
        Some(&owner(&app)),
        "mutation($id: ID!) { restartLive(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
    app.gql(
        Some(&owner(&app)),
        "mutation($id: ID!) { endWebinar(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    wait_until(&app, &id, Duration::from_secs(10), stream("STOPPED")).await;

    let analyst = app.token("ana", &[], &[], &["analyst"]);
    let query = "{ webinarStats { webinarId status endedHow secondsToFirstLive restarts chatPosted
        chatRelayed streamFailures failovers scheduledMinutes } }";
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let body = app.gql(Some(&analyst), query, json!({})).await;
        let row = body["data"]["webinarStats"][0].clone();
        if row["status"] == json!("ENDED") && row["chatRelayed"] == json!(1) {
            break row;
        }
        assert!(Instant::now() < deadline, "stats never caught up: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stats["webinarId"], json!(id));
    assert_eq!(stats["endedHow"], json!("PRESENTER"));
    assert_eq!(stats["restarts"], json!(1));
    assert_eq!(stats["chatPosted"], json!(1));
    assert_eq!(
        (stats["streamFailures"].clone(), stats["failovers"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(stats["scheduledMinutes"], json!(60));
    assert!(stats["secondsToFirstLive"].as_i64().is_some(), "{stats}");

    let today = Utc::now();
    let body = app
        .gql(
            Some(&analyst),
            "query($from: DateTime!, $to: DateTime!) { gatewayUtilization(from: $from, to: $to) {
                gatewayId reservedMinutes failures } }",
            json!({ "from": (today - chrono::Duration::days(1)).to_rfc3339(),
                    "to": (today + chrono::Duration::days(1)).to_rfc3339() }),
        )
        .await;
    assert_eq!(
        body["data"]["gatewayUtilization"],
        json!([{ "gatewayId": gateway, "reservedMinutes": 60, "failures": 0 }]),
        "an ended webinar's reserved minutes stay counted"
    );
    let body = app
        .gql(Some(&analyst), "{ webinarStats(from: \"2030-01-02T00:00:00Z\", to: \"2030-01-01T00:00:00Z\") { title } }", json!({}))
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body = app.gql(Some(&viewer), query, json!({})).await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"));

    // The three example queries of docs/ANALYTICS.md run and find this webinar.
    let doc = include_str!("../../docs/ANALYTICS.md");
    let queries: Vec<&str> = doc
        .split("```sql")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect();
    assert_eq!(queries.len(), 3, "three example queries");
    for sql in queries {
        let rows = sqlx::query(sql)
            .fetch_all(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!rows.is_empty(), "no rows from:\n{sql}");
    }
}

/// The value of the sample `series` (name and labels, as rendered) in a scrape; 0 when absent.
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn requests_commands_projector_batches_and_outside_calls_are_histograms_on_metrics() {
    let app = TestApp::spawn().await;
    let (_sim, url, _stop) = sipmediagw(Api::Legacy, Some("1234")).await;
    register(&app, "Histograms", &url, Some("1234"), "LEGACY").await;
    let scrape = || async {
        let response = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.expect("body")
    };
    // (histogram, labels): one per kind the issue names, the outside call for both systems.
    let series = [
        (
            "webinar_graphql_request_duration_seconds",
            "operation=\"startWebinar\"",
        ),
        ("webinar_command_duration_seconds", "aggregate=\"Webinar\""),
        (
            "webinar_projector_batch_duration_seconds",
            "projector=\"live_events\"",
        ),
        (
            "webinar_outside_call_duration_seconds",
            "system=\"sipmediagw\",call=\"start\",outcome=\"ok\"",
        ),
        (
            "webinar_outside_call_duration_seconds",
            "system=\"bbb\",call=\"create\",outcome=\"ok\"",
        ),
    ];
    let count = |scrape: &str, (name, labels): (&str, &str)| {
        sample(scrape, &format!("{name}_count{{{labels}}}"))
    };
    let before = scrape().await;
    let (id, _) = schedule_and_start(&app, false).await;
    wait_until(&app, &id, Duration::from_secs(10), stream("LIVE")).await;
    let after = scrape().await;
    for (name, labels) in series {
        let bucket = format!("{name}_bucket{{{labels},le=\"+Inf\"}}");
        assert!(
            sample(&after, &bucket) >= 1.0,
            "{bucket} missing from:\n{after}"
        );
        let (was, is) = (
            count(&before, (name, labels)),
            count(&after, (name, labels)),
        );
        assert!(
            is > was,
            "{name}{{{labels}}}: count {was} before, {is} after"
        );
    }
}
