//! The gateway URL policy and token re-entry, over real HTTP on loopback: gateways may not point
//! at this machine, internal networks or the metadata service (whatever the spelling) unless
//! `gateway_allowed_networks` says so, and a gateway moved to another server never hands that
//! server the old server's token.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::Json;
use chrono::Utc;
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use webinar_domain::gateway::{GatewayAddressPolicy, GatewayApi};
use webinar_domain::ports::{StreamGatewayError, StreamRef};
use webinar_infra::sim::sipmediagw::Api;
use webinar_infra::sipmediagw::{SipMediaGwClient, SipTarget};

use crate::harness::{
    error_code, register_gateway, register_live_gateway, sipmediagw, test_settings, wait_until,
    TestApp, TestDb,
};

const REGISTER: &str =
    "mutation($input: RegisterGatewayInput!) { registerGateway(input: $input) { id } }";
const UPDATE: &str = "mutation($id: ID!, $input: UpdateGatewayInput!) {
    updateGateway(id: $id, input: $input) { id sipmediagwUrl hasToken version } }";

/// A request's path and its `Authorization` header.
type Seen = (String, Option<String>);

/// A SIPMediaGW stand-in (legacy API) that records the path and `Authorization` header of every
/// request it gets.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    async fn spawn(cancel: &CancellationToken) -> (Recorder, SocketAddr) {
        let recorder = Recorder::default();
        let router = axum::Router::new()
            .fallback(record)
            .with_state(recorder.clone());
        let address = webinar_infra::sim::spawn(
            router,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            cancel.clone(),
        )
        .await
        .expect("start the recorder");
        (recorder, address)
    }

    fn requests(&self) -> Vec<Seen> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn record(State(recorder): State<Recorder>, uri: Uri, headers: HeaderMap) -> Json<Value> {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    recorder
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((uri.path().to_owned(), authorization));
    Json(match uri.path() {
        // No stream yet: the reactor then starts one.
        "/progress" => json!({ "gw_state": "down" }),
        "/start" => json!({ "status": "success", "details": { "res": "ok" } }),
        _ => json!({ "res": "ok" }),
    })
}

/// Every address form the issue lists (`live` is a simulator's own `http://127.0.0.1:port`).
fn refused_forms(live: &str) -> Vec<String> {
    let mut forms = vec![live.to_owned()];
    forms.extend(
        [
            "http://0x7f000001/",
            "http://2130706433/",
            "http://127.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost/",
            "http://169.254.169.254/",
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://172.16.0.1/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
        ]
        .map(str::to_owned),
    );
    forms
}

fn assert_refused(body: &Value, field: &str, what: &str) {
    assert_eq!(error_code(body), Some("BAD_USER_INPUT"), "{what}: {body}");
    assert_eq!(
        body["errors"][0]["extensions"]["field"],
        json!(field),
        "{what}: {body}"
    );
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(field), "{what}: {message}");
    assert!(message.len() < 300, "{what}: short message: {message}");
}

fn input(sipmediagw_url: &str, hls_url: &str) -> Value {
    json!({
        "name": "Amphi", "rtmpUrl": "rtmps://live.example.org/live/a", "hlsUrl": hls_url,
        "broadcaster": "Amphi", "sipmediagwUrl": sipmediagw_url, "sipmediagwToken": "t0ken",
    })
}

async fn gateway_events(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from events where aggregate_type = 'Gateway'")
        .fetch_one(&app.db.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn without_allowed_networks_every_spelling_of_a_non_public_address_is_refused() {
    let app = TestApp::spawn_with(|s| s.gateway_allowed_networks.clear()).await;
    let (_sim, live, _stop) = sipmediagw(Api::Legacy, None).await;
    let admin = app.admin();
    let good_gw = "https://gw-good.example.org";
    let good_hls = "https://live.example.org/a.m3u8";
    let id = register_gateway(&app, "policy", Some("t0ken")).await;

    for form in refused_forms(&live) {
        let body = app
            .gql(
                Some(&admin),
                REGISTER,
                json!({ "input": input(&form, good_hls) }),
            )
            .await;
        assert_refused(
            &body,
            "input.sipmediagwUrl",
            &format!("register sipmediagwUrl {form}"),
        );
        let body = app
            .gql(
                Some(&admin),
                REGISTER,
                json!({ "input": input(good_gw, &form) }),
            )
            .await;
        assert_refused(&body, "input.hlsUrl", &format!("register hlsUrl {form}"));
        // A new token is given, so the address is the only reason to refuse.
        let body = app
            .gql(
                Some(&admin),
                UPDATE,
                json!({ "id": id, "input": { "sipmediagwUrl": form, "sipmediagwToken": "n3w" } }),
            )
            .await;
        assert_refused(
            &body,
            "input.sipmediagwUrl",
            &format!("update sipmediagwUrl {form}"),
        );
        let body = app
            .gql(
                Some(&admin),
                UPDATE,
                json!({ "id": id, "input": { "hlsUrl": form } }),
            )
            .await;
        assert_refused(&body, "input.hlsUrl", &format!("update hlsUrl {form}"));
    }
    // A kilobytes-long refused URL is not echoed back.
    let long = format!("http://{}.localhost/", "a".repeat(1500));
    let body = app
        .gql(
            Some(&admin),
            REGISTER,
            json!({ "input": input(&long, good_hls) }),
        )
        .await;
    assert_refused(&body, "input.sipmediagwUrl", "a long URL");
    assert_eq!(gateway_events(&app).await, 1, "only the first registration");

    // Public addresses and host names stay fine.
    let body = app
        .gql(
            Some(&admin),
            REGISTER,
            json!({ "input": input("http://193.48.0.10:8080", "https://[2001:4860:4860::8888]/a.m3u8") }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
}

#[tokio::test]
async fn allowed_networks_let_gateways_on_them_register_and_nothing_else() {
    // The harness allows 127.0.0.0/8, where its simulators listen.
    let app = TestApp::spawn().await;
    let (_sim, live, _stop) = sipmediagw(Api::Legacy, Some("1234")).await;
    let admin = app.admin();
    assert!(live.starts_with("http://127.0.0.1:"), "{live}");
    let id = register_live_gateway(&app, "loopback", &live, Some("1234"), "LEGACY").await;
    assert!(!id.is_empty());
    let body = app
        .gql(
            Some(&admin),
            REGISTER,
            json!({ "input": input("http://0x7f000002:8100", "http://127.1/hls/a.m3u8") }),
        )
        .await;
    assert!(
        body["errors"].is_null(),
        "odd spellings of an allowed network: {body}"
    );
    for form in [
        "http://[::1]/",
        "http://169.254.169.254/",
        "http://10.0.0.1/",
        "http://[fe80::1]/",
    ] {
        let body = app
            .gql(
                Some(&admin),
                REGISTER,
                json!({ "input": input(form, "https://h.example.org/a") }),
            )
            .await;
        assert_refused(&body, "input.sipmediagwUrl", form);
    }
}

#[tokio::test]
async fn a_malformed_allowed_network_stops_the_server_from_starting() {
    let db = TestDb::create().await;
    let mut settings = test_settings(&db);
    settings.gateway_allowed_networks = vec!["127.0.0.0/8".into(), "10.0.0.0/33".into()];
    let built = webinar_api::Application::build_with_pool(
        settings,
        db.pool.clone(),
        SecretString::from("secret".to_owned()),
    )
    .await;
    let error = built.err().expect("refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("gateway_allowed_networks") && message.contains("10.0.0.0/33"),
        "{message}"
    );
}

#[tokio::test]
async fn a_gateway_moved_to_another_server_needs_a_new_token_and_the_old_one_never_goes_there() {
    let app = TestApp::spawn().await;
    let admin = app.admin();
    let old = format!("old-token-{}", uuid::Uuid::new_v4().simple());
    let new = format!("new-token-{}", uuid::Uuid::new_v4().simple());
    let (_sim, old_url, _stop) = sipmediagw(Api::Legacy, Some(&old)).await;
    let id = register_live_gateway(&app, "moving", &old_url, Some(&old), "LEGACY").await;
    let cancel = CancellationToken::new();
    let (recorder, address) = Recorder::spawn(&cancel).await;
    let new_url = format!("http://{address}");

    // Without a token the move is refused, and nothing changes.
    let body = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({ "id": id, "input": { "sipmediagwUrl": new_url } }),
        )
        .await;
    assert_refused(&body, "input.sipmediagwToken", "a move without a token");
    let body = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({ "id": id, "input": { "sipmediagwUrl": new_url, "sipmediagwToken": new, "keepToken": true } }),
        )
        .await;
    assert_refused(&body, "input.keepToken", "keep and set at once");
    assert_eq!(gateway_events(&app).await, 1, "nothing was written");

    let body = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({ "id": id, "input": { "sipmediagwUrl": new_url, "sipmediagwToken": new } }),
        )
        .await;
    assert_eq!(
        body["data"]["updateGateway"]["sipmediagwUrl"],
        json!(new_url),
        "{body}"
    );
    assert_eq!(body["data"]["updateGateway"]["hasToken"], json!(true));

    // Going live makes the stream reactor call the gateway's new server.
    let owner = app.token("owner", &["faculty"], &[], &[]);
    let input = json!({ "title": "Moved", "startAt": Utc::now().to_rfc3339(),
        "durationMinutes": 60, "enableChat": false });
    let (webinar, _) = crate::harness::schedule_and_start(&app, &owner, input).await;
    wait_until(&app, &webinar, Duration::from_secs(20), |w| {
        w["streamState"] == json!("LIVE")
    })
    .await;

    let requests = recorder.requests();
    assert!(
        requests.iter().any(|(path, _)| path == "/start"),
        "the new server was called: {requests:?}"
    );
    for (path, authorization) in &requests {
        assert_eq!(
            authorization.as_deref(),
            Some(format!("Bearer {new}").as_str()),
            "{path} got the new token only"
        );
        assert!(
            !authorization.as_deref().unwrap_or_default().contains(&old),
            "{path} got the old token"
        );
    }

    // An administrator may keep the token on purpose (the same server under a new name).
    let other = register_gateway(&app, "renamed", Some("same-server")).await;
    let body = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({ "id": other, "input": { "sipmediagwUrl": "https://gw-renamed-2.example.org", "keepToken": true } }),
        )
        .await;
    assert_eq!(
        body["data"]["updateGateway"]["sipmediagwUrl"],
        json!("https://gw-renamed-2.example.org"),
        "{body}"
    );
    assert_eq!(body["data"]["updateGateway"]["hasToken"], json!(true));
    cancel.cancel();
}

fn target(url: &str) -> SipTarget {
    SipTarget {
        base_url: url.to_owned(),
        api: GatewayApi::Legacy,
        token: Some(SecretString::from("t0ken".to_owned())),
        browsing_name: "bigbluebutton".to_owned(),
    }
}

#[tokio::test]
async fn the_client_checks_addresses_at_connection_time_too() {
    let cancel = CancellationToken::new();
    let (recorder, address) = Recorder::spawn(&cancel).await;
    let client = |allowed: &[&str]| {
        SipMediaGwClient::new(
            Duration::from_secs(2),
            GatewayAddressPolicy::parse(allowed).expect("valid networks"),
        )
        .expect("client")
    };
    let literal = target(&format!("http://{address}"));
    // `localhost` resolves (on every test machine) to 127.0.0.1, and perhaps ::1.
    let by_name = target(&format!("http://localhost:{}", address.port()));

    // A gateway registered before the policy was tightened is not called.
    let strict = client(&[]);
    for target in [&literal, &by_name] {
        let refused = strict
            .is_streaming(target, StreamRef::new("room", None))
            .await;
        assert!(
            matches!(refused, Err(StreamGatewayError::NotUsable(_))),
            "{}: {refused:?}",
            target.base_url
        );
    }
    // Only ::1 allowed: `localhost` passes the name check, but its resolved 127.0.0.1 is
    // dropped (what stops DNS rebinding), so the recorder on 127.0.0.1 is never reached.
    let v6_only = client(&["::1/128"]);
    let refused = v6_only
        .is_streaming(&by_name, StreamRef::new("room", None))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(recorder.requests().is_empty(), "{:?}", recorder.requests());

    let loopback = client(&["127.0.0.0/8"]);
    assert_eq!(
        loopback
            .is_streaming(&literal, StreamRef::new("room", None))
            .await,
        Ok(false)
    );
    assert_eq!(
        loopback
            .is_streaming(&by_name, StreamRef::new("room", None))
            .await,
        Ok(false)
    );
    assert_eq!(recorder.requests().len(), 2);
    cancel.cancel();
}
