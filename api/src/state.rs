//! The one shared application context, cheap to clone into every handler.

use std::sync::Arc;

use secrecy::SecretString;
use sqlx::PgPool;
use webinar_domain::chat::ChatMessage;
use webinar_domain::gateway::Gateway;
use webinar_domain::webinar::Webinar;
use webinar_domain::PermissionPolicy;
use webinar_infra::auth::JwtKeys;
use webinar_infra::chat::{ChatService, RateLimiter};
use webinar_infra::config::Settings;
use webinar_infra::consumer::{CatchUpTimeout, ProjectionProgress};
use webinar_infra::event_log::Position;
use webinar_infra::event_store::CommandBus;
use webinar_infra::gateways::GatewayService;
use webinar_infra::reactors::meetings::{CallbackSigner, MeetingWatcher};
use webinar_infra::reactors::Outside;
use webinar_infra::webinars::WebinarService;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    pool: PgPool,
    jwt: JwtKeys,
    policy: PermissionPolicy,
    gateways: Arc<GatewayService>,
    webinars: Arc<WebinarService>,
    chat: Arc<ChatService>,
    outside: Outside,
    watcher: Arc<MeetingWatcher>,
    signer: CallbackSigner,
    progress: ProjectionProgress,
}

impl AppState {
    pub fn new(
        settings: Settings,
        pool: PgPool,
        jwt_secret: &SecretString,
        progress: ProjectionProgress,
    ) -> anyhow::Result<Self> {
        let jwt = JwtKeys::new(jwt_secret);
        let policy = settings.permission_policy();
        let gateways = Arc::new(GatewayService::new(
            CommandBus::<Gateway>::new(
                pool.clone(),
                (),
                settings.snapshot_every,
                settings.command_retries,
            ),
            pool.clone(),
            policy.clone(),
        ));
        let webinars = Arc::new(WebinarService::new(
            CommandBus::<Webinar>::new(
                pool.clone(),
                (),
                settings.snapshot_every,
                settings.command_retries,
            ),
            policy.clone(),
        ));
        let chat = Arc::new(ChatService::new(
            CommandBus::<ChatMessage>::new(
                pool.clone(),
                (),
                settings.snapshot_every,
                settings.command_retries,
            ),
            RateLimiter::new(
                settings.chat_rate_limit,
                std::time::Duration::from_secs(settings.chat_rate_window_seconds),
            ),
        ));
        let outside = Outside::new(
            &settings,
            pool.clone(),
            webinars.clone(),
            gateways.clone(),
            chat.clone(),
        )?;
        let watcher = Arc::new(MeetingWatcher::new(
            outside.clone(),
            std::time::Duration::from_millis(settings.meeting_poll_ms),
            settings.end_grace_minutes,
        ));
        let signer = CallbackSigner::from_secret(jwt_secret);
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                pool,
                jwt,
                policy,
                gateways,
                webinars,
                chat,
                outside,
                watcher,
                signer,
                progress,
            }),
        })
    }

    /// What the reactors use to reach the outside world.
    pub fn outside(&self) -> &Outside {
        &self.inner.outside
    }
    pub fn watcher(&self) -> &Arc<MeetingWatcher> {
        &self.inner.watcher
    }
    pub fn signer(&self) -> &CallbackSigner {
        &self.inner.signer
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }
    pub fn jwt(&self) -> &JwtKeys {
        &self.inner.jwt
    }
    pub fn policy(&self) -> &PermissionPolicy {
        &self.inner.policy
    }
    pub fn gateways(&self) -> &GatewayService {
        &self.inner.gateways
    }
    pub fn webinars(&self) -> &WebinarService {
        &self.inner.webinars
    }
    pub fn chat(&self) -> &ChatService {
        &self.inner.chat
    }
    pub fn progress(&self) -> &ProjectionProgress {
        &self.inner.progress
    }

    /// Waits until each of `projectors` has applied the log up to `position`, so that the caller
    /// and anyone after it read their own writes.
    pub async fn settle(
        &self,
        projectors: &[&'static str],
        position: Option<Position>,
    ) -> Result<(), CatchUpTimeout> {
        let Some(position) = position else {
            return Ok(());
        };
        let timeout = self.settings().read_your_writes_timeout();
        for projector in projectors {
            self.inner
                .progress
                .wait_for(projector, position, timeout)
                .await?;
        }
        Ok(())
    }
}
