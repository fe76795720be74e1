//! What the read models answer about capacity (the domain's [`CapacityReads`]): the webinars that
//! hold a gateway, from `webinars`, and the gateways in service or not, from `gateways`. This
//! module owns no table; it only reads those two (indexes in `migrations/0015_capacity.sql`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use webinar_domain::capacity::{Booking, CapacityReads, GatewayCondition, Period};
use webinar_domain::ports::LookupError;
use webinar_domain::{GatewayId, Site, WebinarId};

/// A gateway's id, whether it is enabled, why it was disabled, a failed stream's error, an
/// unwatchable stream's health.
type GatewayConditionRow = (Uuid, bool, Option<String>, Option<String>, Option<String>);

/// [`CapacityReads`] over the read models.
#[derive(Clone)]
pub struct PgCapacityReads {
    pub pool: PgPool,
}

#[async_trait]
impl CapacityReads for PgCapacityReads {
    /// Scheduled and live webinars hold their gateway for their slot; ended and cancelled ones
    /// have released it.
    async fn bookings(&self, window: Period, site: &Site) -> Result<Vec<Booking>, LookupError> {
        let rows: Vec<(Uuid, Uuid, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "select webinar_id, gateway_id, starts_at, ends_at from webinars
              where status in ('SCHEDULED', 'LIVE') and starts_at < $2 and ends_at > $1
                and site = $3",
        )
        .bind(window.from())
        .bind(window.to())
        .bind(site.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(webinar, gateway, starts_at, ends_at)| {
                // A zero-length slot holds nothing (scheduling never makes one).
                Some(Booking {
                    webinar: WebinarId::from_uuid(webinar),
                    gateway: GatewayId::from_uuid(gateway),
                    period: Period::between(starts_at, ends_at)?,
                })
            })
            .collect())
    }

    /// Gateways not retired, each with the newest sign of ill health of a live webinar on it: a
    /// stream that failed for good, or one the audience cannot watch (its `stream_health`, kept
    /// from `StreamHealthChanged`).
    async fn gateways(&self, site: &Site) -> Result<Vec<GatewayCondition>, LookupError> {
        let rows: Vec<GatewayConditionRow> = sqlx::query_as(
            "select g.gateway_id, g.enabled, g.disabled_reason, f.failure, u.unwatchable
               from gateways g
               left join lateral (
                    select coalesce(w.stream_error, 'the stream failed') as failure
                      from webinars w
                     where w.gateway_id = g.gateway_id
                       and w.status = 'LIVE' and w.stream_state = 'FAILED'
                     order by w.updated_at desc
                     limit 1) f on true
               left join lateral (
                    select w.stream_health || coalesce(': ' || w.stream_health_detail, '')
                           as unwatchable
                      from webinars w
                     where w.gateway_id = g.gateway_id
                       and w.status = 'LIVE' and w.stream_state = 'LIVE'
                       and w.stream_health in ('STALLED', 'MISSING', 'NOT_HLS')
                     order by w.updated_at desc
                     limit 1) u on true
              where not g.retired and g.site = $1",
        )
        .bind(site.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(gateway, enabled, disabled_reason, failed_stream, unwatchable_stream)| {
                    GatewayCondition {
                        gateway: GatewayId::from_uuid(gateway),
                        enabled,
                        disabled_reason,
                        failed_stream,
                        unwatchable_stream,
                    }
                },
            )
            .collect())
    }

    async fn sites(&self) -> Result<Vec<Site>, LookupError> {
        let names: Vec<String> = sqlx::query_scalar(
            "select site from gateways where not retired
             union
             select site from webinars where status in ('SCHEDULED', 'LIVE')",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(names
            .iter()
            .filter_map(|name| Site::parse(name).ok())
            .collect())
    }
}
