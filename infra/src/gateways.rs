//! The gateway use cases: permission check, secret storage, URL uniqueness, then the command.
//!
//! Two rules span more than one aggregate and are kept here with the database's help: no two
//! gateways share a SIPMediaGW URL (a claim row, taken before the event is written), and tokens
//! never enter the log (stored apart, the event names them by fingerprint).

use sqlx::PgPool;
use webinar_domain::gateway::{
    Gateway, GatewayChanges, GatewayCommand, GatewayError, GatewaySpec, TokenChange,
};
use webinar_domain::{Caller, GatewayId, HttpUrl, PermissionPolicy, TimeSlot, WebinarId};

use crate::error::{from_aggregate, CommandError};
use crate::event_log::Position;
use crate::event_store::{CommandBus, CommandMetadata};
use crate::secrets::{store_gateway_token, GatewayToken};

/// What an update does to the token.
#[derive(Debug, Clone, Default)]
pub enum TokenInput {
    #[default]
    Keep,
    Set(GatewayToken),
    Clear,
}

/// The outcome of a command: which aggregate, and the log position to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written<Id> {
    pub id: Id,
    pub position: Option<Position>,
}

pub struct GatewayService {
    bus: CommandBus<Gateway>,
    pool: PgPool,
    policy: PermissionPolicy,
}

/// A claim left by a registration that crashed before its event: taken over after this long.
const ORPHAN_CLAIM_GRACE_SECONDS: i64 = 60;

impl GatewayService {
    pub fn new(bus: CommandBus<Gateway>, pool: PgPool, policy: PermissionPolicy) -> Self {
        Self { bus, pool, policy }
    }

    pub async fn register(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        spec: GatewaySpec,
        token: Option<GatewayToken>,
    ) -> Result<Written<GatewayId>, CommandError> {
        self.policy.manage_gateways(caller)?;
        let id = GatewayId::new();
        self.claim_url(&spec.sipmediagw_url, id).await?;
        let result = async {
            let token = match token {
                Some(token) => Some(store_gateway_token(&self.pool, id, &token).await?),
                None => None,
            };
            self.bus
                .execute(
                    &id.to_string(),
                    GatewayCommand::Register { spec, token },
                    metadata,
                )
                .await
                .map_err(from_aggregate)
        }
        .await;
        if result.is_err() {
            self.release_claims_except(id, None).await?;
        }
        Ok(Written {
            id,
            position: result?,
        })
    }

    pub async fn update(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        id: GatewayId,
        changes: GatewayChanges,
        token: TokenInput,
    ) -> Result<Written<GatewayId>, CommandError> {
        self.policy.manage_gateways(caller)?;
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
                TokenInput::Clear => TokenChange::Clear,
                TokenInput::Set(token) => {
                    TokenChange::Set(store_gateway_token(&self.pool, id, &token).await?)
                }
            };
            self.bus
                .execute(
                    &id.to_string(),
                    GatewayCommand::Update { changes, token },
                    metadata,
                )
                .await
                .map_err(from_aggregate)
        }
        .await;
        if moves_to.is_some() {
            // Keep only the claim for the URL the gateway has now, whichever update won.
            let now = self
                .bus
                .load(&id.to_string())
                .await
                .map_err(from_aggregate)?;
            self.release_claims_except(id, now.sipmediagw_url.as_ref())
                .await?;
        }
        Ok(Written {
            id,
            position: result?,
        })
    }

    pub async fn set_enabled(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        id: GatewayId,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<Written<GatewayId>, CommandError> {
        self.policy.manage_gateways(caller)?;
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
            return Err(CommandError::invalid(
                "reason",
                "must be at most 500 characters",
            ));
        }
        let command = if enabled {
            GatewayCommand::Enable
        } else {
            GatewayCommand::Disable { reason }
        };
        self.execute(id, command, metadata).await
    }

    pub async fn retire(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        id: GatewayId,
    ) -> Result<Written<GatewayId>, CommandError> {
        self.policy.manage_gateways(caller)?;
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
    ) -> Result<Written<GatewayId>, CommandError> {
        self.execute(id, GatewayCommand::Reserve { webinar, slot }, metadata)
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
    ) -> Result<Vec<GatewayId>, CommandError> {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            "select g.gateway_id from gateways g
              where g.enabled and not g.retired
              order by exists (select 1 from gateway_reservations r
                                where r.gateway_id = g.gateway_id and r.webinar_id <> $3
                                  and r.starts_at < $2 and $1 < r.ends_at),
                       (select count(*) from gateway_reservations r
                         where r.gateway_id = g.gateway_id),
                       g.registered_at, g.gateway_id",
        )
        .bind(slot.start())
        .bind(slot.end())
        .bind(webinar.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(GatewayId::from_uuid).collect())
    }

    /// The aggregate's state (from snapshot and events, not from a read model).
    pub async fn load(&self, id: GatewayId) -> Result<Gateway, CommandError> {
        self.bus.load(&id.to_string()).await.map_err(from_aggregate)
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
        let position = self
            .bus
            .execute(&id.to_string(), command, metadata)
            .await
            .map_err(from_aggregate)?;
        Ok(Written { id, position })
    }

    /// Takes `url` for `id`, or fails when another live gateway holds it.
    async fn claim_url(&self, url: &HttpUrl, id: GatewayId) -> Result<(), CommandError> {
        let owner: uuid::Uuid = sqlx::query_scalar(
            "insert into gateway_url_claims as c (sipmediagw_url, gateway_id) values ($1, $2)
             on conflict (sipmediagw_url) do update
                set gateway_id = excluded.gateway_id, claimed_at = now()
              where c.gateway_id = excluded.gateway_id
                 or (c.claimed_at < now() - make_interval(secs => $3)
                     and not exists (select 1 from events
                                      where aggregate_type = 'Gateway'
                                        and aggregate_id = c.gateway_id::text))
             returning gateway_id",
        )
        .bind(url.as_str())
        .bind(id.as_uuid())
        .bind(ORPHAN_CLAIM_GRACE_SECONDS as f64)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or_default();
        if owner == id.as_uuid() {
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
