//! Runs a reactor: the events it wants, one at a time, in log order, the checkpoint moved past
//! each once the reactor says its effect is done (or given up). A restart resumes at the first
//! event whose effect was not recorded as done; reactors make their effects idempotent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::leader::{run_led, Led, RunnerOptions, Step};
use super::{checkpoint, wants, ConsumerError};
use crate::error::CommandError;
use crate::event_log::{self, Position, StoredEvent};
use crate::metrics;

/// What a reactor made of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// The effect is done (or was not needed): move on.
    Done,
    /// Not yet: show me this event again at `when` (`why` is logged).
    RetryAt(DateTime<Utc>, String),
    /// It cannot be done, and trying again will not help (`why` is logged and counted).
    GiveUp(String),
}

/// What keeps a reactor from deciding at all (the database, typically): the event is retried after
/// a pause that grows while the failures last.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Something that acts on the outside world for events: calls SIPMediaGW, BBB, … At least once:
/// `react` must make its effect idempotent (typically by checking the aggregate's state first).
#[async_trait]
pub trait Reactor: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn aggregate_types(&self) -> Option<&'static [&'static str]>;
    async fn react(&self, event: &StoredEvent) -> Result<Reaction, ReactorError>;
}

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

    /// Handles the next batch: how far it got.
    pub async fn run_batch(&self) -> Result<Step, ConsumerError> {
        let name = self.reactor.name();
        if !self.checkpoint_ready.load(Ordering::Relaxed) {
            checkpoint::ensure(&self.pool, name).await?;
            self.checkpoint_ready.store(true, Ordering::Relaxed);
        }
        let from = checkpoint::checkpoint(&self.pool, name).await?;
        let types = self.reactor.aggregate_types();
        let events =
            event_log::read_after(&self.pool, from, types, self.options.batch_size).await?;
        // Checkpoint after every event acted on (its effect is done), and once at the end for the
        // events skipped: catching up over other aggregates' history costs one write per batch.
        let mut skipped = None;
        for event in &events {
            if !wants(types, event) {
                skipped = Some(event.position());
                continue;
            }
            match self.reactor.react(event).await? {
                Reaction::Done => {}
                Reaction::GiveUp(why) => {
                    ::metrics::counter!(metrics::REACTOR_GIVE_UPS, "reactor" => name).increment(1);
                    tracing::error!(
                        reactor = name,
                        position = event.global_position,
                        event_type = %event.event_type,
                        why,
                        "gave up on an event"
                    );
                }
                Reaction::RetryAt(when, why) => {
                    if let Some(at) = skipped {
                        self.save(at).await?;
                    }
                    tracing::info!(reactor = name, position = event.global_position, %when, why, "retrying later");
                    let wait = (when - Utc::now()).to_std().unwrap_or_default();
                    return Ok(Step::WaitUntil(tokio::time::Instant::now() + wait));
                }
            }
            self.save(event.position()).await?;
            skipped = None;
        }
        if let Some(at) = skipped {
            self.save(at).await?;
        }
        Ok(if events.len() >= self.options.batch_size as usize {
            Step::More
        } else {
            Step::CaughtUp
        })
    }

    async fn save(&self, at: Position) -> Result<(), sqlx::Error> {
        checkpoint::save(&self.pool, self.reactor.name(), at, 1, false).await
    }

    pub async fn run(self, wake: watch::Receiver<u64>, cancel: CancellationToken) {
        run_led(&self, wake, cancel).await;
    }
}

#[async_trait]
impl Led for ReactorRunner {
    fn name(&self) -> &'static str {
        self.reactor.name()
    }
    fn pool(&self) -> &PgPool {
        &self.pool
    }
    fn poll(&self) -> std::time::Duration {
        self.options.poll
    }
    async fn step(&self) -> Result<Step, ConsumerError> {
        self.run_batch().await
    }
}
