//! Two sites on one installation: each with its own administrators, gateways and webinars, and
//! nothing of one visible to, bookable by or changeable from the other.

use std::time::Duration;

use chrono::{Duration as Minutes, Utc};
use serde_json::{json, Value};
use webinar_infra::auth::claims;

use crate::harness::{error_code, receive, silent, subscribe, TestApp};

const SITE_B: &str = "site-b";
/// The host name that serves site B (the `sites` setting), for callers without a `site` claim.
const HOST_B: &str = "webinars.site-b.test";

/// A token in site B (its `site` claim).
fn token_b(app: &TestApp, sub: &str, affiliations: &[&str], roles: &[&str]) -> String {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut claims = claims(
        sub,
        &format!("User {sub}"),
        &own(affiliations),
        &[],
        &own(roles),
        600,
    );
    claims.site = Some(SITE_B.into());
    app.keys.issue(&claims).expect("a token")
}

async fn register(app: &TestApp, admin: &str, name: &str) -> String {
    let body = app
        .gql(
            Some(admin),
            "mutation($input: RegisterGatewayInput!) { registerGateway(input: $input) { id site } }",
            json!({ "input": { "name": name, "rtmpUrl": format!("rtmp://live.example.org/live/{name}"),
                "hlsUrl": format!("https://live.example.org/hls/{name}.m3u8"), "broadcaster": name,
                "sipmediagwUrl": format!("https://{name}.example.org"), "api": "LEGACY" } }),
        )
        .await;
    body["data"]["registerGateway"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

async fn schedule(app: &TestApp, owner: &str, title: &str) -> Value {
    let start = (Utc::now() + Minutes::hours(2)).to_rfc3339();
    app.gql(
        Some(owner),
        "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id site } }",
        json!({ "input": { "title": title, "startAt": start, "durationMinutes": 60 } }),
    )
    .await
}

/// An anonymous request to `/graphql` as sent to `host`.
async fn anonymous_at(app: &TestApp, host: &str, query: &str, variables: Value) -> Value {
    app.http
        .post(app.url("/graphql"))
        .header("host", host)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("POST /graphql")
        .json()
        .await
        .expect("JSON")
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|item| {
            item["id"]
                .as_str()
                .or_else(|| item["node"]["id"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn nothing_crosses_sites() {
    let app = TestApp::spawn_with(|s| s.sites = vec![format!("{HOST_B}={SITE_B}")]).await;
    let admin_a = app.admin();
    let admin_b = token_b(&app, "admin-b", &[], &["admin"]);
    let owner_a = app.token("owner-a", &["faculty"], &[], &[]);
    let owner_b = token_b(&app, "owner-b", &["faculty"], &[]);

    let me = app.gql(Some(&admin_b), "{ me { site } }", json!({})).await;
    assert_eq!(me["data"]["me"]["site"], json!(SITE_B), "{me}");
    // A token without a `site` claim is the default site's: sending site B's host does not make
    // its administrator B's.
    let refused: Value = app
        .http
        .post(app.url("/graphql"))
        .header("host", HOST_B)
        .bearer_auth(&admin_a)
        .json(&json!({ "query": "{ gateways { id } }" }))
        .send()
        .await
        .expect("POST /graphql")
        .json()
        .await
        .expect("JSON");
    assert_eq!(error_code(&refused), Some("UNAUTHENTICATED"), "{refused}");

    // Site A has two gateways, site B one.
    let (a1, a2) = (
        register(&app, &admin_a, "a-one").await,
        register(&app, &admin_a, "a-two").await,
    );
    let b1 = register(&app, &admin_b, "b-one").await;

    let wa = schedule(&app, &owner_a, "Lecture A").await;
    assert_eq!(
        wa["data"]["scheduleWebinar"]["site"],
        json!("default"),
        "{wa}"
    );
    let wa = wa["data"]["scheduleWebinar"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let wb = schedule(&app, &owner_b, "Lecture B").await;
    assert_eq!(wb["data"]["scheduleWebinar"]["site"], json!(SITE_B), "{wb}");
    let wb = wb["data"]["scheduleWebinar"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Allocation: B's webinar is on B's gateway; a second one at the same time finds no gateway
    // although site A has one free.
    let gateway_of = |admin: String, id: String| {
        let app = &app;
        async move {
            app.gql(
                Some(&admin),
                "query($id: ID!) { webinar(id: $id) { gateway { id } } }",
                json!({ "id": id }),
            )
            .await["data"]["webinar"]["gateway"]["id"]
                .clone()
        }
    };
    assert_eq!(gateway_of(admin_b.clone(), wb.clone()).await, json!(b1));
    assert!([json!(a1), json!(a2)].contains(&gateway_of(admin_a.clone(), wa.clone()).await));
    let full = schedule(&app, &owner_b, "Lecture B, again").await;
    assert_eq!(error_code(&full), Some("NO_GATEWAY_AVAILABLE"), "{full}");
    let fits = schedule(&app, &owner_a, "Lecture A, again").await;
    assert!(fits["errors"].is_null(), "{fits}");

    // Queries: each administrator sees their own site only.
    let gateways = |admin: String| {
        let app = &app;
        async move {
            ids(&app
                .gql(Some(&admin), "{ gateways { id site } }", json!({}))
                .await["data"]["gateways"])
        }
    };
    let (mut seen_a, seen_b) = (
        gateways(admin_a.clone()).await,
        gateways(admin_b.clone()).await,
    );
    seen_a.sort();
    let mut both = vec![a1.clone(), a2.clone()];
    both.sort();
    assert_eq!(seen_a, both);
    assert_eq!(seen_b, vec![b1.clone()]);
    for (admin, other) in [(&admin_a, &wb), (&admin_b, &wa)] {
        let body = app
            .gql(
                Some(admin),
                "query($id: ID!) { webinar(id: $id) { id } liveEvent(id: $id) { id } }",
                json!({ "id": other }),
            )
            .await;
        assert_eq!(body["data"]["webinar"], Value::Null, "{body}");
        assert_eq!(body["data"]["liveEvent"], Value::Null, "{body}");
    }
    let mine = app
        .gql(
            Some(&owner_b),
            "{ myWebinars { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(ids(&mine["data"]["myWebinars"]["edges"]), vec![wb.clone()]);
    let capacity = |admin: String| {
        let app = &app;
        async move {
            app.gql(
                Some(&admin),
                "query($from: DateTime!, $to: DateTime!) { capacity(from: $from, to: $to) { enabledGateways } }",
                json!({ "from": Utc::now().to_rfc3339(), "to": (Utc::now() + Minutes::days(1)).to_rfc3339() }),
            )
            .await["data"]["capacity"]["enabledGateways"]
                .clone()
        }
    };
    assert_eq!(capacity(admin_a.clone()).await, json!(2));
    assert_eq!(capacity(admin_b.clone()).await, json!(1));

    // Auditors and analysts: their own site's history and figures only.
    let history = |admin: String, id: String| {
        let app = &app;
        async move {
            app.gql(
                Some(&admin),
                "query($id: ID!, $at: DateTime!) {
                    auditLog(filter: { aggregateId: $id }) { edges { node { eventType } } }
                    webinarAsOf(id: $id, at: $at) { id }
                    webinarStats { webinarId } }",
                json!({ "id": id, "at": (Utc::now() + Minutes::minutes(1)).to_rfc3339() }),
            )
            .await["data"]
                .clone()
        }
    };
    let own = history(admin_b.clone(), wb.clone()).await;
    assert_eq!(
        own["auditLog"]["edges"][0]["node"]["eventType"],
        json!("Scheduled"),
        "{own}"
    );
    assert_eq!(own["webinarAsOf"]["id"], json!(wb), "{own}");
    assert_eq!(
        own["webinarStats"].as_array().map(Vec::len),
        Some(1),
        "{own}"
    );
    let other = history(admin_a.clone(), wb.clone()).await;
    assert_eq!(other["auditLog"]["edges"], json!([]), "{other}");
    assert_eq!(other["webinarAsOf"], Value::Null, "{other}");
    let stats_a: Vec<&Value> = other["webinarStats"]
        .as_array()
        .map(|rows| rows.iter().map(|r| &r["webinarId"]).collect())
        .unwrap_or_default();
    assert!(
        !stats_a.contains(&&json!(wb)) && stats_a.contains(&&json!(wa)),
        "{other}"
    );

    // The live page: anonymous readers see their host's site.
    let page = "{ liveEvents { edges { node { id site } } } }";
    let on_a = anonymous_at(&app, &app.address.to_string(), page, json!({})).await;
    let on_b = anonymous_at(&app, HOST_B, page, json!({})).await;
    // Site B's players are given site B's host, where the event is visible.
    let viewer = anonymous_at(
        &app,
        HOST_B,
        "query($id: ID!) { liveEvent(id: $id) { viewerUrl } }",
        json!({ "id": wb }),
    )
    .await;
    let scheme = app.url("").split("://").next().unwrap_or("http").to_owned();
    assert_eq!(
        viewer["data"]["liveEvent"]["viewerUrl"],
        json!(format!("{scheme}://{HOST_B}/live/{wb}/index.m3u8")),
        "{viewer}"
    );
    let (on_a, on_b) = (
        ids(&on_a["data"]["liveEvents"]["edges"]),
        ids(&on_b["data"]["liveEvents"]["edges"]),
    );
    assert!(on_a.contains(&wa) && !on_a.contains(&wb), "{on_a:?}");
    assert_eq!(on_b, vec![wb.clone()]);
    // The same page again (from the kept answers on the default site): still site A's only.
    let again = anonymous_at(&app, &app.address.to_string(), page, json!({})).await;
    assert_eq!(ids(&again["data"]["liveEvents"]["edges"]), on_a);

    // Mutations: another site's webinar and gateway do not exist.
    let cancel = app
        .gql(
            Some(&admin_a),
            "mutation($id: ID!) { cancelWebinar(id: $id) { id } }",
            json!({ "id": wb }),
        )
        .await;
    assert_eq!(error_code(&cancel), Some("NOT_FOUND"), "{cancel}");
    let disable = app
        .gql(
            Some(&admin_a),
            "mutation($id: ID!) { setGatewayEnabled(id: $id, enabled: false) { id } }",
            json!({ "id": b1 }),
        )
        .await;
    assert_eq!(error_code(&disable), Some("NOT_FOUND"), "{disable}");
    let rename = app
        .gql(
            Some(&admin_b),
            "mutation($id: ID!) { updateWebinar(id: $id, input: { title: \"Taken over\" }) { id } }",
            json!({ "id": wa }),
        )
        .await;
    assert_eq!(error_code(&rename), Some("NOT_FOUND"), "{rename}");

    // Subscriptions: site A's live page hears nothing of B's changes, and nobody may follow
    // another site's webinar.
    let mut follow = subscribe(
        &app,
        Some(&admin_a),
        "subscription($id: ID!) { webinarChanged(id: $id) { id } }",
        json!({ "id": wb }),
    )
    .await;
    let refused = receive(&mut follow).await;
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"],
        json!("NOT_FOUND"),
        "{refused}"
    );
    let mut live_a = subscribe(
        &app,
        None,
        "subscription { liveEventChanged { id site } }",
        json!({}),
    )
    .await;
    // Let the subscription start before the change.
    assert!(silent(&mut live_a, Duration::from_millis(300)).await);
    let renamed = app
        .gql(
            Some(&owner_b),
            "mutation($id: ID!) { updateWebinar(id: $id, input: { title: \"B, renamed\" }) { id } }",
            json!({ "id": wb }),
        )
        .await;
    assert!(renamed["errors"].is_null(), "{renamed}");
    let renamed = app
        .gql(
            Some(&owner_a),
            "mutation($id: ID!) { updateWebinar(id: $id, input: { title: \"A, renamed\" }) { id } }",
            json!({ "id": wa }),
        )
        .await;
    assert!(renamed["errors"].is_null(), "{renamed}");
    loop {
        let heard = receive(&mut live_a).await;
        let event = &heard["payload"]["data"]["liveEventChanged"];
        assert_eq!(event["site"], json!("default"), "{heard}");
        assert_ne!(event["id"], json!(wb), "{heard}");
        if event["id"] == json!(wa) {
            break;
        }
    }
}
