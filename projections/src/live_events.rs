//! `live_events`: the live page. One event per webinar, with the HLS URL the audience plays.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::gateway::GatewayEvent;
use webinar_domain::webinar::{LiveEventStatus, StreamState, WebinarEvent};
use webinar_domain::{Caller, Person, WebinarId};
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

use crate::events::{self, decoded};
use crate::webinars::details_patch;

/// Channel on which a changed live event's id is announced at commit.
pub const LIVE_EVENT_CHANGED: &str = "live_event_changed";

pub struct LiveEventsProjector;

impl LiveEventsProjector {
    async fn gateway_event(
        &self,
        conn: &mut PgConnection,
        gateway: Uuid,
        event: GatewayEvent,
    ) -> Result<(), ProjectionError> {
        let (hls_url, broadcaster) = match event {
            GatewayEvent::GatewayRegistered {
                hls_url,
                broadcaster,
                ..
            } => (Some(hls_url), Some(broadcaster)),
            GatewayEvent::GatewayUpdated {
                hls_url,
                broadcaster,
                ..
            } => (hls_url, broadcaster),
            _ => return Ok(()),
        };
        if hls_url.is_none() && broadcaster.is_none() {
            return Ok(());
        }
        let hls_url = hls_url.map(|v| v.as_str().to_owned());
        let broadcaster = broadcaster.map(|v| v.as_str().to_owned());
        sqlx::query(
            "insert into live_event_gateways (gateway_id, hls_url, broadcaster)
             values ($1, coalesce($2, ''), coalesce($3, ''))
             on conflict (gateway_id) do update
                set hls_url = coalesce($2, live_event_gateways.hls_url),
                    broadcaster = coalesce($3, live_event_gateways.broadcaster)",
        )
        .bind(gateway)
        .bind(&hls_url)
        .bind(&broadcaster)
        .execute(&mut *conn)
        .await?;
        let changed: Vec<Uuid> = sqlx::query_scalar(
            "update live_events set hls_url = coalesce($2, hls_url),
                    broadcaster = coalesce($3, broadcaster)
              where gateway_id = $1 and status in ('UPCOMING', 'LIVE')
             returning live_event_id",
        )
        .bind(gateway)
        .bind(&hls_url)
        .bind(&broadcaster)
        .fetch_all(&mut *conn)
        .await?;
        for id in changed {
            notify(conn, id).await?;
        }
        Ok(())
    }
}

async fn notify(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    events::announce(conn, LIVE_EVENT_CHANGED, id).await
}

#[async_trait]
impl Projector for LiveEventsProjector {
    fn name(&self) -> &'static str {
        "live_events"
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Webinar", "Gateway"])
    }
    fn tables(&self) -> &'static [&'static str] {
        &["live_events", "live_event_gateways"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        if event.aggregate_type == "Gateway" {
            let (id, payload): (_, GatewayEvent) = decoded(event)?;
            return self.gateway_event(conn, id, payload).await;
        }
        use WebinarEvent::*;
        let (id, payload): (_, WebinarEvent) = decoded(event)?;
        let (version, at) = (event.sequence, event.recorded_at);
        let (assignments, value): (&str, serde_json::Value) = match payload {
            Scheduled {
                title,
                description,
                owner,
                presenters,
                start_at,
                duration_minutes,
                enable_chat,
                restricted,
                groups,
                gateway_id,
                ..
            } => {
                let mut hosts = vec![owner.clone()];
                hosts.extend(presenters);
                let host_ids: Vec<String> = hosts.iter().map(|p| p.id.clone()).collect();
                sqlx::query(
                    "insert into live_events (live_event_id, title, description, starts_at, ends_at,
                        hls_url, broadcaster, gateway_id, status, stream_state, chat_enabled,
                        restricted, groups, presenters, host_ids, version, updated_at)
                     select $1, $2, $3, $4, $4 + make_interval(mins => $5), coalesce(g.hls_url, ''),
                        coalesce(g.broadcaster, ''), $6, 'UPCOMING', 'IDLE', $7, $8, $9, $10, $11,
                        $12, $13
                       from (select 1) one
                       left join live_event_gateways g on g.gateway_id = $6
                     on conflict (live_event_id) do nothing",
                )
                .bind(id)
                .bind(title.as_str())
                .bind(description.as_ref().map(|d| d.as_str()))
                .bind(start_at)
                .bind(duration_minutes as i32)
                .bind(gateway_id.as_uuid())
                .bind(enable_chat)
                .bind(restricted)
                .bind(&groups)
                .bind(Json(&hosts))
                .bind(&host_ids)
                .bind(version)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                notify(conn, id).await?;
                return Ok(());
            }
            Rescheduled {
                start_at,
                duration_minutes,
            } => (
                "starts_at = ($3->>'start')::timestamptz,
                 ends_at = ($3->>'start')::timestamptz + make_interval(mins => ($3->>'minutes')::int)",
                json!({"start": start_at, "minutes": duration_minutes}),
            ),
            DetailsUpdated {
                title,
                description,
                presenters,
                restricted,
                groups,
            } => {
                (
                    "title = coalesce($3->>'title', title),
                     description = case when $3 ? 'description' then $3->>'description' else description end,
                     presenters = case when $3 ? 'presenters'
                        then jsonb_build_array(presenters->0) || ($3->'presenters') else presenters end,
                     host_ids = case when $3 ? 'presenters'
                        then array[host_ids[1]] || array(select jsonb_array_elements($3->'presenters')->>'id')
                        else host_ids end,
                     restricted = coalesce(($3->>'restricted')::boolean, restricted),
                     groups = case when $3 ? 'groups'
                        then array(select jsonb_array_elements_text($3->'groups')) else groups end",
                    details_patch(&title, &description, &presenters, &restricted, &groups),
                )
            }
            ChatEnabled => ("chat_enabled = true", json!(null)),
            ChatDisabled => ("chat_enabled = false", json!(null)),
            Started { .. } => ("status = 'LIVE'", json!(null)),
            StreamStartRequested | StreamRestartRequested => ("stream_state = 'STARTING'", json!(null)),
            StreamStarted => ("stream_state = 'LIVE'", json!(null)),
            StreamFailed { final_attempt, .. } => (
                "stream_state = case when ($3->>'final')::boolean then 'FAILED' else stream_state end",
                json!({"final": final_attempt}),
            ),
            StreamStopRequested => ("stream_state = 'STOPPING'", json!(null)),
            StreamStopped => ("stream_state = 'STOPPED'", json!(null)),
            // It may still run: the audience may still be watching.
            StreamStopFailed { .. } => ("stream_state = 'LIVE'", json!(null)),
            GatewayReassigned { to, .. } => (
                "gateway_id = ($3->>'to')::uuid,
                 hls_url = coalesce((select g.hls_url from live_event_gateways g
                                      where g.gateway_id = ($3->>'to')::uuid), hls_url),
                 broadcaster = coalesce((select g.broadcaster from live_event_gateways g
                                          where g.gateway_id = ($3->>'to')::uuid), broadcaster)",
                json!({"to": to.as_uuid()}),
            ),
            MeetingEnded { .. } => return Ok(()),
            Ended => ("status = 'ENDED'", json!(null)),
            Cancelled => ("status = 'CANCELLED'", json!(null)),
        };
        let updated = sqlx::query(&format!(
            "update live_events set {assignments}, version = $2, updated_at = $4
              where live_event_id = $1 and version < $2"
        ))
        .bind(id)
        .bind(version)
        .bind(value)
        .bind(at)
        .execute(&mut *conn)
        .await?;
        if updated.rows_affected() > 0 {
            notify(conn, id).await?;
        }
        Ok(())
    }
}

/// One row of `live_events`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LiveEventRow {
    #[sqlx(try_from = "Uuid")]
    pub live_event_id: WebinarId,
    pub title: String,
    pub description: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub hls_url: String,
    pub broadcaster: String,
    #[sqlx(try_from = "String")]
    pub status: LiveEventStatus,
    #[sqlx(try_from = "String")]
    pub stream_state: StreamState,
    pub chat_enabled: bool,
    pub restricted: bool,
    pub groups: Vec<String>,
    /// The owner first, then the presenters.
    pub presenters: Json<Vec<Person>>,
}

const COLUMNS: &str = "live_event_id, title, description, starts_at, ends_at, hls_url, broadcaster,
    status, stream_state, chat_enabled, restricted, groups, presenters";

/// Who is looking: visibility is decided in SQL so that pagination stays exact. The condition is
/// the policy's `may_see`, held against it by a test.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    pub person: Option<String>,
    pub groups: Vec<String>,
    pub admin: bool,
    /// One of our own components: sees everything.
    pub system: bool,
}

impl Audience {
    pub fn of(caller: &Caller) -> Self {
        match caller {
            Caller::Anonymous => Audience::default(),
            Caller::System(_) => Audience {
                system: true,
                ..Audience::default()
            },
            Caller::User(actor) => Audience {
                person: Some(actor.id.clone()),
                groups: actor.groups.clone(),
                admin: actor.is_admin(),
                system: false,
            },
        }
    }
}

/// The SQL condition under which `Audience` ($1 person, $2 groups, $3 admin) sees a row.
const VISIBLE: &str = "($3 or not restricted
      or ($1::text is not null and (cardinality(groups) = 0 or groups && $2::text[]))
      or ($1::text is not null and host_ids @> array[$1::text]))";

pub struct LiveEventFilter {
    pub statuses: Option<Vec<LiveEventStatus>>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

pub async fn list(
    pool: &PgPool,
    audience: &Audience,
    filter: &LiveEventFilter,
) -> Result<Vec<LiveEventRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from live_events
          where {VISIBLE}
            and ($4::text[] is null or status = any($4))
            and ($5::timestamptz is null or ends_at > $5)
            and ($6::timestamptz is null or starts_at < $6)
            and ($7::timestamptz is null or (starts_at, live_event_id) > ($7, $8))
          order by starts_at, live_event_id limit $9"
    ))
    .bind(&audience.person)
    .bind(&audience.groups)
    .bind(audience.admin || audience.system)
    .bind(
        filter
            .statuses
            .as_ref()
            .map(|s| s.iter().map(LiveEventStatus::as_str).collect::<Vec<_>>()),
    )
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.after.map(|a| a.0))
    .bind(filter.after.map(|a| a.1))
    .bind(filter.limit)
    .fetch_all(pool)
    .await
}

/// One live event, when `audience` may see it.
pub async fn get_visible(
    pool: &PgPool,
    audience: &Audience,
    id: WebinarId,
) -> Result<Option<LiveEventRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from live_events where {VISIBLE} and live_event_id = $4"
    ))
    .bind(&audience.person)
    .bind(&audience.groups)
    .bind(audience.admin || audience.system)
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await
}
