//! `serve --demo`: a ready-to-try server — a demo gateway, and tokens for a demo admin, presenter
//! and viewer printed on standard output.

use std::net::SocketAddr;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use webinar_domain::gateway::{GatewayApi, GatewaySpec};
use webinar_domain::{Caller, HttpUrl, Label, RtmpUrl};
use webinar_infra::auth::{claims, JwtKeys};
use webinar_infra::config::Settings;
use webinar_infra::error::CommandError;
use webinar_infra::event_store::CommandMetadata;
use webinar_infra::secrets::GatewayToken;
use webinar_infra::sim::bbb::BbbSim;
use webinar_infra::sim::sipmediagw::{Api, SipMediaGwSim};

use crate::state::AppState;

/// A random secret for a demo run without `WEBINAR_JWT_SECRET`.
pub fn random_secret() -> SecretString {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::from(hex::encode(bytes))
}

/// Binds `preferred`, or any free port when it is taken.
async fn spawn_sim(
    router: axum::Router,
    preferred: SocketAddr,
    cancel: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    match webinar_infra::sim::spawn(router.clone(), preferred, cancel.clone()).await {
        Ok(address) => Ok(address),
        Err(_) => {
            Ok(
                webinar_infra::sim::spawn(router, SocketAddr::from(([127, 0, 0, 1], 0)), cancel)
                    .await?,
            )
        }
    }
}

/// Starts a simulated BBB (unless one is configured) and a simulated SIPMediaGW (legacy API,
/// token "1234") in this process; points `settings` at the BBB and lets gateways use exactly the
/// simulator's address (which also serves the demo HLS playlist). Returns the SIPMediaGW URL.
pub async fn start_simulators(
    settings: &mut Settings,
    cancel: CancellationToken,
) -> anyhow::Result<String> {
    if settings.bbb_url.is_none() || settings.bbb_secret.is_none() {
        let secret = hex::encode(rand::random::<[u8; 16]>());
        let bbb = BbbSim::new(&secret);
        let address = spawn_sim(
            bbb.router(),
            SocketAddr::from(([127, 0, 0, 1], 8101)),
            cancel.clone(),
        )
        .await?;
        settings.bbb_url = Some(format!("http://{address}/bigbluebutton/api"));
        settings.bbb_secret = Some(SecretString::from(secret));
    }
    let sip = SipMediaGwSim::new(Api::Legacy, Some(DEMO_TOKEN));
    let address = spawn_sim(
        sip.router(),
        SocketAddr::from(([127, 0, 0, 1], 8100)),
        cancel,
    )
    .await?;
    // The simulator (which also publishes the demo stream's HLS playlist) is on loopback, which
    // the gateway address policy refuses; allow its host and nothing more of it.
    let host = address.ip();
    let allowed = format!("{host}/{}", if host.is_ipv4() { 32 } else { 128 });
    if !settings.gateway_allowed_networks.contains(&allowed) {
        settings.gateway_allowed_networks.push(allowed);
    }
    Ok(format!("http://{address}"))
}

const DEMO_TOKEN: &str = "1234";

/// Registers the demo gateway unless a gateway already uses its URL.
pub async fn register_demo_gateway(state: &AppState, sipmediagw_url: &str) -> anyhow::Result<()> {
    let caller = Caller::System("demo");
    let spec = GatewaySpec {
        name: Label::parse("Demo gateway")?,
        rtmp_url: RtmpUrl::parse("rtmp://127.0.0.1:1935/live/demo")?,
        // The simulator publishes the playlist of the room it streams there.
        hls_url: HttpUrl::parse(&format!(
            "{}/hls/demo.m3u8",
            sipmediagw_url.trim_end_matches('/')
        ))?,
        broadcaster: Label::parse("Demo broadcaster")?,
        sipmediagw_url: HttpUrl::parse(sipmediagw_url)?,
        api: GatewayApi::Legacy,
        gw_ids: Vec::new(),
        browsing_name: webinar_domain::gateway::BrowsingName::default(),
    };
    let token = GatewayToken::parse(DEMO_TOKEN)?;
    match state
        .gateways()
        .register(
            &caller,
            &CommandMetadata::originating(&caller, None),
            spec,
            Some(token),
        )
        .await
    {
        Ok(written) => {
            tracing::info!(gateway = %written.id, "demo gateway registered");
            Ok(())
        }
        Err(CommandError::SipMediaGwUrlTaken) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Tokens for the three demo people, one per line, ready to paste into an Authorization header.
pub fn demo_tokens(keys: &JwtKeys) -> anyhow::Result<Vec<(&'static str, String)>> {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let ttl = 12 * 3600;
    Ok(vec![
        (
            "admin",
            keys.issue(&claims(
                "demo-admin",
                "Demo Admin",
                &[],
                &[],
                &own(&["admin"]),
                ttl,
            ))?,
        ),
        (
            "presenter",
            keys.issue(&claims(
                "demo-presenter",
                "Demo Presenter",
                &own(&["faculty"]),
                &[],
                &[],
                ttl,
            ))?,
        ),
        (
            "viewer",
            keys.issue(&claims(
                "demo-viewer",
                "Demo Viewer",
                &own(&["student"]),
                &[],
                &[],
                ttl,
            ))?,
        ),
    ])
}
