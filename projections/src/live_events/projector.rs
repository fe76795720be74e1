//! The `live_events` projector, set-based. It keeps its own copy of what it needs from gateways
//! (`live_event_gateways`: the HLS URL and broadcaster), so that it never reads another
//! projector's tables, whose progress it cannot know.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;
use webinar_domain::gateway::GatewayEvent;
use webinar_domain::webinar::{LiveEventStatus, StreamHealth, StreamState, WebinarEvent};
use webinar_domain::Person;
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

use crate::events::{announce, decoded};

/// Channel on which changed live events' ids are announced at commit.
pub const LIVE_EVENT_CHANGED: &str = "live_event_changed";

pub struct LiveEventsProjector;

/// A row of `live_events`, as folded in memory.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Record {
    live_event_id: Uuid,
    title: String,
    description: Option<String>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    hls_url: String,
    broadcaster: String,
    gateway_id: Uuid,
    status: String,
    stream_state: String,
    stream_health: String,
    stream_health_detail: Option<String>,
    site: String,
    chat_enabled: bool,
    restricted: bool,
    groups: Vec<String>,
    /// The owner first, then the presenters.
    presenters: Json<Vec<Person>>,
    host_ids: Vec<String>,
    version: i64,
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "live_event_id, title, description, starts_at, ends_at, hls_url,
    broadcaster, gateway_id, status, stream_state, chat_enabled, restricted, groups, presenters,
    host_ids, version, updated_at, stream_health, stream_health_detail, site";

/// A gateway as the live page needs it.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
struct Stream {
    hls_url: String,
    broadcaster: String,
}

fn open(status: &str) -> bool {
    status == LiveEventStatus::Upcoming.as_str() || status == LiveEventStatus::Live.as_str()
}

impl Record {
    fn new(id: Uuid, event: &StoredEvent, payload: WebinarEvent, stream: Stream) -> Option<Self> {
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
            site,
            ..
        } = payload
        else {
            return None;
        };
        let hosts: Vec<Person> = std::iter::once(owner).chain(presenters).collect();
        Some(Record {
            live_event_id: id,
            title: title.as_str().to_owned(),
            description: description.map(|d| d.as_str().to_owned()),
            starts_at: start_at,
            ends_at: start_at + Duration::minutes(duration_minutes),
            hls_url: stream.hls_url,
            broadcaster: stream.broadcaster,
            gateway_id: gateway_id.as_uuid(),
            status: LiveEventStatus::Upcoming.as_str().to_owned(),
            stream_state: StreamState::Idle.as_str().to_owned(),
            stream_health: StreamHealth::Unknown.as_str().to_owned(),
            stream_health_detail: None,
            site: site.as_str().to_owned(),
            chat_enabled: enable_chat,
            restricted,
            groups,
            host_ids: hosts.iter().map(|p| p.id.clone()).collect(),
            presenters: Json(hosts),
            version: event.sequence,
            updated_at: event.recorded_at,
        })
    }

    fn set_status(&mut self, status: LiveEventStatus) {
        self.status = status.as_str().to_owned();
    }

    fn set_stream(&mut self, state: StreamState) {
        self.stream_state = state.as_str().to_owned();
    }

    /// As the aggregate: no stream runs, or a new one begins, so nobody has seen it yet.
    fn clear_health(&mut self) {
        self.stream_health = StreamHealth::Unknown.as_str().to_owned();
        self.stream_health_detail = None;
    }

    /// Applies one webinar event; `false` when it changes nothing here.
    fn apply(&mut self, event: WebinarEvent, streams: &HashMap<Uuid, Stream>) -> bool {
        use WebinarEvent::*;
        match event {
            Scheduled { .. }
            | MeetingEnded { .. }
            | ParticipantJoined(_)
            | ParticipantLeft { .. } => return false,
            Rescheduled {
                start_at,
                duration_minutes,
            } => {
                self.starts_at = start_at;
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
                    let owner = self.presenters.0.first().cloned();
                    let hosts: Vec<Person> = owner.into_iter().chain(presenters).collect();
                    let owner_id = self.host_ids.first().cloned();
                    self.host_ids = owner_id
                        .into_iter()
                        .chain(hosts.iter().skip(1).map(|p| p.id.clone()))
                        .collect();
                    self.presenters = Json(hosts);
                }
                if let Some(restricted) = restricted {
                    self.restricted = restricted;
                }
                if let Some(groups) = groups {
                    self.groups = groups;
                }
            }
            ChatEnabled => self.chat_enabled = true,
            ChatDisabled => self.chat_enabled = false,
            Started { .. } => self.set_status(LiveEventStatus::Live),
            StreamStartRequested | StreamRestartRequested => {
                self.set_stream(StreamState::Starting);
                self.clear_health();
            }
            StreamStarted { .. } => self.set_stream(StreamState::Live),
            StreamFailed { final_attempt, .. } => {
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
            // It may still run: the audience may still be watching.
            StreamStopFailed { .. } => self.set_stream(StreamState::Live),
            GatewayReassigned { to, .. } => {
                self.gateway_id = to.as_uuid();
                if let Some(stream) = streams.get(&self.gateway_id) {
                    self.hls_url.clone_from(&stream.hls_url);
                    self.broadcaster.clone_from(&stream.broadcaster);
                }
            }
            Ended => self.set_status(LiveEventStatus::Ended),
            Cancelled => self.set_status(LiveEventStatus::Cancelled),
        }
        true
    }
}

/// A decoded event of the batch.
enum Decoded<'a> {
    Gateway(Uuid, GatewayEvent),
    Webinar(Uuid, WebinarEvent, &'a StoredEvent),
}

async fn upsert_streams(
    conn: &mut PgConnection,
    streams: &HashMap<Uuid, Stream>,
    dirty: &HashSet<Uuid>,
) -> Result<(), sqlx::Error> {
    if dirty.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = dirty.iter().copied().collect();
    sqlx::query(
        "insert into live_event_gateways (gateway_id, hls_url, broadcaster)
         select * from unnest($1::uuid[], $2::text[], $3::text[])
         on conflict (gateway_id) do update
            set hls_url = excluded.hls_url, broadcaster = excluded.broadcaster",
    )
    .bind(&ids)
    .bind(
        ids.iter()
            .map(|id| streams[id].hls_url.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        ids.iter()
            .map(|id| streams[id].broadcaster.as_str())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn upsert_events(conn: &mut PgConnection, rows: &[&Record]) -> Result<(), sqlx::Error> {
    let text = |f: fn(&Record) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    sqlx::query(&format!(
        "insert into live_events ({COLUMNS})
         select e.id, e.title, e.description, e.starts_at, e.ends_at, e.hls_url, e.broadcaster,
                e.gateway, e.status, e.stream, e.chat, e.restricted,
                array(select jsonb_array_elements_text(e.groups)), e.presenters,
                array(select jsonb_array_elements_text(e.host_ids)), e.version, e.updated_at,
                e.health, e.health_detail, e.site
           from unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                       $6::text[], $7::text[], $8::uuid[], $9::text[], $10::text[], $11::bool[],
                       $12::bool[], $13::jsonb[], $14::jsonb[], $15::jsonb[], $16::bigint[],
                       $17::timestamptz[], $18::text[], $19::text[], $20::text[])
                as e(id, title, description, starts_at, ends_at, hls_url, broadcaster, gateway,
                     status, stream, chat, restricted, groups, presenters, host_ids, version,
                     updated_at, health, health_detail, site)
         on conflict (live_event_id) do update set
            title = excluded.title, description = excluded.description,
            starts_at = excluded.starts_at, ends_at = excluded.ends_at,
            hls_url = excluded.hls_url, broadcaster = excluded.broadcaster,
            gateway_id = excluded.gateway_id, status = excluded.status,
            stream_state = excluded.stream_state, chat_enabled = excluded.chat_enabled,
            restricted = excluded.restricted, groups = excluded.groups,
            presenters = excluded.presenters, host_ids = excluded.host_ids,
            version = excluded.version, updated_at = excluded.updated_at,
            stream_health = excluded.stream_health,
            stream_health_detail = excluded.stream_health_detail"
    ))
    .bind(rows.iter().map(|r| r.live_event_id).collect::<Vec<_>>())
    .bind(text(|r| &r.title))
    .bind(
        rows.iter()
            .map(|r| r.description.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.starts_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.ends_at).collect::<Vec<_>>())
    .bind(text(|r| &r.hls_url))
    .bind(text(|r| &r.broadcaster))
    .bind(rows.iter().map(|r| r.gateway_id).collect::<Vec<_>>())
    .bind(text(|r| &r.status))
    .bind(text(|r| &r.stream_state))
    .bind(rows.iter().map(|r| r.chat_enabled).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.restricted).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| Json(&r.groups)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| &r.presenters).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| Json(&r.host_ids)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .bind(text(|r| &r.stream_health))
    .bind(
        rows.iter()
            .map(|r| r.stream_health_detail.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(text(|r| &r.site))
    .execute(conn)
    .await?;
    Ok(())
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
        &["live_events", "live_event_gateways", "live_events_version"]
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        announce_changes: bool,
    ) -> Result<(), ProjectionError> {
        let mut batch = Vec::with_capacity(events.len());
        let (mut webinars, mut changed_gateways, mut gateways) =
            (Vec::new(), Vec::new(), Vec::new());
        for event in events {
            if event.aggregate_type == "Gateway" {
                let (id, payload): (Uuid, GatewayEvent) = decoded(event)?;
                if matches!(
                    payload,
                    GatewayEvent::GatewayRegistered { .. } | GatewayEvent::GatewayUpdated { .. }
                ) {
                    changed_gateways.push(id);
                    batch.push(Decoded::Gateway(id, payload));
                }
            } else {
                let (id, payload): (Uuid, WebinarEvent) = decoded(event)?;
                match &payload {
                    WebinarEvent::Scheduled { gateway_id, .. } => {
                        gateways.push(gateway_id.as_uuid())
                    }
                    WebinarEvent::GatewayReassigned { to, .. } => gateways.push(to.as_uuid()),
                    _ => {}
                }
                webinars.push(id);
                batch.push(Decoded::Webinar(id, payload, event));
            }
        }
        gateways.extend(&changed_gateways);
        let mut streams: HashMap<Uuid, Stream> = sqlx::query_as::<_, (Uuid, String, String)>(
            "select gateway_id, hls_url, broadcaster from live_event_gateways
                  where gateway_id = any($1)",
        )
        .bind(&gateways)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(id, hls_url, broadcaster)| {
            (
                id,
                Stream {
                    hls_url,
                    broadcaster,
                },
            )
        })
        .collect();
        // The batch's webinars, and the open events on gateways whose stream changes: two
        // statements, each served by an index (an `OR` of both would scan the table).
        let mut rows: HashMap<Uuid, Record> = sqlx::query_as::<_, Record>(&format!(
            "select {COLUMNS} from live_events where live_event_id = any($1)"
        ))
        .bind(&webinars)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| (row.live_event_id, row))
        .collect();
        if !changed_gateways.is_empty() {
            let open = sqlx::query_as::<_, Record>(&format!(
                "select {COLUMNS} from live_events
                  where gateway_id = any($1) and status in ('UPCOMING', 'LIVE')"
            ))
            .bind(&changed_gateways)
            .fetch_all(&mut *conn)
            .await?;
            for row in open {
                rows.entry(row.live_event_id).or_insert(row);
            }
        }
        let (mut dirty_streams, mut changed) = (HashSet::new(), HashSet::new());
        for decoded in batch {
            match decoded {
                Decoded::Gateway(gateway, event) => {
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
                        _ => continue,
                    };
                    if hls_url.is_none() && broadcaster.is_none() {
                        continue;
                    }
                    let stream = streams.entry(gateway).or_default();
                    if let Some(hls_url) = hls_url {
                        stream.hls_url = hls_url.as_str().to_owned();
                    }
                    if let Some(broadcaster) = broadcaster {
                        stream.broadcaster = broadcaster.as_str().to_owned();
                    }
                    let stream = stream.clone();
                    dirty_streams.insert(gateway);
                    for row in rows.values_mut() {
                        if row.gateway_id == gateway && open(&row.status) {
                            row.hls_url.clone_from(&stream.hls_url);
                            row.broadcaster.clone_from(&stream.broadcaster);
                            changed.insert(row.live_event_id);
                        }
                    }
                }
                Decoded::Webinar(id, payload, event) => match rows.get_mut(&id) {
                    Some(row) if row.version >= event.sequence => {}
                    Some(row) => {
                        if row.apply(payload, &streams) {
                            row.version = event.sequence;
                            row.updated_at = event.recorded_at;
                            changed.insert(id);
                        }
                    }
                    None => {
                        let gateway = match &payload {
                            WebinarEvent::Scheduled { gateway_id, .. } => gateway_id.as_uuid(),
                            _ => continue,
                        };
                        let stream = streams.get(&gateway).cloned().unwrap_or_default();
                        if let Some(row) = Record::new(id, event, payload, stream) {
                            rows.insert(id, row);
                            changed.insert(id);
                        }
                    }
                },
            }
        }
        upsert_streams(conn, &streams, &dirty_streams).await?;
        let dirty: Vec<&Record> = changed.iter().filter_map(|id| rows.get(id)).collect();
        if !dirty.is_empty() {
            upsert_events(conn, &dirty).await?;
            // The live page kept in memory is checked against this (see `cache`).
            sqlx::query(
                "insert into live_events_version (version, changed_at) values (1, clock_timestamp())
                 on conflict (one) do update
                   set version = live_events_version.version + 1, changed_at = clock_timestamp()",
            )
            .execute(&mut *conn)
            .await?;
        }
        if announce_changes {
            announce(conn, LIVE_EVENT_CHANGED, changed).await?;
        }
        Ok(())
    }
}
