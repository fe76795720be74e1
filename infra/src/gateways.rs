//! The gateway use cases: permission check, address policy, secret storage, URL uniqueness, then
//! the command.
//!
//! Two rules span more than one aggregate and are kept here with the database's help: no two
//! gateways share a SIPMediaGW URL (a claim row, taken before the event is written), and tokens
//! never enter the log (stored apart, the event names them by fingerprint).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use webinar_domain::gateway::{
    Gateway, GatewayAddressPolicy, GatewayChanges, GatewayCommand, GatewayError, GatewaySpec,
    TokenChange,
};
use webinar_domain::ports::GatewayDirectory;
use webinar_domain::{
    Action, Caller, GatewayId, HttpUrl, PermissionPolicy, Site, TimeSlot, WebinarId,
};

use crate::error::{from_aggregate, CommandError};
use crate::event_log;
use crate::event_store::{CommandBus, CommandMetadata, Written};
use crate::secrets::{store_gateway_token, GatewayToken};

/// What an update does to the token.
#[derive(Debug, Clone, Default)]
pub enum TokenInput {
    /// Keep it, unless the SIPMediaGW URL changes (then the update is refused).
    #[default]
    Keep,
    /// Keep it even though the SIPMediaGW URL changes (`keepToken: true`).
    KeepAcrossMove,
    Set(GatewayToken),
    Clear,
}

pub struct GatewayService {
    bus: CommandBus<Gateway>,
    pool: PgPool,
    policy: PermissionPolicy,
    /// Where gateways may point (`gateway_allowed_networks`).
    addresses: GatewayAddressPolicy,
    directory: Arc<dyn GatewayDirectory>,
}

/// A claim left by a registration that crashed before its event: taken over after this long.
const ORPHAN_CLAIM_GRACE_SECONDS: i64 = 60;

impl GatewayService {
    pub fn new(
        bus: CommandBus<Gateway>,
        pool: PgPool,
        policy: PermissionPolicy,
        addresses: GatewayAddressPolicy,
        directory: Arc<dyn GatewayDirectory>,
    ) -> Self {
        Self {
            bus,
            pool,
            policy,
            addresses,
            directory,
        }
    }

    /// Refuses URLs that point where gateways may not (this machine, internal networks, the
    /// metadata service), naming the input field.
    fn check_addresses(
        &self,
        sipmediagw_url: Option<&HttpUrl>,
        hls_url: Option<&HttpUrl>,
    ) -> Result<(), CommandError> {
        for (field, url) in [("sipmediagwUrl", sipmediagw_url), ("hlsUrl", hls_url)] {
            if let Some(url) = url {
                self.addresses
                    .check_str(url.as_str())
                    .map_err(|refused| CommandError::invalid(field, refused))?;
            }
        }
        Ok(())
    }

    #[tracing::instrument(name = "register_gateway", skip_all)]
    pub async fn register(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        spec: GatewaySpec,
        token: Option<GatewayToken>,
    ) -> Result<Written<GatewayId>, CommandError> {
        self.policy.authorize(caller, Action::ManageGateways)?;
        self.check_addresses(Some(&spec.sipmediagw_url), Some(&spec.hls_url))?;
        let id = GatewayId::new();
        self.claim_url(&spec.sipmediagw_url, id).await?;
        let result = async {
            let token = match token {
                Some(token) => Some(store_gateway_token(&self.pool, id, &token).await?),
                None => None,
            };
            // An administrator registers gateways for their own site.
            let site = caller.site().cloned().unwrap_or_default();
            self.execute(id, GatewayCommand::Register { spec, token, site }, metadata)
                .await
        }
        .await;
        if result.is_err() {
            self.release_claims_except(id, None).await?;
        }
        result
    }

    #[tracing::instrument(name = "update_gateway", skip_all, fields(gateway = %id))]
    pub async fn update(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        id: GatewayId,
        changes: GatewayChanges,
        token: TokenInput,
    ) -> Result<Written<GatewayId>, CommandError> {
        self.authorize_on(caller, id).await?;
        self.check_addresses(changes.sipmediagw_url.as_ref(), changes.hls_url.as_ref())?;
        let current = self.load_registered(id).await?;
        let moves_to = changes
            .sipmediagw_url
            .clone()
            .filter(|url| Some(url) != current.sipmediagw_url.as_ref());
        if let Some(url) = &moves_to {
            self.claim_url(url, id).await?;
        }
        let result = async {
            let token = match token {
                TokenInput::Keep => TokenChange::Keep,
                TokenInput::KeepAcrossMove => TokenChange::KeepAcrossMove,
                TokenInput::Clear => TokenChange::Clear,
                TokenInput::Set(token) => {
                    TokenChange::Set(store_gateway_token(&self.pool, id, &token).await?)
                }
            };
            self.execute(id, GatewayCommand::Update { changes, token }, metadata)
                .await
        }
        .await;
        if moves_to.is_some() {
            // Keep only the claim for the URL the gateway has now, whichever update won.
            let now = self.load(id).await?;
            self.release_claims_except(id, now.sipmediagw_url.as_ref())
                .await?;
        }
        result
    }

    #[tracing::instrument(name = "set_gateway_enabled", skip_all, fields(gateway = %id, enabled = enabled))]
    pub async fn set_enabled(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        id: GatewayId,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<Written<GatewayId>, CommandError> {
        self.authorize_on(caller, id).await?;
        let reason = reason
            .filter(|r| !r.trim().is_empty())
            .map(|r| webinar_domain::values::parse_free_text(&r, 500))
            .transpose()
            .map_err(|e| CommandError::invalid("reason", e.to_string()))?;
        let command = if enabled {
            GatewayCommand::Enable
        } else {
            GatewayCommand::Disable { reason }
        };
        self.execute(id, command, metadata).await
    }

    #[tracing::instrument(name = "retire_gateway", skip_all, fields(gateway = %id))]
    pub async fn retire(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        id: GatewayId,
    ) -> Result<Written<GatewayId>, CommandError> {
        self.authorize_on(caller, id).await?;
        let written = self.execute(id, GatewayCommand::Retire, metadata).await?;
        // A retired gateway's URL may be registered again.
        self.release_claims_except(id, None).await?;
        Ok(written)
    }

    /// Holds `slot` on gateway `id` for `webinar` (an internal step of scheduling: the caller was
    /// checked by the webinar use case).
    pub async fn reserve(
        &self,
        metadata: &CommandMetadata,
        id: GatewayId,
        webinar: WebinarId,
        slot: TimeSlot,
        site: &Site,
    ) -> Result<Written<GatewayId>, CommandError> {
        let site = site.clone();
        self.execute(
            id,
            GatewayCommand::Reserve {
                webinar,
                slot,
                site,
            },
            metadata,
        )
        .await
    }

    /// Frees what `webinar` holds on gateway `id`.
    pub async fn release(
        &self,
        metadata: &CommandMetadata,
        id: GatewayId,
        webinar: WebinarId,
    ) -> Result<Written<GatewayId>, CommandError> {
        self.execute(id, GatewayCommand::Release { webinar }, metadata)
            .await
    }

    /// Enabled gateways, those that look free at `slot` first (read model: may lag; the
    /// aggregate decides).
    pub async fn candidates(
        &self,
        slot: &TimeSlot,
        webinar: WebinarId,
        site: &Site,
    ) -> Result<Vec<GatewayId>, CommandError> {
        self.directory
            .candidates(slot, webinar, site)
            .await
            .map_err(|e| {
                if crate::error::unreachable_within(&*e) {
                    CommandError::Unavailable
                } else {
                    CommandError::Internal(anyhow::anyhow!("gateway directory: {e}"))
                }
            })
    }

    /// The aggregate's state (from snapshot and events, not from a read model).
    pub async fn load(&self, id: GatewayId) -> Result<Gateway, CommandError> {
        self.bus.load(id).await.map_err(from_aggregate)
    }

    /// An administrator's right over gateway `id`: a gateway of another site does not exist for
    /// them.
    async fn authorize_on(&self, caller: &Caller, id: GatewayId) -> Result<(), CommandError> {
        self.policy.authorize(caller, Action::ManageGateways)?;
        let gateway = self.load(id).await?;
        if gateway.registered && !caller.in_site(&gateway.site) {
            return Err(GatewayError::NotFound.into());
        }
        Ok(())
    }

    async fn load_registered(&self, id: GatewayId) -> Result<Gateway, CommandError> {
        let gateway = self.load(id).await?;
        if gateway.registered {
            Ok(gateway)
        } else {
            Err(GatewayError::NotFound.into())
        }
    }

    async fn execute(
        &self,
        id: GatewayId,
        command: GatewayCommand,
        metadata: &CommandMetadata,
    ) -> Result<Written<GatewayId>, CommandError> {
        self.bus
            .execute(id, command, metadata)
            .await
            .map_err(from_aggregate)
    }

    /// Takes `url` for `id`, or fails when another live gateway holds it. A claim left by a
    /// registration that crashed before its event (no event for its gateway, older than the grace
    /// period) is taken over.
    async fn claim_url(&self, url: &HttpUrl, id: GatewayId) -> Result<(), CommandError> {
        let (holder, claimed_at): (uuid::Uuid, DateTime<Utc>) = sqlx::query_as(
            "insert into gateway_url_claims as c (sipmediagw_url, gateway_id) values ($1, $2)
             on conflict (sipmediagw_url) do update set gateway_id = c.gateway_id
             returning gateway_id, claimed_at",
        )
        .bind(url.as_str())
        .bind(id.as_uuid())
        .fetch_one(&self.pool)
        .await?;
        if holder == id.as_uuid() {
            return Ok(());
        }
        let orphan = claimed_at
            < Utc::now() - chrono::Duration::seconds(ORPHAN_CLAIM_GRACE_SECONDS)
            && !event_log::exists(&self.pool, "Gateway", &holder.to_string()).await?;
        if !orphan {
            return Err(CommandError::SipMediaGwUrlTaken);
        }
        // Compare-and-swap: whoever takes the orphan first wins.
        let taken = sqlx::query(
            "update gateway_url_claims set gateway_id = $2, claimed_at = now()
              where sipmediagw_url = $1 and gateway_id = $3 and claimed_at = $4",
        )
        .bind(url.as_str())
        .bind(id.as_uuid())
        .bind(holder)
        .bind(claimed_at)
        .execute(&self.pool)
        .await?;
        if taken.rows_affected() == 1 {
            Ok(())
        } else {
            Err(CommandError::SipMediaGwUrlTaken)
        }
    }

    async fn release_claims_except(
        &self,
        id: GatewayId,
        keep: Option<&HttpUrl>,
    ) -> Result<(), CommandError> {
        sqlx::query(
            "delete from gateway_url_claims
              where gateway_id = $1 and ($2::text is null or sipmediagw_url <> $2)",
        )
        .bind(id.as_uuid())
        .bind(keep.map(HttpUrl::as_str))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
