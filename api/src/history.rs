//! `webinar history generate`: a realistic history, written fast (set-based `INSERT … SELECT`,
//! one statement per batch of webinars), so that rebuilds and audit queries can be measured on a
//! million events. Each webinar's life is 15 events: the gateway reserves its slot, the webinar is
//! scheduled, renamed, started, streams, gets two audience messages relayed, stops, ends, and the
//! slot is released. Payloads have exactly the shapes the aggregates write.

use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;

/// Events per generated webinar.
pub const EVENTS_PER_WEBINAR: i64 = 15;
const GATEWAYS: i64 = 20;
const BATCH: i64 = 2_000;

const REGISTER_GATEWAYS: &str = "
insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
select 'Gateway', md5('gateway' || g)::uuid::text, 1, 'GatewayRegistered', '1.0',
       json_build_object('GatewayRegistered', json_build_object(
         'name', 'Amphi ' || g, 'rtmp_url', 'rtmp://live.example.org/live/' || g,
         'hls_url', 'https://live.example.org/hls/' || g || '.m3u8', 'broadcaster', 'Amphi ' || g,
         'sipmediagw_url', 'https://gw' || g || '.example.org', 'api', 'LEGACY',
         'token_fingerprint', null)),
       json_build_object('actor_id', 'history-admin', 'actor_name', 'History Admin',
         'correlation_id', md5('register' || g), 'causation_id', md5('register' || g))
  from generate_series(0, $1 - 1) g
 order by g";

const WEBINARS: &str = "
insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
select e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata
  from generate_series($1::bigint, $2::bigint) as w(n)
  cross join lateral (
    select md5('webinar' || w.n)::uuid::text as id,
           md5('gateway' || (w.n % $3))::uuid::text as gateway,
           '2025-01-01T08:00:00Z'::timestamptz + (w.n % 100000) * interval '2 hours' as start_at,
           json_build_object('id', 'owner-' || (w.n % 500), 'name', 'Owner ' || (w.n % 500)) as owner,
           json_build_object('actor_id', 'owner-' || (w.n % 500), 'actor_name', 'Owner ' || (w.n % 500),
             'correlation_id', md5('c' || w.n), 'causation_id', md5('c' || w.n)) as meta,
           json_build_object('actor_id', 'system:stream-reactor', 'actor_name', 'system:stream-reactor',
             'correlation_id', md5('c' || w.n), 'causation_id', md5('s' || w.n)) as system
  ) v
  cross join lateral (values
    (1, 'Gateway', v.gateway, 2 + 2 * (w.n / $3), 'SlotReserved', '1.0',
        json_build_object('SlotReserved', json_build_object('webinar_id', v.id,
          'slot', json_build_object('start', v.start_at, 'end', v.start_at + interval '90 minutes'))), v.meta),
    (2, 'Webinar', v.id, 1, 'Scheduled', '2.0',
        json_build_object('Scheduled', json_build_object('title', 'Lecture ' || w.n, 'description', null,
          'owner', v.owner, 'presenters', json_build_array(), 'start_at', v.start_at,
          'duration_minutes', 90, 'enable_chat', true, 'restricted', (w.n % 4 = 0),
          'groups', json_build_array(), 'gateway_id', v.gateway, 'room', 'r' || w.n, 'record', false)), v.meta),
    (3, 'Webinar', v.id, 2, 'DetailsUpdated', '1.0',
        json_build_object('DetailsUpdated', json_build_object('title', 'Lecture ' || w.n || ' (updated)')), v.meta),
    (4, 'Webinar', v.id, 3, 'Started', '1.0',
        json_build_object('Started', json_build_object('meeting_id', 'webinar-' || v.id)), v.meta),
    (5, 'Webinar', v.id, 4, 'StreamStartRequested', '1.0', to_json('StreamStartRequested'::text), v.meta),
    (6, 'Webinar', v.id, 5, 'StreamStarted', '2.0', json_build_object('StreamStarted', json_build_object()), v.system),
    (7, 'ChatMessage', md5('chat-a' || w.n)::uuid::text, 1, 'Posted', '1.0',
        json_build_object('Posted', json_build_object('webinar_id', v.id,
          'author', json_build_object('id', 'student-' || (w.n % 5000), 'name', 'Student'),
          'text', 'Question ' || w.n, 'posted_at', v.start_at + interval '10 minutes')), v.meta),
    (8, 'ChatMessage', md5('chat-a' || w.n)::uuid::text, 2, 'Relayed', '1.0', to_json('Relayed'::text), v.system),
    (9, 'ChatMessage', md5('chat-b' || w.n)::uuid::text, 1, 'Posted', '1.0',
        json_build_object('Posted', json_build_object('webinar_id', v.id,
          'author', json_build_object('id', 'student-' || ((w.n + 1) % 5000), 'name', 'Student'),
          'text', 'Thanks', 'posted_at', v.start_at + interval '80 minutes')), v.meta),
    (10, 'ChatMessage', md5('chat-b' || w.n)::uuid::text, 2, 'Relayed', '1.0', to_json('Relayed'::text), v.system),
    (11, 'Webinar', v.id, 6, 'StreamStopRequested', '1.0', to_json('StreamStopRequested'::text), v.meta),
    (12, 'Webinar', v.id, 7, 'StreamStopped', '1.0', to_json('StreamStopped'::text), v.system),
    (13, 'Webinar', v.id, 8, 'MeetingEnded', '1.0',
        json_build_object('MeetingEnded', json_build_object('reason', 'BBB_CALLBACK')), v.system),
    (14, 'Webinar', v.id, 9, 'Ended', '1.0', to_json('Ended'::text), v.system),
    (15, 'Gateway', v.gateway, 3 + 2 * (w.n / $3), 'SlotReleased', '1.0',
        json_build_object('SlotReleased', json_build_object('webinar_id', v.id)), v.system)
  ) as e(ord, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
 order by w.n, e.ord";

/// Appends `webinars` webinars' lives (15 events each) after any existing generated history.
/// Returns the number of events written.
pub async fn generate(pool: &PgPool, webinars: i64) -> anyhow::Result<i64> {
    let existing: i64 = sqlx::query_scalar(
        "select count(*) from events where aggregate_type = 'Webinar' and aggregate_id like '%-%-%-%'
           and event_type = 'Scheduled' and payload::jsonb #>> '{Scheduled,room}' like 'r%'",
    )
    .fetch_one(pool)
    .await?;
    anyhow::ensure!(
        existing == 0,
        "this database already holds a generated history; use a fresh one"
    );
    sqlx::query(REGISTER_GATEWAYS)
        .bind(GATEWAYS)
        .execute(pool)
        .await?;
    let bar = ProgressBar::new((webinars * EVENTS_PER_WEBINAR) as u64).with_style(
        ProgressStyle::with_template("generating [{bar:40}] {pos}/{len} events ({per_sec})")?,
    );
    let mut written = GATEWAYS;
    let mut next = 0;
    while next < webinars {
        let last = (next + BATCH).min(webinars) - 1;
        let rows = sqlx::query(WEBINARS)
            .bind(next)
            .bind(last)
            .bind(GATEWAYS)
            .execute(pool)
            .await?
            .rows_affected() as i64;
        written += rows;
        bar.inc(rows as u64);
        next = last + 1;
    }
    bar.finish_and_clear();
    Ok(written)
}
