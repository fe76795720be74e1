//! The one shared application context, cheap to clone into every handler.

use std::sync::Arc;

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
    gateways: GatewayService,
    webinars: WebinarService,
    chat: ChatService,
    progress: ProjectionProgress,
}

impl AppState {
    pub fn new(
        settings: Settings,
        pool: PgPool,
        jwt: JwtKeys,
        progress: ProjectionProgress,
    ) -> Self {
        let policy = settings.permission_policy();
        let gateways = GatewayService::new(
            CommandBus::<Gateway>::new(
                pool.clone(),
                (),
                settings.snapshot_every,
                settings.command_retries,
            ),
            pool.clone(),
            policy.clone(),
        );
        let webinars = WebinarService::new(
            CommandBus::<Webinar>::new(
                pool.clone(),
                (),
                settings.snapshot_every,
                settings.command_retries,
            ),
            policy.clone(),
        );
        let chat = ChatService::new(
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
        );
        Self {
            inner: Arc::new(Inner {
                settings,
                pool,
                jwt,
                policy,
                gateways,
                webinars,
                chat,
                progress,
            }),
        }
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
