//! The checkpointed consumer runtime that projectors run on.
//!
//! A [`Projector`] applies events to its tables; its [`ProjectorRunner`] reads a batch from the
//! log, applies it and moves the checkpoint in **one transaction**, so a crash anywhere leaves the
//! read model and its checkpoint in agreement (each event's effect lands exactly once).
//!
//! Only one runner per projector works at a time across every instance: the runner that holds a
//! session-level advisory lock leads; the others follow the checkpoint so that read-your-writes
//! waits work everywhere. The checkpoint row is also locked `FOR UPDATE` in each batch, which keeps
//! even a rebuild from the command line and a live runner from interleaving.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::event_log::{self, Position, StoredEvent};
use crate::metrics::Metrics;

/// Why applying events failed. The batch is rolled back and retried: a projector stalls on an
/// event it cannot apply rather than skipping it.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("cannot decode {event_type} at position {position}: {source}")]
    Decode {
        event_type: String,
        position: i64,
        source: serde_json::Error,
    },
}

impl ProjectionError {
    pub fn decode(event: &StoredEvent, source: serde_json::Error) -> Self {
        ProjectionError::Decode {
            event_type: event.event_type.clone(),
            position: event.global_position,
            source,
        }
    }
}

/// A read model built from the log.
#[async_trait]
pub trait Projector: Send + Sync + 'static {
    /// Stable name: the checkpoint key, and what `projections rebuild NAME` takes.
    fn name(&self) -> &'static str;
    /// The aggregate types whose events it reads (`None`: all of them).
    fn aggregate_types(&self) -> Option<&'static [&'static str]>;
    /// The tables it owns; a rebuild empties them.
    fn tables(&self) -> &'static [&'static str];
    /// Applies one event inside the batch's transaction.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError>;
}

/// How far each projector has got, shared by runners (which publish) and the API (which waits).
#[derive(Clone, Default)]
pub struct ProjectionProgress {
    positions: Arc<HashMap<&'static str, watch::Sender<Position>>>,
}

/// A projector did not reach a position in time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the {projector} read model did not catch up within {timeout:?}")]
pub struct CatchUpTimeout {
    pub projector: &'static str,
    pub timeout: Duration,
}

impl ProjectionProgress {
    pub fn new(names: impl IntoIterator<Item = &'static str>) -> Self {
        let positions = names
            .into_iter()
            .map(|name| (name, watch::channel(Position::START).0))
            .collect();
        Self {
            positions: Arc::new(positions),
        }
    }

    fn sender(&self, name: &str) -> Option<&watch::Sender<Position>> {
        self.positions.get(name)
    }

    pub fn position(&self, name: &str) -> Option<Position> {
        self.sender(name).map(|s| *s.borrow())
    }

    /// Waits until `projector` has applied everything up to `target`.
    pub async fn wait_for(
        &self,
        projector: &'static str,
        target: Position,
        timeout: Duration,
    ) -> Result<(), CatchUpTimeout> {
        let Some(sender) = self.sender(projector) else {
            return Ok(());
        };
        let mut rx = sender.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|at| *at >= target)).await;
        match reached {
            Ok(_) => Ok(()),
            Err(_) => Err(CatchUpTimeout { projector, timeout }),
        }
    }
}

/// Tunables of a runner.
#[derive(Debug, Clone, Copy)]
pub struct RunnerOptions {
    pub batch_size: i64,
    pub poll: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll: Duration::from_millis(500),
        }
    }
}

pub struct ProjectorRunner {
    pool: PgPool,
    projector: Arc<dyn Projector>,
    options: RunnerOptions,
    progress: ProjectionProgress,
    /// Whether the checkpoint row is known to exist (created once, not on every poll).
    checkpoint_ready: AtomicBool,
}

async fn ensure_checkpoint(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("insert into projection_checkpoints (name) values ($1) on conflict do nothing")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

async fn lock_checkpoint(conn: &mut PgConnection, name: &str) -> Result<Position, sqlx::Error> {
    let (tx_id, global_position): (i64, i64) = sqlx::query_as(
        "select tx_id::text::bigint, global_position from projection_checkpoints
          where name = $1 for update",
    )
    .bind(name)
    .fetch_one(conn)
    .await?;
    Ok(Position {
        tx_id,
        global_position,
    })
}

async fn save_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    at: Position,
    applied: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update projection_checkpoints
            set tx_id = $2::text::xid8, global_position = $3,
                events_processed = events_processed + $4, updated_at = now()
          where name = $1",
    )
    .bind(name)
    .bind(at.tx_id.to_string())
    .bind(at.global_position)
    .bind(applied)
    .execute(conn)
    .await?;
    Ok(())
}

/// The stored checkpoint of a consumer (`START` when it has none).
pub async fn checkpoint(pool: &PgPool, name: &str) -> Result<Position, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "select tx_id::text::bigint, global_position from projection_checkpoints where name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map_or(Position::START, |(tx_id, global_position)| Position {
            tx_id,
            global_position,
        }),
    )
}

/// Applies `events` (already read) through `projector`, skipping the types it does not want.
async fn apply_events(
    projector: &dyn Projector,
    conn: &mut PgConnection,
    events: &[StoredEvent],
) -> Result<(), ProjectionError> {
    let wanted = projector.aggregate_types();
    for event in events {
        if wanted.is_none_or(|types| types.contains(&event.aggregate_type.as_str())) {
            projector.apply(conn, event).await?;
        }
    }
    Ok(())
}

fn advisory_key(name: &str) -> String {
    format!("webinar:consumer:{name}")
}

impl ProjectorRunner {
    pub fn new(
        pool: PgPool,
        projector: Arc<dyn Projector>,
        options: RunnerOptions,
        progress: ProjectionProgress,
    ) -> Self {
        Self {
            pool,
            projector,
            options,
            progress,
            checkpoint_ready: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &'static str {
        self.projector.name()
    }

    fn publish(&self, at: Position) {
        if let Some(sender) = self.progress.sender(self.name()) {
            sender.send_if_modified(|current| {
                let newer = at > *current;
                if newer {
                    *current = at;
                }
                newer
            });
        }
        Metrics::global().set(
            "webinar_projector_position",
            "Global position of the last event a projector applied.",
            &[("projector", self.name())],
            at.global_position as f64,
        );
    }

    /// Reads, applies and checkpoints one batch in one transaction. Returns how many events it
    /// read (those of unwanted types included): fewer than the batch size means "caught up".
    pub async fn run_batch(&self) -> Result<usize, ProjectionError> {
        let name = self.name();
        if !self.checkpoint_ready.load(Ordering::Relaxed) {
            ensure_checkpoint(&self.pool, name).await?;
            self.checkpoint_ready.store(true, Ordering::Relaxed);
        }
        let mut tx = self.pool.begin().await?;
        let from = lock_checkpoint(&mut tx, name).await?;
        let events = event_log::read_after(
            &mut *tx,
            from,
            self.projector.aggregate_types(),
            self.options.batch_size,
        )
        .await?;
        let Some(last) = events.last().map(StoredEvent::position) else {
            tx.rollback().await?;
            self.publish(from);
            return Ok(0);
        };
        apply_events(self.projector.as_ref(), &mut tx, &events).await?;
        save_checkpoint(&mut tx, name, last, events.len() as i64).await?;
        tx.commit().await?;
        Metrics::global().add(
            "webinar_projector_events_total",
            "Events read by a projector.",
            &[("projector", name)],
            events.len() as f64,
        );
        self.publish(last);
        Ok(events.len())
    }

    /// Runs batches until the log's final prefix is exhausted.
    pub async fn catch_up(&self) -> Result<usize, ProjectionError> {
        let mut total = 0;
        loop {
            let read = self.run_batch().await?;
            total += read;
            if read < self.options.batch_size as usize {
                return Ok(total);
            }
        }
    }

    /// Leads when it can, follows otherwise, until `cancel`; stops only between batches.
    pub async fn run(self, wake: watch::Receiver<u64>, cancel: CancellationToken) {
        run_led(&self, wake, cancel).await;
    }
}

#[async_trait]
impl Stepper for ProjectorRunner {
    fn name(&self) -> &'static str {
        self.projector.name()
    }
    fn pool(&self) -> &PgPool {
        &self.pool
    }
    fn options(&self) -> RunnerOptions {
        self.options
    }
    async fn step(&self) -> Result<usize, String> {
        self.run_batch().await.map_err(|e| e.to_string())
    }
    fn follow(&self, at: Position) {
        self.publish(at);
    }
}

/// What the leadership loop drives: a projector runner or a reactor runner.
#[async_trait]
trait Stepper: Send + Sync {
    fn name(&self) -> &'static str;
    fn pool(&self) -> &PgPool;
    fn options(&self) -> RunnerOptions;
    /// One batch; returns how many events it read.
    async fn step(&self) -> Result<usize, String>;
    /// Told where the leader's checkpoint is, when this instance does not lead.
    fn follow(&self, at: Position);
}

/// A session advisory lock held on a connection of its own (not the pool's: a held lock must not
/// starve the pool). Closing the connection, or losing it, releases the lock.
pub struct LeaderLock {
    conn: PgConnection,
}

impl LeaderLock {
    /// Takes the lock named `key` if nobody holds it.
    pub async fn try_acquire(pool: &PgPool, key: &str) -> Result<Option<LeaderLock>, sqlx::Error> {
        use sqlx::Connection;
        let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
        let locked: bool =
            sqlx::query_scalar("select pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(key)
                .fetch_one(&mut conn)
                .await?;
        if locked {
            Ok(Some(LeaderLock { conn }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Whether the connection (and so the lock) is still there.
    pub async fn is_held(&mut self) -> bool {
        sqlx::query("select 1")
            .execute(&mut self.conn)
            .await
            .is_ok()
    }

    pub async fn release(self) {
        use sqlx::Connection;
        let _ = self.conn.close().await;
    }
}

/// One leader per consumer across instances (a session advisory lock); followers track the
/// checkpoint. Stops only between batches.
async fn run_led(runner: &dyn Stepper, mut wake: watch::Receiver<u64>, cancel: CancellationToken) {
    let name = runner.name();
    let options = runner.options();
    let pool = runner.pool().clone();
    let mut leader: Option<LeaderLock> = None;
    let mut failures: u32 = 0;
    while !cancel.is_cancelled() {
        if leader.is_none() {
            match LeaderLock::try_acquire(&pool, &advisory_key(name)).await {
                Ok(Some(lock)) => {
                    tracing::info!(consumer = name, "runner leads");
                    leader = Some(lock);
                }
                Ok(None) => {
                    if let Ok(at) = checkpoint(&pool, name).await {
                        runner.follow(at);
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(options.poll) => continue,
                    }
                }
                Err(error) => {
                    tracing::warn!(consumer = name, %error, "cannot take the runner lock");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(options.poll * 4) => continue,
                    }
                }
            }
        }
        match runner.step().await {
            Ok(read) if read >= options.batch_size as usize => {
                failures = 0;
                continue;
            }
            Ok(_) => {
                failures = 0;
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(options.poll) => {}
                }
                // A leader whose lock connection died no longer leads.
                if let Some(lock) = leader.as_mut() {
                    if !lock.is_held().await {
                        tracing::warn!(consumer = name, "lost the runner lock connection");
                        leader = None;
                    }
                }
            }
            Err(error) => {
                failures += 1;
                Metrics::global().inc(
                    "webinar_consumer_failures_total",
                    "Batches a projector or reactor failed to handle (retried).",
                    &[("consumer", name)],
                );
                tracing::error!(consumer = name, %error, failures, "batch failed; retrying");
                let backoff = Duration::from_millis(200 * 2u64.pow(failures.min(7)));
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff.min(Duration::from_secs(30))) => {}
                }
            }
        }
    }
    if let Some(lock) = leader.take() {
        lock.release().await;
    }
    tracing::info!(consumer = name, "runner stopped");
}

/// Something that acts on the outside world for events: calls SIPMediaGW, BBB, … At least once:
/// `react` must make its effect idempotent (typically by checking the aggregate's state first).
#[async_trait]
pub trait Reactor: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn aggregate_types(&self) -> Option<&'static [&'static str]>;
    /// Handles one event. An error stops the runner at this event and retries it after a pause.
    async fn react(&self, event: &StoredEvent) -> Result<(), String>;
}

/// Runs a reactor: one event at a time, checkpoint after each, so a restart resumes at the first
/// event whose effect was not recorded as done.
pub struct ReactorRunner {
    pool: PgPool,
    reactor: Arc<dyn Reactor>,
    options: RunnerOptions,
    checkpoint_ready: AtomicBool,
}

impl ReactorRunner {
    pub fn new(pool: PgPool, reactor: Arc<dyn Reactor>, options: RunnerOptions) -> Self {
        Self {
            pool,
            reactor,
            options,
            checkpoint_ready: AtomicBool::new(false),
        }
    }

    /// Handles the next batch; returns how many events it read.
    pub async fn run_batch(&self) -> Result<usize, String> {
        let name = self.reactor.name();
        if !self.checkpoint_ready.load(Ordering::Relaxed) {
            ensure_checkpoint(&self.pool, name)
                .await
                .map_err(|e| e.to_string())?;
            self.checkpoint_ready.store(true, Ordering::Relaxed);
        }
        let from = checkpoint(&self.pool, name)
            .await
            .map_err(|e| e.to_string())?;
        let wanted = self.reactor.aggregate_types();
        let events = event_log::read_after(&self.pool, from, wanted, self.options.batch_size)
            .await
            .map_err(|e| e.to_string())?;
        // Checkpoint after every event acted on (its effect is done), and once at the end for the
        // events skipped: catching up over other aggregates' history costs one write per batch.
        let mut pending = None;
        for event in &events {
            if wanted.is_none_or(|types| types.contains(&event.aggregate_type.as_str())) {
                self.reactor.react(event).await?;
                self.save(event.position()).await?;
                pending = None;
            } else {
                pending = Some(event.position());
            }
        }
        if let Some(at) = pending {
            self.save(at).await?;
        }
        Ok(events.len())
    }

    async fn save(&self, at: Position) -> Result<(), String> {
        let mut conn = self.pool.acquire().await.map_err(|e| e.to_string())?;
        save_checkpoint(&mut conn, self.reactor.name(), at, 1)
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn run(self, wake: watch::Receiver<u64>, cancel: CancellationToken) {
        run_led(&self, wake, cancel).await;
    }
}

#[async_trait]
impl Stepper for ReactorRunner {
    fn name(&self) -> &'static str {
        self.reactor.name()
    }
    fn pool(&self) -> &PgPool {
        &self.pool
    }
    fn options(&self) -> RunnerOptions {
        self.options
    }
    async fn step(&self) -> Result<usize, String> {
        self.run_batch().await
    }
    fn follow(&self, _at: Position) {}
}

/// Empties a projector's tables and replays the whole log into them, in one transaction: readers
/// see the old read model until the new one is complete, and a live runner waits on the checkpoint
/// row meanwhile. Calls `on_progress(applied, total)` after every batch. Returns the events read.
pub async fn rebuild(
    pool: &PgPool,
    projector: &dyn Projector,
    batch_size: i64,
    on_progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, ProjectionError> {
    let name = projector.name();
    ensure_checkpoint(pool, name).await?;
    let total: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(pool)
        .await?;
    let mut tx = pool.begin().await?;
    lock_checkpoint(&mut tx, name).await?;
    // Subscribers need no news of a replay: projectors skip their notifications while this is on.
    sqlx::query("set local webinar.rebuilding = 'on'")
        .execute(&mut *tx)
        .await?;
    let tables = projector.tables();
    if !tables.is_empty() {
        sqlx::query(&format!("truncate {}", tables.join(", ")))
            .execute(&mut *tx)
            .await?;
    }
    let mut at = Position::START;
    let mut done: u64 = 0;
    loop {
        let events =
            event_log::read_after(&mut *tx, at, projector.aggregate_types(), batch_size).await?;
        let Some(last) = events.last().map(StoredEvent::position) else {
            break;
        };
        apply_events(projector, &mut tx, &events).await?;
        at = last;
        done += events.len() as u64;
        on_progress(done, total.max(0) as u64);
    }
    sqlx::query(
        "update projection_checkpoints
            set tx_id = $2::text::xid8, global_position = $3, events_processed = $4,
                updated_at = now()
          where name = $1",
    )
    .bind(name)
    .bind(at.tx_id.to_string())
    .bind(at.global_position)
    .bind(done as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done)
}
