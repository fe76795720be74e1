//! `webinar_stats` and `gateway_utilization`: figures for analysts.
//!
//! Live time is counted from `StreamStarted` to the next event that ends the stream interval
//! (`StreamStopRequested`, `StreamStopped`, `StreamRestartRequested`, `GatewayReassigned`, `Ended`),
//! and credited to the gateway and UTC day on which the interval began. Reserved minutes are
//! credited to the day the slot starts; a reservation released before its slot began (a
//! cancellation, a move) is taken back, one released after (the end) stays.
//!
//! The projector is set-based: a batch loads the rows it touches, folds its events in memory,
//! and writes rows and per-day sums with multi-row statements.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::chat::ChatEvent;
use webinar_domain::gateway::GatewayEvent;
use webinar_domain::webinar::{WebinarEvent, WebinarStatus};
use webinar_domain::{GatewayId, WebinarId};
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

use crate::events::decoded;

pub struct StatsProjector;

/// A row of `webinar_stats`, as folded in memory.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Record {
    webinar_id: Uuid,
    title: String,
    owner_id: String,
    gateway_id: Uuid,
    scheduled_start: DateTime<Utc>,
    scheduled_minutes: i32,
    status: String,
    ended_how: Option<String>,
    started_at: Option<DateTime<Utc>>,
    first_live_at: Option<DateTime<Utc>>,
    live_since: Option<DateTime<Utc>>,
    live_seconds: i64,
    stream_failures: i32,
    restarts: i32,
    failovers: i32,
    chat_posted: i32,
    chat_relayed: i32,
    chat_failed: i32,
}

const COLUMNS: &str = "webinar_id, title, owner_id, gateway_id, scheduled_start,
    scheduled_minutes, status, ended_how, started_at, first_live_at, live_since, live_seconds,
    stream_failures, restarts, failovers, chat_posted, chat_relayed, chat_failed";

/// What a batch adds to one gateway's day.
#[derive(Debug, Clone, Copy, Default)]
struct Day {
    reserved_minutes: i64,
    live_seconds: i64,
    failures: i32,
}

/// A (gateway, webinar) pair.
type Pair = (Uuid, Uuid);
/// A reservation's start and length in minutes.
type Booking = (DateTime<Utc>, i64);

/// The batch's state: the rows it touches and what it adds up.
#[derive(Default)]
struct Fold {
    rows: HashMap<Uuid, Record>,
    changed: Vec<Uuid>,
    /// Message → webinar: the known ones, and those this batch posts.
    messages: HashMap<Uuid, Uuid>,
    new_messages: Vec<(Uuid, Uuid)>,
    days: HashMap<(Uuid, NaiveDate), Day>,
    /// (gateway, webinar) → (start, minutes), or `None` once released.
    reservations: HashMap<Pair, Option<Booking>>,
}

impl Fold {
    fn day(&mut self, gateway: Uuid, at: DateTime<Utc>) -> &mut Day {
        self.days.entry((gateway, at.date_naive())).or_default()
    }

    fn row(&mut self, webinar: Uuid) -> Option<&mut Record> {
        let row = self.rows.get_mut(&webinar)?;
        self.changed.push(webinar);
        Some(row)
    }

    /// Ends the stream interval in progress, crediting the webinar and its gateway.
    fn close_interval(&mut self, webinar: Uuid, at: DateTime<Utc>) {
        let Some(row) = self.row(webinar) else {
            return;
        };
        let Some(since) = row.live_since.take() else {
            return;
        };
        let seconds = (at - since).num_seconds().max(0);
        row.live_seconds += seconds;
        let gateway = row.gateway_id;
        self.day(gateway, since).live_seconds += seconds;
    }

    fn reserve(&mut self, gateway: Uuid, webinar: Uuid, slot: Option<(DateTime<Utc>, i64)>) {
        if let Some(Some((start, minutes))) = self.reservations.get(&(gateway, webinar)).copied() {
            self.day(gateway, start).reserved_minutes -= minutes;
        }
        if let Some((start, minutes)) = slot {
            self.day(gateway, start).reserved_minutes += minutes;
        }
        self.reservations.insert((gateway, webinar), slot);
    }

    fn gateway_event(&mut self, gateway: Uuid, event: GatewayEvent, at: DateTime<Utc>) {
        match event {
            GatewayEvent::SlotReserved { webinar_id, slot } => self.reserve(
                gateway,
                webinar_id.as_uuid(),
                Some((slot.start(), slot.duration_minutes())),
            ),
            GatewayEvent::SlotReleased { webinar_id } => {
                let key = (gateway, webinar_id.as_uuid());
                match self.reservations.get(&key).copied().flatten() {
                    // A release once the slot has begun is an end: those minutes were used.
                    Some((start, _)) if start <= at => {
                        self.reservations.insert(key, None);
                    }
                    Some(_) => self.reserve(gateway, webinar_id.as_uuid(), None),
                    None => {}
                }
            }
            _ => {}
        }
    }

    fn chat_event(&mut self, message: Uuid, event: ChatEvent) {
        let (webinar, bump): (Option<Uuid>, fn(&mut Record)) = match event {
            ChatEvent::Posted { webinar_id, .. } => {
                let webinar = webinar_id.as_uuid();
                if self.messages.insert(message, webinar).is_none() {
                    self.new_messages.push((message, webinar));
                }
                (Some(webinar), |r| r.chat_posted += 1)
            }
            ChatEvent::Relayed => (self.messages.get(&message).copied(), |r| {
                r.chat_relayed += 1
            }),
            ChatEvent::RelayFailed { .. } => {
                (self.messages.get(&message).copied(), |r| r.chat_failed += 1)
            }
        };
        if let Some(row) = webinar.and_then(|w| self.row(w)) {
            bump(row);
        }
    }

    fn webinar_event(&mut self, id: Uuid, event: WebinarEvent, at: DateTime<Utc>) {
        use WebinarEvent::*;
        match event {
            Scheduled {
                title,
                owner,
                start_at,
                duration_minutes,
                gateway_id,
                ..
            } => {
                if self.rows.contains_key(&id) {
                    return;
                }
                self.rows.insert(
                    id,
                    Record {
                        webinar_id: id,
                        title: title.as_str().to_owned(),
                        owner_id: owner.id,
                        gateway_id: gateway_id.as_uuid(),
                        scheduled_start: start_at,
                        scheduled_minutes: duration_minutes as i32,
                        status: WebinarStatus::Scheduled.as_str().to_owned(),
                        ended_how: None,
                        started_at: None,
                        first_live_at: None,
                        live_since: None,
                        live_seconds: 0,
                        stream_failures: 0,
                        restarts: 0,
                        failovers: 0,
                        chat_posted: 0,
                        chat_relayed: 0,
                        chat_failed: 0,
                    },
                );
                self.changed.push(id);
            }
            Rescheduled {
                start_at,
                duration_minutes,
            } => {
                if let Some(row) = self.row(id) {
                    row.scheduled_start = start_at;
                    row.scheduled_minutes = duration_minutes as i32;
                }
            }
            DetailsUpdated {
                title: Some(title), ..
            } => {
                if let Some(row) = self.row(id) {
                    row.title = title.as_str().to_owned();
                }
            }
            Started { .. } => {
                if let Some(row) = self.row(id) {
                    row.status = WebinarStatus::Live.as_str().to_owned();
                    row.started_at.get_or_insert(at);
                }
            }
            StreamStarted { .. } => {
                if let Some(row) = self.row(id) {
                    row.first_live_at.get_or_insert(at);
                    row.live_since.get_or_insert(at);
                }
            }
            StreamFailed { .. } => {
                if let Some(row) = self.row(id) {
                    row.stream_failures += 1;
                    let gateway = row.gateway_id;
                    self.day(gateway, at).failures += 1;
                }
            }
            StreamRestartRequested => {
                self.close_interval(id, at);
                if let Some(row) = self.row(id) {
                    row.restarts += 1;
                }
            }
            StreamStopRequested | StreamStopped => self.close_interval(id, at),
            GatewayReassigned { to, .. } => {
                self.close_interval(id, at);
                if let Some(row) = self.row(id) {
                    row.gateway_id = to.as_uuid();
                    if row.status == WebinarStatus::Live.as_str() {
                        row.failovers += 1;
                    }
                }
            }
            MeetingEnded { reason } => {
                if let Some(row) = self.row(id) {
                    row.ended_how = Some(reason.as_str().to_owned());
                }
            }
            Ended => {
                self.close_interval(id, at);
                if let Some(row) = self.row(id) {
                    row.status = WebinarStatus::Ended.as_str().to_owned();
                }
            }
            Cancelled => {
                if let Some(row) = self.row(id) {
                    row.status = WebinarStatus::Cancelled.as_str().to_owned();
                    row.ended_how = Some("CANCELLED".to_owned());
                }
            }
            _ => {}
        }
    }
}

/// A decoded event of the batch.
enum Decoded {
    Gateway(Uuid, GatewayEvent),
    Chat(Uuid, ChatEvent),
    Webinar(Uuid, WebinarEvent),
}

impl StatsProjector {
    /// Loads what the batch's events touch.
    async fn load(
        conn: &mut PgConnection,
        batch: &[(Decoded, DateTime<Utc>)],
    ) -> Result<Fold, sqlx::Error> {
        let mut fold = Fold::default();
        let (mut webinars, mut messages, mut pairs) = (Vec::new(), Vec::new(), Vec::new());
        for (decoded, _) in batch {
            match decoded {
                Decoded::Webinar(id, _) => webinars.push(*id),
                Decoded::Chat(id, ChatEvent::Posted { webinar_id, .. }) => {
                    webinars.push(webinar_id.as_uuid());
                    messages.push(*id);
                }
                Decoded::Chat(id, _) => messages.push(*id),
                Decoded::Gateway(gateway, GatewayEvent::SlotReserved { webinar_id, .. })
                | Decoded::Gateway(gateway, GatewayEvent::SlotReleased { webinar_id }) => {
                    pairs.push((*gateway, webinar_id.as_uuid()));
                }
                Decoded::Gateway(..) => {}
            }
        }
        fold.messages = sqlx::query_as::<_, (Uuid, Uuid)>(
            "select message_id, webinar_id from webinar_stats_messages where message_id = any($1)",
        )
        .bind(&messages)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        webinars.extend(fold.messages.values().copied());
        fold.rows = sqlx::query_as::<_, Record>(&format!(
            "select {COLUMNS} from webinar_stats where webinar_id = any($1)"
        ))
        .bind(&webinars)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| (row.webinar_id, row))
        .collect();
        let held: Vec<(Uuid, Uuid, DateTime<Utc>, i64)> = sqlx::query_as(
            "select r.gateway_id, r.webinar_id, r.starts_at, r.minutes
               from gateway_utilization_reservations r
               join unnest($1::uuid[], $2::uuid[]) as k(gateway_id, webinar_id)
                 on k.gateway_id = r.gateway_id and k.webinar_id = r.webinar_id",
        )
        .bind(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
        .bind(pairs.iter().map(|p| p.1).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        fold.reservations = held
            .into_iter()
            .map(|(g, w, start, minutes)| ((g, w), Some((start, minutes))))
            .collect();
        Ok(fold)
    }

    async fn save(conn: &mut PgConnection, mut fold: Fold) -> Result<(), sqlx::Error> {
        fold.changed.sort();
        fold.changed.dedup();
        let rows: Vec<&Record> = fold
            .changed
            .iter()
            .filter_map(|id| fold.rows.get(id))
            .collect();
        if !rows.is_empty() {
            let text = |f: fn(&Record) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
            let when = |f: fn(&Record) -> Option<DateTime<Utc>>| {
                rows.iter().map(|r| f(r)).collect::<Vec<_>>()
            };
            let count = |f: fn(&Record) -> i32| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
            sqlx::query(&format!(
                "insert into webinar_stats ({COLUMNS})
                 select * from unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[],
                    $5::timestamptz[], $6::int[], $7::text[], $8::text[], $9::timestamptz[],
                    $10::timestamptz[], $11::timestamptz[], $12::bigint[], $13::int[], $14::int[],
                    $15::int[], $16::int[], $17::int[], $18::int[])
                 on conflict (webinar_id) do update set
                    title = excluded.title, gateway_id = excluded.gateway_id,
                    scheduled_start = excluded.scheduled_start,
                    scheduled_minutes = excluded.scheduled_minutes, status = excluded.status,
                    ended_how = excluded.ended_how, started_at = excluded.started_at,
                    first_live_at = excluded.first_live_at, live_since = excluded.live_since,
                    live_seconds = excluded.live_seconds,
                    stream_failures = excluded.stream_failures, restarts = excluded.restarts,
                    failovers = excluded.failovers, chat_posted = excluded.chat_posted,
                    chat_relayed = excluded.chat_relayed, chat_failed = excluded.chat_failed"
            ))
            .bind(rows.iter().map(|r| r.webinar_id).collect::<Vec<_>>())
            .bind(text(|r| &r.title))
            .bind(text(|r| &r.owner_id))
            .bind(rows.iter().map(|r| r.gateway_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.scheduled_start).collect::<Vec<_>>())
            .bind(count(|r| r.scheduled_minutes))
            .bind(text(|r| &r.status))
            .bind(
                rows.iter()
                    .map(|r| r.ended_how.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(when(|r| r.started_at))
            .bind(when(|r| r.first_live_at))
            .bind(when(|r| r.live_since))
            .bind(rows.iter().map(|r| r.live_seconds).collect::<Vec<_>>())
            .bind(count(|r| r.stream_failures))
            .bind(count(|r| r.restarts))
            .bind(count(|r| r.failovers))
            .bind(count(|r| r.chat_posted))
            .bind(count(|r| r.chat_relayed))
            .bind(count(|r| r.chat_failed))
            .execute(&mut *conn)
            .await?;
        }
        if !fold.new_messages.is_empty() {
            sqlx::query(
                "insert into webinar_stats_messages (message_id, webinar_id)
                 select * from unnest($1::uuid[], $2::uuid[]) on conflict do nothing",
            )
            .bind(fold.new_messages.iter().map(|m| m.0).collect::<Vec<_>>())
            .bind(fold.new_messages.iter().map(|m| m.1).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        if !fold.days.is_empty() {
            let days: Vec<(&(Uuid, NaiveDate), &Day)> = fold.days.iter().collect();
            sqlx::query(
                "insert into gateway_utilization (gateway_id, day, reserved_minutes, live_seconds, failures)
                 select * from unnest($1::uuid[], $2::date[], $3::bigint[], $4::bigint[], $5::int[])
                 on conflict (gateway_id, day) do update set
                    reserved_minutes = gateway_utilization.reserved_minutes + excluded.reserved_minutes,
                    live_seconds = gateway_utilization.live_seconds + excluded.live_seconds,
                    failures = gateway_utilization.failures + excluded.failures",
            )
            .bind(days.iter().map(|((g, _), _)| *g).collect::<Vec<_>>())
            .bind(days.iter().map(|((_, d), _)| *d).collect::<Vec<_>>())
            .bind(days.iter().map(|(_, d)| d.reserved_minutes).collect::<Vec<_>>())
            .bind(days.iter().map(|(_, d)| d.live_seconds).collect::<Vec<_>>())
            .bind(days.iter().map(|(_, d)| d.failures).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        let (held, gone): (Vec<_>, Vec<_>) = fold
            .reservations
            .iter()
            .partition(|(_, slot)| slot.is_some());
        if !gone.is_empty() {
            sqlx::query(
                "delete from gateway_utilization_reservations r
                  using unnest($1::uuid[], $2::uuid[]) as k(gateway_id, webinar_id)
                  where r.gateway_id = k.gateway_id and r.webinar_id = k.webinar_id",
            )
            .bind(gone.iter().map(|((g, _), _)| *g).collect::<Vec<_>>())
            .bind(gone.iter().map(|((_, w), _)| *w).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        let held: Vec<(Pair, Booking)> = held
            .into_iter()
            .filter_map(|(key, slot)| slot.map(|s| (*key, s)))
            .collect();
        if !held.is_empty() {
            sqlx::query(
                "insert into gateway_utilization_reservations (gateway_id, webinar_id, starts_at, minutes)
                 select * from unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::bigint[])
                 on conflict (gateway_id, webinar_id) do update
                    set starts_at = excluded.starts_at, minutes = excluded.minutes",
            )
            .bind(held.iter().map(|((g, _), _)| *g).collect::<Vec<_>>())
            .bind(held.iter().map(|((_, w), _)| *w).collect::<Vec<_>>())
            .bind(held.iter().map(|(_, (s, _))| *s).collect::<Vec<_>>())
            .bind(held.iter().map(|(_, (_, m))| *m).collect::<Vec<_>>())
            .execute(conn)
            .await?;
        }
        Ok(())
    }
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

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        _announce: bool,
    ) -> Result<(), ProjectionError> {
        let mut batch = Vec::with_capacity(events.len());
        for event in events {
            let decoded = match event.aggregate_type.as_str() {
                "Gateway" => decoded(event).map(|(id, e)| Decoded::Gateway(id, e))?,
                "ChatMessage" => decoded(event).map(|(id, e)| Decoded::Chat(id, e))?,
                _ => decoded(event).map(|(id, e)| Decoded::Webinar(id, e))?,
            };
            batch.push((decoded, event.recorded_at));
        }
        let mut fold = Self::load(conn, &batch).await?;
        for (decoded, at) in batch {
            match decoded {
                Decoded::Gateway(id, event) => fold.gateway_event(id, event, at),
                Decoded::Chat(id, event) => fold.chat_event(id, event),
                Decoded::Webinar(id, event) => fold.webinar_event(id, event, at),
            }
        }
        Self::save(conn, fold).await?;
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

/// `site`'s webinars scheduled to start in `[from, to)`. Live time includes an interval still
/// open. (The site is the `webinars` model's: a row it has not reached yet waits for it.)
pub async fn webinar_stats(
    pool: &PgPool,
    site: &webinar_domain::Site,
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
            and webinar_id in (select webinar_id from webinars where site = $3)
          order by scheduled_start, webinar_id",
    )
    .bind(from)
    .bind(to)
    .bind(site.as_str())
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

/// Per gateway of `site` and day, for days in `[from, to)`.
pub async fn gateway_utilization(
    pool: &PgPool,
    site: &webinar_domain::Site,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<UtilizationRow>, sqlx::Error> {
    sqlx::query_as(
        "select gateway_id, day, reserved_minutes, live_seconds, failures from gateway_utilization
          where day >= ($1 at time zone 'UTC')::date and day < ($2 at time zone 'UTC')::date
            and (reserved_minutes <> 0 or live_seconds <> 0 or failures <> 0)
            and gateway_id in (select gateway_id from gateways where site = $3)
          order by day, gateway_id",
    )
    .bind(from)
    .bind(to)
    .bind(site.as_str())
    .fetch_all(pool)
    .await
}
