//! The live page served from memory: a page read right after a mutation returned shows it, on the
//! instance that wrote and on another one, for anonymous readers too (an event made public
//! appears, one made restricted disappears), while reads with nothing new in between are served
//! without PostgreSQL.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::harness::{register_gateway, TestApp, TestDb};

const PAGE: &str = "{ liveEvents(first: 50) { edges { node { id title restricted } } } }";
const ONE: &str = "query($id: ID!) { liveEvent(id: $id) { id title } }";
const UPDATE: &str = "mutation($id: ID!, $input: UpdateWebinarInput!) {
    updateWebinar(id: $id, input: $input) { id title } }";

/// The titles of the live page as `token` sees it.
async fn page(app: &TestApp, token: Option<&str>) -> Vec<(String, String)> {
    let body = app.gql(token, PAGE, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["liveEvents"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|e| {
            let node = &e["node"];
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&node["id"]), text(&node["title"]))
        })
        .collect()
}

async fn one(app: &TestApp, token: Option<&str>, id: &str) -> Value {
    let body = app.gql(token, ONE, json!({ "id": id })).await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["liveEvent"].clone()
}

#[tokio::test]
async fn a_cached_live_page_shows_each_mutation_as_soon_as_it_returns_on_every_instance() {
    let db = TestDb::create().await;
    let shared = db.shared();
    let first = TestApp::spawn_over(db, |_| {}).await;
    let second = TestApp::spawn_over(shared, |s| s.run_reactors = false).await;
    let gateway = register_gateway(&first, "a", None).await;
    register_gateway(&first, "b", None).await;
    let owner = first.token("prof", &["faculty"], &[], &[]);
    // Each instance signs its own tokens (the harness gives each a secret).
    let owner_on = |app: &TestApp| app.token("prof", &["faculty"], &[], &[]);
    let student_on = |app: &TestApp| app.token("student", &["student"], &["l1-maths"], &[]);
    let student = student_on(&first);
    let start = Utc::now() + Duration::days(2);
    let body = first
        .gql(
            Some(&owner),
            "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }",
            json!({ "input": { "title": "Analysis 1", "startAt": start.to_rfc3339(),
                               "durationMinutes": 60, "restricted": true } }),
        )
        .await;
    let id = body["data"]["scheduleWebinar"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let public = first
        .gql(
            Some(&owner),
            "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }",
            json!({ "input": { "title": "Open lecture", "startAt": start.to_rfc3339(),
                               "durationMinutes": 60 } }),
        )
        .await;
    assert!(public["errors"].is_null(), "{public}");
    let apps = [&first, &second];

    for round in 0..6 {
        // Alternate the writer, so each instance reads the other's writes too.
        let writer = apps[round % 2];
        let title = format!("Analysis 1, take {round}");
        let made_public = round % 2 == 0;
        let answer = writer
            .gql(
                Some(&owner_on(writer)),
                UPDATE,
                json!({ "id": id, "input": { "title": title, "restricted": !made_public } }),
            )
            .await;
        assert_eq!(
            answer["data"]["updateWebinar"]["title"],
            json!(title),
            "{answer}"
        );
        for (n, reader) in apps.iter().enumerate() {
            // Anonymous readers see it exactly while it is public, with the new title.
            let anonymous = page(reader, None).await;
            let shown = anonymous.iter().find(|(i, _)| *i == id);
            if made_public {
                assert_eq!(
                    shown.map(|(_, t)| t.as_str()),
                    Some(title.as_str()),
                    "round {round}: instance {n}'s anonymous page lags the write: {anonymous:?}"
                );
                assert_eq!(one(reader, None, &id).await["title"], json!(title));
            } else {
                assert!(
                    shown.is_none(),
                    "round {round}: instance {n} shows a restricted event to anyone: {anonymous:?}"
                );
                assert!(one(reader, None, &id).await.is_null());
            }
            // A signed-in student sees it either way, with the new title.
            let student = student_on(reader);
            let signed_in = page(reader, Some(&student)).await;
            assert!(
                signed_in.contains(&(id.clone(), title.clone())),
                "round {round}: instance {n}'s page lags the write: {signed_in:?}"
            );
            assert_eq!(
                one(reader, Some(&student), &id).await["title"],
                json!(title)
            );
        }
    }

    // With nothing new in between, the page comes from memory: for a student, the rows kept (the
    // anonymous answer is kept whole, as bytes, and does not reach the rows at all).
    let (hits, misses) = first.state.reads().live_page_hits_and_misses();
    for _ in 0..20 {
        // The last round made it restricted again: the open lecture only.
        assert_eq!(page(&first, None).await.len(), 1);
        assert_eq!(page(&first, Some(&student)).await.len(), 2);
    }
    let (hits_after, misses_after) = first.state.reads().live_page_hits_and_misses();
    assert!(
        hits_after - hits >= 19,
        "20 signed-in reads of an unchanged page, {} from memory",
        hits_after - hits
    );
    assert!(
        misses_after - misses <= 2,
        "{} misses",
        misses_after - misses
    );

    // News that leaves the live page as it is (a gateway renamed: its events move the
    // projector on, but no live event shows the name) keeps it in memory; a new stream address
    // shows at once.
    let renamed = first
        .gql(
            Some(&first.admin()),
            "mutation($id: ID!) { updateGateway(id: $id, input: { name: \"Amphi A\" }) { id } }",
            json!({ "id": gateway }),
        )
        .await;
    assert!(renamed["errors"].is_null(), "{renamed}");
    let (hits, misses) = first.state.reads().live_page_hits_and_misses();
    for _ in 0..5 {
        assert_eq!(page(&first, Some(&student)).await.len(), 2);
    }
    let (hits_after, misses_after) = first.state.reads().live_page_hits_and_misses();
    assert_eq!(
        (hits_after - hits, misses_after - misses),
        (5, 0),
        "a change that leaves the live page as it is must keep it"
    );
    let hls = "https://live.example.org/hls/amphi-a.m3u8";
    let moved = first
        .gql(
            Some(&first.admin()),
            "mutation($id: ID!, $hls: String!) { updateGateway(id: $id, input: { hlsUrl: $hls }) { id } }",
            json!({ "id": gateway, "hls": hls }),
        )
        .await;
    assert!(moved["errors"].is_null(), "{moved}");
    // Read by the student (the event on gateway a is restricted by now), on the other instance.
    let body = second
        .gql(
            Some(&student_on(&second)),
            "{ liveEvents(first: 50) { edges { node { hlsUrl } } } }",
            json!({}),
        )
        .await;
    let urls: Vec<&str> = body["data"]["liveEvents"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .filter_map(|e| e["node"]["hlsUrl"].as_str())
        .collect();
    assert!(urls.contains(&hls), "{urls:?}");

    second.stop().await;
    first.stop().await;
}
