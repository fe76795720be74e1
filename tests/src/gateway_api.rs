//! The gateway slice through GraphQL: concurrency, secrets, permissions and bad input.

use futures::future::join_all;
use serde_json::{json, Value};
use webinar_domain::GatewayId;

use crate::harness::{captured_logs, error_code, register_gateway, TestApp};

const UPDATE: &str = "mutation($id: ID!, $input: UpdateGatewayInput!) {
    updateGateway(id: $id, input: $input) { id name broadcaster version hasToken } }";
const LIST: &str = "{ gateways { id name rtmpUrl hlsUrl broadcaster sipmediagwUrl api enabled
    retired hasToken disabledReason version } }";

async fn gateway_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from events where aggregate_type = 'Gateway'")
        .fetch_one(&app.db.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn twenty_concurrent_updates_leave_a_gapless_stream_and_a_matching_projection() {
    let app = TestApp::spawn().await;
    let id = register_gateway(&app, "busy", Some("1234")).await;
    let admin = app.admin();

    let calls = (0..20).map(|i| {
        let (app, admin, id) = (&app, &admin, &id);
        async move {
            app.gql(
                Some(admin),
                UPDATE,
                json!({ "id": id, "input": { "name": format!("Name {i}"), "broadcaster": format!("B {i}") } }),
            )
            .await
        }
    });
    let results = join_all(calls).await;
    let mut succeeded = 0;
    for body in &results {
        if body["errors"].is_null() {
            succeeded += 1;
            assert!(
                body["data"]["updateGateway"]["name"].as_str().is_some(),
                "{body}"
            );
        } else {
            assert_eq!(
                error_code(body),
                Some("CONFLICT"),
                "only a coded conflict may fail: {body}"
            );
        }
    }
    assert!(succeeded > 0, "at least one update must win");

    let sequences: Vec<i64> = sqlx::query_scalar(
        "select sequence from events where aggregate_type = 'Gateway' and aggregate_id = $1
          order by sequence",
    )
    .bind(&id)
    .fetch_all(&app.db.pool)
    .await
    .expect("read the stream");
    let expected: Vec<i64> = (1..=sequences.len() as i64).collect();
    assert_eq!(sequences, expected, "no hole in the stream");
    assert_eq!(
        sequences.len(),
        1 + succeeded,
        "one event per successful update"
    );

    let gateway_id: GatewayId = id.parse().expect("uuid");
    let aggregate = app.state.gateways().load(gateway_id).await.expect("load");
    let row = webinar_projections::gateways::get(&app.db.pool, gateway_id)
        .await
        .expect("read")
        .expect("row");
    assert!(
        row.matches(&aggregate),
        "projection {row:?} equals aggregate {aggregate:?}"
    );
    assert_eq!(row.version, sequences.len() as i64);
}

#[tokio::test]
async fn the_gateway_token_appears_in_no_response_no_event_no_snapshot_and_no_log() {
    let app = TestApp::spawn().await;
    let first = format!("first-secret-{}", uuid::Uuid::new_v4().simple());
    let second = format!("second-secret-{}", uuid::Uuid::new_v4().simple());
    let admin = app.admin();
    let mut responses = Vec::new();

    let body = app
        .gql(
            Some(&admin),
            "mutation($input: RegisterGatewayInput!) { registerGateway(input: $input) { id hasToken } }",
            json!({ "input": {
                "name": "Secret", "rtmpUrl": "rtmp://live.example.org/live/s",
                "hlsUrl": "https://live.example.org/s.m3u8", "broadcaster": "S",
                "sipmediagwUrl": "https://gw-secret.example.org", "sipmediagwToken": first,
            }}),
        )
        .await;
    let id = body["data"]["registerGateway"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(body["data"]["registerGateway"]["hasToken"], json!(true));
    responses.push(body);
    // Rotate it, then read everything back; enough updates to force snapshots.
    for i in 0..60 {
        let token = if i == 30 { Some(second.clone()) } else { None };
        responses.push(
            app.gql(
                Some(&admin),
                UPDATE,
                json!({ "id": id, "input": { "name": format!("Secret {i}"), "sipmediagwToken": token } }),
            )
            .await,
        );
    }
    responses.push(app.gql(Some(&admin), LIST, json!({})).await);
    // A bad request that carries the token must not echo it either.
    responses.push(
        app.gql(
            Some(&admin),
            UPDATE,
            json!({ "id": id, "input": { "rtmpUrl": "ftp://x", "sipmediagwToken": second } }),
        )
        .await,
    );

    for body in &responses {
        let text = body.to_string();
        assert!(
            !text.contains(&first) && !text.contains(&second),
            "response leaks: {text}"
        );
    }
    let leaks: i64 = sqlx::query_scalar(
        "select (select count(*) from events
                  where payload::text like '%' || $1 || '%' or payload::text like '%' || $2 || '%'
                     or metadata::text like '%' || $1 || '%' or metadata::text like '%' || $2 || '%')
              + (select count(*) from snapshots
                  where payload::text like '%' || $1 || '%' or payload::text like '%' || $2 || '%')",
    )
    .bind(&first)
    .bind(&second)
    .fetch_one(&app.db.pool)
    .await
    .expect("search the store");
    assert_eq!(leaks, 0, "a token is in events or snapshots");
    let snapshots: i64 = sqlx::query_scalar("select count(*) from snapshots")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert!(snapshots > 0, "the check covered a snapshot");
    let gateway_rows: i64 = sqlx::query_scalar(
        "select count(*) from gateways g where row_to_json(g)::text like '%' || $1 || '%'",
    )
    .bind(&second)
    .fetch_one(&app.db.pool)
    .await
    .expect("search the read model");
    assert_eq!(gateway_rows, 0);

    // The token is kept, just elsewhere: the current one is the second.
    let gateway_id: GatewayId = id.parse().expect("uuid");
    let aggregate = app.state.gateways().load(gateway_id).await.expect("load");
    let fingerprint = aggregate.token_fingerprint.expect("a token is set");
    let stored = webinar_infra::secrets::gateway_token(&app.db.pool, gateway_id, &fingerprint)
        .await
        .expect("read secret")
        .expect("secret stored");
    assert_eq!(secrecy::ExposeSecret::expose_secret(&stored), second);

    let logs = captured_logs();
    assert!(logs.contains(&id), "the logs cover this test's requests");
    assert!(
        !logs.contains(&first) && !logs.contains(&second),
        "a log line leaks the token"
    );
}

#[tokio::test]
async fn bad_tokens_get_unauthenticated_and_non_admins_forbidden() {
    let app = TestApp::spawn().await;
    let register = json!({ "query": "mutation { registerGateway(input: {name: \"x\", rtmpUrl: \"rtmp://h/x\", hlsUrl: \"https://h/x\", broadcaster: \"b\", sipmediagwUrl: \"https://gw-x.example.org\"}) { id } }" });

    for authorization in ["Bearer not-a-jwt", "Bearer a.b.c", "Basic dXNlcjpwdw=="] {
        let (status, body) = app.gql_raw(Some(authorization), register.clone()).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
    }
    let expired = app
        .keys
        .issue(&webinar_infra::auth::claims(
            "u",
            "U",
            &[],
            &[],
            &["admin".into()],
            -600,
        ))
        .expect("sign");
    let (status, body) = app
        .gql_raw(Some(&format!("Bearer {expired}")), register.clone())
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (401, Some("UNAUTHENTICATED")),
        "{body}"
    );
    let forged =
        webinar_infra::auth::JwtKeys::new(&secrecy::SecretString::from("other".to_owned()))
            .issue(&webinar_infra::auth::claims(
                "u",
                "U",
                &[],
                &[],
                &["admin".into()],
                600,
            ))
            .expect("sign");
    let (status, body) = app
        .gql_raw(Some(&format!("Bearer {forged}")), register.clone())
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (401, Some("UNAUTHENTICATED")),
        "{body}"
    );

    let (status, body) = app.gql_raw(None, register.clone()).await;
    assert_eq!(
        (status, error_code(&body)),
        (200, Some("UNAUTHENTICATED")),
        "{body}"
    );
    for (who, token) in [
        ("faculty", app.token("f", &["faculty"], &[], &[])),
        ("auditor", app.token("a", &[], &[], &["auditor"])),
        ("analyst", app.token("n", &[], &[], &["analyst"])),
        (
            "webinar admin group",
            app.token("g", &[], &["webinar admin"], &[]),
        ),
    ] {
        let (status, body) = app
            .gql_raw(Some(&format!("Bearer {token}")), register.clone())
            .await;
        assert_eq!(
            (status, error_code(&body)),
            (200, Some("FORBIDDEN")),
            "{who}: {body}"
        );
        let body = app.gql(Some(&token), LIST, json!({})).await;
        assert_eq!(
            error_code(&body),
            Some("FORBIDDEN"),
            "{who} lists gateways: {body}"
        );
    }
    assert_eq!(gateway_count(&app).await, 0, "nothing was written");
}

#[tokio::test]
async fn invalid_urls_and_ids_get_bad_user_input_naming_the_field_and_change_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let valid = json!({
        "name": "Amphi", "rtmpUrl": "rtmps://live.example.org/live/a",
        "hlsUrl": "https://live.example.org/a.m3u8", "broadcaster": "Amphi",
        "sipmediagwUrl": "http://gw-a.example.org:8080",
    });
    let cases = [
        (
            "rtmpUrl",
            json!("http://live.example.org/live/a"),
            "input.rtmpUrl",
        ),
        ("rtmpUrl", json!("live.example.org/live"), "input.rtmpUrl"),
        (
            "hlsUrl",
            json!("rtmp://live.example.org/a.m3u8"),
            "input.hlsUrl",
        ),
        (
            "hlsUrl",
            json!("ftp://live.example.org/a.m3u8"),
            "input.hlsUrl",
        ),
        (
            "sipmediagwUrl",
            json!("gw.example.org"),
            "input.sipmediagwUrl",
        ),
        (
            "sipmediagwUrl",
            json!("https://user:pw@gw.example.org"),
            "input.sipmediagwUrl",
        ),
        ("name", json!("   "), "input.name"),
        (
            "sipmediagwToken",
            json!("has space"),
            "input.sipmediagwToken",
        ),
    ];
    for (key, value, field) in cases {
        let mut input = valid.clone();
        input[key] = value.clone();
        let body = app
            .gql(
                Some(&admin),
                "mutation($input: RegisterGatewayInput!) { registerGateway(input: $input) { id } }",
                json!({ "input": input }),
            )
            .await;
        assert_eq!(
            error_code(&body),
            Some("BAD_USER_INPUT"),
            "{key}={value}: {body}"
        );
        assert_eq!(
            body["errors"][0]["extensions"]["field"],
            json!(field),
            "{body}"
        );
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(field),
            "the message names the field: {message}"
        );
    }
    assert_eq!(gateway_count(&app).await, 0, "nothing was written");

    let id = register_gateway(&app, "a", None).await;
    let body = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({ "id": "not-a-uuid", "input": { "name": "x" } }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], json!("id"));
    let body = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({ "id": uuid::Uuid::new_v4(), "input": { "name": "x" } }),
        )
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");
    let body = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({ "id": id, "input": { "api": "SOMETHING" } }),
        )
        .await;
    assert_eq!(
        error_code(&body),
        Some("BAD_USER_INPUT"),
        "unknown enum value: {body}"
    );

    // A second gateway may not take the first one's SIPMediaGW URL.
    let body = app
        .gql(
            Some(&admin),
            "mutation($input: RegisterGatewayInput!) { registerGateway(input: $input) { id } }",
            json!({ "input": { "name": "Copy", "rtmpUrl": "rtmp://h/x", "hlsUrl": "https://h/x",
                               "broadcaster": "b", "sipmediagwUrl": "https://gw-a.example.org/" } }),
        )
        .await;
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["field"],
        json!("input.sipmediagwUrl")
    );
    assert_eq!(
        gateway_count(&app).await,
        1,
        "only the first gateway's event"
    );
}

#[tokio::test]
async fn queries_beyond_the_depth_limit_and_malformed_bodies_get_coded_errors() {
    let app = TestApp::spawn().await;
    let mut deep = String::from("name");
    for _ in 0..20 {
        deep = format!("ofType {{ {deep} }}");
    }
    let query = format!("{{ __schema {{ types {{ fields {{ type {{ {deep} }} }} }} }} }}");
    // Signed in: anonymous callers may not introspect at all (`graphql_introspection`).
    let bearer = format!("Bearer {}", app.admin());
    let (status, body) = app.gql_raw(Some(&bearer), json!({ "query": query })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(error_code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(body["data"].is_null(), "nothing executed: {body}");

    for raw in ["{not json", "[]", "{\"query\": 42}"] {
        let response = app
            .http
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("a JSON body");
        assert!(status < 500, "{raw}: {status}");
        if !body["errors"].is_null() {
            assert!(error_code(&body).is_some(), "{raw}: {body}");
        }
    }
    let (status, body) = app.gql_raw(None, json!({ "query": "{ nope }" })).await;
    assert_eq!(
        (status, error_code(&body)),
        (200, Some("BAD_USER_INPUT")),
        "{body}"
    );
}

#[tokio::test]
async fn gateways_can_be_disabled_enabled_and_retired_with_idempotent_repeats() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let id = register_gateway(&app, "life", Some("1234")).await;
    let set = "mutation($id: ID!, $on: Boolean!, $why: String) {
        setGatewayEnabled(id: $id, enabled: $on, reason: $why) { enabled disabledReason version } }";
    let body = app
        .gql(
            Some(&admin),
            set,
            json!({ "id": id, "on": false, "why": "broken" }),
        )
        .await;
    assert_eq!(
        body["data"]["setGatewayEnabled"],
        json!({ "enabled": false, "disabledReason": "broken", "version": 2 })
    );
    let body = app
        .gql(Some(&admin), set, json!({ "id": id, "on": false }))
        .await;
    assert_eq!(
        body["data"]["setGatewayEnabled"]["version"],
        json!(2),
        "no new event: {body}"
    );
    let body = app
        .gql(Some(&admin), set, json!({ "id": id, "on": true }))
        .await;
    assert_eq!(
        body["data"]["setGatewayEnabled"],
        json!({ "enabled": true, "disabledReason": null, "version": 3 })
    );

    let retire = "mutation($id: ID!) { retireGateway(id: $id) { retired enabled version } }";
    let body = app.gql(Some(&admin), retire, json!({ "id": id })).await;
    assert_eq!(
        body["data"]["retireGateway"],
        json!({ "retired": true, "enabled": false, "version": 4 })
    );
    let body = app.gql(Some(&admin), retire, json!({ "id": id })).await;
    assert_eq!(body["data"]["retireGateway"]["version"], json!(4), "{body}");
    let body = app
        .gql(Some(&admin), set, json!({ "id": id, "on": true }))
        .await;
    assert_eq!(error_code(&body), Some("INVALID_STATE"), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("RETIRED"),
        "the error names the state: {message}"
    );

    // The retired gateway's URL is free again.
    let again = register_gateway(&app, "life", None).await;
    assert_ne!(again, id);

    // Read-your-writes: another client sees it at once.
    let body = app
        .gql(
            Some(&app.token("admin-2", &[], &[], &["admin"])),
            LIST,
            json!({}),
        )
        .await;
    let listed = body["data"]["gateways"].as_array().expect("list");
    assert_eq!(listed.len(), 2, "{body}");
    assert_eq!(
        listed.last().map(|g| g["retired"].clone()),
        Some(json!(true)),
        "retired last"
    );
}
