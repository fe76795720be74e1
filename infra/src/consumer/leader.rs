//! One leader per consumer across instances, and the loop every consumer runs in.
//!
//! An instance's [`Leadership`] holds, on **one** connection of its own, a session advisory lock
//! per consumer it leads, and tells each runner whether it leads. The runner that leads does the
//! work, one [`Led::step`] at a time; the others follow (projectors publish the leader's
//! checkpoint, so that read-your-writes waits work on every instance) until the lock is free.
//! Losing the connection releases every lock: the runners learn it at the next check and stop
//! leading. An instance therefore needs its pool plus this connection (and the two LISTEN
//! connections of the log and the change feed).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{watch, Notify};
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
    /// Nothing to do before this instant unless news arrives.
    WaitUntil(Instant),
}

/// Why a step runs: whether the log may have news for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A commit to the log, the poll, a retry falling due, or the first step: read the log.
    News,
    /// Only its own background work moved on (a call finished): no need to read the log.
    Nudge,
}

/// Something the leadership loop drives: a projector runner, a reactor runner, the meeting
/// watcher.
#[async_trait]
pub trait Led: Send + Sync {
    fn name(&self) -> &'static str;
    /// How long to wait when caught up and nothing wakes it.
    fn poll(&self) -> Duration;
    /// Whether a commit to the event log wakes it early.
    fn wakes_on_log(&self) -> bool {
        true
    }
    /// Woken when its own background work moved on (a reactor's call finished).
    fn nudge(&self) -> Option<Arc<Notify>> {
        None
    }
    /// One unit of work, while this instance leads.
    async fn step(&self, cause: Cause) -> Result<Step, ConsumerError>;
    /// Called while another instance leads.
    async fn follow(&self) {}
    /// This instance no longer leads: forget what only the leader may hold.
    fn stepped_down(&self) {}
}

/// The advisory locks of one instance's consumers, on one connection.
pub struct Leadership {
    pool: PgPool,
    check_every: Duration,
    seats: Vec<(&'static str, watch::Sender<bool>)>,
}

fn lock_key(name: &str) -> String {
    format!("webinar:consumer:{name}")
}

impl Leadership {
    /// Checks (and tries to take what it does not hold) every `check_every`.
    pub fn new(pool: PgPool, check_every: Duration) -> Self {
        Self {
            pool,
            check_every,
            seats: Vec::new(),
        }
    }

    /// Whether this instance leads `name`, as it changes.
    pub fn seat(&mut self, name: &'static str) -> watch::Receiver<bool> {
        let (sender, receiver) = watch::channel(false);
        self.seats.push((name, sender));
        receiver
    }

    fn step_down_all(&self) {
        for (_, seat) in &self.seats {
            seat.send_if_modified(|leads| std::mem::replace(leads, false));
        }
    }

    /// Takes the locks it can, keeps them while the connection lives, until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            let mut conn = match PgConnection::connect_with(&self.pool.connect_options()).await {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "cannot open the leadership connection");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(self.check_every * 4) => continue,
                    }
                }
            };
            let lost = self.hold(&mut conn, &cancel).await;
            self.step_down_all();
            let _ = conn.close().await;
            if let Err(error) = lost {
                tracing::warn!(%error, "lost the leadership connection; every consumer steps down");
            }
        }
        self.step_down_all();
    }

    /// Until `cancel` (Ok) or the connection fails (Err).
    async fn hold(
        &self,
        conn: &mut PgConnection,
        cancel: &CancellationToken,
    ) -> Result<(), sqlx::Error> {
        loop {
            for (name, seat) in &self.seats {
                if !*seat.borrow() {
                    let taken: bool =
                        sqlx::query_scalar("select pg_try_advisory_lock(hashtextextended($1, 0))")
                            .bind(lock_key(name))
                            .fetch_one(&mut *conn)
                            .await?;
                    if taken {
                        tracing::info!(consumer = *name, "this instance leads");
                        seat.send_replace(true);
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(self.check_every) => {}
            }
            sqlx::query("select 1").execute(&mut *conn).await?;
        }
    }
}

/// Under a stream of commits, a consumer woken by each would read one event per step: it waits
/// this long after its last step instead, so that its steps take what arrived meanwhile in one go.
/// An idle consumer (its last step longer ago) steps at once: a lone mutation waits for nothing.
const COALESCE: Duration = Duration::from_millis(10);

/// Works `runner` while this instance leads it, follows otherwise, until `cancel`; stops only
/// between steps.
pub async fn run_led(
    runner: &dyn Led,
    mut leads: watch::Receiver<bool>,
    mut wake: watch::Receiver<u64>,
    cancel: CancellationToken,
) {
    let name = runner.name();
    let poll = runner.poll();
    let nudge = runner.nudge();
    let nudged = || {
        let nudge = nudge.clone();
        async move {
            match nudge {
                Some(notify) => notify.notified().await,
                None => std::future::pending().await,
            }
        }
    };
    let mut failures: u32 = 0;
    let mut leading = false;
    let mut cause = Cause::News;
    let mut last_step = Instant::now() - COALESCE;
    while !cancel.is_cancelled() {
        let now_leads = *leads.borrow_and_update();
        if leading && !now_leads {
            runner.stepped_down();
        }
        leading = now_leads;
        if !leading {
            runner.follow().await;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = leads.changed() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            continue;
        }
        if cause == Cause::News && last_step.elapsed() < COALESCE {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(last_step + COALESCE) => {}
            }
        }
        last_step = Instant::now();
        // Only a caught-up consumer listens for news: a retry or a back-off waits its time.
        let (until, listens) = match runner.step(cause).await {
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
                (at.min(Instant::now() + poll), runner.wakes_on_log())
            }
            Err(error) => {
                failures += 1;
                ::metrics::counter!(metrics::CONSUMER_FAILURES, "consumer" => name).increment(1);
                tracing::error!(consumer = name, %error, failures, "step failed; retrying");
                let backoff = Duration::from_millis(200 * 2u64.pow(failures.min(7)));
                (Instant::now() + backoff.min(Duration::from_secs(30)), false)
            }
        };
        cause = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = leads.changed() => Cause::News,
            _ = wake.changed(), if listens => Cause::News,
            _ = nudged() => Cause::Nudge,
            _ = tokio::time::sleep_until(until) => Cause::News,
        };
    }
    if leading {
        runner.stepped_down();
    }
    tracing::info!(consumer = name, "runner stopped");
}
