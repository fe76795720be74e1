//! Change notifications for subscriptions. The `webinars`, `live_events` and `live_sessions`
//! projectors announce
//! the rows each batch changed with `pg_notify` inside their batch transaction, so a notification arrives
//! exactly when the change is visible, on every instance, whoever ran the projector.

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use webinar_domain::WebinarId;
use webinar_projections::live_events::LIVE_EVENT_CHANGED;
use webinar_projections::live_sessions::LIVE_SESSION_CHANGED;
use webinar_projections::webinars::WEBINAR_CHANGED;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    LiveEvent(WebinarId),
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
                            let kind = match n.channel() {
                                LIVE_EVENT_CHANGED => Change::LiveEvent,
                                LIVE_SESSION_CHANGED => Change::LiveSession,
                                _ => Change::Webinar,
                            };
                            for id in n.payload().split(',') {
                                let Ok(id) = id.parse::<WebinarId>() else {
                                    continue;
                                };
                                let change = kind(id);
                                // No subscriber is not an error.
                                let _ = sender.send(change);
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
