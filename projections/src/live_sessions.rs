//! `live_sessions`: each webinar's BigBlueButton session (meeting, server, who is in it, whether
//! the streaming participant is there) and its stream (gateway, SIPMediaGW v1.8 container, state),
//! for administrators (`liveSessions`) and for the stream gateway, which must not start a stream on
//! a container another stream holds ([`PgHeldGwIds`]).
//!
//! Set-based like the other projectors: the batch's rows are loaded once, folded in memory and
//! written back with one statement (`jsonb_populate_recordset`), with one notification per batch.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::ports::{HeldGwIds, LookupError};
use webinar_domain::webinar::{Participant, StreamState, WebinarEvent};
use webinar_domain::GatewayId;
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

use crate::events::{announce, decoded};

/// Channel on which changed sessions' webinar ids are announced at commit.
pub const LIVE_SESSION_CHANGED: &str = "live_session_changed";

pub struct LiveSessionsProjector;

/// A row of `live_sessions`.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize)]
pub struct LiveSessionRow {
    pub webinar_id: Uuid,
    pub title: String,
    pub room: String,
    pub gateway_id: Uuid,
    pub meeting_id: Option<String>,
    pub server: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub running: bool,
    pub participants: Json<Vec<Participant>>,
    pub participant_count: i32,
    pub moderator_count: i32,
    pub streaming_present: bool,
    pub gw_id: Option<String>,
    pub stream_state: String,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "webinar_id, title, room, gateway_id, meeting_id, server, started_at,
    ended_at, running, participants, participant_count, moderator_count, streaming_present, gw_id,
    stream_state, version, updated_at";

impl LiveSessionRow {
    fn scheduled(id: Uuid, event: &StoredEvent, payload: WebinarEvent) -> Option<Self> {
        let WebinarEvent::Scheduled {
            title,
            gateway_id,
            room,
            ..
        } = payload
        else {
            return None;
        };
        Some(Self {
            webinar_id: id,
            title: title.as_str().to_owned(),
            room,
            gateway_id: gateway_id.as_uuid(),
            meeting_id: None,
            server: None,
            started_at: None,
            ended_at: None,
            running: false,
            participants: Json(Vec::new()),
            participant_count: 0,
            moderator_count: 0,
            streaming_present: false,
            gw_id: None,
            stream_state: StreamState::Idle.as_str().to_owned(),
            version: event.sequence,
            updated_at: event.recorded_at,
        })
    }

    fn set_stream(&mut self, state: StreamState) {
        self.stream_state = state.as_str().to_owned();
    }

    fn count(&mut self) {
        let people = &self.participants.0;
        self.participant_count = people.len() as i32;
        self.moderator_count = people.iter().filter(|p| p.moderator).count() as i32;
        self.streaming_present = people.iter().any(|p| p.streaming);
    }

    /// Applies one event (newer than the row). `false`: the row is to be deleted.
    fn apply(&mut self, event: WebinarEvent, at: DateTime<Utc>) -> bool {
        use WebinarEvent::*;
        match event {
            DetailsUpdated {
                title: Some(title), ..
            } => self.title = title.as_str().to_owned(),
            Started { meeting_id, server } => {
                self.meeting_id = Some(meeting_id);
                self.server = server;
                self.started_at = Some(at);
                self.running = true;
            }
            StreamStartRequested | StreamRestartRequested => self.set_stream(StreamState::Starting),
            StreamStarted { gw_id } => {
                self.set_stream(StreamState::Live);
                self.gw_id = gw_id;
            }
            StreamFailed {
                final_attempt: true,
                ..
            } => self.set_stream(StreamState::Failed),
            StreamStopRequested => self.set_stream(StreamState::Stopping),
            StreamStopped => self.set_stream(StreamState::Stopped),
            StreamStopFailed { .. } => self.set_stream(StreamState::Live),
            GatewayReassigned { to, .. } => {
                self.gateway_id = to.as_uuid();
                self.gw_id = None;
            }
            ParticipantJoined(participant) => {
                let people = &mut self.participants.0;
                people.retain(|p| p.user_id != participant.user_id);
                people.push(participant);
                self.count();
            }
            ParticipantLeft { user_id } => {
                self.participants.0.retain(|p| p.user_id != user_id);
                self.count();
            }
            MeetingEnded { .. } | Ended => {
                self.running = false;
                self.ended_at.get_or_insert(at);
            }
            Cancelled => return false,
            _ => {}
        }
        true
    }
}

#[async_trait]
impl Projector for LiveSessionsProjector {
    fn name(&self) -> &'static str {
        "live_sessions"
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Webinar"])
    }
    fn tables(&self) -> &'static [&'static str] {
        &["live_sessions"]
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
        let mut rows: HashMap<Uuid, LiveSessionRow> = sqlx::query_as::<_, LiveSessionRow>(
            &format!("select {COLUMNS} from live_sessions where webinar_id = any($1)"),
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| (row.webinar_id, row))
        .collect();
        let mut changed: Vec<Uuid> = Vec::new();
        let mut deleted: Vec<Uuid> = Vec::new();
        for (id, payload, event) in decoded {
            match rows.get_mut(&id) {
                // Applied already (the log is read at least once).
                Some(row) if row.version >= event.sequence => continue,
                Some(row) => {
                    let keep = row.apply(payload, event.recorded_at);
                    row.version = event.sequence;
                    row.updated_at = event.recorded_at;
                    if !keep {
                        rows.remove(&id);
                        deleted.push(id);
                    }
                }
                None => match LiveSessionRow::scheduled(id, event, payload) {
                    Some(row) => {
                        rows.insert(id, row);
                    }
                    None => continue,
                },
            }
            changed.push(id);
        }
        changed.sort();
        changed.dedup();
        let dirty: Vec<&LiveSessionRow> = changed.iter().filter_map(|id| rows.get(id)).collect();
        if !deleted.is_empty() {
            sqlx::query("delete from live_sessions where webinar_id = any($1)")
                .bind(&deleted)
                .execute(&mut *conn)
                .await?;
        }
        if !dirty.is_empty() {
            sqlx::query(&format!(
                "insert into live_sessions ({COLUMNS})
                 select {COLUMNS} from jsonb_populate_recordset(null::live_sessions, $1)
                 on conflict (webinar_id) do update set
                    title = excluded.title, room = excluded.room,
                    gateway_id = excluded.gateway_id, meeting_id = excluded.meeting_id,
                    server = excluded.server, started_at = excluded.started_at,
                    ended_at = excluded.ended_at, running = excluded.running,
                    participants = excluded.participants,
                    participant_count = excluded.participant_count,
                    moderator_count = excluded.moderator_count,
                    streaming_present = excluded.streaming_present, gw_id = excluded.gw_id,
                    stream_state = excluded.stream_state, version = excluded.version,
                    updated_at = excluded.updated_at"
            ))
            .bind(Json(&dirty))
            .execute(&mut *conn)
            .await?;
        }
        if announce_changes {
            announce(conn, LIVE_SESSION_CHANGED, changed).await?;
        }
        Ok(())
    }
}

/// A page of sessions (started webinars), newest first, after the cursor `(started_at, id)`.
/// The sessions of `site`'s webinars.
pub async fn list(
    pool: &PgPool,
    site: &webinar_domain::Site,
    running: Option<bool>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<LiveSessionRow>, sqlx::Error> {
    let (after_at, after_id) = after.unzip();
    sqlx::query_as(&format!(
        "select {COLUMNS} from live_sessions
          where started_at is not null
            and ($1::bool is null or running = $1)
            and ($2::timestamptz is null or (started_at, webinar_id) < ($2, $3))
            and webinar_id in (select webinar_id from webinars where site = $5)
          order by started_at desc, webinar_id desc
          limit $4"
    ))
    .bind(running)
    .bind(after_at)
    .bind(after_id)
    .bind(limit)
    .bind(site.as_str())
    .fetch_all(pool)
    .await
}

/// One webinar's session, once it started, if the webinar is of `site`.
pub async fn get(
    pool: &PgPool,
    site: &webinar_domain::Site,
    webinar: Uuid,
) -> Result<Option<LiveSessionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from live_sessions where webinar_id = $1 and started_at is not null
            and webinar_id in (select webinar_id from webinars where site = $2)"
    ))
    .bind(webinar)
    .bind(site.as_str())
    .fetch_optional(pool)
    .await
}

/// The containers of a gateway that streams hold.
pub struct PgHeldGwIds {
    pub pool: PgPool,
}

#[async_trait]
impl HeldGwIds for PgHeldGwIds {
    async fn held(
        &self,
        gateway: GatewayId,
        except_room: &str,
    ) -> Result<Vec<String>, LookupError> {
        Ok(sqlx::query_scalar(
            "select gw_id from live_sessions
              where gateway_id = $1 and room <> $2 and gw_id is not null
                and stream_state in ('STARTING', 'LIVE', 'STOPPING')",
        )
        .bind(gateway.as_uuid())
        .bind(except_room)
        .fetch_all(&self.pool)
        .await?)
    }
}
