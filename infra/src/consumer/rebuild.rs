//! Blue/green rebuilds. A projector's tables are rebuilt as shadow copies in a schema of their own
//! (`rebuild_<name>`): the projector's SQL is unchanged, the rebuild's connection simply has the
//! shadow schema first in its `search_path`. The log is replayed into them in short committed
//! batches (secondary indexes are built after the bulk of it); then one short transaction applies
//! the last few events, swaps the shadow tables in for the live ones and moves the checkpoint
//! with them. The live model serves the whole time, and the live runner only waits for the swap.
//! An interrupted rebuild leaves the live model untouched: running it again resumes where it
//! stopped; [`discard`] drops it.

use sqlx::{Connection, PgConnection, PgPool};

use super::projector::apply_events;
use super::{checkpoint, ProjectionError, Projector};
use crate::event_log::{self, Position};

fn shadow_schema(projector: &dyn Projector) -> String {
    format!("rebuild_{}", projector.name())
}

fn retired_schema(projector: &dyn Projector) -> String {
    format!("retired_{}", projector.name())
}

fn shadow_checkpoint(projector: &dyn Projector) -> String {
    format!("{}@rebuild", projector.name())
}

/// An index of a live table, to be made again on its shadow.
#[derive(sqlx::FromRow)]
struct IndexOf {
    name: String,
    definition: String,
    unique: bool,
    /// The constraint it backs, if any, and its kind (`p`rimary key or `u`nique).
    constraint: Option<String>,
    kind: Option<String>,
}

async fn indexes_of(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<IndexOf>, sqlx::Error> {
    sqlx::query_as(
        "select i.relname as name, pg_get_indexdef(x.indexrelid) as definition,
                x.indisunique as unique, c.conname as constraint, c.contype::text as kind
           from pg_index x
           join pg_class i on i.oid = x.indexrelid
           join pg_class t on t.oid = x.indrelid
           join pg_namespace n on n.oid = t.relnamespace
           left join pg_constraint c on c.conindid = x.indexrelid and c.contype in ('p', 'u')
          where n.nspname = $1 and t.relname = $2
          order by i.relname",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(conn)
    .await
}

/// The same index on the shadow table.
fn on_shadow(index: &IndexOf, live: &str, shadow: &str, table: &str) -> String {
    index.definition.replacen(
        &format!(" ON {live}.{table} "),
        &format!(" ON {shadow}.{table} "),
        1,
    )
}

/// Creates the shadow tables (with the indexes that back upserts), unless a resumable rebuild
/// exists. Returns whether it resumes.
async fn prepare(
    conn: &mut PgConnection,
    pool: &PgPool,
    projector: &dyn Projector,
    live: &str,
) -> Result<bool, ProjectionError> {
    let shadow = shadow_schema(projector);
    let resumable: bool = sqlx::query_scalar(
        "select exists (select 1 from pg_namespace where nspname = $1)
            and exists (select 1 from projection_checkpoints where name = $2)",
    )
    .bind(&shadow)
    .bind(shadow_checkpoint(projector))
    .fetch_one(&mut *conn)
    .await?;
    if resumable {
        return Ok(true);
    }
    sqlx::query(&format!("drop schema if exists {shadow} cascade"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!("create schema {shadow}"))
        .execute(&mut *conn)
        .await?;
    for table in projector.tables() {
        sqlx::query(&format!(
            "create table {shadow}.{table} (like {live}.{table} including defaults
                including constraints including generated including identity including storage)"
        ))
        .execute(&mut *conn)
        .await?;
        // Only the indexes behind constraints (the upserts' conflict targets) are kept up during
        // the bulk; the others are built once it is in.
        for index in indexes_of(conn, live, table).await? {
            if !index.unique || index.constraint.is_none() {
                continue;
            }
            sqlx::query(&on_shadow(&index, live, &shadow, table))
                .execute(&mut *conn)
                .await?;
            if let (Some(constraint), Some(kind)) = (&index.constraint, &index.kind) {
                let kind = if kind == "p" { "primary key" } else { "unique" };
                sqlx::query(&format!(
                    "alter table {shadow}.{table} add constraint {constraint} {kind} using index {}",
                    index.name
                ))
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    let name = shadow_checkpoint(projector);
    sqlx::query("delete from projection_checkpoints where name = $1")
        .bind(&name)
        .execute(pool)
        .await?;
    checkpoint::ensure(pool, &name).await?;
    Ok(false)
}

/// The indexes only reads need, built once the bulk of the rows is in (much faster than
/// maintaining them row by row), two at a time on two connections.
async fn finish_indexes(
    conn: &mut PgConnection,
    pool: &PgPool,
    projector: &dyn Projector,
    live: &str,
) -> Result<(), sqlx::Error> {
    let shadow = shadow_schema(projector);
    let mut missing = Vec::new();
    for table in projector.tables() {
        let built: Vec<String> = indexes_of(conn, &shadow, table)
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect();
        for index in indexes_of(conn, live, table).await? {
            if !built.contains(&index.name) {
                missing.push(on_shadow(&index, live, &shadow, table));
            }
        }
    }
    if missing.len() < 2 {
        for statement in &missing {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        return Ok(());
    }
    let queue = std::sync::Mutex::new(missing);
    let mut second = PgConnection::connect_with(&pool.connect_options()).await?;
    let (first, other) = tokio::join!(build_from(conn, &queue), build_from(&mut second, &queue));
    let _ = second.close().await;
    first.and(other)
}

/// Runs the statements of `queue` until it is empty.
async fn build_from(
    conn: &mut PgConnection,
    queue: &std::sync::Mutex<Vec<String>>,
) -> Result<(), sqlx::Error> {
    loop {
        let Some(statement) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop() else {
            return Ok(());
        };
        sqlx::query(&statement).execute(&mut *conn).await?;
    }
}

/// Applies the log after the shadow checkpoint, one committed batch at a time (or, inside the
/// swap, within the caller's transaction). The next batch is read and decoded (on another
/// connection, in a task of its own) while the current one is applied. Returns the events read.
async fn replay(
    conn: &mut PgConnection,
    pool: &PgPool,
    projector: &dyn Projector,
    batch_size: i64,
    in_transaction: bool,
    on_batch: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, ProjectionError> {
    let name = shadow_checkpoint(projector);
    let wanted = projector.aggregate_types();
    let at = checkpoint::checkpoint(&mut *conn, &name).await?;
    let mut events = event_log::read_after(pool, at, wanted, batch_size).await?;
    let mut done = 0;
    loop {
        let Some(last) = events.last().map(|e| e.position()) else {
            return Ok(done);
        };
        let read = events.len() as i64;
        let next = (read >= batch_size).then(|| {
            let pool = pool.clone();
            tokio::spawn(
                async move { event_log::read_after(&pool, last, wanted, batch_size).await },
            )
        });
        if in_transaction {
            apply_events(projector, conn, events, false).await?;
            checkpoint::save(&mut *conn, &name, last, read, false).await?;
        } else {
            let mut tx = conn.begin().await?;
            checkpoint::lock(&mut tx, &name).await?;
            apply_events(projector, &mut tx, events, false).await?;
            checkpoint::save(&mut *tx, &name, last, read, false).await?;
            tx.commit().await?;
        }
        done += read as u64;
        on_batch(read as u64);
        events = match next {
            None => Vec::new(),
            Some(task) => task
                .await
                .map_err(|e| ProjectionError::InvalidRow(format!("reading the log: {e}")))??,
        };
    }
}

/// Swaps the shadow tables in, after the last events, in one short transaction.
async fn swap(
    conn: &mut PgConnection,
    pool: &PgPool,
    projector: &dyn Projector,
    live: &str,
    batch_size: i64,
) -> Result<(), ProjectionError> {
    let (shadow, retired) = (shadow_schema(projector), retired_schema(projector));
    let name = projector.name();
    checkpoint::ensure(pool, name).await?;
    let mut tx = conn.begin().await?;
    // Never queue for long behind a reader: a rebuild may try again, a reader should not wait.
    sqlx::query("set local lock_timeout = '5s'")
        .execute(&mut *tx)
        .await?;
    // The live runner waits here until the swap is done, then goes on from the new checkpoint.
    checkpoint::lock(&mut tx, name).await?;
    replay(&mut tx, pool, projector, batch_size, true, &mut |_| {}).await?;
    let at = checkpoint::checkpoint(&mut *tx, &shadow_checkpoint(projector)).await?;
    let applied: i64 =
        sqlx::query_scalar("select events_processed from projection_checkpoints where name = $1")
            .bind(shadow_checkpoint(projector))
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query(&format!("create schema if not exists {retired}"))
        .execute(&mut *tx)
        .await?;
    for table in projector.tables() {
        sqlx::query(&format!("alter table {live}.{table} set schema {retired}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("alter table {shadow}.{table} set schema {live}"))
            .execute(&mut *tx)
            .await?;
    }
    checkpoint::save(&mut *tx, name, at, applied, true).await?;
    sqlx::query("delete from projection_checkpoints where name = $1")
        .bind(shadow_checkpoint(projector))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    sqlx::query(&format!("drop schema {retired} cascade"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!("drop schema {shadow} cascade"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Rebuilds `projector`'s tables from the whole log beside the live ones and swaps them in (or
/// resumes an interrupted rebuild). Calls `on_progress(applied, total)` after every batch.
/// Returns the events read.
pub async fn rebuild(
    pool: &PgPool,
    projector: &dyn Projector,
    batch_size: i64,
    on_progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, ProjectionError> {
    let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
    let live: String = sqlx::query_scalar("select current_schema()")
        .fetch_one(&mut conn)
        .await?;
    // A batch committed to the shadow and lost in a crash is simply replayed again (its checkpoint
    // is lost with it): the rebuild need not wait for each commit to reach the disk.
    sqlx::query("set synchronous_commit = off")
        .execute(&mut conn)
        .await?;
    let resumed = prepare(&mut conn, pool, projector, &live).await?;
    let shadow = shadow_schema(projector);
    // The projector's unqualified table names now mean the shadow's (`events` is found further on).
    sqlx::query(&format!("set search_path to {shadow}, {live}"))
        .execute(&mut conn)
        .await?;
    let total = event_log::total(pool).await?.max(0) as u64;
    let mut done = if resumed {
        checkpoint::checkpoints(pool)
            .await?
            .into_iter()
            .find(|c| c.name == shadow_checkpoint(projector))
            .map_or(0, |c| c.events_processed.max(0) as u64)
    } else {
        0
    };
    let mut progress = |read: u64| {
        done += read;
        on_progress(done, total.max(done));
    };
    let phase = std::time::Instant::now();
    replay(&mut conn, pool, projector, batch_size, false, &mut progress).await?;
    tracing::info!(
        projector = projector.name(),
        seconds = phase.elapsed().as_secs_f64(),
        "rebuild: log replayed into the shadow tables"
    );
    let phase = std::time::Instant::now();
    finish_indexes(&mut conn, pool, projector, &live).await?;
    tracing::info!(
        projector = projector.name(),
        seconds = phase.elapsed().as_secs_f64(),
        "rebuild: shadow indexes built"
    );
    // Whatever arrived while the indexes were built, in committed batches, before the swap.
    replay(&mut conn, pool, projector, batch_size, false, &mut progress).await?;
    let phase = std::time::Instant::now();
    swap(&mut conn, pool, projector, &live, batch_size).await?;
    tracing::info!(
        projector = projector.name(),
        seconds = phase.elapsed().as_secs_f64(),
        "rebuild: shadow swapped in"
    );
    let _ = conn.close().await;
    Ok(done)
}

/// Drops an interrupted rebuild of `projector`; returns whether there was one.
pub async fn discard(pool: &PgPool, projector: &dyn Projector) -> Result<bool, sqlx::Error> {
    let shadow = shadow_schema(projector);
    let existed: bool =
        sqlx::query_scalar("select exists (select 1 from pg_namespace where nspname = $1)")
            .bind(&shadow)
            .fetch_one(pool)
            .await?;
    sqlx::query(&format!("drop schema if exists {shadow} cascade"))
        .execute(pool)
        .await?;
    sqlx::query("delete from projection_checkpoints where name = $1")
        .bind(shadow_checkpoint(projector))
        .execute(pool)
        .await?;
    Ok(existed)
}

/// Where an interrupted rebuild of `projector` stands, if there is one.
pub async fn pending(
    pool: &PgPool,
    projector: &dyn Projector,
) -> Result<Option<Position>, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from projection_checkpoints where name = $1)")
            .bind(shadow_checkpoint(projector))
            .fetch_one(pool)
            .await?;
    if !exists {
        return Ok(None);
    }
    checkpoint::checkpoint(pool, &shadow_checkpoint(projector))
        .await
        .map(Some)
}
