//! `gateways`: every gateway as administrators see it, without its token.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::gateway::{Gateway, GatewayApi, GatewayEvent};
use webinar_domain::GatewayId;
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

pub struct GatewaysProjector;

#[async_trait]
impl Projector for GatewaysProjector {
    fn name(&self) -> &'static str {
        "gateways"
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Gateway"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gateways"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let (id, payload): (_, GatewayEvent) = crate::events::decoded(event)?;
        let at = event.recorded_at;
        let version = event.sequence;
        // Each statement is guarded by `version < $n`, so re-applying an event changes nothing.
        match payload {
            GatewayEvent::GatewayRegistered {
                name,
                rtmp_url,
                hls_url,
                broadcaster,
                sipmediagw_url,
                api,
                token_fingerprint,
            } => {
                sqlx::query(
                    "insert into gateways (gateway_id, name, rtmp_url, hls_url, broadcaster,
                        sipmediagw_url, api, has_token, enabled, retired, version, registered_at,
                        updated_at)
                     values ($1, $2, $3, $4, $5, $6, $7, $8, true, false, $9, $10, $10)
                     on conflict (gateway_id) do nothing",
                )
                .bind(id)
                .bind(name.as_str())
                .bind(rtmp_url.as_str())
                .bind(hls_url.as_str())
                .bind(broadcaster.as_str())
                .bind(sipmediagw_url.as_str())
                .bind(api.as_str())
                .bind(token_fingerprint.is_some())
                .bind(version)
                .bind(at)
                .execute(conn)
                .await?;
            }
            GatewayEvent::GatewayUpdated {
                name,
                rtmp_url,
                hls_url,
                broadcaster,
                sipmediagw_url,
                api,
            } => {
                sqlx::query(
                    "update gateways set
                        name = coalesce($3, name), rtmp_url = coalesce($4, rtmp_url),
                        hls_url = coalesce($5, hls_url), broadcaster = coalesce($6, broadcaster),
                        sipmediagw_url = coalesce($7, sipmediagw_url), api = coalesce($8, api),
                        version = $2, updated_at = $9
                      where gateway_id = $1 and version < $2",
                )
                .bind(id)
                .bind(version)
                .bind(name.as_ref().map(|v| v.as_str()))
                .bind(rtmp_url.as_ref().map(|v| v.as_str()))
                .bind(hls_url.as_ref().map(|v| v.as_str()))
                .bind(broadcaster.as_ref().map(|v| v.as_str()))
                .bind(sipmediagw_url.as_ref().map(|v| v.as_str()))
                .bind(api.map(|v| v.as_str()))
                .bind(at)
                .execute(conn)
                .await?;
            }
            GatewayEvent::GatewayTokenRotated { token_fingerprint } => {
                set_flags(
                    conn,
                    id,
                    version,
                    at,
                    "has_token = $4",
                    token_fingerprint.is_some(),
                )
                .await?;
            }
            GatewayEvent::GatewayDisabled { reason } => {
                sqlx::query(
                    "update gateways set enabled = false, disabled_reason = $4, version = $2,
                        updated_at = $3
                      where gateway_id = $1 and version < $2",
                )
                .bind(id)
                .bind(version)
                .bind(at)
                .bind(reason)
                .execute(conn)
                .await?;
            }
            GatewayEvent::GatewayEnabled => {
                set_flags(
                    conn,
                    id,
                    version,
                    at,
                    "enabled = $4, disabled_reason = null",
                    true,
                )
                .await?;
            }
            GatewayEvent::GatewayRetired => {
                set_flags(conn, id, version, at, "retired = $4, enabled = false", true).await?;
            }
            // Reservations have their own read model (`gateway_reservations`). Not even the version
            // moves here: thousands of them on a handful of rows would make a rebuild, which runs
            // in one transaction, walk ever longer chains of row versions.
            GatewayEvent::SlotReserved { .. } | GatewayEvent::SlotReleased { .. } => {}
        }
        Ok(())
    }
}

async fn set_flags(
    conn: &mut PgConnection,
    id: Uuid,
    version: i64,
    at: DateTime<Utc>,
    assignments: &'static str,
    value: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "update gateways set {assignments}, version = $2, updated_at = $3
          where gateway_id = $1 and version < $2"
    ))
    .bind(id)
    .bind(version)
    .bind(at)
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}

/// One row of `gateways`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GatewayRow {
    #[sqlx(try_from = "Uuid")]
    pub gateway_id: GatewayId,
    pub name: String,
    pub rtmp_url: String,
    pub hls_url: String,
    pub broadcaster: String,
    pub sipmediagw_url: String,
    #[sqlx(try_from = "String")]
    pub api: GatewayApi,
    pub has_token: bool,
    pub enabled: bool,
    pub retired: bool,
    pub disabled_reason: Option<String>,
    pub version: i64,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl GatewayRow {
    /// Whether this row says what the aggregate says (used by consistency tests).
    pub fn matches(&self, gateway: &Gateway) -> bool {
        gateway.registered
            && gateway.name.as_ref().map(|v| v.as_str()) == Some(self.name.as_str())
            && gateway.rtmp_url.as_ref().map(|v| v.as_str()) == Some(self.rtmp_url.as_str())
            && gateway.hls_url.as_ref().map(|v| v.as_str()) == Some(self.hls_url.as_str())
            && gateway.broadcaster.as_ref().map(|v| v.as_str()) == Some(self.broadcaster.as_str())
            && gateway.sipmediagw_url.as_ref().map(|v| v.as_str())
                == Some(self.sipmediagw_url.as_str())
            && gateway.api == Some(self.api)
            && gateway.token_fingerprint.is_some() == self.has_token
            && gateway.enabled == self.enabled
            && gateway.retired == self.retired
    }
}

const COLUMNS: &str = "gateway_id, name, rtmp_url, hls_url, broadcaster, sipmediagw_url, api,
    has_token, enabled, retired, disabled_reason, version, registered_at, updated_at";

pub async fn list(pool: &PgPool) -> Result<Vec<GatewayRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from gateways order by retired, name, gateway_id"
    ))
    .fetch_all(pool)
    .await
}

pub async fn get(pool: &PgPool, id: GatewayId) -> Result<Option<GatewayRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from gateways where gateway_id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await
}
