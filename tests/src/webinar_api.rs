//! Webinars through GraphQL: allocation without double booking, moves, permissions, the live page,
//! and bad input.

use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use serde_json::{json, Value};
use webinar_domain::gateway::Gateway;
use webinar_domain::GatewayId;

use crate::harness::{error_code, register_gateway, TestApp};

const SCHEDULE: &str = "mutation($input: ScheduleWebinarInput!) {
    scheduleWebinar(input: $input) { id title status streamState startAt endAt durationMinutes
      restricted groups gatewayName version gateway { id } } }";
const UPDATE: &str = "mutation($id: ID!, $input: UpdateWebinarInput!) {
    updateWebinar(id: $id, input: $input) { id title startAt endAt gateway { id } } }";
const LIVE_EVENTS: &str = "query($status: [LiveEventStatus!]) {
    liveEvents(status: $status, first: 100) { edges { cursor node { id title status restricted
      hlsUrl broadcaster startAt } } pageInfo { hasNextPage endCursor } } }";

/// Two days from now at `hour:minute` UTC: always in the future, never in the past rule.
fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    let day = (Utc::now() + Duration::days(2)).date_naive();
    day.and_hms_opt(hour, minute, 0)
        .expect("valid time")
        .and_utc()
}

fn presenter(app: &TestApp, sub: &str) -> String {
    app.token(sub, &["faculty"], &[], &[])
}

fn input(title: &str, start: DateTime<Utc>, minutes: i64) -> Value {
    json!({ "title": title, "startAt": start.to_rfc3339(), "durationMinutes": minutes })
}

async fn schedule(app: &TestApp, token: &str, input: Value) -> Value {
    app.gql(Some(token), SCHEDULE, json!({ "input": input }))
        .await
}

async fn schedule_ok(app: &TestApp, token: &str, input: Value) -> Value {
    let body = schedule(app, token, input).await;
    assert!(body["errors"].is_null(), "scheduleWebinar failed: {body}");
    body["data"]["scheduleWebinar"].clone()
}

/// Every gateway's reservations, from the aggregates: (gateway, slots).
async fn aggregate_reservations(app: &TestApp, gateways: &[String]) -> Vec<(String, Gateway)> {
    let mut out = Vec::new();
    for id in gateways {
        let gateway_id: GatewayId = id.parse().expect("uuid");
        out.push((
            id.clone(),
            app.state.gateways().load(gateway_id).await.expect("load"),
        ));
    }
    out
}

/// Waits until the gateways' reservations satisfy `done` (the saga's reactions run after the
/// request); returns them.
async fn reservations_until(
    app: &TestApp,
    gateways: &[String],
    done: impl Fn(&[(String, Gateway)]) -> bool,
) -> Vec<(String, Gateway)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let held = aggregate_reservations(app, gateways).await;
        if done(&held) {
            return held;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reservations not as expected within 10 s: {held:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn assert_no_overlap(gateway: &Gateway) {
    let slots: Vec<_> = gateway.reservations.values().collect();
    for (i, a) in slots.iter().enumerate() {
        for b in &slots[i + 1..] {
            assert!(!a.overlaps(b), "double booking: {a:?} and {b:?}");
        }
    }
}

async fn projected_overlaps(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "select count(*) from gateway_reservations a join gateway_reservations b
            on a.gateway_id = b.gateway_id and a.webinar_id < b.webinar_id
           and a.starts_at < b.ends_at and b.starts_at < a.ends_at",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("query reservations")
}

#[tokio::test]
async fn fifty_concurrent_schedules_for_one_slot_on_three_gateways_give_exactly_three() {
    let app = TestApp::spawn().await;
    let mut gateways = Vec::new();
    for n in 0..3 {
        gateways.push(register_gateway(&app, &format!("g{n}"), None).await);
    }
    let token = presenter(&app, "prof");
    let calls =
        (0..50).map(|i| schedule(&app, &token, input(&format!("Lecture {i}"), at(10, 0), 60)));
    let results = join_all(calls).await;
    let ok: Vec<&Value> = results.iter().filter(|b| b["errors"].is_null()).collect();
    let refused = results
        .iter()
        .filter(|b| error_code(b) == Some("NO_GATEWAY_AVAILABLE"))
        .count();
    assert_eq!(ok.len(), 3, "{results:#?}");
    assert_eq!(
        refused, 47,
        "the others are refused with NO_GATEWAY_AVAILABLE"
    );
    let mut used: Vec<String> = ok
        .iter()
        .map(|b| {
            b["data"]["scheduleWebinar"]["gatewayName"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    used.sort();
    used.dedup();
    assert_eq!(used.len(), 3, "each winner holds its own gateway");

    for (id, gateway) in aggregate_reservations(&app, &gateways).await {
        assert_eq!(
            gateway.reservations.len(),
            1,
            "gateway {id} holds exactly one reservation"
        );
        assert_no_overlap(&gateway);
    }
    assert_eq!(projected_overlaps(&app).await, 0);
    let rows: i64 = sqlx::query_scalar("select count(*) from gateway_reservations")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(rows, 3, "gateway_reservations agrees with the aggregates");
    let webinars: i64 = sqlx::query_scalar("select count(*) from webinars")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(webinars, 3, "refused requests left no webinar behind");
}

#[tokio::test]
async fn back_to_back_slots_share_a_gateway_and_overlapping_ones_do_not() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "only", None).await;
    let token = presenter(&app, "prof");
    schedule_ok(&app, &token, input("Ten", at(10, 0), 60)).await;
    schedule_ok(&app, &token, input("Eleven", at(11, 0), 60)).await;
    let body = schedule(&app, &token, input("Ten fifty-nine", at(10, 59), 61)).await;
    assert_eq!(error_code(&body), Some("NO_GATEWAY_AVAILABLE"), "{body}");
}

#[tokio::test]
async fn moving_into_a_taken_slot_changes_gateway_or_fails_leaving_everything_as_it_was() {
    let app = TestApp::spawn().await;
    let g1 = register_gateway(&app, "one", None).await;
    let token = presenter(&app, "prof");
    let first = schedule_ok(&app, &token, input("First", at(10, 0), 60)).await;
    let second = schedule_ok(&app, &token, input("Second", at(12, 0), 60)).await;
    let second_id = second["id"].as_str().expect("id").to_owned();

    // Only one gateway: moving Second onto First's slot must fail and change nothing.
    let body = app
        .gql(
            Some(&token),
            UPDATE,
            json!({ "id": second_id, "input": { "startAt": at(10, 30).to_rfc3339() } }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NO_GATEWAY_AVAILABLE"), "{body}");
    let webinar = app
        .gql(
            Some(&token),
            "query($id: ID!) { webinar(id: $id) { startAt gatewayName } }",
            json!({ "id": second_id }),
        )
        .await;
    assert_eq!(
        webinar["data"]["webinar"]["startAt"]
            .as_str()
            .map(|s| s.parse::<DateTime<Utc>>().ok()),
        Some(Some(at(12, 0))),
        "{webinar}"
    );
    let held = aggregate_reservations(&app, std::slice::from_ref(&g1)).await;
    assert_eq!(
        held[0].1.reservations.len(),
        2,
        "both reservations still on the gateway"
    );

    // With a second gateway free, the move succeeds there.
    let g2 = register_gateway(&app, "two", None).await;
    let admin = app.admin();
    let body = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({ "id": second_id, "input": { "startAt": at(10, 30).to_rfc3339() } }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(body["data"]["updateWebinar"]["gateway"]["id"], json!(g2));
    // The old gateway is freed by the reaction to `GatewayReassigned`.
    let held = reservations_until(&app, &[g1.clone(), g2.clone()], |held| {
        held[0].1.reservations.len() == 1
    })
    .await;
    assert_eq!(held[1].1.reservations.len(), 1, "the new gateway holds it");
    for (_, gateway) in &held {
        assert_no_overlap(gateway);
    }
    assert_eq!(projected_overlaps(&app).await, 0);

    // Moving within its own free slot keeps the gateway.
    let first_id = first["id"].as_str().expect("id");
    let body = app
        .gql(
            Some(&token),
            UPDATE,
            json!({ "id": first_id, "input": { "durationMinutes": 90 } }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let events: Vec<String> = sqlx::query_scalar(
        "select event_type from events where aggregate_id = $1 order by sequence",
    )
    .bind(first_id)
    .fetch_all(&app.db.pool)
    .await
    .expect("events");
    assert_eq!(
        events,
        vec!["Scheduled", "Rescheduled"],
        "no GatewayReassigned"
    );
}

#[tokio::test]
async fn cancelling_frees_the_gateway_and_marks_the_live_event() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "c", None).await;
    let token = presenter(&app, "prof");
    let webinar = schedule_ok(&app, &token, input("Doomed", at(10, 0), 60)).await;
    let id = webinar["id"].as_str().expect("id");
    let body = app
        .gql(
            Some(&token),
            "mutation($id: ID!) { cancelWebinar(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        body["data"]["cancelWebinar"]["status"],
        json!("CANCELLED"),
        "{body}"
    );
    // Another client sees it at once, and the slot is free again.
    let body = app
        .gql(None, LIVE_EVENTS, json!({ "status": ["UPCOMING"] }))
        .await;
    assert_eq!(body["data"]["liveEvents"]["edges"], json!([]), "{body}");
    schedule_ok(&app, &token, input("Replacement", at(10, 0), 60)).await;
}

#[tokio::test]
async fn the_live_page_hides_restricted_events_from_those_who_may_not_see_them() {
    let app = TestApp::spawn().await;
    for n in 0..3 {
        register_gateway(&app, &format!("v{n}"), None).await;
    }
    let owner = presenter(&app, "owner");
    schedule_ok(&app, &owner, input("Public", at(9, 0), 60)).await;
    let mut restricted = input("Logged in only", at(9, 0), 60);
    restricted["restricted"] = json!(true);
    schedule_ok(&app, &owner, restricted).await;
    let mut grouped = input("L1 only", at(9, 0), 60);
    grouped["groups"] = json!(["l1"]);
    let grouped = schedule_ok(&app, &owner, grouped).await;
    assert_eq!(
        grouped["restricted"],
        json!(true),
        "a group makes it restricted"
    );

    let titles = |body: &Value| -> Vec<String> {
        body["data"]["liveEvents"]["edges"]
            .as_array()
            .map(|edges| {
                edges
                    .iter()
                    .map(|e| e["node"]["title"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let seen = |who: Option<String>| {
        let app = &app;
        async move { titles(&app.gql(who.as_deref(), LIVE_EVENTS, json!({})).await) }
    };
    let anonymous = seen(None).await;
    assert_eq!(
        anonymous,
        vec!["Public"],
        "anonymous sees only the public event"
    );
    let student = seen(Some(app.token("s", &["student"], &[], &[]))).await;
    assert_eq!(
        student.len(),
        2,
        "a signed-in student sees public and restricted: {student:?}"
    );
    assert!(!student.contains(&"L1 only".to_owned()));
    let member = seen(Some(app.token("m", &["student"], &["l1"], &[]))).await;
    assert_eq!(member.len(), 3, "{member:?}");
    assert_eq!(
        seen(Some(owner.clone())).await.len(),
        3,
        "the owner sees all of theirs"
    );
    assert_eq!(
        seen(Some(app.admin())).await.len(),
        3,
        "administrators see everything"
    );

    // The same rule on the single-event path.
    let id = grouped["id"].as_str().expect("id");
    let one = "query($id: ID!) { liveEvent(id: $id) { id hlsUrl } }";
    let body = app.gql(None, one, json!({ "id": id })).await;
    assert_eq!(body["data"]["liveEvent"], json!(null));
    let body = app
        .gql(
            Some(&app.token("m", &[], &["l1"], &[])),
            one,
            json!({ "id": id }),
        )
        .await;
    assert!(
        body["data"]["liveEvent"]["hlsUrl"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "{body}"
    );
}

#[tokio::test]
async fn live_events_paginate_with_relay_cursors() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "p", None).await;
    let owner = presenter(&app, "owner");
    for hour in 8..13 {
        schedule_ok(&app, &owner, input(&format!("H{hour}"), at(hour, 0), 60)).await;
    }
    let page = "query($after: String) { liveEvents(first: 2, after: $after) {
        edges { cursor node { title } } pageInfo { hasNextPage endCursor } } }";
    let mut after = Value::Null;
    let mut titles = Vec::new();
    loop {
        let body = app.gql(None, page, json!({ "after": after })).await;
        let connection = &body["data"]["liveEvents"];
        for edge in connection["edges"].as_array().expect("edges") {
            titles.push(edge["node"]["title"].as_str().unwrap_or("").to_owned());
        }
        if connection["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(titles, vec!["H8", "H9", "H10", "H11", "H12"]);
    let body = app.gql(None, page, json!({ "after": "zzz" })).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    let body = app
        .gql(
            None,
            "{ liveEvents(first: 1000) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
}

#[tokio::test]
async fn bad_webinar_input_gets_a_coded_error_naming_the_field_and_changes_nothing() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "b", None).await;
    let token = presenter(&app, "prof");
    let good = input("Fine", at(10, 0), 60);
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "title": "" }), "input.title"),
        (json!({ "title": "   " }), "input.title"),
        (json!({ "title": "t".repeat(251) }), "input.title"),
        (json!({ "durationMinutes": 0 }), "input.durationMinutes"),
        (json!({ "durationMinutes": 301 }), "input.durationMinutes"),
        (
            json!({ "startAt": (Utc::now() - Duration::days(1)).to_rfc3339() }),
            "input.startAt",
        ),
        (
            json!({ "description": "d".repeat(10 * 1024 * 1024) }),
            "input.description",
        ),
        (json!({ "groups": [""] }), "input.groups"),
        (
            json!({ "presenters": [{ "id": "", "name": "x" }] }),
            "input.presenters[0]",
        ),
    ];
    for (patch, field) in cases {
        let mut body_input = good.clone();
        for (k, v) in patch.as_object().expect("object") {
            body_input[k] = v.clone();
        }
        let body = schedule(&app, &token, body_input).await;
        assert_eq!(
            error_code(&body),
            Some("BAD_USER_INPUT"),
            "{field}: {}",
            &body.to_string()[..200.min(body.to_string().len())]
        );
        assert_eq!(body["errors"][0]["extensions"]["field"], json!(field));
    }
    // A start without a time zone is not a DateTime: refused by the schema, naming the argument.
    let mut naive = good.clone();
    naive["startAt"] = json!("2031-01-01T10:00:00");
    let body = schedule(&app, &token, naive).await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["field"],
        json!("input.startAt"),
        "{body}"
    );

    for (id, code) in [
        (json!("not-a-uuid"), "BAD_USER_INPUT"),
        (json!(uuid::Uuid::new_v4()), "NOT_FOUND"),
    ] {
        let body = app
            .gql(
                Some(&token),
                UPDATE,
                json!({ "id": id, "input": { "title": "x" } }),
            )
            .await;
        assert_eq!(error_code(&body), Some(code), "{body}");
        let body = app
            .gql(
                Some(&token),
                "mutation($id: ID!) { cancelWebinar(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(error_code(&body), Some(code), "{body}");
    }
    let written: i64 =
        sqlx::query_scalar("select count(*) from events where aggregate_type = 'Webinar'")
            .fetch_one(&app.db.pool)
            .await
            .expect("count");
    assert_eq!(written, 0, "nothing was written");
}

#[tokio::test]
async fn the_presenters_controls_move_the_lifecycle_and_refuse_what_makes_no_sense() {
    // The commands alone: no reactor acts on them here (the end-to-end tests cover that).
    let app = TestApp::spawn_with(|settings| settings.run_reactors = false).await;
    let secret = app.bbb_secret.clone();
    let gateway = register_gateway(&app, "life", None).await;
    let owner = presenter(&app, "owner");
    let webinar = schedule_ok(&app, &owner, input("Lifecycle", at(10, 0), 60)).await;
    let id = webinar["id"].as_str().expect("id").to_owned();
    let control = |name: &str| {
        format!("mutation($id: ID!) {{ {name}(id: $id) {{ status streamState version }} }}")
    };

    let body = app
        .gql(
            Some(&owner),
            "mutation($id: ID!) { startWebinar(id: $id) { joinUrl webinar { status streamState } } }",
            json!({ "id": id }),
        )
        .await;
    let payload = &body["data"]["startWebinar"];
    assert_eq!(
        payload["webinar"],
        json!({ "status": "LIVE", "streamState": "STARTING" }),
        "{body}"
    );
    // The join URL is signed as BBB checks it: sha256(call + query + secret).
    let url = payload["joinUrl"].as_str().expect("joinUrl");
    let (path, query) = url.split_once('?').expect("a query");
    assert!(path.ends_with("/join"), "{url}");
    let (signed, checksum) = query.rsplit_once("&checksum=").expect("a checksum");
    let expected = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            format!("join{signed}{secret}").as_bytes(),
        ))
    };
    assert_eq!(checksum, expected);
    assert!(signed.contains("role=MODERATOR"), "{url}");
    assert!(!url.contains(&secret), "the secret never travels");

    // Starting again (a presenter rejoining) asks for no second stream.
    let again = app
        .gql(
            Some(&owner),
            "mutation($id: ID!) { startWebinar(id: $id) { webinar { version } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        again["data"]["startWebinar"]["webinar"]["version"],
        json!(3),
        "{again}"
    );

    let body = app
        .gql(Some(&owner), &control("cancelWebinar"), json!({ "id": id }))
        .await;
    assert_eq!(error_code(&body), Some("INVALID_STATE"), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("LIVE")),
        "{body}"
    );

    let body = app
        .gql(Some(&owner), &control("stopLive"), json!({ "id": id }))
        .await;
    assert_eq!(
        body["data"]["stopLive"]["streamState"],
        json!("STOPPING"),
        "{body}"
    );
    let body = app
        .gql(Some(&owner), &control("stopLive"), json!({ "id": id }))
        .await;
    assert_eq!(
        body["data"]["stopLive"]["version"],
        json!(4),
        "stopping again records nothing: {body}"
    );
    let body = app
        .gql(Some(&owner), &control("restartLive"), json!({ "id": id }))
        .await;
    assert_eq!(
        body["data"]["restartLive"]["streamState"],
        json!("STARTING"),
        "{body}"
    );
    let body = app
        .gql(Some(&owner), &control("endWebinar"), json!({ "id": id }))
        .await;
    assert_eq!(
        body["data"]["endWebinar"],
        json!({ "status": "ENDED", "streamState": "STOPPING", "version": 8 }),
        "{body}"
    );
    let body = app
        .gql(Some(&owner), &control("endWebinar"), json!({ "id": id }))
        .await;
    assert_eq!(
        body["data"]["endWebinar"]["version"],
        json!(8),
        "ending again is a no-op: {body}"
    );

    // The live page says so at once, and the gateway is free again.
    let live = app
        .gql(
            None,
            "query($id: ID!) { liveEvent(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        live["data"]["liveEvent"]["status"],
        json!("ENDED"),
        "{live}"
    );
    // Ending releases the reservation (a reaction to `Ended`; no reactor runs on this server).
    app.run_reservations_until_idle().await;
    reservations_until(&app, std::slice::from_ref(&gateway), |held| {
        held[0].1.reservations.is_empty()
    })
    .await;
    let types: Vec<String> = sqlx::query_scalar(
        "select event_type from events where aggregate_id = $1 order by sequence",
    )
    .bind(&id)
    .fetch_all(&app.db.pool)
    .await
    .expect("events");
    assert_eq!(
        types,
        vec![
            "Scheduled",
            "Started",
            "StreamStartRequested",
            "StreamStopRequested",
            "StreamRestartRequested",
            "MeetingEnded",
            "StreamStopRequested",
            "Ended"
        ]
    );
}

#[tokio::test]
async fn starting_without_bbb_configured_says_so_and_records_nothing() {
    let app = TestApp::spawn_with(|settings| {
        settings.bbb_url = None;
        settings.bbb_secret = None;
    })
    .await;
    register_gateway(&app, "nobbb", None).await;
    let owner = presenter(&app, "owner");
    let webinar = schedule_ok(&app, &owner, input("No BBB", at(10, 0), 60)).await;
    let id = webinar["id"].as_str().expect("id");
    let body = app
        .gql(
            Some(&owner),
            "mutation($id: ID!) { startWebinar(id: $id) { joinUrl } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("UPSTREAM_UNAVAILABLE"), "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("not configured")));
    let count: i64 = sqlx::query_scalar("select count(*) from events where aggregate_id = $1")
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(count, 1, "only Scheduled");
}

#[tokio::test]
async fn webinar_as_of_replays_the_states_the_webinar_had() {
    let app = TestApp::spawn_with(|settings| settings.run_reactors = false).await;
    register_gateway(&app, "asof", None).await;
    let owner = presenter(&app, "owner");
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(30));
    let before = Utc::now();
    pause().await;
    let webinar = schedule_ok(&app, &owner, input("Before", at(10, 0), 60)).await;
    let id = webinar["id"].as_str().expect("id").to_owned();
    pause().await;
    let scheduled = Utc::now();
    pause().await;
    app.gql(
        Some(&owner),
        UPDATE,
        json!({ "id": id, "input": { "title": "After", "durationMinutes": 90 } }),
    )
    .await;
    pause().await;
    let renamed = Utc::now();
    pause().await;
    app.gql(
        Some(&owner),
        "mutation($id: ID!) { cancelWebinar(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    pause().await;
    let cancelled = Utc::now();

    let auditor = app.token("aud", &[], &[], &["auditor"]);
    let query = "query($id: ID!, $at: DateTime!) { webinarAsOf(id: $id, at: $at) {
        title status durationMinutes version owner { id } } }";
    let as_of = |at: DateTime<Utc>| {
        let (app, auditor, id) = (&app, auditor.clone(), id.clone());
        async move {
            app.gql(
                Some(&auditor),
                query,
                json!({ "id": id, "at": at.to_rfc3339() }),
            )
            .await["data"]["webinarAsOf"]
                .clone()
        }
    };
    assert_eq!(as_of(before).await, json!(null), "it did not exist yet");
    assert_eq!(
        as_of(scheduled).await,
        json!({ "title": "Before", "status": "SCHEDULED", "durationMinutes": 60, "version": 1, "owner": { "id": "owner" } })
    );
    let after_rename = as_of(renamed).await;
    assert_eq!(after_rename["title"], json!("After"));
    assert_eq!(after_rename["durationMinutes"], json!(90));
    assert_eq!(after_rename["status"], json!("SCHEDULED"));
    assert_eq!(as_of(cancelled).await["status"], json!("CANCELLED"));

    let viewer = app.token("v", &["student"], &[], &[]);
    let body = app
        .gql(
            Some(&viewer),
            query,
            json!({ "id": id, "at": cancelled.to_rfc3339() }),
        )
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let body = app
        .gql(
            None,
            query,
            json!({ "id": id, "at": cancelled.to_rfc3339() }),
        )
        .await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
}

#[tokio::test]
async fn a_stream_written_with_scheduled_version_1_still_loads_projects_and_takes_commands() {
    let app = TestApp::spawn_with(|settings| settings.run_reactors = false).await;
    let gateway = register_gateway(&app, "old", None).await;
    let id = uuid::Uuid::now_v7();
    let start = at(10, 0);
    // As version 1.0 wrote it: no `record`.
    let v1 = json!({"Scheduled": {
        "title": "From 2025", "description": null, "owner": {"id": "owner", "name": "Olivia"},
        "presenters": [], "start_at": start, "duration_minutes": 60, "enable_chat": false,
        "restricted": false, "groups": [], "gateway_id": gateway, "room": "oldroom1"}});
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         values ('Webinar', $1, 1, 'Scheduled', '1.0', $2, '{\"actor_id\": \"owner\"}'),
                ('Webinar', $1, 2, 'ChatEnabled', '1.0', '\"ChatEnabled\"', '{\"actor_id\": \"owner\"}')",
    )
    .bind(id.to_string())
    .bind(sqlx::types::Json(&v1))
    .execute(&app.db.pool)
    .await
    .expect("write a version 1 stream");

    let loaded = app
        .state
        .webinars()
        .load(webinar_domain::WebinarId::from_uuid(id))
        .await
        .expect("the aggregate loads through the upcaster");
    assert!(loaded.scheduled && loaded.enable_chat && !loaded.record);

    let owner = presenter(&app, "owner");
    let query = "query($id: ID!) { webinar(id: $id) { title enableChat version } }";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = app.gql(Some(&owner), query, json!({ "id": id })).await;
        if body["data"]["webinar"]["version"] == json!(2) {
            assert_eq!(body["data"]["webinar"]["title"], json!("From 2025"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the projector did not read the v1 event: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let body = app
        .gql(
            Some(&owner),
            UPDATE,
            json!({ "id": id, "input": { "title": "Renamed" } }),
        )
        .await;
    assert_eq!(
        body["data"]["updateWebinar"]["title"],
        json!("Renamed"),
        "{body}"
    );
    let auditor = app.token("aud", &[], &[], &["auditor"]);
    let body = app
        .gql(
            Some(&auditor),
            "query($id: ID!, $at: DateTime!) { webinarAsOf(id: $id, at: $at) { title } }",
            json!({ "id": id, "at": Utc::now().to_rfc3339() }),
        )
        .await;
    assert_eq!(
        body["data"]["webinarAsOf"]["title"],
        json!("Renamed"),
        "{body}"
    );

    // New webinars are written as version 2.0.
    let fresh = schedule_ok(&app, &owner, input("New", at(12, 0), 60)).await;
    let version: String = sqlx::query_scalar(
        "select event_version from events where aggregate_id = $1 and sequence = 1",
    )
    .bind(fresh["id"].as_str().expect("id"))
    .fetch_one(&app.db.pool)
    .await
    .expect("version");
    assert_eq!(version, "2.0");
}
