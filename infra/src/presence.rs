//! Who is watching: each instance counts its own open `watching` subscriptions per webinar in
//! memory and writes the counts to `audience_presence` (one row per webinar and instance, in one
//! statement for all webinars), at once when a count changes and again every heartbeat, each time
//! with an expiry a few heartbeats ahead. The audience of a webinar is the sum of its unexpired
//! rows: exact across instances as soon as a change is written, and a crashed instance's viewers
//! leave when their rows expire. Presence is state, not history: no event is ever written for it.
//! This module is the table's only writer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use webinar_domain::WebinarId;

/// Counts gathered before a write: a burst of viewers arriving together costs one statement.
const COALESCE: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct AudiencePresence {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    instance: Uuid,
    heartbeat: Duration,
    /// Open viewers per webinar on this instance; a zero stays until it is written.
    local: Mutex<HashMap<WebinarId, u32>>,
    changed: Notify,
}

/// One open viewer; dropping it (the subscription ended) removes it.
pub struct Viewing {
    presence: AudiencePresence,
    webinar: WebinarId,
}

impl Drop for Viewing {
    fn drop(&mut self) {
        self.presence.add(self.webinar, -1);
    }
}

impl AudiencePresence {
    /// `heartbeat`: how often the counts are written again; rows live three heartbeats.
    pub fn new(pool: PgPool, heartbeat: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                instance: Uuid::new_v4(),
                heartbeat: heartbeat.max(Duration::from_millis(100)),
                local: Mutex::new(HashMap::new()),
                changed: Notify::new(),
            }),
        }
    }

    /// How long a written count stays valid without being written again.
    pub fn ttl(&self) -> Duration {
        self.inner.heartbeat * 3
    }

    fn add(&self, webinar: WebinarId, delta: i64) {
        {
            let mut local = self.inner.local.lock().unwrap_or_else(|e| e.into_inner());
            let count = local.entry(webinar).or_insert(0);
            *count = u32::try_from(i64::from(*count) + delta).unwrap_or(0);
        }
        self.inner.changed.notify_one();
    }

    /// Counts one more viewer of `webinar` until the returned guard is dropped.
    pub fn watch(&self, webinar: WebinarId) -> Viewing {
        self.add(webinar, 1);
        Viewing {
            presence: self.clone(),
            webinar,
        }
    }

    /// Writes this instance's counts: live ones with a fresh expiry, zeros removed.
    async fn write(&self) -> Result<(), sqlx::Error> {
        let counts: Vec<(WebinarId, u32)> = {
            let local = self.inner.local.lock().unwrap_or_else(|e| e.into_inner());
            local.iter().map(|(id, n)| (*id, *n)).collect()
        };
        let ids: Vec<Uuid> = counts.iter().map(|(id, _)| id.as_uuid()).collect();
        let viewers: Vec<i32> = counts
            .iter()
            .map(|(_, n)| i32::try_from(*n).unwrap_or(i32::MAX))
            .collect();
        let ttl_ms = i64::try_from(self.ttl().as_millis()).unwrap_or(i64::MAX);
        sqlx::query(
            "with counts as (select * from unnest($2::uuid[], $3::int[]) as c(webinar_id, viewers)),
                  kept as (
                    insert into audience_presence (webinar_id, instance_id, viewers, expires_at)
                    select webinar_id, $1, viewers, now() + $4 * interval '1 millisecond'
                      from counts where viewers > 0
                    on conflict (webinar_id, instance_id) do update
                       set viewers = excluded.viewers, expires_at = excluded.expires_at)
             delete from audience_presence
              where (instance_id = $1 and webinar_id in (select webinar_id from counts where viewers = 0))
                 or expires_at < now() - interval '1 hour'",
        )
        .bind(self.inner.instance)
        .bind(&ids)
        .bind(&viewers)
        .bind(ttl_ms)
        .execute(&self.inner.pool)
        .await?;
        // Zeros written are forgotten (unless a viewer came back meanwhile).
        let mut local = self.inner.local.lock().unwrap_or_else(|e| e.into_inner());
        for (id, n) in counts {
            if n == 0 && local.get(&id) == Some(&0) {
                local.remove(&id);
            }
        }
        Ok(())
    }

    /// Writes on every change and every heartbeat until `cancel`; then removes this instance's
    /// rows (a crash leaves them to expire).
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.inner.changed.notified() => {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(COALESCE) => {}
                    }
                }
                _ = tokio::time::sleep(self.inner.heartbeat) => {}
            }
            if let Err(error) = self.write().await {
                tracing::warn!(%error, "cannot write the audience presence; trying again");
            }
        }
        let removed = sqlx::query("delete from audience_presence where instance_id = $1")
            .bind(self.inner.instance)
            .execute(&self.inner.pool)
            .await;
        if let Err(error) = removed {
            tracing::warn!(%error, "cannot remove this instance's audience presence");
        }
    }
}
