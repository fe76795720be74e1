//! Stream health seen from the audience's side, and the stable viewer URL. The HLS side is the
//! simulated gateway's live server, which the test makes advance, freeze, vanish or serve garbage.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use webinar_infra::sim::sipmediagw::{Api, HlsMode, SipMediaGwSim};

use crate::harness::{events_of, wait_until, TestApp};

const TOKEN: &str = "t";

/// A simulated gateway whose playlist advances every 100 ms, registered with its HLS address.
async fn gateway(app: &TestApp, name: &str) -> (SipMediaGwSim, String, String) {
    let sim =
        SipMediaGwSim::new(Api::Legacy, Some(TOKEN)).with_hls_segment(Duration::from_millis(100));
    let cancel = tokio_util::sync::CancellationToken::new();
    let address = webinar_infra::sim::spawn(
        sim.router(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        cancel,
    )
    .await
    .expect("start SIPMediaGW");
    let hls = format!("http://{address}/hls/{name}.m3u8");
    let body = app
        .gql(
            Some(&app.admin()),
            "mutation($input: RegisterGatewayInput!) { registerGateway(input: $input) { id } }",
            json!({ "input": { "name": name, "rtmpUrl": format!("rtmp://127.0.0.1/live/{name}"),
                "hlsUrl": hls, "broadcaster": name, "sipmediagwUrl": format!("http://{address}"),
                "sipmediagwToken": TOKEN, "api": "LEGACY" } }),
        )
        .await;
    let id = body["data"]["registerGateway"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    (sim, id, hls)
}

async fn start(app: &TestApp) -> String {
    let owner = app.token("owner", &["faculty"], &[], &[]);
    let input = json!({ "title": "Watched", "startAt": Utc::now().to_rfc3339(),
        "durationMinutes": 60 });
    crate::harness::schedule_and_start(app, &owner, input)
        .await
        .0
}

fn health(wanted: &'static str) -> impl Fn(&Value) -> bool {
    move |w: &Value| w["streamHealth"] == json!(wanted)
}

/// Every `StreamHealthChanged` changes the health: never the same one twice in a row (a new start,
/// a stop or a final failure resets it to UNKNOWN without an event, as the aggregate does).
fn assert_one_event_per_change(events: &[(String, Value)]) -> Vec<String> {
    let mut current = "UNKNOWN".to_owned();
    let mut seen = Vec::new();
    for (kind, payload) in events {
        match kind.as_str() {
            "StreamHealthChanged" => {
                let health = payload["StreamHealthChanged"]["health"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert_ne!(health, current, "a repeated health event: {events:?}");
                current.clone_from(&health);
                seen.push(health);
            }
            "StreamStartRequested" | "StreamRestartRequested" | "StreamStopped" => {
                current = "UNKNOWN".into()
            }
            "StreamFailed" if payload["StreamFailed"]["final"] == json!(true) => {
                current = "UNKNOWN".into()
            }
            _ => {}
        }
    }
    seen
}

/// Where `/live/{id}/index.m3u8` sends a player now.
async fn viewer_redirect(app: &TestApp, id: &str) -> (u16, Option<String>) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client
        .get(app.url(&format!("/live/{id}/index.m3u8")))
        .send()
        .await
        .expect("viewer URL");
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (response.status().as_u16(), location)
}

#[tokio::test]
async fn a_frozen_playlist_stalls_recovers_then_is_restarted_and_failed_over() {
    let interval = Duration::from_millis(100);
    let stall = Duration::from_millis(800);
    let app = TestApp::spawn_with(|s| {
        s.stream_health_interval_ms = interval.as_millis() as u64;
        s.stream_health_stall_ms = stall.as_millis() as u64;
        s.stream_health_act_ms = 1_500;
    })
    .await;
    let (first, first_id, first_hls) = gateway(&app, "first").await;
    let id = start(&app).await;
    // The second gateway comes after the webinar took the first: it is the free one to fail over to.
    let (_second, second_id, second_hls) = gateway(&app, "second").await;
    wait_until(&app, &id, Duration::from_secs(10), health("HEALTHY")).await;

    // The viewer URL sends players to the gateway streaming now, and the live page gives it.
    assert_eq!(viewer_redirect(&app, &id).await, (302, Some(first_hls)));
    let page = app
        .gql(
            None,
            "query($id: ID!) { liveEvent(id: $id) { viewerUrl streamHealth streamHealthDetail } }",
            json!({ "id": id }),
        )
        .await;
    let event = &page["data"]["liveEvent"];
    assert_eq!(
        event["viewerUrl"],
        json!(app.url(&format!("/live/{id}/index.m3u8")))
    );
    assert_eq!(event["streamHealth"], json!("HEALTHY"), "{page}");
    assert!(event["streamHealthDetail"].as_str().is_some(), "{page}");

    // Frozen: STALLED within the threshold and one interval (and a generous margin), then back to
    // HEALTHY as soon as it advances, before anything is restarted.
    first.set_hls(HlsMode::Freeze);
    let frozen = Instant::now();
    let (stalled, _) = wait_until(&app, &id, Duration::from_secs(10), health("STALLED")).await;
    let took = frozen.elapsed();
    assert!(
        took < stall + interval + Duration::from_secs(2),
        "stalled after {took:?}"
    );
    assert!(
        stalled["streamHealthDetail"]
            .as_str()
            .is_some_and(|d| d.contains("not advanced")),
        "{stalled}"
    );
    first.set_hls(HlsMode::Advance);
    wait_until(&app, &id, Duration::from_secs(5), health("HEALTHY")).await;
    let events = events_of(&app, &id).await;
    assert!(
        !events.iter().any(|(k, _)| k == "StreamRestartRequested"),
        "{events:?}"
    );

    // Frozen for good: restarted on its gateway first, then (still frozen) failed over to the
    // free one, whose playlist advances.
    first.set_hls(HlsMode::Freeze);
    let (moved, _) = wait_until(&app, &id, Duration::from_secs(30), |w| {
        w["gateway"]["id"] == json!(second_id) && w["streamHealth"] == json!("HEALTHY")
    })
    .await;
    assert_eq!(moved["streamState"], json!("LIVE"), "{moved}");
    let events = events_of(&app, &id).await;
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    let restart = kinds
        .iter()
        .position(|k| *k == "StreamRestartRequested")
        .expect("restarted first");
    let failed = kinds
        .iter()
        .rposition(|k| *k == "StreamFailed")
        .expect("then failed");
    let moved_at = kinds
        .iter()
        .position(|k| *k == "GatewayReassigned")
        .expect("then moved");
    assert!(restart < failed && failed < moved_at, "{kinds:?}");
    assert_eq!(
        events[moved_at].1["GatewayReassigned"]["from"],
        json!(first_id)
    );
    let healths = assert_one_event_per_change(&events);
    assert_eq!(
        healths.first().map(String::as_str),
        Some("HEALTHY"),
        "{healths:?}"
    );
    assert_eq!(healths.last().map(String::as_str), Some("HEALTHY"));

    // The same viewer URL now sends players to the new gateway's playlist.
    assert_eq!(viewer_redirect(&app, &id).await, (302, Some(second_hls)));
}

#[tokio::test]
async fn a_vanished_or_garbled_playlist_is_missing_or_not_hls_and_nothing_is_restarted() {
    let app = TestApp::spawn_with(|s| {
        s.stream_health_interval_ms = 100;
        s.stream_health_stall_ms = 800;
        // Only report.
        s.stream_health_act_ms = 0;
    })
    .await;
    let (sim, _, _) = gateway(&app, "only").await;
    let id = start(&app).await;
    wait_until(&app, &id, Duration::from_secs(10), health("HEALTHY")).await;

    sim.set_hls(HlsMode::Drop);
    let (missing, _) = wait_until(&app, &id, Duration::from_secs(5), health("MISSING")).await;
    assert!(
        missing["streamHealthDetail"]
            .as_str()
            .is_some_and(|d| d.contains("404")),
        "{missing}"
    );
    sim.set_hls(HlsMode::Corrupt);
    wait_until(&app, &id, Duration::from_secs(5), health("NOT_HLS")).await;
    sim.set_hls(HlsMode::Advance);
    wait_until(&app, &id, Duration::from_secs(5), health("HEALTHY")).await;

    // Acting is off: reported, never restarted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = events_of(&app, &id).await;
    assert!(
        !events.iter().any(|(k, _)| k == "StreamRestartRequested"),
        "{events:?}"
    );
    assert_eq!(
        assert_one_event_per_change(&events),
        ["HEALTHY", "MISSING", "NOT_HLS", "HEALTHY"]
    );

    // Ended: the viewer URL no longer sends anyone to that gateway (it may stream someone else).
    let owner = app.token("owner", &["faculty"], &[], &[]);
    let ended = app
        .gql(
            Some(&owner),
            "mutation($id: ID!) { endWebinar(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        ended["data"]["endWebinar"]["status"],
        json!("ENDED"),
        "{ended}"
    );
    assert_eq!(viewer_redirect(&app, &id).await.0, 404);
    assert_eq!(viewer_redirect(&app, "not-a-uuid").await.0, 404);
}

#[tokio::test]
async fn with_no_other_gateway_an_unwatchable_stream_is_restarted_again_not_failed() {
    let app = TestApp::spawn_with(|s| {
        s.stream_health_interval_ms = 100;
        s.stream_health_stall_ms = 500;
        s.stream_health_act_ms = 800;
    })
    .await;
    let (sim, _, _) = gateway(&app, "alone").await;
    let id = start(&app).await;
    wait_until(&app, &id, Duration::from_secs(10), health("HEALTHY")).await;
    sim.set_hls(HlsMode::Freeze);
    // Failing would leave the room running, unwatched and never looked at again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = events_of(&app, &id).await;
        let restarts = events
            .iter()
            .filter(|(k, _)| k == "StreamRestartRequested")
            .count();
        assert!(
            !events
                .iter()
                .any(|(k, _)| k == "StreamFailed" || k == "GatewayReassigned"),
            "{events:?}"
        );
        if restarts >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted {restarts} times: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Watchable again: back to HEALTHY, with the watcher still on it.
    sim.set_hls(HlsMode::Advance);
    wait_until(&app, &id, Duration::from_secs(10), |w| {
        w["streamHealth"] == json!("HEALTHY") && w["streamState"] == json!("LIVE")
    })
    .await;
}
