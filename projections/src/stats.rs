//! `webinar_stats` and `gateway_utilization`: figures for analysts.
//!
//! Live time is counted from `StreamStarted` to the next event that ends the stream interval
//! (`StreamStopRequested`, `StreamStopped`, `StreamRestartRequested`, `GatewayReassigned`, `Ended`),
//! and credited to the gateway and UTC day on which the interval began. Reserved minutes are
//! credited to the day the slot starts; a reservation released before its slot began (a
//! cancellation, a move) is taken back, one released after (the end) stays.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::chat::ChatEvent;
use webinar_domain::gateway::GatewayEvent;
use webinar_domain::webinar::{WebinarEvent, WebinarStatus};
use webinar_domain::{GatewayId, WebinarId};
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

use crate::events::aggregate_uuid;

pub struct StatsProjector;

/// Closes the stream interval in progress, crediting the webinar and its gateway.
async fn close_interval(
    conn: &mut PgConnection,
    webinar: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let closed: Option<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "update webinar_stats s set live_seconds = live_seconds
                + greatest(0, extract(epoch from ($2 - live_since))::bigint),
               live_since = null
          from (select webinar_id, live_since as since from webinar_stats where webinar_id = $1) old
         where s.webinar_id = old.webinar_id and old.since is not null
         returning s.gateway_id, old.since",
    )
    .bind(webinar)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((gateway, since)) = closed {
        let seconds = (at - since).num_seconds().max(0);
        sqlx::query(
            "insert into gateway_utilization (gateway_id, day, live_seconds) values ($1, ($2 at time zone 'UTC')::date, $3)
             on conflict (gateway_id, day) do update set live_seconds = gateway_utilization.live_seconds + $3",
        )
        .bind(gateway)
        .bind(since)
        .bind(seconds)
        .execute(conn)
        .await?;
    }
    Ok(())
}

async fn bump(
    conn: &mut PgConnection,
    webinar: Uuid,
    column: &'static str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "update webinar_stats set {column} = {column} + 1 where webinar_id = $1"
    ))
    .bind(webinar)
    .execute(conn)
    .await?;
    Ok(())
}

async fn set_reserved(
    conn: &mut PgConnection,
    gateway: Uuid,
    webinar: Uuid,
    slot: Option<(DateTime<Utc>, i64)>,
) -> Result<(), sqlx::Error> {
    let old: Option<(DateTime<Utc>, i64)> = sqlx::query_as(
        "delete from gateway_utilization_reservations where gateway_id = $1 and webinar_id = $2
         returning starts_at, minutes",
    )
    .bind(gateway)
    .bind(webinar)
    .fetch_optional(&mut *conn)
    .await?;
    let changes = old.map(|(s, m)| (s, -m)).into_iter().chain(slot);
    for (starts_at, minutes) in changes {
        sqlx::query(
            "insert into gateway_utilization (gateway_id, day, reserved_minutes) values ($1, ($2 at time zone 'UTC')::date, $3)
             on conflict (gateway_id, day) do update
                set reserved_minutes = gateway_utilization.reserved_minutes + $3",
        )
        .bind(gateway)
        .bind(starts_at)
        .bind(minutes)
        .execute(&mut *conn)
        .await?;
    }
    if let Some((starts_at, minutes)) = slot {
        sqlx::query(
            "insert into gateway_utilization_reservations (gateway_id, webinar_id, starts_at, minutes)
             values ($1, $2, $3, $4)",
        )
        .bind(gateway)
        .bind(webinar)
        .bind(starts_at)
        .bind(minutes)
        .execute(conn)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Projector for StatsProjector {
    fn name(&self) -> &'static str {
        "stats"
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Webinar", "Gateway", "ChatMessage"])
    }
    fn tables(&self) -> &'static [&'static str] {
        &[
            "webinar_stats",
            "webinar_stats_messages",
            "gateway_utilization",
            "gateway_utilization_reservations",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let id = aggregate_uuid(event)?;
        let at = event.recorded_at;
        match event.aggregate_type.as_str() {
            "Gateway" => match event
                .decode::<GatewayEvent>()
                .map_err(|e| ProjectionError::decode(event, e))?
            {
                GatewayEvent::SlotReserved { webinar_id, slot } => {
                    let slot = Some((slot.start(), slot.duration_minutes()));
                    set_reserved(conn, id, webinar_id.as_uuid(), slot).await?;
                }
                GatewayEvent::SlotReleased { webinar_id } => {
                    // A release once the slot has begun is an end: those minutes were used.
                    let began: Option<bool> = sqlx::query_scalar(
                        "select starts_at <= $3 from gateway_utilization_reservations
                          where gateway_id = $1 and webinar_id = $2",
                    )
                    .bind(id)
                    .bind(webinar_id.as_uuid())
                    .bind(at)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if began == Some(true) {
                        sqlx::query("delete from gateway_utilization_reservations where gateway_id = $1 and webinar_id = $2")
                            .bind(id)
                            .bind(webinar_id.as_uuid())
                            .execute(conn)
                            .await?;
                    } else {
                        set_reserved(conn, id, webinar_id.as_uuid(), None).await?;
                    }
                }
                _ => {}
            },
            "ChatMessage" => {
                match event
                    .decode::<ChatEvent>()
                    .map_err(|e| ProjectionError::decode(event, e))?
                {
                    ChatEvent::Posted { webinar_id, .. } => {
                        sqlx::query("insert into webinar_stats_messages values ($1, $2) on conflict do nothing")
                        .bind(id)
                        .bind(webinar_id.as_uuid())
                        .execute(&mut *conn)
                        .await?;
                        bump(conn, webinar_id.as_uuid(), "chat_posted").await?;
                    }
                    outcome => {
                        let column = if matches!(outcome, ChatEvent::Relayed) {
                            "chat_relayed"
                        } else {
                            "chat_failed"
                        };
                        sqlx::query(&format!(
                        "update webinar_stats set {column} = {column} + 1
                          where webinar_id = (select webinar_id from webinar_stats_messages where message_id = $1)"
                    ))
                    .bind(id)
                    .execute(conn)
                    .await?;
                    }
                }
            }
            _ => {
                use WebinarEvent::*;
                match event
                    .decode::<WebinarEvent>()
                    .map_err(|e| ProjectionError::decode(event, e))?
                {
                    Scheduled {
                        title,
                        owner,
                        start_at,
                        duration_minutes,
                        gateway_id,
                        ..
                    } => {
                        sqlx::query(
                            "insert into webinar_stats (webinar_id, title, owner_id, gateway_id, scheduled_start,
                                scheduled_minutes, status)
                             values ($1, $2, $3, $4, $5, $6, 'SCHEDULED') on conflict do nothing",
                        )
                        .bind(id)
                        .bind(title.as_str())
                        .bind(&owner.id)
                        .bind(gateway_id.as_uuid())
                        .bind(start_at)
                        .bind(duration_minutes as i32)
                        .execute(conn)
                        .await?;
                    }
                    Rescheduled {
                        start_at,
                        duration_minutes,
                    } => {
                        sqlx::query("update webinar_stats set scheduled_start = $2, scheduled_minutes = $3 where webinar_id = $1")
                            .bind(id)
                            .bind(start_at)
                            .bind(duration_minutes as i32)
                            .execute(conn)
                            .await?;
                    }
                    DetailsUpdated {
                        title: Some(title), ..
                    } => {
                        sqlx::query("update webinar_stats set title = $2 where webinar_id = $1")
                            .bind(id)
                            .bind(title.as_str())
                            .execute(conn)
                            .await?;
                    }
                    Started { .. } => {
                        sqlx::query("update webinar_stats set status = 'LIVE', started_at = coalesce(started_at, $2) where webinar_id = $1")
                            .bind(id)
                            .bind(at)
                            .execute(conn)
                            .await?;
                    }
                    StreamStarted => {
                        sqlx::query(
                            "update webinar_stats set first_live_at = coalesce(first_live_at, $2),
                                live_since = coalesce(live_since, $2) where webinar_id = $1",
                        )
                        .bind(id)
                        .bind(at)
                        .execute(conn)
                        .await?;
                    }
                    StreamFailed { .. } => {
                        bump(&mut *conn, id, "stream_failures").await?;
                        sqlx::query(
                            "insert into gateway_utilization (gateway_id, day, failures)
                             select gateway_id, ($2 at time zone 'UTC')::date, 1 from webinar_stats where webinar_id = $1
                             on conflict (gateway_id, day) do update set failures = gateway_utilization.failures + 1",
                        )
                        .bind(id)
                        .bind(at)
                        .execute(conn)
                        .await?;
                    }
                    StreamRestartRequested => {
                        close_interval(&mut *conn, id, at).await?;
                        bump(conn, id, "restarts").await?;
                    }
                    StreamStopRequested | StreamStopped => close_interval(conn, id, at).await?,
                    GatewayReassigned { to, .. } => {
                        close_interval(&mut *conn, id, at).await?;
                        sqlx::query(
                            "update webinar_stats set gateway_id = $2,
                                failovers = failovers + case when status = 'LIVE' then 1 else 0 end
                              where webinar_id = $1",
                        )
                        .bind(id)
                        .bind(to.as_uuid())
                        .execute(conn)
                        .await?;
                    }
                    MeetingEnded { reason } => {
                        let how = serde_json::to_value(reason)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned));
                        sqlx::query(
                            "update webinar_stats set ended_how = $2 where webinar_id = $1",
                        )
                        .bind(id)
                        .bind(how)
                        .execute(conn)
                        .await?;
                    }
                    Ended => {
                        close_interval(&mut *conn, id, at).await?;
                        sqlx::query(
                            "update webinar_stats set status = 'ENDED' where webinar_id = $1",
                        )
                        .bind(id)
                        .execute(conn)
                        .await?;
                    }
                    Cancelled => {
                        sqlx::query("update webinar_stats set status = 'CANCELLED', ended_how = 'CANCELLED' where webinar_id = $1")
                            .bind(id)
                            .execute(conn)
                            .await?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WebinarStatsRow {
    #[sqlx(try_from = "Uuid")]
    pub webinar_id: WebinarId,
    pub title: String,
    pub owner_id: String,
    #[sqlx(try_from = "Uuid")]
    pub gateway_id: GatewayId,
    pub scheduled_start: DateTime<Utc>,
    pub scheduled_minutes: i32,
    #[sqlx(try_from = "String")]
    pub status: WebinarStatus,
    /// An `EndReason`'s name, or `CANCELLED`.
    pub ended_how: Option<String>,
    pub first_live_seconds: Option<i64>,
    pub live_seconds: i64,
    pub stream_failures: i32,
    pub restarts: i32,
    pub failovers: i32,
    pub chat_posted: i32,
    pub chat_relayed: i32,
    pub chat_failed: i32,
}

/// Webinars scheduled to start in `[from, to)`. Live time includes an interval still open.
pub async fn webinar_stats(
    pool: &PgPool,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Vec<WebinarStatsRow>, sqlx::Error> {
    sqlx::query_as(
        "select webinar_id, title, owner_id, gateway_id, scheduled_start, scheduled_minutes, status,
                ended_how,
                extract(epoch from (first_live_at - started_at))::bigint as first_live_seconds,
                live_seconds + coalesce(extract(epoch from (now() - live_since))::bigint, 0) as live_seconds,
                stream_failures, restarts, failovers, chat_posted, chat_relayed, chat_failed
           from webinar_stats
          where ($1::timestamptz is null or scheduled_start >= $1)
            and ($2::timestamptz is null or scheduled_start < $2)
          order by scheduled_start, webinar_id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct UtilizationRow {
    #[sqlx(try_from = "Uuid")]
    pub gateway_id: GatewayId,
    pub day: chrono::NaiveDate,
    pub reserved_minutes: i64,
    pub live_seconds: i64,
    pub failures: i32,
}

/// Per gateway and day, for days in `[from, to)`.
pub async fn gateway_utilization(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<UtilizationRow>, sqlx::Error> {
    sqlx::query_as(
        "select gateway_id, day, reserved_minutes, live_seconds, failures from gateway_utilization
          where day >= ($1 at time zone 'UTC')::date and day < ($2 at time zone 'UTC')::date
            and (reserved_minutes <> 0 or live_seconds <> 0 or failures <> 0)
          order by day, gateway_id",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}
