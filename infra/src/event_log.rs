//! Reading the whole event log in one global order, without ever skipping an event.
//!
//! `global_position` is handed out at INSERT, not at COMMIT, so "everything after the last position
//! I saw" skips an event whose transaction commits late. The reader therefore orders by the writing
//! transaction (`tx_id`) first and reads only below a *watermark*: the oldest transaction that is
//! appending events right now (every appender holds a shared advisory lock, taken before its first
//! write by a trigger on `events`), or, when none is, the snapshot's xmax. No transaction that could
//! still add rows below it exists, so that prefix of the log is final. The watermark is computed in
//! a statement of its own, and the events are read in a later one: an appender that commits in
//! between is then seen by the read. Transactions that append nothing — rebuilds, analysts, other
//! databases of the cluster — hold nobody back. The checkpoint is the pair
//! `(tx_id, global_position)`.
//!
//! This module is the only reader of the `events` table besides the event store itself, and every
//! event it returns has been brought to its current shape by the domain's one upcasting path.

use chrono::{DateTime, Utc};
use futures::{Stream, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgExecutor, PgPool, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A place in the global log: the writing transaction, then the insert order within it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The `xid8` of the writing transaction (below 2^63 on any real cluster).
    pub tx_id: i64,
    pub global_position: i64,
}

impl Position {
    pub const START: Position = Position {
        tx_id: 0,
        global_position: 0,
    };
}

/// One event as the log holds it. The payload stays JSON text until a consumer decodes it into
/// its own type (parsing it into a generic tree first would cost every projector twice).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub tx_id: i64,
    pub global_position: i64,
    pub recorded_at: DateTime<Utc>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// `null` when the reader was told the consumer does not need this aggregate type.
    pub payload: Box<RawValue>,
    pub metadata: EventMetadata,
}

/// By column position, in the order of [`columns!`]: a rebuild reads a million rows, and looking
/// each column up by name was a measurable share of it.
impl<'r> sqlx::FromRow<'r, PgRow> for StoredEvent {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(StoredEvent {
            tx_id: row.try_get(0)?,
            global_position: row.try_get(1)?,
            recorded_at: row.try_get(2)?,
            aggregate_type: row.try_get(3)?,
            aggregate_id: row.try_get(4)?,
            sequence: row.try_get(5)?,
            event_type: row.try_get(6)?,
            event_version: row.try_get(7)?,
            payload: row.try_get::<sqlx::types::Json<Box<RawValue>>, _>(8)?.0,
            metadata: row.try_get::<sqlx::types::Json<EventMetadata>, _>(9)?.0,
        })
    }
}

/// The metadata every event carries (written from `CommandMetadata`); other keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EventMetadata {
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub request_id: Option<String>,
}

impl StoredEvent {
    pub fn position(&self) -> Position {
        Position {
            tx_id: self.tx_id,
            global_position: self.global_position,
        }
    }

    /// The payload as the aggregate's event enum.
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, serde_json::Error> {
        serde_json::from_str(self.payload.get())
    }

    /// The payload as a JSON tree (for those who show or rewrite it whole).
    pub fn payload_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.payload.get())
    }

    /// A metadata value (`actor_id`, `actor_name`, `correlation_id`, `causation_id`,
    /// `request_id`).
    pub fn meta(&self, key: &str) -> Option<&str> {
        let m = &self.metadata;
        match key {
            "actor_id" => m.actor_id.as_deref(),
            "actor_name" => m.actor_name.as_deref(),
            "correlation_id" => m.correlation_id.as_deref(),
            "causation_id" => m.causation_id.as_deref(),
            "request_id" => m.request_id.as_deref(),
            _ => None,
        }
    }

    /// The aggregate's typed id.
    pub fn aggregate<Id: std::str::FromStr>(&self) -> Option<Id> {
        self.aggregate_id.parse().ok()
    }

    /// Old event versions are read in their current shape (the log itself is never rewritten).
    /// Only those parse here; the others stay text.
    fn upcast(mut self) -> Result<Self, sqlx::Error> {
        if !webinar_domain::upcasting::needed(
            &self.aggregate_type,
            &self.event_type,
            &self.event_version,
        ) || self.payload.get() == "null"
        {
            return Ok(self);
        }
        let mut payload: Value = serde_json::from_str(self.payload.get())
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        webinar_domain::upcasting::upcast(
            &self.aggregate_type,
            &self.event_type,
            &mut self.event_version,
            &mut payload,
        );
        self.payload = serde_json::value::to_raw_value(&payload)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok(self)
    }
}

/// Upcasts every event read.
fn upcast_all(events: Vec<StoredEvent>) -> Result<Vec<StoredEvent>, sqlx::Error> {
    events.into_iter().map(StoredEvent::upcast).collect()
}

/// The columns of a [`StoredEvent`], positions as bigints (a macro, so that `concat!` can build
/// whole statements with it).
macro_rules! columns {
    () => {
        "tx_id::text::bigint as tx_id, global_position, recorded_at, aggregate_type, aggregate_id,
         sequence, event_type, event_version, payload, metadata"
    };
}

/// The condition of a [`LogRange`] ($1 from, $2 to, $3 aggregate id).
macro_rules! in_range {
    () => {
        "($1::timestamptz is null or recorded_at >= $1)
         and ($2::timestamptz is null or recorded_at < $2)
         and ($3::text is null or aggregate_id = $3)"
    };
}

/// Up to `limit` events after `after`, in log order, from the final prefix of the log. Events of
/// aggregate types outside `wanted` (when given) come with a `Null` payload: the consumer still
/// sees their positions, so its checkpoint moves past them.
pub async fn read_after(
    pool: &PgPool,
    after: Position,
    wanted: Option<&[&str]>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let below = watermark(pool).await?;
    read_below(pool, after, below, wanted, limit).await
}

/// The watermark for the consumers of one instance, computed once for all those woken at the same
/// moment (a commit wakes them all): each gets a watermark computed after it asked, so it reads
/// exactly what a watermark of its own would let it read, and reads below it in a later statement.
#[derive(Clone, Default)]
pub struct Watermarks(std::sync::Arc<crate::fresh::SharedRead<i64>>);

impl Watermarks {
    /// [`read_after`], with the watermark shared.
    pub async fn read_after(
        &self,
        pool: &PgPool,
        after: Position,
        wanted: Option<&[&str]>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let shared = self
            .0
            .get(|| async {
                match watermark(pool).await {
                    Ok(below) => Some(below),
                    Err(error) => {
                        tracing::warn!(%error, "cannot compute the log's watermark");
                        None
                    }
                }
            })
            .await;
        // A failed shared read: each caller tries its own, and reports its own error.
        let below = match shared {
            Some(below) => below,
            None => watermark(pool).await?,
        };
        read_below(pool, after, below, wanted, limit).await
    }
}

/// Where the final prefix of the log ends now: no running appender can add an event below it.
/// Read below it only in a *later* statement.
pub async fn watermark<'e>(executor: impl PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(WATERMARK).fetch_one(executor).await
}

/// The oldest transaction among the sessions that hold the append lock (taken by the trigger of
/// migration 0007 before an appender's first write), or this statement's snapshot xmax when none
/// does. `backend_xid` is 32 bits: it is placed back in the epoch of xmax (running transactions
/// lie within 2^31 of it). A prepared statement: planned once per connection.
const WATERMARK: &str = "
    with snapshot as (
        select pg_snapshot_xmax(pg_current_snapshot())::text::bigint as xmax
    ),
    appenders as (
        select s.xmax + ((((a.backend_xid::text::bigint - s.xmax) % 4294967296)
                          + 4294967296 + 2147483648) % 4294967296) - 2147483648 as xid
          from snapshot s, pg_locks l, lateral pg_stat_get_activity(l.pid) a
         where l.locktype = 'advisory'
           and l.database = (select oid from pg_database where datname = current_database())
           and l.classid = 0 and l.objid = 1296000001 and l.objsubid = 1
           and l.granted
           and a.backend_xid is not null
    )
    select least((select xmax from snapshot), (select min(xid) from appenders))";

/// Up to `limit` events after `after` and below the watermark `below` (see [`read_after`]).
pub async fn read_below<'e>(
    executor: impl PgExecutor<'e>,
    after: Position,
    below: i64,
    wanted: Option<&[&str]>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let wanted: Option<Vec<String>> =
        wanted.map(|types| types.iter().map(|t| t.to_string()).collect());
    sqlx::query_as::<_, StoredEvent>(
        "select tx_id::text::bigint as tx_id, global_position, recorded_at, aggregate_type,
                aggregate_id, sequence, event_type, event_version,
                case when $3::text[] is null or aggregate_type = any($3) then payload
                     else 'null'::json end as payload,
                metadata
           from events
          where (tx_id, global_position) > ($1::text::xid8, $2)
            and tx_id < $5::text::xid8
          -- Qualified: the bare name would sort by the bigint alias above, not the indexed column.
          order by events.tx_id, events.global_position
          limit $4",
    )
    .bind(after.tx_id.to_string())
    .bind(after.global_position)
    .bind(wanted)
    .bind(limit)
    .bind(below.to_string())
    .fetch_all(executor)
    .await
    .and_then(upcast_all)
}

/// One aggregate's events in its own order, but for those of the types in `except`.
pub async fn aggregate_events<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
    except: &[&str],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as::<_, StoredEvent>(concat!(
        "select ",
        columns!(),
        " from events where aggregate_type = $1 and aggregate_id = $2
            and event_type <> all($3)
          order by sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(except)
    .fetch_all(executor)
    .await
    .and_then(upcast_all)
}

/// One aggregate's events recorded up to `until`, in its own order (the replay for auditors).
pub async fn aggregate_events_until(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    until: DateTime<Utc>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as::<_, StoredEvent>(concat!(
        "select ",
        columns!(),
        " from events where aggregate_type = $1 and aggregate_id = $2 and recorded_at <= $3
          order by sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(until)
    .fetch_all(pool)
    .await
    .and_then(upcast_all)
}

/// The events at these global positions, in log order.
pub async fn events_at(pool: &PgPool, positions: &[i64]) -> Result<Vec<StoredEvent>, sqlx::Error> {
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as::<_, StoredEvent>(concat!(
        "select ",
        columns!(),
        " from events where global_position = any($1) order by tx_id, global_position"
    ))
    .bind(positions)
    .fetch_all(pool)
    .await
    .and_then(upcast_all)
}

/// Which events [`stream`] and [`count`] cover.
#[derive(Debug, Clone, Default)]
pub struct LogRange {
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to: Option<DateTime<Utc>>,
    pub aggregate_id: Option<String>,
}

/// How many events `range` covers.
pub async fn count(pool: &PgPool, range: &LogRange) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(concat!("select count(*) from events where ", in_range!()))
        .bind(range.from)
        .bind(range.to)
        .bind(&range.aggregate_id)
        .fetch_one(pool)
        .await
}

/// The events in `range`, in log order, one row at a time (constant memory, for exports). Unlike
/// [`read_after`], it does not wait for the log to be final: it shows what is committed now.
pub fn stream<'a>(
    pool: &'a PgPool,
    range: &'a LogRange,
) -> impl Stream<Item = Result<StoredEvent, sqlx::Error>> + 'a {
    sqlx::query_as::<_, StoredEvent>(concat!(
        "select ",
        columns!(),
        " from events where ",
        in_range!(),
        " order by tx_id, global_position"
    ))
    .bind(range.from)
    .bind(range.to)
    .bind(&range.aggregate_id)
    .fetch(pool)
    .and_then(|event| futures::future::ready(event.upcast()))
}

/// Where the newest event of one aggregate stands in the global log.
pub async fn latest_position<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<Position>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "select tx_id::text::bigint, global_position from events
          where aggregate_type = $1 and aggregate_id = $2
          order by sequence desc limit 1",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_optional(executor)
    .await?;
    Ok(row.map(|(tx_id, global_position)| Position {
        tx_id,
        global_position,
    }))
}

/// Whether an aggregate has any event.
pub async fn exists<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select exists (select 1 from events where aggregate_type = $1 and aggregate_id = $2)",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_one(executor)
    .await
}

/// The highest global position written (committed or not): the yardstick of consumer lag.
pub async fn last_global_position<'e>(executor: impl PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select coalesce(max(global_position), 0) from events")
        .fetch_one(executor)
        .await
}

/// How many events there are (for progress bars).
pub async fn total<'e>(executor: impl PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from events")
        .fetch_one(executor)
        .await
}

/// The newest position in the final prefix of the log (for lag metrics and waiting).
pub async fn head(pool: &PgPool) -> Result<Position, sqlx::Error> {
    let below = watermark(pool).await?;
    let row: Option<(i64, i64)> = sqlx::query_as(
        "select tx_id::text::bigint, global_position from events
          where tx_id < $1::text::xid8
          order by tx_id desc, global_position desc limit 1",
    )
    .bind(below.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map_or(Position::START, |(tx_id, global_position)| Position {
            tx_id,
            global_position,
        }),
    )
}

/// The channel the `events_appended` trigger notifies at each commit.
pub const CHANNEL: &str = "webinar_events";

/// Listens for commits to the log and bumps a counter that consumers wait on. Consumers also poll,
/// so a lost connection only slows them down until it is back.
pub fn spawn_listener(pool: PgPool, cancel: CancellationToken) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "cannot LISTEN for new events; polling only");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => continue,
                    }
                }
            };
            if let Err(error) = listener.listen(CHANNEL).await {
                tracing::warn!(%error, "cannot LISTEN for new events; polling only");
                continue;
            }
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    received = listener.recv() => match received {
                        Ok(_) => { tx.send_modify(|n| *n = n.wrapping_add(1)); }
                        Err(error) => {
                            tracing::warn!(%error, "event notification connection lost");
                            // Something may have been committed while we were away.
                            tx.send_modify(|n| *n = n.wrapping_add(1));
                            break;
                        }
                    }
                }
            }
        }
    });
    rx
}
