//! Runs a reactor, partitioned: the events it wants are taken from the log into `reactor_work`
//! (the checkpoint moves in the same transaction), then handled by lane — one lane's events one at
//! a time in log order, different lanes concurrently, at most `max_in_flight` at once. A reactor
//! answers [`Reaction::RetryAt`] to see an event again later: the row keeps the time and the
//! attempt count, so the wait holds up nobody else and survives a restart or a change of leader.
//! A reactor never sleeps.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::leader::{run_led, Cause, Led, Step};
use super::{checkpoint, wants, ConsumerError};
use crate::error::CommandError;
use crate::event_log::{self, StoredEvent};
use crate::metrics;

/// What a reactor made of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// The effect is done (or was not needed): move on.
    Done,
    /// Not yet: show me this event again at `when` (`why` is kept with the work and logged).
    RetryAt(DateTime<Utc>, String),
    /// It cannot be done, and trying again will not help (`why` is logged and counted).
    GiveUp(String),
    /// A watch that goes on (not a failure): show me this event again at `when`.
    WatchAgainAt(DateTime<Utc>),
}

/// What keeps a reactor from deciding at all (the database, typically): the event is tried again
/// after a pause that grows with its attempts.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// One handing of an event to a reactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Counts from 1.
    pub attempt: u32,
    /// Taken from the log by this leader and never tried: nobody can have acted on it yet, so a
    /// reactor may skip its "done already?" check. (A retry, or work resumed after a restart or a
    /// change of leader, is not fresh.)
    pub fresh: bool,
}

/// Something that acts on the outside world for events: calls SIPMediaGW, BBB, … At least once:
/// `react` must make its effect idempotent (typically by checking the aggregate's state first).
#[async_trait]
pub trait Reactor: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The aggregate types it reads (the others come without payload).
    fn aggregate_types(&self) -> Option<&'static [&'static str]>;
    /// The lane `event` is handled in (usually its aggregate), or `None` when it is of no interest.
    fn lane(&self, event: &StoredEvent) -> Option<String>;
    async fn react(
        &self,
        event: &StoredEvent,
        delivery: Delivery,
    ) -> Result<Reaction, ReactorError>;
}

/// Tunables of a reactor runner.
#[derive(Debug, Clone, Copy)]
pub struct ReactorOptions {
    pub batch_size: i64,
    pub poll: Duration,
    /// Events handled at once (each in its own lane).
    pub max_in_flight: usize,
    /// Events taken from the log but not done, before it stops taking more.
    pub max_queued: usize,
}

impl Default for ReactorOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll: Duration::from_millis(500),
            max_in_flight: 32,
            max_queued: 10_000,
        }
    }
}

/// One event to handle.
struct Work {
    event: Arc<StoredEvent>,
    /// Attempts made so far.
    attempts: u32,
    /// Taken from the log in this term of leadership (not resumed from an earlier one).
    fresh: bool,
    due: Instant,
    in_flight: bool,
}

/// What the leader holds in memory (the rows of `reactor_work` are the truth).
#[derive(Default)]
struct Lanes {
    lanes: HashMap<String, VecDeque<Work>>,
    queued: usize,
    in_flight: usize,
    /// Whether the pending rows were loaded since this instance began to lead.
    loaded: bool,
}

fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere mid-update; the rows in the table are the truth.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pause after `attempts` failures of a reactor that could not even decide: jittered, ≤ 30 s.
fn error_backoff(attempts: u32) -> Duration {
    let base = Duration::from_millis(200) * 2u32.pow(attempts.min(7));
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    base.min(Duration::from_secs(30)).mul_f64(jitter)
}

fn instant_of(when: DateTime<Utc>) -> Instant {
    Instant::now() + (when - Utc::now()).to_std().unwrap_or_default()
}

/// What the runner and its tasks share.
struct Shared {
    pool: PgPool,
    reactor: Arc<dyn Reactor>,
    lanes: Mutex<Lanes>,
    /// Bumped whenever the leader steps down: work finishing for an older generation leaves the
    /// (reloaded) lanes alone.
    generation: AtomicU64,
    /// Work done whose rows are still to be deleted (in one statement, at the next step).
    done: Mutex<Vec<i64>>,
    finished: Arc<Notify>,
}

pub struct ReactorRunner {
    shared: Arc<Shared>,
    options: ReactorOptions,
    checkpoint_ready: AtomicBool,
    tasks: Mutex<JoinSet<()>>,
    watermarks: event_log::Watermarks,
}

impl ReactorRunner {
    pub fn new(pool: PgPool, reactor: Arc<dyn Reactor>, options: ReactorOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                pool,
                reactor,
                lanes: Mutex::new(Lanes::default()),
                generation: AtomicU64::new(0),
                done: Mutex::new(Vec::new()),
                finished: Arc::new(Notify::new()),
            }),
            options,
            checkpoint_ready: AtomicBool::new(false),
            tasks: Mutex::new(JoinSet::new()),
            watermarks: event_log::Watermarks::default(),
        }
    }

    /// Shares the log's watermark with the instance's other consumers.
    pub fn sharing(mut self, watermarks: event_log::Watermarks) -> Self {
        self.watermarks = watermarks;
        self
    }

    fn name(&self) -> &'static str {
        self.shared.reactor.name()
    }

    /// The rows left by an earlier leader (or an earlier life of this one).
    async fn load_pending(&self) -> Result<(), sqlx::Error> {
        let pool = &self.shared.pool;
        let rows: Vec<(String, i32, DateTime<Utc>, i64)> = sqlx::query_as(
            "select lane, attempts, next_attempt_at, global_position from reactor_work
              where consumer = $1 order by tx_id, global_position",
        )
        .bind(self.name())
        .fetch_all(pool)
        .await?;
        let positions: Vec<i64> = rows.iter().map(|r| r.3).collect();
        let mut events: HashMap<i64, StoredEvent> = event_log::events_at(pool, &positions)
            .await?
            .into_iter()
            .map(|e| (e.global_position, e))
            .collect();
        let mut lanes = Lanes::default();
        for (lane, attempts, next, position) in rows {
            let Some(event) = events.remove(&position) else {
                continue;
            };
            lanes.lanes.entry(lane).or_default().push_back(Work {
                event: Arc::new(event),
                attempts: u32::try_from(attempts).unwrap_or(0),
                fresh: false,
                due: instant_of(next),
                in_flight: false,
            });
            lanes.queued += 1;
        }
        lanes.loaded = true;
        if lanes.queued > 0 {
            tracing::info!(
                reactor = self.name(),
                pending = lanes.queued,
                "resumed pending work"
            );
        }
        *lock(&self.shared.lanes) = lanes;
        Ok(())
    }

    /// Deletes the rows of the work done since the last step.
    async fn forget_done(&self) -> Result<(), sqlx::Error> {
        let done = std::mem::take(&mut *lock(&self.shared.done));
        if done.is_empty() {
            return Ok(());
        }
        let deleted = sqlx::query(
            "delete from reactor_work where consumer = $1 and global_position = any($2)",
        )
        .bind(self.name())
        .bind(&done)
        .execute(&self.shared.pool)
        .await;
        if let Err(error) = deleted {
            // Kept for the next step: until then, a restart would do the work again, and the
            // reactor's own check would find it done.
            lock(&self.shared.done).extend(done);
            return Err(error);
        }
        Ok(())
    }

    /// Takes the next batch of the log into `reactor_work`; returns how many events it read.
    async fn take_from_log(&self) -> Result<usize, sqlx::Error> {
        let (name, pool) = (self.name(), &self.shared.pool);
        let reactor = &self.shared.reactor;
        let from = checkpoint::checkpoint(pool, name).await?;
        let types = reactor.aggregate_types();
        let events = self
            .watermarks
            .read_after(pool, from, types, self.options.batch_size)
            .await?;
        let Some(last) = events.last().map(StoredEvent::position) else {
            return Ok(0);
        };
        let work: Vec<(String, StoredEvent)> = events
            .iter()
            .filter(|event| wants(types, event))
            .filter_map(|event| Some((reactor.lane(event)?, event.clone())))
            .collect();
        let mut tx = pool.begin().await?;
        // Only what this statement wrote is ours: should another instance briefly believe it
        // leads too, it does not take the same work.
        let taken: Vec<i64> = if work.is_empty() {
            Vec::new()
        } else {
            let txs: Vec<i64> = work.iter().map(|(_, e)| e.tx_id).collect();
            let positions: Vec<i64> = work.iter().map(|(_, e)| e.global_position).collect();
            let lanes: Vec<&str> = work.iter().map(|(lane, _)| lane.as_str()).collect();
            sqlx::query_scalar(
                "insert into reactor_work (consumer, tx_id, global_position, lane)
                 select $1, tx::text::xid8, position, lane
                   from unnest($2::bigint[], $3::bigint[], $4::text[]) as w(tx, position, lane)
                 on conflict do nothing
                 returning global_position",
            )
            .bind(name)
            .bind(txs)
            .bind(positions)
            .bind(lanes)
            .fetch_all(&mut *tx)
            .await?
        };
        checkpoint::save(&mut *tx, name, last, events.len() as i64, false).await?;
        tx.commit().await?;
        let now = Instant::now();
        let mut lanes = lock(&self.shared.lanes);
        for (lane, event) in work {
            if !taken.contains(&event.global_position) {
                continue;
            }
            lanes.lanes.entry(lane).or_default().push_back(Work {
                event: Arc::new(event),
                attempts: 0,
                fresh: true,
                due: now,
                in_flight: false,
            });
            lanes.queued += 1;
        }
        Ok(events.len())
    }

    /// Starts every lane's head that is due, up to the in-flight limit; returns when the next
    /// waiting head falls due.
    fn dispatch(&self) -> Option<Instant> {
        let now = Instant::now();
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let mut next: Option<Instant> = None;
        let mut started = Vec::new();
        {
            let mut lanes = lock(&self.shared.lanes);
            let mut budget = self.options.max_in_flight.saturating_sub(lanes.in_flight);
            for (lane, queue) in lanes.lanes.iter_mut() {
                let Some(head) = queue.front_mut() else {
                    continue;
                };
                if head.in_flight {
                    continue;
                }
                if head.due > now {
                    next = Some(next.map_or(head.due, |n| n.min(head.due)));
                    continue;
                }
                if budget == 0 {
                    next = Some(now);
                    continue;
                }
                budget -= 1;
                head.in_flight = true;
                let delivery = Delivery {
                    attempt: head.attempts + 1,
                    fresh: head.fresh && head.attempts == 0,
                };
                started.push((lane.clone(), head.event.clone(), delivery));
            }
            lanes.in_flight += started.len();
        }
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        for (lane, event, delivery) in started {
            tasks.spawn(handle(
                self.shared.clone(),
                generation,
                lane,
                event,
                delivery,
            ));
        }
        next
    }

    /// Drives the reactor on this task until everything taken from the log is done and nothing
    /// waits for less than `patience` (for tests and tools: a worker you can run to completion).
    pub async fn run_until_idle(&self, patience: Duration) -> Result<(), ConsumerError> {
        loop {
            let step = self.step(Cause::News).await?;
            let busy = lock(&self.shared.lanes).in_flight > 0;
            match step {
                Step::More => continue,
                _ if busy => {
                    let _ = tokio::time::timeout(patience, self.shared.finished.notified()).await;
                }
                Step::WaitUntil(at) if at <= Instant::now() + patience => {
                    tokio::time::sleep_until(at).await;
                }
                _ => return Ok(self.forget_done().await?),
            }
        }
    }

    /// Leads when this instance leads it, until `cancel`; then lets the calls in flight finish
    /// (briefly) before it returns.
    pub async fn run(
        self,
        leads: watch::Receiver<bool>,
        wake: watch::Receiver<u64>,
        cancel: CancellationToken,
    ) {
        run_led(&self, leads, wake, cancel).await;
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                reactor = self.name(),
                "calls still in flight at shutdown were cut off"
            );
        }
        if let Err(error) = self.forget_done().await {
            tracing::warn!(reactor = self.name(), %error, "cannot record finished work at shutdown");
        }
    }
}

/// Attempts made once a delivery ends in a retry: none after a watch that goes on.
fn attempts_after(watching: bool, attempt: u32) -> u32 {
    if watching {
        0
    } else {
        attempt
    }
}

/// Handles one event and records the outcome: done work is deleted (at the next step), a retry
/// keeps the next attempt's time.
async fn handle(
    shared: Arc<Shared>,
    generation: u64,
    lane: String,
    event: Arc<StoredEvent>,
    delivery: Delivery,
) {
    let name = shared.reactor.name();
    let position = event.global_position;
    let reaction = shared.reactor.react(&event, delivery).await;
    // A watch that goes on has not failed: its next delivery counts from the first attempt again
    // (else a later error would back off as if after hundreds of failures).
    let retry_kind = matches!(reaction, Ok(Reaction::WatchAgainAt(_)));
    let retry = match reaction {
        Ok(Reaction::Done) => None,
        Ok(Reaction::GiveUp(why)) => {
            ::metrics::counter!(metrics::REACTOR_GIVE_UPS, "reactor" => name).increment(1);
            tracing::error!(reactor = name, position, event_type = %event.event_type, why, "gave up on an event");
            None
        }
        Ok(Reaction::RetryAt(when, why)) => Some((when, why)),
        Ok(Reaction::WatchAgainAt(when)) => Some((when, String::new())),
        Err(error) => {
            ::metrics::counter!(metrics::CONSUMER_FAILURES, "consumer" => name).increment(1);
            let pause = chrono::Duration::from_std(error_backoff(delivery.attempt))
                .unwrap_or(chrono::Duration::seconds(30));
            Some((Utc::now() + pause, error.to_string()))
        }
    };
    match &retry {
        None => lock(&shared.done).push(position),
        Some((when, why)) => {
            if why.is_empty() {
                tracing::debug!(reactor = name, position, lane, %when, "watching again later");
            } else {
                tracing::info!(reactor = name, position, lane, %when, why, attempt = delivery.attempt, "trying again later");
            }
            let why: String = why.chars().take(500).collect();
            let recorded = sqlx::query(
                "update reactor_work set attempts = $3, next_attempt_at = $4, last_error = $5
                  where consumer = $1 and global_position = $2",
            )
            .bind(name)
            .bind(position)
            .bind(i32::try_from(attempts_after(retry_kind, delivery.attempt)).unwrap_or(i32::MAX))
            .bind(when)
            .bind((!why.is_empty()).then_some(why))
            .execute(&shared.pool)
            .await;
            if let Err(error) = recorded {
                // The row keeps its earlier due time: the work comes back sooner, that is all.
                tracing::warn!(reactor = name, position, %error, "cannot record a retry");
            }
        }
    }
    if shared.generation.load(Ordering::SeqCst) == generation {
        let mut lanes = lock(&shared.lanes);
        lanes.in_flight = lanes.in_flight.saturating_sub(1);
        let mut emptied = false;
        if let Some(queue) = lanes.lanes.get_mut(&lane) {
            match &retry {
                None => {
                    queue.pop_front();
                    emptied = queue.is_empty();
                }
                Some((when, _)) => {
                    if let Some(head) = queue.front_mut() {
                        head.in_flight = false;
                        head.attempts = attempts_after(retry_kind, delivery.attempt);
                        head.due = instant_of(*when);
                    }
                }
            }
        }
        if emptied {
            lanes.lanes.remove(&lane);
        }
        if retry.is_none() {
            lanes.queued = lanes.queued.saturating_sub(1);
        }
    }
    shared.finished.notify_one();
}

#[async_trait]
impl Led for ReactorRunner {
    fn name(&self) -> &'static str {
        self.shared.reactor.name()
    }
    fn poll(&self) -> Duration {
        self.options.poll
    }
    fn nudge(&self) -> Option<Arc<Notify>> {
        Some(self.shared.finished.clone())
    }

    async fn step(&self, cause: Cause) -> Result<Step, ConsumerError> {
        if !self.checkpoint_ready.load(Ordering::Relaxed) {
            checkpoint::ensure(&self.shared.pool, self.name()).await?;
            self.checkpoint_ready.store(true, Ordering::Relaxed);
        }
        self.forget_done().await?;
        if !lock(&self.shared.lanes).loaded {
            self.load_pending().await?;
        }
        // A finished call only frees its lane: the log is read on news (or the poll).
        let room = lock(&self.shared.lanes).queued < self.options.max_queued;
        let read = if room && cause == Cause::News {
            self.take_from_log().await?
        } else {
            0
        };
        let next = self.dispatch();
        Ok(if read >= self.options.batch_size as usize {
            Step::More
        } else if let Some(at) = next {
            Step::WaitUntil(at)
        } else {
            Step::CaughtUp
        })
    }

    fn stepped_down(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        *lock(&self.shared.lanes) = Lanes::default();
    }
}
