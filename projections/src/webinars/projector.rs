//! The `webinars` projector, set-based: a batch's rows are loaded once, every event is folded into
//! them in memory, and they are written back with one multi-row upsert.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;
use webinar_domain::webinar::{StreamHealth, StreamState, WebinarEvent, WebinarStatus};
use webinar_domain::Person;
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

use crate::events::{announce, decoded};

/// Channel on which changed webinars' ids are announced at commit (subscriptions listen).
pub const WEBINAR_CHANGED: &str = "webinar_changed";

pub struct WebinarsProjector;

/// A row of `webinars`, as folded in memory.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Record {
    webinar_id: Uuid,
    title: String,
    description: Option<String>,
    owner_id: String,
    owner_name: String,
    presenters: Json<Vec<Person>>,
    host_ids: Vec<String>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    duration_minutes: i32,
    enable_chat: bool,
    restricted: bool,
    groups: Vec<String>,
    gateway_id: Uuid,
    room: String,
    meeting_id: Option<String>,
    status: String,
    stream_state: String,
    stream_error: Option<String>,
    stream_health: String,
    stream_health_detail: Option<String>,
    site: String,
    end_reason: Option<String>,
    version: i64,
    scheduled_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "webinar_id, title, description, owner_id, owner_name, presenters, host_ids,
    starts_at, ends_at, duration_minutes, enable_chat, restricted, groups, gateway_id, room,
    meeting_id, status, stream_state, stream_error, end_reason, version, scheduled_at, updated_at,
    stream_health, stream_health_detail, site";

impl Record {
    fn hosts(owner: &str, presenters: &[Person]) -> Vec<String> {
        std::iter::once(owner.to_owned())
            .chain(presenters.iter().map(|p| p.id.clone()))
            .collect()
    }

    fn set_stream(&mut self, state: StreamState) {
        self.stream_state = state.as_str().to_owned();
    }

    /// As the aggregate: no stream runs, or a new one begins, so nobody has seen it yet.
    fn clear_health(&mut self) {
        self.stream_health = StreamHealth::Unknown.as_str().to_owned();
        self.stream_health_detail = None;
    }

    /// Applies one event (already known to be newer than the row).
    fn apply(&mut self, event: WebinarEvent) {
        use WebinarEvent::*;
        match event {
            Scheduled { .. } => {}
            Rescheduled {
                start_at,
                duration_minutes,
            } => {
                self.starts_at = start_at;
                self.duration_minutes = duration_minutes as i32;
                self.ends_at = start_at + Duration::minutes(duration_minutes);
            }
            DetailsUpdated {
                title,
                description,
                presenters,
                restricted,
                groups,
            } => {
                if let Some(title) = title {
                    self.title = title.as_str().to_owned();
                }
                if let Some(description) = description {
                    self.description = description.map(|d| d.as_str().to_owned());
                }
                if let Some(presenters) = presenters {
                    self.host_ids = Self::hosts(&self.owner_id, &presenters);
                    self.presenters = Json(presenters);
                }
                if let Some(restricted) = restricted {
                    self.restricted = restricted;
                }
                if let Some(groups) = groups {
                    self.groups = groups;
                }
            }
            ChatEnabled => self.enable_chat = true,
            ChatDisabled => self.enable_chat = false,
            Started { meeting_id, .. } => {
                self.meeting_id = Some(meeting_id);
                self.status = WebinarStatus::Live.as_str().to_owned();
            }
            StreamStartRequested | StreamRestartRequested => {
                self.set_stream(StreamState::Starting);
                self.stream_error = None;
                self.clear_health();
            }
            StreamStarted { .. } => {
                self.set_stream(StreamState::Live);
                self.stream_error = None;
            }
            StreamFailed {
                reason,
                final_attempt,
                ..
            } => {
                self.stream_error = Some(reason);
                if final_attempt {
                    self.set_stream(StreamState::Failed);
                    self.clear_health();
                }
            }
            StreamStopRequested => self.set_stream(StreamState::Stopping),
            StreamStopped => {
                self.set_stream(StreamState::Stopped);
                self.clear_health();
            }
            StreamHealthChanged { health, detail } => {
                self.stream_health = health.as_str().to_owned();
                self.stream_health_detail = detail;
            }
            StreamStopFailed { reason, .. } => {
                self.set_stream(StreamState::Live);
                self.stream_error = Some(reason);
            }
            GatewayReassigned { to, .. } => self.gateway_id = to.as_uuid(),
            // Who is in the meeting is `live_sessions`' business.
            ParticipantJoined(_) | ParticipantLeft { .. } => {}
            MeetingEnded { reason } => self.end_reason = Some(reason.as_str().to_owned()),
            Ended => self.status = WebinarStatus::Ended.as_str().to_owned(),
            Cancelled => self.status = WebinarStatus::Cancelled.as_str().to_owned(),
        }
    }

    fn scheduled(id: Uuid, event: &StoredEvent, scheduled: WebinarEvent) -> Option<Self> {
        let WebinarEvent::Scheduled {
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
            site,
            ..
        } = scheduled
        else {
            return None;
        };
        Some(Record {
            webinar_id: id,
            title: title.as_str().to_owned(),
            description: description.map(|d| d.as_str().to_owned()),
            host_ids: Self::hosts(&owner.id, &presenters),
            owner_id: owner.id,
            owner_name: owner.name,
            presenters: Json(presenters),
            starts_at: start_at,
            ends_at: start_at + Duration::minutes(duration_minutes),
            duration_minutes: duration_minutes as i32,
            enable_chat,
            restricted,
            groups,
            gateway_id: gateway_id.as_uuid(),
            room,
            meeting_id: None,
            status: WebinarStatus::Scheduled.as_str().to_owned(),
            stream_state: StreamState::Idle.as_str().to_owned(),
            stream_error: None,
            stream_health: StreamHealth::Unknown.as_str().to_owned(),
            stream_health_detail: None,
            site: site.as_str().to_owned(),
            end_reason: None,
            version: event.sequence,
            scheduled_at: event.recorded_at,
            updated_at: event.recorded_at,
        })
    }
}

async fn upsert(conn: &mut PgConnection, rows: &[&Record]) -> Result<(), sqlx::Error> {
    let col = |f: fn(&Record) -> String| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    sqlx::query(&format!(
        "insert into webinars ({COLUMNS})
         select w.id, w.title, w.description, w.owner_id, w.owner_name, w.presenters,
                array(select jsonb_array_elements_text(w.host_ids)), w.starts_at, w.ends_at,
                w.duration, w.chat, w.restricted,
                array(select jsonb_array_elements_text(w.groups)), w.gateway, w.room, w.meeting,
                w.status, w.stream, w.error, w.end_reason, w.version, w.scheduled_at, w.updated_at,
                w.health, w.health_detail, w.site
           from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
                       $7::jsonb[], $8::timestamptz[], $9::timestamptz[], $10::int[],
                       $11::bool[], $12::bool[], $13::jsonb[], $14::uuid[], $15::text[],
                       $16::text[], $17::text[], $18::text[], $19::text[], $20::text[],
                       $21::bigint[], $22::timestamptz[], $23::timestamptz[], $24::text[],
                       $25::text[], $26::text[])
                as w(id, title, description, owner_id, owner_name, presenters, host_ids,
                     starts_at, ends_at, duration, chat, restricted, groups, gateway, room,
                     meeting, status, stream, error, end_reason, version, scheduled_at,
                     updated_at, health, health_detail, site)
         on conflict (webinar_id) do update set
            title = excluded.title, description = excluded.description,
            owner_id = excluded.owner_id, owner_name = excluded.owner_name,
            presenters = excluded.presenters, host_ids = excluded.host_ids,
            starts_at = excluded.starts_at, ends_at = excluded.ends_at,
            duration_minutes = excluded.duration_minutes, enable_chat = excluded.enable_chat,
            restricted = excluded.restricted, groups = excluded.groups,
            gateway_id = excluded.gateway_id, room = excluded.room,
            meeting_id = excluded.meeting_id, status = excluded.status,
            stream_state = excluded.stream_state, stream_error = excluded.stream_error,
            end_reason = excluded.end_reason, version = excluded.version,
            scheduled_at = excluded.scheduled_at, updated_at = excluded.updated_at,
            stream_health = excluded.stream_health,
            stream_health_detail = excluded.stream_health_detail"
    ))
    .bind(rows.iter().map(|r| r.webinar_id).collect::<Vec<_>>())
    .bind(col(|r| r.title.clone()))
    .bind(
        rows.iter()
            .map(|r| r.description.clone())
            .collect::<Vec<_>>(),
    )
    .bind(col(|r| r.owner_id.clone()))
    .bind(col(|r| r.owner_name.clone()))
    .bind(rows.iter().map(|r| &r.presenters).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| Json(&r.host_ids)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.starts_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.ends_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.duration_minutes).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.enable_chat).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.restricted).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| Json(&r.groups)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.gateway_id).collect::<Vec<_>>())
    .bind(col(|r| r.room.clone()))
    .bind(
        rows.iter()
            .map(|r| r.meeting_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(col(|r| r.status.clone()))
    .bind(col(|r| r.stream_state.clone()))
    .bind(
        rows.iter()
            .map(|r| r.stream_error.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.end_reason.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.scheduled_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .bind(col(|r| r.stream_health.clone()))
    .bind(
        rows.iter()
            .map(|r| r.stream_health_detail.clone())
            .collect::<Vec<_>>(),
    )
    .bind(col(|r| r.site.clone()))
    .execute(conn)
    .await?;
    Ok(())
}

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

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        announce_changes: bool,
    ) -> Result<(), ProjectionError> {
        let decoded: Vec<(Uuid, WebinarEvent, &StoredEvent)> = events
            .iter()
            .map(|event| decoded(event).map(|(id, payload)| (id, payload, event)))
            .collect::<Result<_, _>>()?;
        let mut ids: Vec<Uuid> = decoded.iter().map(|(id, _, _)| *id).collect();
        ids.sort();
        ids.dedup();
        let mut rows: HashMap<Uuid, Record> = sqlx::query_as::<_, Record>(&format!(
            "select {COLUMNS} from webinars where webinar_id = any($1)"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| (row.webinar_id, row))
        .collect();
        let mut changed: Vec<Uuid> = Vec::new();
        for (id, payload, event) in decoded {
            match rows.get_mut(&id) {
                // Applied already (the log is read at least once): nothing to do.
                Some(row) if row.version >= event.sequence => continue,
                Some(row) => {
                    row.apply(payload);
                    row.version = event.sequence;
                    row.updated_at = event.recorded_at;
                }
                None => match Record::scheduled(id, event, payload) {
                    Some(row) => {
                        rows.insert(id, row);
                    }
                    // An event of a webinar whose `Scheduled` this model never saw: nothing to
                    // update (as the single-row `update … where` did).
                    None => continue,
                },
            }
            changed.push(id);
        }
        changed.sort();
        changed.dedup();
        let dirty: Vec<&Record> = changed.iter().filter_map(|id| rows.get(id)).collect();
        if dirty.is_empty() {
            return Ok(());
        }
        upsert(conn, &dirty).await?;
        if announce_changes {
            announce(conn, WEBINAR_CHANGED, changed).await?;
        }
        Ok(())
    }
}
