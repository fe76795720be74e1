//! Reactors: they tail the log with their own checkpoints and act on the outside world.
//!
//! - [`stream::StreamReactor`]: SIPMediaGW start, stop, restart, chat toggle; retries with back-off,
//!   then fail-over to a free gateway.
//! - [`chat::ChatRelay`]: audience messages into the meeting (SIPMediaGW `POST /chat` or BBB
//!   `sendChatMessage`).
//! - [`meetings::MeetingWatcher`]: ends webinars whose BBB meeting ended (callback, polling, slot
//!   over).
//!
//! All are at least once; each makes its effect idempotent by checking the aggregate first.

pub mod chat;
pub mod meetings;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use webinar_domain::GatewayId;

use crate::bbb::BbbClient;
use crate::config::{ChatRelay, Settings};
use crate::gateways::GatewayService;
use crate::secrets::gateway_token;
use crate::sipmediagw::{SipMediaGwClient, SipTarget};
use crate::webinars::WebinarService;

/// What the reactors share.
#[derive(Clone)]
pub struct Outside {
    pub pool: PgPool,
    pub webinars: Arc<WebinarService>,
    pub gateways: Arc<GatewayService>,
    pub chat: Arc<crate::chat::ChatService>,
    pub sip: SipMediaGwClient,
    pub bbb: Option<BbbClient>,
    pub join_domain: String,
    pub start_attempts: u32,
    pub retry: Duration,
    pub chat_relay: ChatRelay,
}

impl Outside {
    pub fn new(
        settings: &Settings,
        pool: PgPool,
        webinars: Arc<WebinarService>,
        gateways: Arc<GatewayService>,
        chat: Arc<crate::chat::ChatService>,
    ) -> anyhow::Result<Self> {
        let bbb = settings
            .bbb()
            .map(|api| BbbClient::new(api, Duration::from_secs(settings.bbb_timeout_seconds)))
            .transpose()?;
        Ok(Self {
            pool,
            webinars,
            gateways,
            chat,
            sip: SipMediaGwClient::new(Duration::from_secs(settings.sipmediagw_timeout_seconds))?,
            bbb,
            join_domain: settings.join_domain(),
            start_attempts: settings.stream_start_attempts.max(1),
            retry: Duration::from_millis(settings.stream_retry_ms),
            chat_relay: settings.chat_relay,
        })
    }

    /// How to reach a gateway's SIPMediaGW, its token included.
    pub async fn target(&self, gateway: GatewayId) -> Result<(SipTarget, String), String> {
        let state = self
            .gateways
            .load(gateway)
            .await
            .map_err(|e| e.to_string())?;
        let (Some(url), Some(api), Some(rtmp)) = (state.sipmediagw_url, state.api, state.rtmp_url)
        else {
            return Err(format!("gateway {gateway} is not registered"));
        };
        let token = match &state.token_fingerprint {
            Some(fingerprint) => gateway_token(&self.pool, gateway, fingerprint)
                .await
                .map_err(|e| e.to_string())?,
            None => None,
        };
        Ok((
            SipTarget {
                base_url: url.as_str().to_owned(),
                api,
                token,
            },
            rtmp.as_str().to_owned(),
        ))
    }
}
