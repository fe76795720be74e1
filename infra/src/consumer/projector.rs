//! Runs a projector: a batch of events applied and the checkpoint moved in one transaction.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::leader::{run_led, Cause, Led, RunnerOptions, Step};
use super::{checkpoint, wants, ConsumerError, ProjectionError, ProjectionProgress, Projector};
use crate::event_log::{Position, StoredEvent, Watermarks};
use crate::metrics;

pub struct ProjectorRunner {
    pool: PgPool,
    projector: Arc<dyn Projector>,
    options: RunnerOptions,
    progress: ProjectionProgress,
    /// Whether the checkpoint row is known to exist (created once, not on every poll).
    checkpoint_ready: AtomicBool,
    /// The checkpoint as this runner last committed it, while it leads: not read again before
    /// each batch. The batch transaction still locks and compares the stored one, so a rebuild's
    /// swap or another leader is noticed (and this forgotten).
    committed: Mutex<Option<Position>>,
    watermarks: Watermarks,
}

/// Applies `events` (already read) through `projector`, without the types it does not want.
pub(super) async fn apply_events(
    projector: &dyn Projector,
    conn: &mut PgConnection,
    mut events: Vec<StoredEvent>,
    announce: bool,
) -> Result<(), ProjectionError> {
    let types = projector.aggregate_types();
    events.retain(|event| wants(types, event));
    if events.is_empty() {
        return Ok(());
    }
    projector.apply_batch(conn, &events, announce).await
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
            committed: Mutex::new(None),
            watermarks: Watermarks::default(),
        }
    }

    /// Shares the log's watermark with the instance's other consumers.
    pub fn sharing(mut self, watermarks: Watermarks) -> Self {
        self.watermarks = watermarks;
        self
    }

    fn committed(&self) -> std::sync::MutexGuard<'_, Option<Position>> {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn name(&self) -> &'static str {
        self.projector.name()
    }

    fn publish(&self, at: Position) {
        self.progress.publish(self.name(), at);
        ::metrics::gauge!(metrics::PROJECTOR_POSITION, "projector" => self.name())
            .set(at.global_position as f64);
    }

    /// Reads a batch (outside any transaction: it takes no transaction id and holds no lock), then
    /// applies it and moves the checkpoint in one short transaction. Returns how many events it
    /// read (those of unwanted types included): fewer than the batch size means "caught up".
    #[tracing::instrument(name = "projector_batch", skip_all, fields(projector = self.name()))]
    pub async fn run_batch(&self) -> Result<usize, ProjectionError> {
        let name = self.name();
        let started = Instant::now();
        if !self.checkpoint_ready.load(Ordering::Relaxed) {
            checkpoint::ensure(&self.pool, name).await?;
            self.checkpoint_ready.store(true, Ordering::Relaxed);
        }
        // Taken: put back only once the batch's outcome is known.
        let known = self.committed().take();
        let from = match known {
            Some(at) => at,
            None => checkpoint::checkpoint(&self.pool, name).await?,
        };
        let events = self
            .watermarks
            .read_after(
                &self.pool,
                from,
                self.projector.aggregate_types(),
                self.options.batch_size,
            )
            .await?;
        let Some(last) = events.last().map(StoredEvent::position) else {
            *self.committed() = Some(from);
            self.publish(from);
            return Ok(0);
        };
        let mut tx = self.pool.begin().await?;
        if checkpoint::lock(&mut tx, name).await? != from {
            // Someone else moved it meanwhile (a rebuild swapped its tables in): read again.
            tx.rollback().await?;
            return Ok(self.options.batch_size as usize);
        }
        let read = events.len();
        apply_events(self.projector.as_ref(), &mut tx, events, true).await?;
        checkpoint::save(&mut *tx, name, last, read as i64, false).await?;
        tx.commit().await?;
        *self.committed() = Some(last);
        ::metrics::counter!(metrics::PROJECTOR_EVENTS, "projector" => name).increment(read as u64);
        ::metrics::histogram!(metrics::PROJECTOR_BATCH_DURATION, "projector" => name)
            .record(started.elapsed().as_secs_f64());
        self.publish(last);
        Ok(read)
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

    /// Leads while this instance leads it, follows otherwise, until `cancel`; stops only between
    /// batches.
    pub async fn run(
        self,
        leads: watch::Receiver<bool>,
        wake: watch::Receiver<u64>,
        cancel: CancellationToken,
    ) {
        run_led(&self, leads, wake, cancel).await;
    }
}

#[async_trait]
impl Led for ProjectorRunner {
    fn name(&self) -> &'static str {
        self.projector.name()
    }
    fn poll(&self) -> std::time::Duration {
        self.options.poll
    }
    async fn step(&self, _cause: Cause) -> Result<Step, ConsumerError> {
        let read = self.run_batch().await?;
        Ok(if read >= self.options.batch_size as usize {
            Step::More
        } else {
            Step::CaughtUp
        })
    }
    fn stepped_down(&self) {
        self.committed().take();
    }
    /// Publishes the leader's checkpoint, so that read-your-writes waits work here too.
    async fn follow(&self) {
        if let Ok(at) = checkpoint::checkpoint(&self.pool, self.name()).await {
            self.publish(at);
        }
    }
}
