//! The read side's use cases: what the API may ask of the read models, each asking the domain's
//! permission policy first (or filtering by it, in SQL, where a list must paginate exactly).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use webinar_domain::ids::ChatMessageId;
use webinar_domain::{Action, Caller, Denied, GatewayId, PermissionPolicy, Site, WebinarId};

use webinar_infra::consumer::ProjectionError;

use crate::audit_log::{self, AuditFilter, AuditRow};
use crate::chat_messages::{self, ChatMessageRow};
use crate::gateways::{self, GatewayRow};
use crate::live_events::{self, Audience, LiveEventFilter, LiveEventRow, LivePageCache};
use crate::live_sessions::{self, LiveSessionRow};
use crate::stats::{self, UtilizationRow, WebinarStatsRow};
use crate::webinars::{self, WebinarView};

/// Why a query was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The log holds something the read side cannot make sense of.
    #[error("{0}")]
    Unreadable(ProjectionError),
}

impl From<ProjectionError> for QueryError {
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::Sql(error) => QueryError::Database(error),
            other => QueryError::Unreadable(other),
        }
    }
}

/// The read models, as the API reads them.
#[derive(Clone)]
pub struct ReadModels {
    pool: PgPool,
    policy: PermissionPolicy,
    live_page: LivePageCache,
}

impl ReadModels {
    pub fn new(pool: PgPool, policy: PermissionPolicy) -> Self {
        Self {
            live_page: LivePageCache::new(pool.clone()),
            pool,
            policy,
        }
    }

    /// Whether the caller may schedule webinars (for the client to show the button).
    pub fn may_create_webinars(&self, caller: &Caller) -> bool {
        self.policy.allows(caller, Action::CreateWebinar)
    }

    /// The live page: the events the caller may see, in start order. A first page comes from
    /// memory, never older than the last change committed before the call.
    pub async fn live_events(
        &self,
        caller: &Caller,
        filter: &LiveEventFilter,
    ) -> Result<Vec<LiveEventRow>, QueryError> {
        let cached = self
            .live_page
            .first_page(filter, |row| self.may_see_live_event(caller, row))
            .await?;
        match cached {
            Some(rows) => Ok(rows),
            None => Ok(live_events::list(&self.pool, &Audience::of(caller), filter).await?),
        }
    }

    /// The live page's freshness mark: answers computed from `live_events` alone and kept with
    /// the mark read before them are current while this returns the same mark.
    pub async fn live_page_stamp(&self) -> Option<live_events::Stamp> {
        self.live_page.stamp().await
    }

    /// The live page cache's reads served from memory and from PostgreSQL.
    pub fn live_page_hits_and_misses(&self) -> (u64, u64) {
        self.live_page.hits_and_misses()
    }

    /// Whether the caller may see this live event (a change read once for every subscriber).
    pub fn may_see_live_event(&self, caller: &Caller, row: &LiveEventRow) -> bool {
        self.policy.allows(caller, Action::SeeLiveEvent(row))
    }

    /// One live event, when the caller may see it (from memory, as fresh as the live page).
    pub async fn live_event(
        &self,
        caller: &Caller,
        id: WebinarId,
    ) -> Result<Option<LiveEventRow>, QueryError> {
        match self.live_page.one(id).await? {
            Some(row) => Ok(row
                .filter(|row| self.may_see_live_event(caller, row))
                .map(|row| LiveEventRow::clone(&row))),
            None => Ok(live_events::get_visible(&self.pool, &Audience::of(caller), id).await?),
        }
    }

    /// A webinar, for its owner, presenters and administrators (`None` for anyone else, and when
    /// it does not exist). Signing in comes first.
    pub async fn webinar(
        &self,
        caller: &Caller,
        id: WebinarId,
    ) -> Result<Option<WebinarView>, QueryError> {
        self.policy.require_sign_in(caller)?;
        let webinar = webinars::get(&self.pool, id).await?;
        Ok(webinar.filter(|w| self.policy.allows(caller, Action::ViewWebinar(w))))
    }

    /// A webinar for a caller already allowed to see it: the read-back after its own write, or a
    /// subscription checked when it began.
    pub async fn webinar_by_id(&self, id: WebinarId) -> Result<Option<WebinarView>, QueryError> {
        Ok(webinars::get(&self.pool, id).await?)
    }

    /// The webinars the caller owns or presents, in start order, after the cursor.
    pub async fn my_webinars(
        &self,
        caller: &Caller,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<WebinarView>, QueryError> {
        let actor = caller.actor().ok_or(Denied::Unauthenticated)?;
        Ok(webinars::hosted_by(&self.pool, &actor.id, &actor.site, after, limit).await?)
    }

    /// A webinar's gateway, for administrators (`None` for others).
    pub async fn gateway_of(
        &self,
        caller: &Caller,
        webinar: &WebinarView,
    ) -> Result<Option<GatewayRow>, QueryError> {
        match webinar.gateway_id {
            Some(id) if self.policy.allows(caller, Action::ManageGateways) => {
                Ok(gateways::get(&self.pool, id).await?)
            }
            _ => Ok(None),
        }
    }

    /// A webinar's gateway's name, for whoever may see the webinar.
    pub async fn gateway_name(
        &self,
        caller: &Caller,
        webinar: &WebinarView,
    ) -> Result<Option<String>, QueryError> {
        match webinar.gateway_id {
            Some(id) if self.policy.allows(caller, Action::ViewWebinar(webinar)) => {
                Ok(gateways::get(&self.pool, id).await?.map(|g| g.name))
            }
            _ => Ok(None),
        }
    }

    /// Every gateway, retired ones last. Administrators.
    pub async fn gateways(&self, caller: &Caller) -> Result<Vec<GatewayRow>, QueryError> {
        self.policy.authorize(caller, Action::ManageGateways)?;
        Ok(gateways::list(&self.pool, &site_of(caller)).await?)
    }

    /// BigBlueButton sessions of started webinars, newest first (`running` filters). Admins.
    pub async fn live_sessions(
        &self,
        caller: &Caller,
        running: Option<bool>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<LiveSessionRow>, QueryError> {
        self.policy.authorize(caller, Action::ViewLiveSessions)?;
        Ok(live_sessions::list(&self.pool, &site_of(caller), running, after, limit).await?)
    }

    /// One webinar's session, for administrators (`None` for others and before it starts).
    pub async fn live_session(
        &self,
        caller: &Caller,
        webinar: WebinarId,
    ) -> Result<Option<LiveSessionRow>, QueryError> {
        if !self.policy.allows(caller, Action::ViewLiveSessions) {
            return Ok(None);
        }
        Ok(live_sessions::get(&self.pool, &site_of(caller), webinar.as_uuid()).await?)
    }

    /// Whether the caller may see live sessions (checked when a subscription starts).
    pub fn authorize_live_sessions(&self, caller: &Caller) -> Result<(), QueryError> {
        Ok(self.policy.authorize(caller, Action::ViewLiveSessions)?)
    }

    /// A gateway, read back after an administrator's change.
    pub async fn gateway_by_id(&self, id: GatewayId) -> Result<Option<GatewayRow>, QueryError> {
        Ok(gateways::get(&self.pool, id).await?)
    }

    /// A chat message, read back after its author posted it.
    pub async fn chat_message_by_id(
        &self,
        id: ChatMessageId,
    ) -> Result<Option<ChatMessageRow>, QueryError> {
        Ok(chat_messages::get(&self.pool, id).await?)
    }

    /// A gateway as its own events tell it, for answering a write the read model has not caught
    /// up with yet.
    pub async fn gateway_from_log(&self, id: GatewayId) -> Result<Option<GatewayRow>, QueryError> {
        Ok(gateways::from_log(&self.pool, id).await?)
    }

    /// A chat message as its own events tell it, for answering a post the read model has not
    /// caught up with yet.
    pub async fn chat_message_from_log(
        &self,
        id: ChatMessageId,
    ) -> Result<Option<ChatMessageRow>, QueryError> {
        Ok(chat_messages::from_log(&self.pool, id).await?)
    }

    /// Every event, in log order, after the cursor `(tx_id, global_position)`. Auditors and
    /// administrators.
    pub async fn audit_log(
        &self,
        caller: &Caller,
        filter: &AuditFilter,
        after: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<AuditRow>, QueryError> {
        self.policy.authorize(caller, Action::ReadAudit)?;
        Ok(audit_log::list(&self.pool, &site_of(caller), filter, after, limit).await?)
    }

    /// Webinars scheduled to start in `[from, to)`. Analysts and administrators.
    pub async fn webinar_stats(
        &self,
        caller: &Caller,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<WebinarStatsRow>, QueryError> {
        self.policy.authorize(caller, Action::ReadStats)?;
        Ok(stats::webinar_stats(&self.pool, &site_of(caller), from, to).await?)
    }

    /// Gateway use per UTC day in `[from, to)`. Analysts and administrators.
    pub async fn gateway_utilization(
        &self,
        caller: &Caller,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UtilizationRow>, QueryError> {
        self.policy.authorize(caller, Action::ReadStats)?;
        Ok(stats::gateway_utilization(&self.pool, &site_of(caller), from, to).await?)
    }
}

/// The site a caller's lists are of (our own components act in the default one here).
fn site_of(caller: &Caller) -> Site {
    caller.site().cloned().unwrap_or_default()
}
