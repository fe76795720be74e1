//! `webinars` (the presenters' and administrators' view) and `gateway_reservations`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::gateway::GatewayEvent;
use webinar_domain::webinar::WebinarEvent;
use webinar_domain::Person;
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

/// The aggregate id of `event` as a UUID.
pub(crate) fn aggregate_uuid(event: &StoredEvent) -> Result<Uuid, ProjectionError> {
    event
        .aggregate_id
        .parse()
        .map_err(|_| ProjectionError::Decode {
            event_type: event.event_type.clone(),
            position: event.global_position,
            source: serde::de::Error::custom("aggregate id is not a UUID"),
        })
}

pub(crate) fn people(people: &[Person]) -> serde_json::Value {
    json!(people
        .iter()
        .map(|p| json!({"id": p.id, "name": p.name}))
        .collect::<Vec<_>>())
}

/// The changed fields of `DetailsUpdated` as a JSON object: the key is present only when the field
/// changed (a removed description is present and null).
pub(crate) fn details_patch(
    title: &Option<webinar_domain::Title>,
    description: &Option<Option<webinar_domain::Description>>,
    presenters: &Option<Vec<Person>>,
    restricted: &Option<bool>,
    groups: &Option<Vec<String>>,
) -> serde_json::Value {
    let mut patch = serde_json::Map::new();
    if let Some(t) = title {
        patch.insert("title".into(), json!(t.as_str()));
    }
    if let Some(d) = description {
        patch.insert("description".into(), json!(d.as_ref().map(|d| d.as_str())));
    }
    if let Some(p) = presenters {
        patch.insert("presenters".into(), people(p));
    }
    if let Some(r) = restricted {
        patch.insert("restricted".into(), json!(r));
    }
    if let Some(g) = groups {
        patch.insert("groups".into(), json!(g));
    }
    serde_json::Value::Object(patch)
}

/// Channel on which a changed webinar's id is announced at commit (subscriptions listen).
pub const WEBINAR_CHANGED: &str = "webinar_changed";

pub struct WebinarsProjector;

#[async_trait]
impl Projector for WebinarsProjector {
    fn name(&self) -> &'static str {
        "webinars"
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Webinar"])
    }
    fn tables(&self) -> &'static [&'static str] {
        &["webinars"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        use WebinarEvent::*;
        let payload: WebinarEvent = event
            .decode()
            .map_err(|e| ProjectionError::decode(event, e))?;
        let id = aggregate_uuid(event)?;
        let (version, at) = (event.sequence, event.recorded_at);
        if let Scheduled {
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
            room,
            ..
        } = &payload
        {
            let mut hosts = vec![owner.id.clone()];
            hosts.extend(presenters.iter().map(|p| p.id.clone()));
            sqlx::query(
                "insert into webinars (webinar_id, title, description, owner_id, owner_name,
                    presenters, host_ids, starts_at, ends_at, duration_minutes, enable_chat,
                    restricted, groups, gateway_id, room, status, stream_state, version,
                    scheduled_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $8 + make_interval(mins => $9), $9, $10,
                    $11, $12, $13, $14, 'SCHEDULED', 'IDLE', $15, $16, $16)
                 on conflict (webinar_id) do nothing",
            )
            .bind(id)
            .bind(title.as_str())
            .bind(description.as_ref().map(|d| d.as_str()))
            .bind(&owner.id)
            .bind(&owner.name)
            .bind(people(presenters))
            .bind(&hosts)
            .bind(start_at)
            .bind(*duration_minutes as i32)
            .bind(enable_chat)
            .bind(restricted)
            .bind(groups)
            .bind(gateway_id.as_uuid())
            .bind(room)
            .bind(version)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        } else {
            // One parameterised update per event kind; `version < $2` makes replays harmless.
            let (assignments, value): (&str, serde_json::Value) = match &payload {
                // Inserted above.
                Scheduled { .. } => ("version = version", json!(null)),
                Rescheduled {
                    start_at,
                    duration_minutes,
                } => (
                    "starts_at = ($3->>'start')::timestamptz,
                     duration_minutes = ($3->>'minutes')::int,
                     ends_at = ($3->>'start')::timestamptz + make_interval(mins => ($3->>'minutes')::int)",
                    json!({"start": start_at, "minutes": duration_minutes}),
                ),
                DetailsUpdated {
                    title,
                    description,
                    presenters,
                    restricted,
                    groups,
                } => (
                    "title = coalesce($3->>'title', title),
                     description = case when $3 ? 'description' then $3->>'description' else description end,
                     presenters = coalesce($3->'presenters', presenters),
                     host_ids = case when $3 ? 'presenters'
                        then array[owner_id] || array(select jsonb_array_elements($3->'presenters')->>'id')
                        else host_ids end,
                     restricted = coalesce(($3->>'restricted')::boolean, restricted),
                     groups = case when $3 ? 'groups'
                        then array(select jsonb_array_elements_text($3->'groups')) else groups end",
                    details_patch(title, description, presenters, restricted, groups),
                ),
                ChatEnabled => ("enable_chat = true", json!(null)),
                ChatDisabled => ("enable_chat = false", json!(null)),
                Started { meeting_id } => (
                    "meeting_id = $3->>'meeting', status = 'LIVE'",
                    json!({"meeting": meeting_id}),
                ),
                StreamStartRequested | StreamRestartRequested => {
                    ("stream_state = 'STARTING', stream_error = null", json!(null))
                }
                StreamStarted => ("stream_state = 'LIVE', stream_error = null", json!(null)),
                StreamFailed {
                    reason,
                    final_attempt,
                    ..
                } => (
                    "stream_error = $3->>'reason',
                     stream_state = case when ($3->>'final')::boolean then 'FAILED' else stream_state end",
                    json!({"reason": reason, "final": final_attempt}),
                ),
                StreamStopRequested => ("stream_state = 'STOPPING'", json!(null)),
                StreamStopped => ("stream_state = 'STOPPED'", json!(null)),
                GatewayReassigned { to, .. } => (
                    "gateway_id = ($3->>'to')::uuid",
                    json!({"to": to.as_uuid()}),
                ),
                MeetingEnded { reason } => ("end_reason = $3->>'reason'", json!({"reason": reason})),
                Ended => ("status = 'ENDED'", json!(null)),
                Cancelled => ("status = 'CANCELLED'", json!(null)),
            };
            sqlx::query(&format!(
                "update webinars set {assignments}, version = $2, updated_at = $4
                  where webinar_id = $1 and version < $2"
            ))
            .bind(id)
            .bind(version)
            .bind(value)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query("select pg_notify($1, $2) where current_setting('webinar.rebuilding', true) is distinct from 'on'")
            .bind(WEBINAR_CHANGED)
            .bind(id.to_string())
            .execute(conn)
            .await?;
        Ok(())
    }
}

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
        let payload: GatewayEvent = event
            .decode()
            .map_err(|e| ProjectionError::decode(event, e))?;
        let gateway = aggregate_uuid(event)?;
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

/// One row of `webinars`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WebinarRow {
    pub webinar_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub owner_id: String,
    pub owner_name: String,
    pub presenters: serde_json::Value,
    pub host_ids: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub duration_minutes: i32,
    pub enable_chat: bool,
    pub restricted: bool,
    pub groups: Vec<String>,
    pub gateway_id: Uuid,
    pub room: String,
    pub meeting_id: Option<String>,
    pub status: String,
    pub stream_state: String,
    pub stream_error: Option<String>,
    pub end_reason: Option<String>,
    pub version: i64,
}

const COLUMNS: &str = "webinar_id, title, description, owner_id, owner_name, presenters, host_ids,
    starts_at, ends_at, duration_minutes, enable_chat, restricted, groups, gateway_id, room,
    meeting_id, status, stream_state, stream_error, end_reason, version";

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<WebinarRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from webinars where webinar_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The webinars `person` owns or presents, by start then id, after the cursor `(start, id)`.
pub async fn hosted_by(
    pool: &PgPool,
    person: &str,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<WebinarRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from webinars
          where host_ids @> array[$1]
            and ($2::timestamptz is null or (starts_at, webinar_id) > ($2, $3))
          order by starts_at, webinar_id limit $4"
    ))
    .bind(person)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(pool)
    .await
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
