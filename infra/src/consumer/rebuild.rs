//! Rebuilding a read model: empty the projector's tables and replay the whole log into them.

use sqlx::PgPool;

use super::projector::apply_events;
use super::{checkpoint, ProjectionError, Projector};
use crate::event_log::{self, Position, StoredEvent};

/// Empties a projector's tables and replays the whole log into them, in one transaction: a live
/// runner waits on the checkpoint row meanwhile. Calls `on_progress(applied, total)` after every
/// batch. Returns the events read.
pub async fn rebuild(
    pool: &PgPool,
    projector: &dyn Projector,
    batch_size: i64,
    on_progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, ProjectionError> {
    let name = projector.name();
    checkpoint::ensure(pool, name).await?;
    let total = event_log::total(pool).await?;
    let mut tx = pool.begin().await?;
    checkpoint::lock(&mut tx, name).await?;
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
    checkpoint::save(&mut *tx, name, at, done as i64, true).await?;
    tx.commit().await?;
    Ok(done)
}
