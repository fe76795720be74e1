//! `webinars`: the presenters' and administrators' view of each webinar, its projector, and
//! its queries. [`WebinarView`] is what is shown of a webinar, whether it comes from this table or
//! from the aggregate replayed for auditors.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::ports::{LiveWebinar, LiveWebinars, LookupError};
use webinar_domain::webinar::{StreamState, Webinar, WebinarEvent, WebinarStatus};
use webinar_domain::{GatewayId, Person, TimeSlot, WebinarAccess, WebinarId};
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

use crate::events::{announce, decoded};

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
        patch.insert("presenters".into(), json!(p));
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
        let (id, payload): (_, WebinarEvent) = decoded(event)?;
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
            .bind(Json(presenters))
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
                StreamStopFailed { reason, .. } => (
                    "stream_state = 'LIVE', stream_error = $3->>'reason'",
                    json!({ "reason": reason }),
                ),
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
        announce(conn, WEBINAR_CHANGED, id).await?;
        Ok(())
    }
}

/// One row of `webinars`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WebinarRow {
    #[sqlx(try_from = "Uuid")]
    pub webinar_id: WebinarId,
    pub title: String,
    pub description: Option<String>,
    pub owner_id: String,
    pub owner_name: String,
    pub presenters: Json<Vec<Person>>,
    pub starts_at: DateTime<Utc>,
    pub duration_minutes: i32,
    pub enable_chat: bool,
    pub restricted: bool,
    pub groups: Vec<String>,
    #[sqlx(try_from = "Uuid")]
    pub gateway_id: GatewayId,
    #[sqlx(try_from = "String")]
    pub status: WebinarStatus,
    #[sqlx(try_from = "String")]
    pub stream_state: StreamState,
    pub stream_error: Option<String>,
    pub version: i64,
}

const COLUMNS: &str = "webinar_id, title, description, owner_id, owner_name, presenters,
    starts_at, duration_minutes, enable_chat, restricted, groups, gateway_id, status,
    stream_state, stream_error, version";

/// A webinar as its owner, presenters, administrators (and, replayed, auditors) see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebinarView {
    pub id: WebinarId,
    pub title: String,
    pub description: Option<String>,
    pub owner: Person,
    pub presenters: Vec<Person>,
    pub slot: TimeSlot,
    pub enable_chat: bool,
    pub restricted: bool,
    pub groups: Vec<String>,
    pub gateway_id: Option<GatewayId>,
    pub status: WebinarStatus,
    pub stream_state: StreamState,
    pub stream_error: Option<String>,
    /// How many events the webinar has had.
    pub version: i64,
}

impl From<WebinarRow> for WebinarView {
    fn from(row: WebinarRow) -> Self {
        WebinarView {
            id: row.webinar_id,
            title: row.title,
            description: row.description,
            owner: Person {
                id: row.owner_id,
                name: row.owner_name,
            },
            presenters: row.presenters.0,
            slot: TimeSlot::new_unchecked(row.starts_at, i64::from(row.duration_minutes)),
            enable_chat: row.enable_chat,
            restricted: row.restricted,
            groups: row.groups,
            gateway_id: Some(row.gateway_id),
            status: row.status,
            stream_state: row.stream_state,
            stream_error: row.stream_error,
            version: row.version,
        }
    }
}

impl WebinarView {
    /// The view of the aggregate's state after `version` events (`None` before it was scheduled).
    pub fn from_state(id: WebinarId, webinar: &Webinar, version: i64) -> Option<Self> {
        let (Some(title), Some(owner), Some(slot)) = (&webinar.title, &webinar.owner, webinar.slot)
        else {
            return None;
        };
        Some(WebinarView {
            id,
            title: title.as_str().to_owned(),
            description: webinar.description.as_ref().map(|d| d.as_str().to_owned()),
            owner: owner.clone(),
            presenters: webinar.presenters.clone(),
            slot,
            enable_chat: webinar.enable_chat,
            restricted: webinar.restricted,
            groups: webinar.groups.clone(),
            gateway_id: webinar.gateway_id,
            status: webinar.status,
            stream_state: webinar.stream,
            stream_error: webinar.stream_error.clone(),
            version,
        })
    }
}

impl WebinarAccess for WebinarView {
    fn owner_id(&self) -> Option<&str> {
        Some(&self.owner.id)
    }
    fn presenters(&self) -> &[Person] {
        &self.presenters
    }
    fn restricted(&self) -> bool {
        self.restricted
    }
    fn groups(&self) -> &[String] {
        &self.groups
    }
}

pub async fn get(pool: &PgPool, id: WebinarId) -> Result<Option<WebinarView>, sqlx::Error> {
    let row: Option<WebinarRow> = sqlx::query_as(&format!(
        "select {COLUMNS} from webinars where webinar_id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(WebinarView::from))
}

/// The webinars `person` owns or presents, by start then id, after the cursor `(start, id)`.
pub async fn hosted_by(
    pool: &PgPool,
    person: &str,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<WebinarView>, sqlx::Error> {
    let rows: Vec<WebinarRow> = sqlx::query_as(&format!(
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
    .await?;
    Ok(rows.into_iter().map(WebinarView::from).collect())
}

/// The webinar whose SIPMediaGW room is `room`, while it can be joined: its title, and its
/// meeting id once it is live.
pub async fn joinable_room(
    pool: &PgPool,
    room: &str,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    let row: Option<(String, Option<String>, String)> = sqlx::query_as(
        "select title, meeting_id, status from webinars
          where room = $1 and status in ('SCHEDULED', 'LIVE')",
    )
    .bind(room)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(title, meeting, status)| (title, meeting.filter(|_| status == "LIVE"))))
}

/// The live webinars, for the meeting watcher.
pub struct PgLiveWebinars {
    pub pool: PgPool,
}

#[async_trait]
impl LiveWebinars for PgLiveWebinars {
    async fn live(&self) -> Result<Vec<LiveWebinar>, LookupError> {
        let rows: Vec<(Uuid, Option<String>, DateTime<Utc>)> = sqlx::query_as(
            "select webinar_id, meeting_id, ends_at from webinars where status = 'LIVE'",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, meeting_id, ends_at)| LiveWebinar {
                webinar: WebinarId::from_uuid(id),
                meeting_id,
                ends_at,
            })
            .collect())
    }
}
