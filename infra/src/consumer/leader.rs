//! One leader per consumer across instances, and the loop every consumer runs in.
//!
//! The instance whose session holds a consumer's advisory lock leads it: it does the work, one
//! [`Led::step`] at a time. The others follow (projectors publish the leader's checkpoint, so that
//! read-your-writes waits work on every instance) and try to take over when the lock is free. The
//! lock lives on a connection of its own: losing the connection releases it.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ConsumerError;
use crate::metrics;

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

/// What one step of work found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// There is more to do right away.
    More,
    /// Caught up: wait for news (a commit to the log, when the consumer listens) or the poll.
    CaughtUp,
    /// Nothing to do before this instant (a reactor asked to see an event again later).
    WaitUntil(Instant),
}

/// Something the leadership loop drives: a projector runner, a reactor runner, the meeting
/// watcher.
#[async_trait]
pub trait Led: Send + Sync {
    fn name(&self) -> &'static str;
    fn pool(&self) -> &PgPool;
    /// How long to wait when caught up and nothing wakes it.
    fn poll(&self) -> Duration;
    /// Whether a commit to the event log wakes it early.
    fn wakes_on_log(&self) -> bool {
        true
    }
    /// One unit of work, while this instance leads.
    async fn step(&self) -> Result<Step, ConsumerError>;
    /// Called while another instance leads.
    async fn follow(&self) {}
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

fn lock_key(name: &str) -> String {
    format!("webinar:consumer:{name}")
}

/// Leads `runner` when it can, follows otherwise, until `cancel`; stops only between steps.
pub async fn run_led(runner: &dyn Led, mut wake: watch::Receiver<u64>, cancel: CancellationToken) {
    let name = runner.name();
    let poll = runner.poll();
    let pool = runner.pool().clone();
    let mut leader: Option<LeaderLock> = None;
    let mut failures: u32 = 0;
    while !cancel.is_cancelled() {
        if leader.is_none() {
            match LeaderLock::try_acquire(&pool, &lock_key(name)).await {
                Ok(Some(lock)) => {
                    tracing::info!(consumer = name, "runner leads");
                    leader = Some(lock);
                }
                Ok(None) => {
                    runner.follow().await;
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(poll) => continue,
                    }
                }
                Err(error) => {
                    tracing::warn!(consumer = name, %error, "cannot take the runner lock");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(poll * 4) => continue,
                    }
                }
            }
        }
        // Only a caught-up consumer listens for news: a retry or a back-off waits its time.
        let (until, listens) = match runner.step().await {
            Ok(Step::More) => {
                failures = 0;
                continue;
            }
            Ok(Step::CaughtUp) => {
                failures = 0;
                (Instant::now() + poll, runner.wakes_on_log())
            }
            Ok(Step::WaitUntil(at)) => {
                failures = 0;
                (at, false)
            }
            Err(error) => {
                failures += 1;
                ::metrics::counter!(metrics::CONSUMER_FAILURES, "consumer" => name).increment(1);
                tracing::error!(consumer = name, %error, failures, "step failed; retrying");
                let backoff = Duration::from_millis(200 * 2u64.pow(failures.min(7)));
                (Instant::now() + backoff.min(Duration::from_secs(30)), false)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = wake.changed(), if listens => {}
            _ = tokio::time::sleep_until(until) => {}
        }
        // A leader whose lock connection died no longer leads.
        if let Some(lock) = leader.as_mut() {
            if !lock.is_held().await {
                tracing::warn!(consumer = name, "lost the runner lock connection");
                leader = None;
            }
        }
    }
    if let Some(lock) = leader.take() {
        lock.release().await;
    }
    tracing::info!(consumer = name, "runner stopped");
}
