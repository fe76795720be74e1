//! The checkpointed consumer runtime that projectors and reactors run on.
//!
//! - [`Projector`]s build read models: a [`ProjectorRunner`] reads a batch from the log (outside
//!   any transaction), then applies it set-based and moves the checkpoint in **one short
//!   transaction**, so each event's effect lands exactly once.
//! - [`Reactor`]s act on the outside world: a [`ReactorRunner`] takes the events they want into
//!   durable work, by lane (one webinar's events in order, different webinars concurrently), and
//!   keeps each until its [`Reaction`] says the effect is done or given up; a reactor asks to see an
//!   event again later with [`Reaction::RetryAt`], which holds up nobody else.
//! - One instance leads each consumer across the cluster, its locks on one connection
//!   ([`leader`]); the others follow.
//! - [`progress`] lets a request wait until the read models include its own writes.
//! - [`rebuild`] replays the log into shadow copies of a projector's tables, in short batches, and
//!   swaps them in: the live model serves meanwhile.

mod checkpoint;
pub mod leader;
pub mod progress;
mod projector;
mod reactor;
pub mod rebuild;

use async_trait::async_trait;
use sqlx::PgConnection;

pub use checkpoint::{checkpoint, checkpoints, Checkpoint};
pub use leader::{Leadership, RunnerOptions};
pub use progress::{CatchUpTimeout, ProjectionProgress};
pub use projector::ProjectorRunner;
pub use reactor::{Delivery, Reaction, Reactor, ReactorError, ReactorOptions, ReactorRunner};
pub use rebuild::{discard as discard_rebuild, pending as pending_rebuild, rebuild};

use crate::event_log::StoredEvent;

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
    /// A stored row that breaks the model's own invariants.
    #[error("invalid row: {0}")]
    InvalidRow(String),
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
    /// The tables it owns: a rebuild builds a shadow copy of each and swaps them in. Its SQL
    /// names them unqualified, so that the same code writes to the shadow (`search_path`).
    fn tables(&self) -> &'static [&'static str];
    /// Applies a batch of events (of its aggregate types, in log order) inside the batch's
    /// transaction, set-based: decoded in memory, folded per row, written with multi-row
    /// statements. `announce`: tell subscribers which rows changed (not during a rebuild).
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        announce: bool,
    ) -> Result<(), ProjectionError>;
}

/// Whether `consumer` reads events of `event`'s aggregate type.
fn wants(types: Option<&[&str]>, event: &StoredEvent) -> bool {
    types.is_none_or(|types| types.contains(&event.aggregate_type.as_str()))
}

/// Why a batch of a consumer failed (it is retried after a pause).
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(transparent)]
    Reactor(#[from] ReactorError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}
