//! Saga steps that must happen are reactions to events: a crash between reserving a gateway and
//! scheduling the webinar leaves no slot behind for good; chat messages are relayed by webinar, in
//! parallel, each once.

use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use serde_json::json;
use webinar_domain::{Caller, GatewayId, TimeSlot, WebinarId};
use webinar_infra::event_store::CommandMetadata;
use webinar_infra::sim::sipmediagw::{Api, Fault};

use crate::harness::{
    register_live_gateway, sipmediagw, test_settings, KillableServer, TestApp, TestDb,
};

const SCHEDULE: &str =
    "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }";

fn slot_at(hour: i64) -> chrono::DateTime<Utc> {
    let day = Utc::now().date_naive() + Days::new(3);
    day.and_hms_opt(0, 0, 0).expect("valid").and_utc() + chrono::Duration::hours(hour)
}

/// Whether every gateway holds only reservations of webinars scheduled (or live) on it, for
/// their slot.
async fn reservations_consistent(app: &TestApp, gateways: &[GatewayId]) -> Result<(), String> {
    for gateway in gateways {
        let state = app.state.gateways().load(*gateway).await.expect("gateway");
        for (webinar, slot) in &state.reservations {
            let owner = app.state.webinars().load(*webinar).await.expect("webinar");
            if owner.reservation_on(*gateway) != Some(*slot) {
                return Err(format!("{gateway} holds {slot:?} for {webinar}: {owner:?}"));
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_crash_between_reserving_and_scheduling_leaves_no_slot_behind() {
    let db = TestDb::create().await;
    let mut settings = test_settings(&db);
    settings.run_reactors = false;
    let doomed = KillableServer::start(settings);
    let admin = doomed.token("admin", &[], &["admin"]);
    let prof = doomed.token("prof", &["faculty"], &[]);
    let http = reqwest::Client::new();
    let gql = |token: String, body: serde_json::Value| {
        let (http, url) = (http.clone(), format!("http://{}/graphql", doomed.address));
        async move {
            http.post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()
        }
    };
    let mut gateways = Vec::new();
    for n in 0..6 {
        let body = gql(
            admin.clone(),
            json!({ "query": "mutation($i: RegisterGatewayInput!) { registerGateway(input: $i) { id } }",
                "variables": { "i": { "name": format!("G{n}"), "rtmpUrl": "rtmp://h/x",
                    "hlsUrl": "https://h/x.m3u8", "broadcaster": "B",
                    "sipmediagwUrl": format!("https://crash-{n}.example.org") } } }),
        )
        .await
        .expect("register");
        let id = body["data"]["registerGateway"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"));
        gateways.push(id.parse::<GatewayId>().expect("gateway id"));
    }
    // A burst of schedules, cut off mid-flight by a kill.
    let burst = (0..60).map(|n| {
        gql(
            prof.clone(),
            json!({ "query": SCHEDULE, "variables": { "input": { "title": format!("B{n}"),
                "startAt": slot_at(n % 10).to_rfc3339(), "durationMinutes": 60 } } }),
        )
    });
    let burst = tokio::spawn(futures::future::join_all(burst));
    tokio::time::sleep(Duration::from_millis(300)).await;
    doomed.kill();
    let _ = burst.await;

    // Restarted (another instance over the same database), with a short grace period.
    let app = TestApp::spawn_over(db, |s| s.reservation_grace_seconds = 1).await;
    // And one crash made certain: a reservation whose webinar never came.
    let system = Caller::System("test");
    let meta = CommandMetadata::originating(&system, None);
    let orphan_slot = TimeSlot::new_unchecked(slot_at(20), 60);
    app.state
        .gateways()
        .reserve(
            &meta,
            gateways[0],
            WebinarId::new(),
            orphan_slot,
            &Default::default(),
        )
        .await
        .expect("an orphan reservation");
    assert!(reservations_consistent(&app, &gateways).await.is_err());

    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(inconsistency) = reservations_consistent(&app, &gateways).await {
        assert!(
            Instant::now() < deadline,
            "still after the grace period: {inconsistency}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The orphan's slot can be booked again, on its gateway.
    for gateway in &gateways[1..] {
        app.gql(
            Some(&app.admin()),
            "mutation($id: ID!) { setGatewayEnabled(id: $id, enabled: false) { id } }",
            json!({ "id": gateway.to_string() }),
        )
        .await;
    }
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let body = app
        .gql(
            Some(&owner),
            "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { gateway { id } } }",
            json!({ "input": { "title": "Again", "startAt": orphan_slot.start().to_rfc3339(),
                "durationMinutes": 60 } }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
}

// The server, the simulator and the test share this runtime: give it both cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_messages_over_twenty_webinars_are_relayed_in_parallel_each_once() {
    const WEBINARS: usize = 20;
    const PER_WEBINAR: usize = 100;
    let posting = |s: &mut webinar_infra::config::Settings| {
        s.run_reactors = false;
        s.chat_rate_limit = 1_000_000;
    };
    let app = TestApp::spawn_with(posting).await;
    let (sim, url, _sim) = sipmediagw(Api::Legacy, Some("1234")).await;
    let sim = sim.with_slots(WEBINARS);
    sim.set_faults(&[Fault::ChatLatency(Duration::from_millis(20))]);
    register_live_gateway(&app, "Chat", &url, Some("1234"), "LEGACY").await;
    let owner = app.token("owner", &["faculty"], &[], &[]);
    let mut ids = Vec::new();
    for n in 0..WEBINARS {
        // One gateway, one webinar an hour: started now, all of them (a start checks no clock).
        let input = json!({ "title": format!("Chat {n}"), "startAt": slot_at(n as i64).to_rfc3339(),
            "durationMinutes": 60, "enableChat": true });
        let (id, _) = crate::harness::schedule_and_start(&app, &owner, input).await;
        ids.push(id);
    }
    let viewer = app.token("viewer", &["student"], &[], &[]);
    let posts = (0..WEBINARS * PER_WEBINAR).map(|n| {
        let (app, viewer, id) = (&app, viewer.clone(), ids[n % WEBINARS].clone());
        async move {
            app.gql(
                Some(&viewer),
                "mutation($id: ID!, $t: String!) { postChatMessage(webinarId: $id, text: $t) { id } }",
                json!({ "id": id, "t": format!("message {n}") }),
            )
            .await
        }
    });
    use futures::StreamExt;
    let posted: Vec<serde_json::Value> = futures::stream::iter(posts)
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(posted.iter().all(|b| b["errors"].is_null()), "all posted");

    // The relay starts now.
    let app = app
        .restart(|s| {
            s.chat_rate_limit = 1_000_000;
            s.database_max_connections = 20;
        })
        .await;
    let began = Instant::now();
    let deadline = began + Duration::from_secs(60);
    loop {
        let relayed: i64 =
            sqlx::query_scalar("select count(*) from chat_messages where status = 'RELAYED'")
                .fetch_one(&app.db.pool)
                .await
                .expect("count");
        if relayed == (WEBINARS * PER_WEBINAR) as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "{relayed} relayed after 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = began.elapsed();
    eprintln!("2,000 messages (20 ms a call) relayed in {took:?}");
    let chats = sim.counters().chats;
    assert_eq!(chats.len(), WEBINARS * PER_WEBINAR, "each once");
    let mut texts: Vec<&String> = chats.iter().map(|(_, text)| text).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), WEBINARS * PER_WEBINAR, "none twice");
    // In log order within each webinar.
    for id in &ids {
        let room = app
            .state
            .webinars()
            .load(id.parse().expect("id"))
            .await
            .expect("webinar")
            .room
            .expect("room");
        let logged: Vec<String> = sqlx::query_scalar(
            "select '(User viewer) ' || (payload::jsonb #>> '{Posted,text}') from events
              where event_type = 'Posted' and payload::jsonb #>> '{Posted,webinar_id}' = $1
              order by tx_id, global_position",
        )
        .bind(id)
        .fetch_all(&app.db.pool)
        .await
        .expect("posted");
        let relayed: Vec<String> = chats
            .iter()
            .filter(|(r, _)| *r == room)
            .map(|(_, text)| text.clone())
            .collect();
        assert_eq!(relayed, logged, "relayed in the order posted");
    }
    // One at a time, 2,000 calls of 20 ms take 40 s; in parallel lanes, 4 to 8 s on two cores
    // (more when the machine is busy). The bound tells the two apart with room to spare.
    assert!(took < Duration::from_secs(20), "relayed in {took:?}");
}
