//! The domain's [`StreamGateway`] over SIPMediaGW: a gateway id becomes its launcher's URL, API
//! generation, RTMP destination and bearer token (read from the Gateway aggregate and the secret
//! store at each call, so that an administrator's change applies to the next call).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::PgPool;
use webinar_domain::ports::{Stopped, StreamGateway, StreamGatewayError};
use webinar_domain::GatewayId;

use super::{SipMediaGwClient, SipTarget};
use crate::gateways::GatewayService;
use crate::secrets::gateway_token;

/// How long a gateway's settings are reused for chat messages (a burst of them must not read the
/// gateway and its token each time). Starts, stops and status checks always read them afresh.
const CHAT_TARGET_TTL: Duration = Duration::from_secs(1);

pub struct SipMediaGwGateways {
    client: SipMediaGwClient,
    gateways: Arc<GatewayService>,
    pool: PgPool,
    /// What SIPMediaGW gets as `domain`: our join page, without a scheme.
    join_domain: String,
    chat_targets: Mutex<HashMap<GatewayId, (Instant, SipTarget)>>,
}

impl SipMediaGwGateways {
    pub fn new(
        client: SipMediaGwClient,
        gateways: Arc<GatewayService>,
        pool: PgPool,
        join_domain: String,
    ) -> Self {
        Self {
            client,
            gateways,
            pool,
            join_domain,
            chat_targets: Mutex::new(HashMap::new()),
        }
    }

    /// The target for chat messages, reused for a moment.
    async fn chat_target(&self, gateway: GatewayId) -> Result<SipTarget, StreamGatewayError> {
        let cached = {
            let targets = self.chat_targets.lock().unwrap_or_else(|e| e.into_inner());
            targets
                .get(&gateway)
                .filter(|(at, _)| at.elapsed() < CHAT_TARGET_TTL)
                .map(|(_, target)| target.clone())
        };
        if let Some(target) = cached {
            return Ok(target);
        }
        let (target, _) = self.target(gateway).await?;
        let mut targets = self.chat_targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.retain(|_, (at, _)| at.elapsed() < CHAT_TARGET_TTL);
        targets.insert(gateway, (Instant::now(), target.clone()));
        Ok(target)
    }

    /// How to reach `gateway`'s launcher, and where it pushes the stream.
    async fn target(&self, gateway: GatewayId) -> Result<(SipTarget, String), StreamGatewayError> {
        let unusable = |why: String| StreamGatewayError::NotUsable(why);
        let state = self
            .gateways
            .load(gateway)
            .await
            .map_err(|e| unusable(e.to_string()))?;
        let (Some(url), Some(api), Some(rtmp)) = (state.sipmediagw_url, state.api, state.rtmp_url)
        else {
            return Err(unusable(format!("gateway {gateway} is not registered")));
        };
        let token = match &state.token_fingerprint {
            Some(fingerprint) => gateway_token(&self.pool, gateway, fingerprint)
                .await
                .map_err(|_| unusable("its token cannot be read".into()))?,
            None => None,
        };
        let target = SipTarget {
            base_url: url.as_str().to_owned(),
            api,
            token,
        };
        Ok((target, rtmp.as_str().to_owned()))
    }
}

#[async_trait]
impl StreamGateway for SipMediaGwGateways {
    async fn start(&self, gateway: GatewayId, room: &str) -> Result<(), StreamGatewayError> {
        let (target, rtmp) = self.target(gateway).await?;
        self.client
            .start(&target, room, &self.join_domain, &rtmp)
            .await
    }

    async fn stop(&self, gateway: GatewayId, room: &str) -> Result<Stopped, StreamGatewayError> {
        let (target, _) = self.target(gateway).await?;
        self.client.stop(&target, room).await
    }

    async fn is_streaming(
        &self,
        gateway: GatewayId,
        room: &str,
    ) -> Result<bool, StreamGatewayError> {
        let (target, _) = self.target(gateway).await?;
        self.client.is_streaming(&target, room).await
    }

    async fn toggle_chat(&self, gateway: GatewayId, room: &str) -> Result<(), StreamGatewayError> {
        let (target, _) = self.target(gateway).await?;
        self.client.toggle_chat(&target, room).await
    }

    async fn post_chat(
        &self,
        gateway: GatewayId,
        room: &str,
        message: &str,
    ) -> Result<(), StreamGatewayError> {
        let target = self.chat_target(gateway).await?;
        self.client.post_chat(&target, room, message).await
    }
}
