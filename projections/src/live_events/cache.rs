//! The live page from memory. At 10:00 thousands of students open the same page; it is read
//! once per change of `live_events`, not once per student.
//!
//! **Why it is never stale.** An entry is stamped with the `live_events_version` row it was read
//! at; the projector moves that row in the transaction that changes the table (a rebuild's swap
//! brings its own). A request is served from memory only when a read of the row *that began after
//! the request arrived* still shows the entry's stamp: nothing was committed to the table between
//! the entry's read and the request, whichever instance committed it. So a page never lags a
//! mutation that has returned, here or on another instance (the mutation returned after the
//! projector committed). That read is one row, shared by every request waiting at the same moment
//! ([`VersionProbe`]): under load one read answers dozens of requests. Chat posts and participants
//! joining move the projector's checkpoint but not this row, so they keep the page.
//!
//! **What is kept.** Per filter of a first page (status, from, to), the matching rows in page
//! order, all viewers' rows together, up to [`ROWS_PER_FILTER`]; each request picks the rows its
//! caller may see with the permission policy, in memory (the same rule as the SQL, held against
//! it by a test). A later page (`after`) and a filter whose rows overflow the cap go to SQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use webinar_domain::webinar::LiveEventStatus;
use webinar_domain::WebinarId;
use webinar_infra::fresh::SharedRead;

use super::{list, Audience, LiveEventFilter, LiveEventRow};

/// Rows kept per filter: a live page of this many events is served from memory; beyond, a
/// caller who sees few of them may need SQL.
pub const ROWS_PER_FILTER: usize = 2000;
/// Filters kept (clients that send `from: now` make a new one each time): past it, the least
/// recently filled is dropped.
const FILTERS: usize = 64;
/// Single events kept for `liveEvent(id)`.
const SINGLES: usize = 4096;

/// The `live_events_version` row: moves whenever the table changes (its `changed_at` tells a
/// rebuild's row apart from the one it replaces). Anything computed from `live_events` alone and
/// kept with the stamp read before it is current while a fresh stamp ([`LivePageCache::stamp`])
/// is equal. Stamps are only compared for equality: a rebuild's counter may be lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    version: i64,
    changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FilterKey {
    statuses: Option<Vec<&'static str>>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
}

struct Page {
    rows: Arc<[Arc<LiveEventRow>]>,
    /// Whether `rows` are all the rows of the filter (not cut at the cap).
    complete: bool,
    filled: u64,
}

#[derive(Default)]
struct Entries {
    stamp: Option<Stamp>,
    pages: HashMap<FilterKey, Page>,
    singles: HashMap<Uuid, Option<Arc<LiveEventRow>>>,
    fills: u64,
}

impl Entries {
    /// Entries of `stamp`, forgetting those of any other stamp (returned, to be freed once the
    /// lock is released). A slow request with an older stamp may forget newer entries: that only
    /// costs a read.
    fn at(&mut self, stamp: Stamp) -> Forgotten {
        if self.stamp == Some(stamp) {
            return None;
        }
        self.stamp = Some(stamp);
        Some((
            std::mem::take(&mut self.pages),
            std::mem::take(&mut self.singles),
        ))
    }
}

/// Entries of an older stamp, dropped outside the lock.
type Forgotten = Option<(
    HashMap<FilterKey, Page>,
    HashMap<Uuid, Option<Arc<LiveEventRow>>>,
)>;

/// The live page cache of one process. Cheap to clone.
#[derive(Clone)]
pub struct LivePageCache {
    pool: PgPool,
    probe: Arc<VersionProbe>,
    /// One fill at a time: the requests that missed together wait for the first one's rows
    /// instead of each reading them.
    filling: Arc<tokio::sync::Mutex<()>>,
    entries: Arc<Mutex<Entries>>,
    /// Pages and events served from memory, and read from PostgreSQL, by this cache.
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
}

/// A page as the cache answers it: the rows, or `None` when the caller must go to SQL.
pub type Cached = Option<Vec<LiveEventRow>>;

impl LivePageCache {
    pub fn new(pool: PgPool) -> Self {
        Self {
            probe: Arc::new(VersionProbe::default()),
            filling: Arc::default(),
            pool,
            entries: Arc::default(),
            hits: Arc::default(),
            misses: Arc::default(),
        }
    }

    /// The `live_events_version` as of some moment after this call began (`None` when it cannot
    /// be told).
    pub async fn stamp(&self) -> Option<Stamp> {
        self.probe.current(&self.pool).await
    }

    /// How many reads this cache served from memory, and how many it read from PostgreSQL.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn count(&self, hit: bool) {
        let (counter, outcome) = if hit {
            (&self.hits, "hit")
        } else {
            (&self.misses, "miss")
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(webinar_infra::metrics::LIVE_PAGE_CACHE, "outcome" => outcome)
            .increment(1);
    }

    /// The first `filter.limit` rows of `filter` that `visible` lets through, fresh as of this
    /// call. `None` for what the cache does not keep (a later page, an overflowing filter).
    pub async fn first_page(
        &self,
        filter: &LiveEventFilter,
        visible: impl Fn(&LiveEventRow) -> bool,
    ) -> Result<Cached, sqlx::Error> {
        if filter.after.is_some() {
            return Ok(None);
        }
        let key = FilterKey {
            statuses: filter
                .statuses
                .as_ref()
                .map(|s| s.iter().map(LiveEventStatus::as_str).collect()),
            from: filter.from,
            to: filter.to,
        };
        let Some(stamp) = self.probe.current(&self.pool).await else {
            return Ok(None);
        };
        let mut cached = self.page(stamp, &key);
        let _filling = match cached {
            Some(_) => None,
            None => {
                let turn = self.filling.lock().await;
                // Filled meanwhile by a request that missed at the same moment?
                cached = self.page(stamp, &key);
                Some(turn)
            }
        };
        let (rows, complete) = match cached {
            Some(hit) => {
                self.count(true);
                hit
            }
            None => {
                self.count(false);
                let all = LiveEventFilter {
                    statuses: filter.statuses.clone(),
                    from: filter.from,
                    to: filter.to,
                    after: None,
                    limit: ROWS_PER_FILTER as i64 + 1,
                };
                let mut read = list(&self.pool, &Audience::everyone(), &all).await?;
                let complete = read.len() <= ROWS_PER_FILTER;
                read.truncate(ROWS_PER_FILTER);
                let rows: Arc<[Arc<LiveEventRow>]> = read.into_iter().map(Arc::new).collect();
                self.fill_page(stamp, key, rows.clone(), complete);
                (rows, complete)
            }
        };
        let limit = usize::try_from(filter.limit).unwrap_or(0);
        let page: Vec<LiveEventRow> = rows
            .iter()
            .filter(|row| visible(row))
            .take(limit)
            .map(|row| LiveEventRow::clone(row))
            .collect();
        Ok((complete || page.len() == limit).then_some(page))
    }

    fn page(&self, stamp: Stamp, key: &FilterKey) -> Option<(Arc<[Arc<LiveEventRow>]>, bool)> {
        let (hit, forgotten) = {
            let mut entries = self.lock();
            let forgotten = entries.at(stamp);
            let hit = entries
                .pages
                .get(key)
                .map(|page| (page.rows.clone(), page.complete));
            (hit, forgotten)
        };
        drop(forgotten);
        hit
    }

    /// One live event as of this call (`None` inside when it does not exist), whoever may see it.
    pub async fn one(
        &self,
        id: WebinarId,
    ) -> Result<Option<Option<Arc<LiveEventRow>>>, sqlx::Error> {
        let Some(stamp) = self.probe.current(&self.pool).await else {
            return Ok(None);
        };
        let (hit, forgotten) = {
            let mut entries = self.lock();
            let forgotten = entries.at(stamp);
            (entries.singles.get(&id.as_uuid()).cloned(), forgotten)
        };
        drop(forgotten);
        self.count(hit.is_some());
        if let Some(row) = hit {
            return Ok(Some(row));
        }
        let row = super::get_many(&self.pool, &[id.as_uuid()])
            .await?
            .pop()
            .map(Arc::new);
        let mut entries = self.lock();
        // Stored only under the stamp it was read at.
        if entries.stamp == Some(stamp) {
            if entries.singles.len() >= SINGLES {
                entries.singles.clear();
            }
            entries.singles.insert(id.as_uuid(), row.clone());
        }
        Ok(Some(row))
    }

    fn fill_page(
        &self,
        stamp: Stamp,
        key: FilterKey,
        rows: Arc<[Arc<LiveEventRow>]>,
        complete: bool,
    ) {
        let mut entries = self.lock();
        // Stored only under the stamp it was read at.
        if entries.stamp != Some(stamp) {
            return;
        }
        entries.fills += 1;
        let filled = entries.fills;
        if entries.pages.len() >= FILTERS && !entries.pages.contains_key(&key) {
            let oldest = entries
                .pages
                .iter()
                .min_by_key(|(_, page)| page.filled)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                entries.pages.remove(&oldest);
            }
        }
        entries.pages.insert(
            key,
            Page {
                rows,
                complete,
                filled,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `live_events_version` row, read once for every request waiting at the same moment, each
/// answered by a read that began after it arrived (a failed read too: those requests then go to
/// SQL, which reports it).
#[derive(Default)]
struct VersionProbe(SharedRead<Option<Stamp>>);

impl VersionProbe {
    /// The version as of some moment after this call began; `None` when it cannot be told (the
    /// read failed, or there is no row): nothing can be served from memory then.
    async fn current(&self, pool: &PgPool) -> Option<Stamp> {
        let read = || async {
            let row: Result<Option<(i64, DateTime<Utc>)>, sqlx::Error> =
                sqlx::query_as("select version, changed_at from live_events_version")
                    .fetch_optional(pool)
                    .await;
            match row {
                Ok(row) => Some(row.map(|(version, changed_at)| Stamp {
                    version,
                    changed_at,
                })),
                Err(error) => {
                    tracing::warn!(%error, "live page: cannot read live_events_version");
                    None
                }
            }
        };
        self.0.get(read).await.flatten()
    }
}
