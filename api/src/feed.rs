//! Change notifications for subscriptions. A changed live event is read here, once, and the row
//! is shared by every subscriber, who judge in memory whether they may see it: 10,000 viewers of
//! the live page cost one query per change, not 10,000. The `webinars`, `live_events` and
//! `live_sessions` projectors announce
//! the rows each batch changed with `pg_notify` inside their batch transaction, so a notification arrives
//! exactly when the change is visible, on every instance, whoever ran the projector.

use std::sync::Arc;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use webinar_domain::WebinarId;
use webinar_projections::live_events::{self, LiveEventRow, LIVE_EVENT_CHANGED};
use webinar_projections::live_sessions::LIVE_SESSION_CHANGED;
use webinar_projections::webinars::WEBINAR_CHANGED;

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A live event as it is now, read once for every subscriber.
    LiveEvent(Arc<LiveEventRow>),
    Webinar(WebinarId),
    /// A webinar's BigBlueButton session.
    LiveSession(WebinarId),
}

/// Fans read-model changes out to subscriptions.
#[derive(Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Change>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(4096).0,
        }
    }
}

impl ChangeFeed {
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }

    /// Listens until `cancel`, reconnecting after a lost connection.
    pub fn spawn(&self, pool: PgPool, cancel: CancellationToken) {
        let sender = self.sender.clone();
        tokio::spawn(async move {
            while !cancel.is_cancelled() {
                let listener = async {
                    let mut listener = PgListener::connect_with(&pool).await?;
                    listener
                        .listen_all([LIVE_EVENT_CHANGED, WEBINAR_CHANGED, LIVE_SESSION_CHANGED])
                        .await?;
                    Ok::<_, sqlx::Error>(listener)
                };
                let mut listener = match listener.await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "change feed cannot LISTEN; retrying");
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => continue,
                        }
                    }
                };
                loop {
                    let notification = tokio::select! {
                        _ = cancel.cancelled() => return,
                        received = listener.recv() => received,
                    };
                    match notification {
                        Ok(n) => {
                            // One notification per projector batch: the changed ids, comma-separated.
                            let ids = n
                                .payload()
                                .split(',')
                                .filter_map(|id| id.parse::<WebinarId>().ok());
                            let kind = match n.channel() {
                                LIVE_EVENT_CHANGED => {
                                    let ids: Vec<uuid::Uuid> = ids.map(|id| id.as_uuid()).collect();
                                    for row in read_live_events(&pool, &ids).await {
                                        // No subscriber is not an error.
                                        let _ = sender.send(Change::LiveEvent(Arc::new(row)));
                                    }
                                    continue;
                                }
                                LIVE_SESSION_CHANGED => Change::LiveSession,
                                _ => Change::Webinar,
                            };
                            for id in ids {
                                let _ = sender.send(kind(id));
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "change feed connection lost");
                            break;
                        }
                    }
                }
            }
        });
    }
}

/// The changed live events, read once; a read that keeps failing is logged and skipped (the
/// subscribers hear of the next change).
async fn read_live_events(pool: &PgPool, ids: &[uuid::Uuid]) -> Vec<LiveEventRow> {
    for attempt in 1..=3u64 {
        match live_events::get_many(pool, ids).await {
            Ok(rows) => return rows,
            Err(error) => {
                tracing::warn!(%error, attempt, "change feed cannot read changed live events");
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
        }
    }
    Vec::new()
}
