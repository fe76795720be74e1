//! The one shared application context, cheap to clone into every handler.

use std::sync::Arc;

use secrecy::SecretString;
use sqlx::PgPool;
use webinar_infra::auth::JwtKeys;
use webinar_infra::callbacks::CallbackSigner;
use webinar_infra::chat::ChatService;
use webinar_infra::config::{Settings, SiteHosts};
use webinar_infra::consumer::{CatchUpTimeout, ProjectionProgress};
use webinar_infra::event_log::Position;
use webinar_infra::gateways::GatewayService;
use webinar_infra::presence::AudiencePresence;
use webinar_infra::reactors::meetings::MeetingWatcher;
use webinar_infra::reactors::Outside;
use webinar_infra::webinars::WebinarService;
use webinar_infra::wiring::Services;
use webinar_projections::queries::ReadModels;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    pool: PgPool,
    jwt: JwtKeys,
    services: Services,
    reads: ReadModels,
    progress: ProjectionProgress,
    presence: AudiencePresence,
    sites: SiteHosts,
}

impl AppState {
    pub fn new(
        settings: Settings,
        pool: PgPool,
        jwt_secret: &SecretString,
        progress: ProjectionProgress,
    ) -> anyhow::Result<Self> {
        let services = Services::build(
            &settings,
            pool.clone(),
            jwt_secret,
            webinar_projections::read_ports(&pool),
        )?;
        let reads = ReadModels::new(pool.clone(), services.policy.clone());
        let presence = AudiencePresence::new(pool.clone(), settings.audience_heartbeat());
        let sites = settings.site_hosts()?;
        Ok(Self {
            inner: Arc::new(Inner {
                jwt: settings.jwt_keys(jwt_secret),
                settings,
                pool,
                services,
                reads,
                progress,
                presence,
                sites,
            }),
        })
    }

    /// This instance's open viewers, written for every instance to count.
    pub fn presence(&self) -> &AudiencePresence {
        &self.inner.presence
    }

    /// Which site each host serves.
    pub fn sites(&self) -> &SiteHosts {
        &self.inner.sites
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
    pub fn services(&self) -> &Services {
        &self.inner.services
    }
    pub fn gateways(&self) -> &GatewayService {
        &self.inner.services.gateways
    }
    pub fn webinars(&self) -> &WebinarService {
        &self.inner.services.webinars
    }
    pub fn chat(&self) -> &ChatService {
        &self.inner.services.chat
    }
    /// The read side: every query the API may run, permission checks included.
    pub fn reads(&self) -> &ReadModels {
        &self.inner.reads
    }
    /// What the reactors use to reach the outside world.
    pub fn outside(&self) -> &Outside {
        &self.inner.services.outside
    }
    pub fn watcher(&self) -> &Arc<MeetingWatcher> {
        &self.inner.services.watcher
    }
    pub fn signer(&self) -> &CallbackSigner {
        &self.inner.services.signer
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
        // Together: the answer waits for the slowest read model, not for their sum.
        futures::future::try_join_all(
            projectors
                .iter()
                .map(|projector| self.inner.progress.wait_for(projector, position, timeout)),
        )
        .await?;
        Ok(())
    }
}
