//! The domain's [`StreamGateway`] over SIPMediaGW: a gateway id becomes its launcher's URL, API
//! generation, RTMP destination and bearer token (read from the Gateway aggregate and the secret
//! store at each call, so that an administrator's change applies to the next call).
//!
//! For the v1.8+ launcher it also picks the gateway container a new stream runs on: the first of
//! the gateway's `gw_ids` that no other stream holds ([`choose_gw_id`]). Until a stream's container
//! is recorded (`StreamStarted`), calls about it use the same choice, which is stable while the
//! other streams are. Behind the v1.8 proxy, the proxy picks, and finds a stream by its room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::PgPool;
use webinar_domain::gateway::{choose_gw_id, GatewayApi, GwId};
use webinar_domain::ports::{HeldGwIds, Stopped, StreamGateway, StreamGatewayError, StreamRef};
use webinar_domain::GatewayId;

use super::{SipMediaGwClient, SipTarget};
use crate::gateways::GatewayService;
use crate::secrets::gateway_token;

/// How long a gateway's settings are reused for chat messages (a burst of them must not read the
/// gateway and its token each time). Starts, stops and status checks always read them afresh.
const CHAT_TARGET_TTL: Duration = Duration::from_secs(1);

/// A gateway as its launcher is called: the target, where it pushes, and its containers.
#[derive(Clone)]
struct Launcher {
    target: SipTarget,
    rtmp: String,
    gw_ids: Vec<GwId>,
}

pub struct SipMediaGwGateways {
    client: SipMediaGwClient,
    gateways: Arc<GatewayService>,
    held: Arc<dyn HeldGwIds>,
    pool: PgPool,
    /// What SIPMediaGW gets as `domain`: our join page, without a scheme.
    join_domain: String,
    chat_targets: Mutex<HashMap<GatewayId, (Instant, SipTarget)>>,
}

impl SipMediaGwGateways {
    pub fn new(
        client: SipMediaGwClient,
        gateways: Arc<GatewayService>,
        held: Arc<dyn HeldGwIds>,
        pool: PgPool,
        join_domain: String,
    ) -> Self {
        Self {
            client,
            gateways,
            held,
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
        let target = self.launcher(gateway).await?.target;
        let mut targets = self.chat_targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.retain(|_, (at, _)| at.elapsed() < CHAT_TARGET_TTL);
        targets.insert(gateway, (Instant::now(), target.clone()));
        Ok(target)
    }

    /// How to reach `gateway`'s launcher, and where it pushes the stream.
    async fn launcher(&self, gateway: GatewayId) -> Result<Launcher, StreamGatewayError> {
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
        Ok(Launcher {
            target: SipTarget {
                base_url: url.as_str().to_owned(),
                api,
                token,
                browsing_name: state.browsing_name.as_str().to_owned(),
            },
            rtmp: rtmp.as_str().to_owned(),
            gw_ids: state.gw_ids,
        })
    }

    /// The container a stream of `room` uses when none is recorded: the first one nobody else
    /// holds. `Busy` when all are held.
    async fn choose(
        &self,
        gateway: GatewayId,
        launcher: &Launcher,
        room: &str,
    ) -> Result<Option<String>, StreamGatewayError> {
        if launcher.target.api != GatewayApi::Gateway {
            return Ok(None);
        }
        let held = self.held.held(gateway, room).await.map_err(|e| {
            StreamGatewayError::NotUsable(format!("cannot read which containers are in use: {e}"))
        })?;
        match choose_gw_id(&launcher.gw_ids, &held) {
            Some(id) => Ok(Some(id.as_str().to_owned())),
            None => Err(StreamGatewayError::Busy),
        }
    }

    /// The launcher, and the container the stream is on (recorded, or as [`Self::choose`] picks).
    async fn resolve(
        &self,
        gateway: GatewayId,
        stream: StreamRef<'_>,
    ) -> Result<(Launcher, Option<String>), StreamGatewayError> {
        let launcher = self.launcher(gateway).await?;
        let gw_id = match stream.gw_id {
            Some(id) => Some(id.to_owned()),
            None => self.choose(gateway, &launcher, stream.room).await?,
        };
        Ok((launcher, gw_id))
    }
}

#[async_trait]
impl StreamGateway for SipMediaGwGateways {
    async fn start(
        &self,
        gateway: GatewayId,
        room: &str,
    ) -> Result<Option<String>, StreamGatewayError> {
        let (launcher, gw_id) = self.resolve(gateway, StreamRef::new(room, None)).await?;
        // The proxy picks the container itself and says which.
        self.client
            .start(
                &launcher.target,
                StreamRef::new(room, gw_id.as_deref()),
                &self.join_domain,
                &launcher.rtmp,
            )
            .await
    }

    async fn stop(
        &self,
        gateway: GatewayId,
        stream: StreamRef<'_>,
    ) -> Result<Stopped, StreamGatewayError> {
        let (launcher, gw_id) = self.resolve(gateway, stream).await?;
        self.client
            .stop(
                &launcher.target,
                StreamRef::new(stream.room, gw_id.as_deref()),
            )
            .await
    }

    async fn is_streaming(
        &self,
        gateway: GatewayId,
        stream: StreamRef<'_>,
    ) -> Result<bool, StreamGatewayError> {
        let (launcher, gw_id) = match self.resolve(gateway, stream).await {
            Ok(resolved) => resolved,
            // Every container is held by other streams: ours cannot be on one.
            Err(StreamGatewayError::Busy) => return Ok(false),
            Err(error) => return Err(error),
        };
        self.client
            .is_streaming(
                &launcher.target,
                StreamRef::new(stream.room, gw_id.as_deref()),
            )
            .await
    }

    async fn toggle_chat(
        &self,
        gateway: GatewayId,
        stream: StreamRef<'_>,
    ) -> Result<(), StreamGatewayError> {
        let (launcher, gw_id) = self.resolve(gateway, stream).await?;
        self.client
            .toggle_chat(
                &launcher.target,
                StreamRef::new(stream.room, gw_id.as_deref()),
            )
            .await
    }

    async fn post_chat(
        &self,
        gateway: GatewayId,
        stream: StreamRef<'_>,
        message: &str,
    ) -> Result<(), StreamGatewayError> {
        // The hot path: a recorded container needs no lookup beyond the cached target.
        let target = self.chat_target(gateway).await?;
        let chosen;
        let gw_id = match stream.gw_id {
            Some(id) => Some(id),
            None if target.api == GatewayApi::Gateway => {
                chosen = self.resolve(gateway, stream).await?.1;
                chosen.as_deref()
            }
            None => None,
        };
        self.client
            .post_chat(&target, StreamRef::new(stream.room, gw_id), message)
            .await
    }
}
