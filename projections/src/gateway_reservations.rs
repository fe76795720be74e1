//! `gateway_reservations`: which gateway holds which slot. The scheduler reads it to try
//! likely-free gateways first (the domain's `GatewayDirectory`); the Gateway aggregate remains the
//! judge of double booking.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::gateway::GatewayEvent;
use webinar_domain::ports::{GatewayDirectory, LookupError};
use webinar_domain::{GatewayId, TimeSlot, WebinarId};
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

use crate::events::decoded;

pub struct GatewayReservationsProjector;

#[async_trait]
impl Projector for GatewayReservationsProjector {
    fn name(&self) -> &'static str {
        "gateway_reservations"
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Gateway"])
    }
    fn tables(&self) -> &'static [&'static str] {
        &["gateway_reservations"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let (gateway, payload): (_, GatewayEvent) = decoded(event)?;
        match payload {
            GatewayEvent::SlotReserved { webinar_id, slot } => {
                sqlx::query(
                    "insert into gateway_reservations (gateway_id, webinar_id, starts_at, ends_at)
                     values ($1, $2, $3, $4)
                     on conflict (gateway_id, webinar_id)
                     do update set starts_at = excluded.starts_at, ends_at = excluded.ends_at",
                )
                .bind(gateway)
                .bind(webinar_id.as_uuid())
                .bind(slot.start())
                .bind(slot.end())
                .execute(conn)
                .await?;
            }
            GatewayEvent::SlotReleased { webinar_id } => {
                sqlx::query(
                    "delete from gateway_reservations where gateway_id = $1 and webinar_id = $2",
                )
                .bind(gateway)
                .bind(webinar_id.as_uuid())
                .execute(conn)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Reservations per gateway (for consistency checks and administrators).
pub async fn reservations(
    pool: &PgPool,
) -> Result<Vec<(Uuid, Uuid, DateTime<Utc>, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "select gateway_id, webinar_id, starts_at, ends_at from gateway_reservations
          order by gateway_id, starts_at",
    )
    .fetch_all(pool)
    .await
}

/// The scheduler's list of gateways to try, from `gateways` and `gateway_reservations`.
pub struct PgGatewayDirectory {
    pub pool: PgPool,
}

#[async_trait]
impl GatewayDirectory for PgGatewayDirectory {
    async fn candidates(
        &self,
        slot: &TimeSlot,
        webinar: WebinarId,
    ) -> Result<Vec<GatewayId>, LookupError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
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
}
