//! `gateway_reservations`: which gateway holds which slot. The scheduler reads it to try
//! likely-free gateways first (the domain's `GatewayDirectory`); the Gateway aggregate remains the
//! judge of double booking.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::gateway::GatewayEvent;
use webinar_domain::ports::{GatewayDirectory, LookupError};
use webinar_domain::{GatewayId, Site, TimeSlot, WebinarId};
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

    /// Each (gateway, webinar) ends the batch reserved (with its last slot) or released.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        _announce: bool,
    ) -> Result<(), ProjectionError> {
        let mut last: HashMap<(Uuid, Uuid), Option<TimeSlot>> = HashMap::new();
        for event in events {
            let (gateway, payload): (Uuid, GatewayEvent) = decoded(event)?;
            match payload {
                GatewayEvent::SlotReserved { webinar_id, slot } => {
                    last.insert((gateway, webinar_id.as_uuid()), Some(slot));
                }
                GatewayEvent::SlotReleased { webinar_id } => {
                    last.insert((gateway, webinar_id.as_uuid()), None);
                }
                _ => {}
            }
        }
        let (held, released): (Vec<_>, Vec<_>) = last.into_iter().partition(|(_, s)| s.is_some());
        if !released.is_empty() {
            sqlx::query(
                "delete from gateway_reservations r
                  using unnest($1::uuid[], $2::uuid[]) as x(gateway_id, webinar_id)
                  where r.gateway_id = x.gateway_id and r.webinar_id = x.webinar_id",
            )
            .bind(released.iter().map(|((g, _), _)| *g).collect::<Vec<_>>())
            .bind(released.iter().map(|((_, w), _)| *w).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        let held: Vec<((Uuid, Uuid), TimeSlot)> = held
            .into_iter()
            .filter_map(|(key, slot)| slot.map(|s| (key, s)))
            .collect();
        if !held.is_empty() {
            sqlx::query(
                "insert into gateway_reservations (gateway_id, webinar_id, starts_at, ends_at)
                 select * from unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[])
                 on conflict (gateway_id, webinar_id)
                 do update set starts_at = excluded.starts_at, ends_at = excluded.ends_at",
            )
            .bind(held.iter().map(|((g, _), _)| *g).collect::<Vec<_>>())
            .bind(held.iter().map(|((_, w), _)| *w).collect::<Vec<_>>())
            .bind(held.iter().map(|(_, s)| s.start()).collect::<Vec<_>>())
            .bind(held.iter().map(|(_, s)| s.end()).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
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
        site: &Site,
    ) -> Result<Vec<GatewayId>, LookupError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "select g.gateway_id from gateways g
              where g.enabled and not g.retired and g.site = $4
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
        .bind(site.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(GatewayId::from_uuid).collect())
    }
}
