//! The log reader never skips an event whose transaction commits late, and never applies one twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use webinar_infra::consumer::{
    ProjectionError, ProjectionProgress, Projector, ProjectorRunner, RunnerOptions,
};
use webinar_infra::event_log::{self, Position, StoredEvent};

use crate::harness::TestDb;

/// Counts how often it saw each event, in a table of its own.
pub struct RecordingProjector;

#[async_trait]
impl Projector for RecordingProjector {
    fn name(&self) -> &'static str {
        "recording"
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Probe"])
    }
    fn tables(&self) -> &'static [&'static str] {
        &["seen_events"]
    }
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        _announce: bool,
    ) -> Result<(), ProjectionError> {
        for event in events {
            sqlx::query(
                "insert into seen_events (global_position, times) values ($1, 1)
                 on conflict (global_position) do update set times = seen_events.times + 1",
            )
            .bind(event.global_position)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

pub async fn create_seen_table(pool: &PgPool) {
    sqlx::query(
        "create table seen_events (global_position bigint primary key, times int not null)",
    )
    .execute(pool)
    .await
    .expect("create seen_events");
}

pub async fn append_probe<'e>(executor: impl sqlx::PgExecutor<'e>, id: &str, sequence: i64) -> i64 {
    sqlx::query_scalar(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         values ('Probe', $1, $2, 'Probed', '1.0', '{\"Probed\":{}}', '{}')
         returning global_position",
    )
    .bind(id)
    .bind(sequence)
    .fetch_one(executor)
    .await
    .expect("append a probe event")
}

async fn seen(pool: &PgPool) -> Vec<(i64, i32)> {
    sqlx::query_as("select global_position, times from seen_events order by global_position")
        .fetch_all(pool)
        .await
        .expect("read seen_events")
}

fn runner(pool: &PgPool, batch_size: i64) -> ProjectorRunner {
    ProjectorRunner::new(
        pool.clone(),
        Arc::new(RecordingProjector),
        RunnerOptions {
            batch_size,
            poll: Duration::from_millis(20),
        },
        ProjectionProgress::new(["recording"]),
    )
}

/// Runs the projector until it has seen `count` events. Another test's open transaction anywhere
/// in the cluster holds the reader back (xmin is cluster-wide), so this may take a few rounds.
async fn catch_up_to(pool: &PgPool, runner: &ProjectorRunner, count: usize) -> Vec<(i64, i32)> {
    for _ in 0..500 {
        runner.catch_up().await.expect("projector runs");
        let rows = seen(pool).await;
        if rows.len() >= count {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen(pool).await
}

#[tokio::test]
async fn an_event_whose_transaction_commits_late_is_neither_skipped_nor_repeated() {
    let db = TestDb::create().await;
    create_seen_table(&db.pool).await;
    let runner = runner(&db.pool, 100);

    // T1 appends first (lower global position) and stays open.
    let mut early = db.pool.begin().await.expect("begin T1");
    let first = append_probe(&mut *early, "a", 1).await;
    // T2 appends later and commits at once.
    let second = append_probe(&db.pool, "b", 1).await;
    assert!(first < second, "T1's event was numbered first");

    runner.catch_up().await.expect("projector runs");
    assert!(
        seen(&db.pool).await.is_empty(),
        "while T1 is open, neither event is final: the reader must not move past T1's"
    );

    early.commit().await.expect("commit T1");
    let rows = catch_up_to(&db.pool, &runner, 2).await;
    assert_eq!(
        rows,
        vec![(first, 1), (second, 1)],
        "both events, each applied once"
    );

    // Running again applies nothing twice.
    runner.catch_up().await.expect("projector runs");
    assert_eq!(seen(&db.pool).await, vec![(first, 1), (second, 1)]);
}

#[tokio::test]
async fn a_rolled_back_event_is_never_seen_and_does_not_block_the_reader() {
    let db = TestDb::create().await;
    create_seen_table(&db.pool).await;
    let runner = runner(&db.pool, 100);

    let mut doomed = db.pool.begin().await.expect("begin");
    append_probe(&mut *doomed, "gone", 1).await;
    let kept = append_probe(&db.pool, "kept", 1).await;
    doomed.rollback().await.expect("rollback");

    let rows = catch_up_to(&db.pool, &runner, 1).await;
    assert_eq!(rows, vec![(kept, 1)]);
}

#[tokio::test]
async fn the_watermark_stops_below_running_appenders_and_ignores_other_transactions() {
    let db = TestDb::create().await;
    // A slow appender A holds its transaction open.
    let mut slow = db.pool.begin().await.expect("begin A");
    let a = append_probe(&mut *slow, "a", 1).await;
    let slow_xid = transaction_id(&mut slow).await;
    let first = event_log::watermark(&db.pool).await.expect("watermark");
    assert!(
        first <= slow_xid,
        "the watermark stays at or below a running appender"
    );
    // B appends and commits after the watermark; then A commits too, before the read.
    let b = append_probe(&db.pool, "b", 1).await;
    slow.commit().await.expect("commit A");
    let read = event_log::read_below(&db.pool, Position::START, first, None, 100)
        .await
        .expect("read");
    assert!(
        read.is_empty(),
        "nothing at or above the watermark is read, even once committed: {:?}",
        read.iter().map(|e| e.global_position).collect::<Vec<_>>()
    );
    // The next round reads both, A first (its transaction is older), each once.
    let second = event_log::watermark(&db.pool).await.expect("watermark");
    let read = event_log::read_below(&db.pool, Position::START, second, None, 100)
        .await
        .expect("read");
    let positions: Vec<i64> = read.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, vec![a, b]);
    let after = read[1].position();

    // C starts appending after a watermark is taken and commits before the read: not read yet.
    let third = event_log::watermark(&db.pool).await.expect("watermark");
    let c = append_probe(&db.pool, "c", 1).await;
    let read = event_log::read_below(&db.pool, after, third, None, 100)
        .await
        .expect("read");
    assert!(
        read.is_empty(),
        "an append that began after the watermark waits"
    );

    // A transaction that appends nothing (an analyst's, a rebuild's) holds nothing back: D,
    // appended after it began, is read while it stays open.
    let mut analyst = db.pool.begin().await.expect("begin");
    let analyst_xid = transaction_id(&mut analyst).await;
    let d = append_probe(&db.pool, "d", 1).await;
    let fourth = event_log::watermark(&db.pool).await.expect("watermark");
    assert!(
        fourth > analyst_xid,
        "only appenders hold the watermark back ({fourth} <= {analyst_xid})"
    );
    let read = event_log::read_below(&db.pool, after, fourth, None, 100)
        .await
        .expect("read");
    assert_eq!(
        read.iter().map(|e| e.global_position).collect::<Vec<_>>(),
        vec![c, d]
    );
    analyst.rollback().await.expect("rollback");
}

/// The connection's transaction id (assigning one if it has none yet).
async fn transaction_id(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar("select txid_current()")
        .fetch_one(conn)
        .await
        .expect("transaction id")
}
