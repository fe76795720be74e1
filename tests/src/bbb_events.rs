//! What BigBlueButton and SIPMediaGW v1.8 tell us, end to end: bbb-webhooks deliveries (signed as
//! bbb-webhooks signs them) and the reconciliation sweep, `liveSessions`, and streams on the
//! gateway containers a v1.8 launcher really has.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tokio_util::sync::CancellationToken;
use webinar_infra::sim::sipmediagw::{Api, Container, SipMediaGwSim};

use crate::harness::{
    error_code, events_of, receive, register_live_gateway, sipmediagw, stream, subscribe,
    wait_until, webinar, TestApp,
};

const SESSIONS: &str = "query($running: Boolean, $first: Int, $after: String) {
    liveSessions(running: $running, first: $first, after: $after) {
      edges { cursor node { meetingId webinarId title server running participantCount
        moderatorCount streamingPresent participants { name moderator streaming } gatewayId gwId
        streamState } }
      pageInfo { hasNextPage endCursor } } }";

fn owner(app: &TestApp) -> String {
    app.token("owner", &["faculty"], &[], &[])
}

/// Schedules a webinar starting now and starts it as its owner; returns its id.
async fn schedule_and_start(app: &TestApp, title: &str) -> String {
    let input = json!({ "title": title, "startAt": Utc::now().to_rfc3339(),
        "durationMinutes": 60 });
    crate::harness::schedule_and_start(app, &owner(app), input)
        .await
        .0
}

/// The owner's live control `mutation` (`stopLive`, `restartLive`) on `id`; it must succeed.
async fn control(app: &TestApp, mutation: &str, id: &str) {
    let body = app
        .gql(
            Some(&owner(app)),
            &format!("mutation($id: ID!) {{ {mutation}(id: $id) {{ id }} }}"),
            json!({ "id": id }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
}

/// The payloads of the webinar's `StreamStarted` events.
async fn stream_starts(app: &TestApp, id: &str) -> Vec<Value> {
    events_of(app, id)
        .await
        .into_iter()
        .filter(|(t, _)| t == "StreamStarted")
        .map(|(_, p)| p)
        .collect()
}

/// A mapped bbb-webhooks event about `meeting`.
fn event(kind: &str, meeting: &str, user: Option<Value>) -> Value {
    let mut attributes = json!({"meeting": {"internal-meeting-id": "0f7e-internal",
        "external-meeting-id": meeting}});
    if let Some(user) = user {
        attributes["user"] = user;
    }
    json!({"data": {"type": "event", "id": kind, "attributes": attributes,
        "event": {"ts": Utc::now().timestamp_millis()}}})
}

fn user(internal: &str, name: &str, role: &str) -> Value {
    json!({"internal-user-id": internal, "external-user-id": format!("ext-{internal}"),
        "name": name, "role": role, "presenter": false, "guest": false})
}

/// Posts `events` as bbb-webhooks does (`callback-emitter.js`): a form body
/// `domain=…&event=[…]&timestamp=…`, and `?checksum=sha1(callbackURL + body + secret)`.
async fn deliver(app: &TestApp, events: &[Value]) -> u16 {
    let callback = app.url("/bbb/webhooks");
    let events: Vec<String> = events.iter().map(Value::to_string).collect();
    let body = format!(
        "domain=bbb.example.org&event={}&timestamp={}",
        urlencode(&format!("[{}]", events.join(","))),
        Utc::now().timestamp_millis()
    );
    let checksum = hex::encode(Sha1::digest(
        format!("{callback}{body}{}", app.bbb_secret).as_bytes(),
    ));
    post(app, &format!("{callback}?checksum={checksum}"), None, body).await
}

/// `URLSearchParams`' encoding: letters, digits and `*-._` stay, space is `+`.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn post(app: &TestApp, url: &str, bearer: Option<&str>, body: String) -> u16 {
    let mut request = app
        .http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("POST").status().as_u16()
}

async fn sessions(app: &TestApp, token: Option<&str>, variables: Value) -> Value {
    app.gql(token, SESSIONS, variables).await
}

/// The live session of `id`, as administrators see it.
async fn session_of(app: &TestApp, id: &str) -> Value {
    let body = sessions(app, Some(&app.admin()), json!({})).await;
    body["data"]["liveSessions"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|e| e["node"].clone())
        .find(|n| n["webinarId"] == json!(id))
        .unwrap_or(Value::Null)
}

async fn wait_session(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let session = session_of(app, id).await;
        if done(&session) {
            return session;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{session}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn webhooks(settings: &mut webinar_infra::config::Settings) {
    settings.bbb_webhooks = true;
    // Long enough that the sweep after the start-up one does not interfere.
    settings.bbb_sweep_seconds = 3600;
}

#[tokio::test]
async fn webhook_deliveries_end_the_webinar_and_keep_the_participant_list() {
    let app = TestApp::spawn_with(webhooks).await;
    let (sim, url, _sim) = sipmediagw(Api::Legacy, Some("1234")).await;
    register_live_gateway(&app, "amphi", &url, Some("1234"), "LEGACY").await;
    // At start-up the hook was registered with bbb-webhooks' `hooks/create`.
    let callback = app.url("/bbb/webhooks");
    let started = Instant::now();
    while !app.bbb.hooks().contains(&callback) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            app.bbb.hooks()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let id = schedule_and_start(&app, "Webhooks").await;
    wait_until(&app, &id, Duration::from_secs(5), stream("LIVE")).await;
    let meeting = format!("webinar-{id}");

    // Forged or unsigned deliveries are refused, counted, and change nothing.
    let forged = format!("{callback}?checksum={}", "ab".repeat(20));
    let ended = event("meeting-ended", &meeting, None);
    let body = format!("event={}", urlencode(&format!("[{ended}]")));
    assert_eq!(post(&app, &forged, None, body.clone()).await, 401);
    assert_eq!(post(&app, &callback, None, body.clone()).await, 401);
    assert_eq!(post(&app, &callback, Some("wrong"), body).await, 401);
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"webinar_bbb_webhook_deliveries_total{outcome="bad_signature"} 2"#)
            && metrics.contains(r#"webinar_bbb_webhook_deliveries_total{outcome="unsigned"} 1"#),
        "{metrics}"
    );
    assert_eq!(webinar(&app, &id).await["status"], json!("LIVE"));

    // People join and leave; the session shows them.
    let ada = user("w_ada", "Ada", "MODERATOR");
    let bob = user("w_bob", "Bob", "VIEWER");
    let status = deliver(
        &app,
        &[
            event("user-joined", &meeting, Some(ada)),
            event("user-joined", &meeting, Some(bob)),
            event("user-audio-muted", &meeting, None),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let session = wait_session(&app, &id, |s| s["participantCount"] == json!(2)).await;
    assert_eq!(session["moderatorCount"], json!(1), "{session}");
    assert_eq!(session["running"], json!(true));
    assert_eq!(session["meetingId"], json!(meeting));
    assert_eq!(session["server"], json!("127.0.0.1"));
    assert_eq!(session["streamState"], json!("LIVE"));
    let left = json!({"internal-user-id": "w_bob", "external-user-id": "ext-w_bob"});
    assert_eq!(
        deliver(&app, &[event("user-left", &meeting, Some(left.clone()))]).await,
        200
    );
    // Delivered twice (bbb-webhooks retries): still one leave.
    assert_eq!(
        deliver(&app, &[event("user-left", &meeting, Some(left))]).await,
        200
    );
    let session = wait_session(&app, &id, |s| s["participantCount"] == json!(1)).await;
    assert_eq!(
        session["participants"],
        json!([{"name": "Ada", "moderator": true, "streaming": false}])
    );
    let leaves = events_of(&app, &id)
        .await
        .iter()
        .filter(|(t, _)| t == "ParticipantLeft")
        .count();
    assert_eq!(leaves, 1);

    // BBB's own deliveries (the simulator signs them like bbb-webhooks) arrive too.
    app.bbb
        .add_user(&meeting, "Carol")
        .expect("the meeting exists");
    wait_session(&app, &id, |s| s["participantCount"] == json!(2)).await;

    // The meeting ends in BBB: the webinar ends and its stream stops, in seconds.
    let at = Instant::now();
    assert_eq!(
        deliver(&app, &[event("meeting-ended", &meeting, None)]).await,
        200
    );
    let (state, _) = wait_until(&app, &id, Duration::from_secs(2), |w| {
        w["status"] == json!("ENDED") && w["streamState"] == json!("STOPPED")
    })
    .await;
    assert!(at.elapsed() < Duration::from_secs(2), "{state}");
    assert_eq!(sim.running(), None);
    let reasons: Vec<Value> = events_of(&app, &id)
        .await
        .into_iter()
        .filter(|(t, _)| t == "MeetingEnded")
        .map(|(_, p)| p["MeetingEnded"]["reason"].clone())
        .collect();
    assert_eq!(reasons, vec![json!("WEBHOOK")]);
    // `live_sessions` is its own read model: it may be a moment behind `webinars`.
    wait_session(&app, &id, |s| {
        s["running"] == json!(false) && s["streamState"] == json!("STOPPED")
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_stream_whose_streaming_participant_leaves_is_restarted() {
    let app = TestApp::spawn_with(webhooks).await;
    let (sim, url, _sim) = sipmediagw(Api::Legacy, Some("1234")).await;
    register_live_gateway(&app, "amphi", &url, Some("1234"), "LEGACY").await;
    let id = schedule_and_start(&app, "Bot").await;
    wait_until(&app, &id, Duration::from_secs(5), stream("LIVE")).await;
    let meeting = format!("webinar-{id}");
    let bot = json!({"internal-user-id": "w_bot", "external-user-id": "streaming-room",
        "name": "streaming", "role": "VIEWER", "presenter": false, "guest": false});
    assert_eq!(
        deliver(&app, &[event("user-joined", &meeting, Some(bot))]).await,
        200
    );
    wait_session(&app, &id, |s| s["streamingPresent"] == json!(true)).await;
    let starts = sim.counters().successful_starts;
    let gone = json!({"internal-user-id": "w_bot", "external-user-id": "streaming-room"});
    assert_eq!(
        deliver(&app, &[event("user-left", &meeting, Some(gone))]).await,
        200
    );
    // Not live without its bot: restarted, and live again.
    let started = Instant::now();
    while sim.counters().successful_starts == starts {
        assert!(started.elapsed() < Duration::from_secs(5), "no restart");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    wait_until(&app, &id, Duration::from_secs(5), stream("LIVE")).await;
    let types: Vec<String> = events_of(&app, &id)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert!(
        types.contains(&"StreamRestartRequested".to_owned()),
        "{types:?}"
    );
    // Live again, and the session knows the bot left (waiting for both: `live_sessions` may be
    // a moment behind, and was LIVE before the leave too).
    wait_session(&app, &id, |s| {
        s["streamState"] == json!("LIVE") && s["streamingPresent"] == json!(false)
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn with_deliveries_lost_the_sweep_ends_the_webinar() {
    let app = TestApp::spawn_with(|s| {
        s.bbb_webhooks = true;
        s.bbb_sweep_seconds = 1;
    })
    .await;
    let (_sim, url, _stop) = sipmediagw(Api::Legacy, Some("1234")).await;
    register_live_gateway(&app, "amphi", &url, Some("1234"), "LEGACY").await;
    let id = schedule_and_start(&app, "Lost").await;
    wait_until(&app, &id, Duration::from_secs(5), stream("LIVE")).await;
    let meeting = format!("webinar-{id}");
    // Someone in the meeting whom no delivery announced: the sweep brings the list in line.
    app.bbb.set_deliveries(false);
    app.bbb.add_user(&meeting, "Dana").expect("meeting");
    let session = wait_session(&app, &id, |s| s["participantCount"] == json!(1)).await;
    assert_eq!(session["participants"][0]["name"], json!("Dana"));
    // The meeting ends; neither the webhook nor the end callback arrives.
    app.bbb.set_callbacks(false);
    assert!(app.bbb.end_from_bbb(&meeting).await);
    wait_until(&app, &id, Duration::from_secs(5), |w| {
        w["status"] == json!("ENDED")
    })
    .await;
    let reasons: Vec<Value> = events_of(&app, &id)
        .await
        .into_iter()
        .filter(|(t, _)| t == "MeetingEnded")
        .map(|(_, p)| p["MeetingEnded"]["reason"].clone())
        .collect();
    assert_eq!(reasons, vec![json!("SWEEP")]);
    assert_eq!(app.bbb.delivered(), 0, "nothing was delivered");
    app.stop().await;
}

#[tokio::test]
async fn live_sessions_are_for_administrators_and_paginate() {
    let app = TestApp::spawn().await;
    let (_sim, url, _stop) = sipmediagw(Api::Legacy, Some("1234")).await;
    register_live_gateway(&app, "amphi", &url, Some("1234"), "LEGACY").await;
    let (_sim2, url2, _stop2) = sipmediagw(Api::Legacy, Some("1234")).await;
    register_live_gateway(&app, "amphi-2", &url2, Some("1234"), "LEGACY").await;
    let first = schedule_and_start(&app, "First").await;
    let second = schedule_and_start(&app, "Second").await;
    for id in [&first, &second] {
        wait_until(&app, id, Duration::from_secs(5), stream("LIVE")).await;
    }

    assert_eq!(
        error_code(&sessions(&app, None, json!({})).await),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(
        error_code(&sessions(&app, Some(&owner(&app)), json!({})).await),
        Some("FORBIDDEN")
    );
    let admin = app.admin();
    let page = sessions(&app, Some(&admin), json!({"first": 1})).await;
    let connection = &page["data"]["liveSessions"];
    assert_eq!(
        connection["edges"].as_array().map(Vec::len),
        Some(1),
        "{page}"
    );
    assert_eq!(connection["pageInfo"]["hasNextPage"], json!(true));
    // Newest first.
    assert_eq!(connection["edges"][0]["node"]["webinarId"], json!(second));
    let next = sessions(
        &app,
        Some(&admin),
        json!({"first": 1, "after": connection["pageInfo"]["endCursor"]}),
    )
    .await;
    let connection = &next["data"]["liveSessions"];
    assert_eq!(
        connection["edges"][0]["node"]["webinarId"],
        json!(first),
        "{next}"
    );
    assert_eq!(connection["pageInfo"]["hasNextPage"], json!(false));
    let ended = sessions(&app, Some(&admin), json!({"running": false})).await;
    assert_eq!(ended["data"]["liveSessions"]["edges"], json!([]), "{ended}");
    app.stop().await;
}

/// A v1.8 launcher with the production backend's containers (or its proxy before them), on its
/// own port.
async fn serve_v18(api: Api, ids: &[&str], cancel: &CancellationToken) -> (SipMediaGwSim, String) {
    let token = (api == Api::Proxy).then_some("1234");
    let sim = SipMediaGwSim::new(api, token).with_gw_ids(ids);
    let address = webinar_infra::sim::spawn(
        sim.router(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        cancel.clone(),
    )
    .await
    .expect("start SIPMediaGW");
    (sim, format!("http://{address}"))
}

const REGISTER: &str = "mutation($input: RegisterGatewayInput!) {
    registerGateway(input: $input) { id api gwIds browsingName } }";

fn v18_gateway(name: &str, url: &str, ids: Value) -> Value {
    json!({ "input": { "name": name, "rtmpUrl": format!("rtmp://live.example.org/live/{name}"),
        "hlsUrl": format!("https://live.example.org/{name}.m3u8"), "broadcaster": name,
        "sipmediagwUrl": url, "api": "GATEWAY", "gwIds": ids } })
}

#[tokio::test]
async fn a_v1_8_gateway_streams_on_a_container_it_has_and_stops_the_one_recorded() {
    let app = TestApp::spawn().await;
    let cancel = CancellationToken::new();
    let id18 = "3pi8m7isj175s0mtrnd7dyj6";
    let (sim, url) = serve_v18(Api::Gateway, &[id18, "gw1"], &cancel).await;
    let admin = app.admin();

    // Without its containers' ids, a v1.8 gateway is refused, naming the field.
    let refused = app
        .gql(Some(&admin), REGISTER, v18_gateway("v18", &url, json!([])))
        .await;
    assert_eq!(error_code(&refused), Some("BAD_USER_INPUT"), "{refused}");
    assert_eq!(
        refused["errors"][0]["extensions"]["field"],
        json!("input.gwIds")
    );
    let bad = app
        .gql(
            Some(&admin),
            REGISTER,
            v18_gateway("v18", &url, json!(["Not A Project"])),
        )
        .await;
    assert_eq!(error_code(&bad), Some("BAD_USER_INPUT"), "{bad}");
    let body = app
        .gql(
            Some(&admin),
            REGISTER,
            v18_gateway("v18", &url, json!([id18, "gw1"])),
        )
        .await;
    let gateway = &body["data"]["registerGateway"];
    assert_eq!(gateway["gwIds"], json!([id18, "gw1"]), "{body}");
    assert_eq!(gateway["browsingName"], json!("bigbluebutton"));

    let id = schedule_and_start(&app, "On a container").await;
    wait_until(&app, &id, Duration::from_secs(5), stream("LIVE")).await;
    // The first free container took the stream; the event records it.
    let room = match sim.container(id18) {
        Some(Container::Streaming(room)) => room,
        other => panic!("{other:?}"),
    };
    assert_eq!(sim.container("gw1"), Some(Container::Idle));
    assert_eq!(
        stream_starts(&app, &id).await,
        vec![json!({"StreamStarted": {"gw_id": id18}})]
    );
    assert_eq!(
        sim.counters().started_with,
        vec![(
            room.clone(),
            "bigbluebutton".to_owned(),
            "rtmp://live.example.org/live/v18".to_owned()
        )]
    );
    // `live_sessions` is a read model of its own: it may be a moment behind `webinars`.
    wait_session(&app, &id, |s| s["gwId"] == json!(id18)).await;

    // A restart stops the recorded container and starts again: still one stream, nothing cut.
    control(&app, "restartLive", &id).await;
    let at = Instant::now();
    while sim.counters().successful_starts < 2 {
        assert!(
            at.elapsed() < Duration::from_secs(5),
            "{:?}",
            sim.counters()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    wait_until(&app, &id, Duration::from_secs(5), stream("LIVE")).await;
    assert_eq!(sim.room(&room).successful_stops, 1);
    assert_eq!(sim.replaced_streams(), 0);

    // Stop uses the recorded container.
    control(&app, "stopLive", &id).await;
    wait_until(&app, &id, Duration::from_secs(5), stream("STOPPED")).await;
    assert!(matches!(sim.container(id18), Some(Container::Exited)));
    assert_eq!(sim.container("gw1"), Some(Container::Idle));
    cancel.cancel();
    app.stop().await;
}

#[tokio::test]
async fn a_gateway_configured_with_ids_its_launcher_lacks_fails_clearly() {
    let app = TestApp::spawn().await;
    let cancel = CancellationToken::new();
    let (sim, url) = serve_v18(Api::Gateway, &["gw0"], &cancel).await;
    let body = app
        .gql(
            Some(&app.admin()),
            REGISTER,
            v18_gateway("typo", &url, json!(["gw9"])),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let id = schedule_and_start(&app, "Typo").await;
    let (state, _) = wait_until(&app, &id, Duration::from_secs(5), stream("FAILED")).await;
    let error = state["streamError"].as_str().unwrap_or_default();
    assert!(
        error.contains("no gateway container gw9") && error.contains("gwIds"),
        "{state}"
    );
    assert_eq!(sim.counters().successful_starts, 0);
    assert_eq!(sim.container("gw0"), Some(Container::Idle));
    cancel.cancel();
    app.stop().await;
}

#[tokio::test]
async fn behind_the_v1_8_proxy_the_stream_runs_on_the_container_the_proxy_picked() {
    let app = TestApp::spawn().await;
    let cancel = CancellationToken::new();
    let (sim, url) = serve_v18(Api::Proxy, &["k7x2"], &cancel).await;
    let body = app
        .gql(
            Some(&app.admin()),
            REGISTER,
            json!({ "input": { "name": "pool", "rtmpUrl": "rtmp://live.example.org/live/pool",
                "hlsUrl": "https://live.example.org/pool.m3u8", "broadcaster": "pool",
                "sipmediagwUrl": url, "sipmediagwToken": "1234", "api": "PROXY" } }),
        )
        .await;
    assert_eq!(
        body["data"]["registerGateway"]["api"],
        json!("PROXY"),
        "{body}"
    );
    let id = schedule_and_start(&app, "Proxied").await;
    wait_until(&app, &id, Duration::from_secs(5), stream("LIVE")).await;
    assert_eq!(
        stream_starts(&app, &id).await,
        vec![json!({"StreamStarted": {"gw_id": "k7x2"}})]
    );
    control(&app, "stopLive", &id).await;
    wait_until(&app, &id, Duration::from_secs(5), stream("STOPPED")).await;
    assert_eq!(sim.container("k7x2"), Some(Container::Exited));
    cancel.cancel();
    app.stop().await;
}

#[tokio::test]
async fn administrators_hear_of_each_change_to_a_live_session() {
    let app = TestApp::spawn_with(webhooks).await;
    let (_sim, url, _stop) = sipmediagw(Api::Legacy, Some("1234")).await;
    register_live_gateway(&app, "amphi", &url, Some("1234"), "LEGACY").await;
    let query = "subscription { liveSessionChanged { webinarId participantCount running } }";
    // Anyone else is refused at once.
    let mut refused = subscribe(&app, Some(&owner(&app)), query, json!({})).await;
    let answer = receive(&mut refused).await;
    assert_eq!(
        answer["payload"]["errors"][0]["extensions"]["code"],
        json!("FORBIDDEN"),
        "{answer}"
    );
    assert_eq!(answer["payload"]["data"], Value::Null);

    let id = schedule_and_start(&app, "Watched").await;
    wait_until(&app, &id, Duration::from_secs(5), stream("LIVE")).await;
    let mut socket = subscribe(&app, Some(&app.admin()), query, json!({})).await;
    let meeting = format!("webinar-{id}");
    let ada = user("w_ada", "Ada", "MODERATOR");
    assert_eq!(
        deliver(&app, &[event("user-joined", &meeting, Some(ada))]).await,
        200
    );
    let started = Instant::now();
    loop {
        let message = receive(&mut socket).await;
        let session = &message["payload"]["data"]["liveSessionChanged"];
        assert_eq!(session["webinarId"], json!(id), "{message}");
        if session["participantCount"] == json!(1) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{message}");
    }
    app.stop().await;
}
