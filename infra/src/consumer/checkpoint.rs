//! Where each consumer has got to in the log: a row of `projection_checkpoints`, the pair
//! `(tx_id, global_position)` of the last event whose effect is done.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::event_log::Position;

/// Creates `name`'s row if it has none.
pub(super) async fn ensure(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("insert into projection_checkpoints (name) values ($1) on conflict do nothing")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// Reads and locks `name`'s row for the rest of the transaction (a rebuild and a runner never
/// interleave).
pub(super) async fn lock(conn: &mut PgConnection, name: &str) -> Result<Position, sqlx::Error> {
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

/// Moves `name` to `at`, counting `applied` more events (or setting the count, for a rebuild).
pub(super) async fn save<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
    at: Position,
    applied: i64,
    replace_count: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update projection_checkpoints
            set tx_id = $2::text::xid8, global_position = $3,
                events_processed = case when $5 then $4 else events_processed + $4 end,
                updated_at = now()
          where name = $1",
    )
    .bind(name)
    .bind(at.tx_id.to_string())
    .bind(at.global_position)
    .bind(applied)
    .bind(replace_count)
    .execute(executor)
    .await?;
    Ok(())
}

/// The stored checkpoint of a consumer (`START` when it has none).
pub async fn checkpoint<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
) -> Result<Position, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "select tx_id::text::bigint, global_position from projection_checkpoints where name = $1",
    )
    .bind(name)
    .fetch_optional(executor)
    .await?;
    Ok(
        row.map_or(Position::START, |(tx_id, global_position)| Position {
            tx_id,
            global_position,
        }),
    )
}

/// One consumer's checkpoint, for operators.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Checkpoint {
    pub name: String,
    pub global_position: i64,
    pub events_processed: i64,
    pub updated_at: DateTime<Utc>,
}

/// Every consumer's checkpoint.
pub async fn checkpoints(pool: &PgPool) -> Result<Vec<Checkpoint>, sqlx::Error> {
    sqlx::query_as(
        "select name, global_position, events_processed, updated_at
           from projection_checkpoints order by name",
    )
    .fetch_all(pool)
    .await
}
