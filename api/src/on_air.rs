//! What the on-air view and the audience count follow, per webinar and per instance: one task
//! reads the webinar's on-air row (one query) whenever the change feed says the webinar changed
//! and every half second otherwise (the chat relay queue and the audience are not announced), and
//! shares it with every subscriber on this instance through a `watch` channel. The task ends with
//! its last subscriber.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{broadcast, watch};
use webinar_domain::WebinarId;
use webinar_projections::on_air::{self, OnAirRow};

use crate::feed::{Change, ChangeFeed};

/// How often the row is read again without a notification: changes nobody announces (the relay
/// queue, the audience) reach subscribers within this.
const REFRESH: Duration = Duration::from_millis(500);

type Sender = Arc<watch::Sender<Option<Arc<OnAirRow>>>>;

#[derive(Clone)]
pub struct OnAirHub {
    pool: PgPool,
    feed: ChangeFeed,
    followed: Arc<Mutex<HashMap<WebinarId, Sender>>>,
}

impl OnAirHub {
    pub fn new(pool: PgPool, feed: ChangeFeed) -> Self {
        Self {
            pool,
            feed,
            followed: Arc::default(),
        }
    }

    /// The webinar's on-air row as it changes (`None` until first read, or if it does not exist).
    pub fn follow(&self, id: WebinarId) -> watch::Receiver<Option<Arc<OnAirRow>>> {
        let mut followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = followed.get(&id) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(None);
        let sender = Arc::new(sender);
        followed.insert(id, sender.clone());
        tokio::spawn(self.clone().refresh(id, sender));
        receiver
    }

    async fn refresh(self, id: WebinarId, sender: Sender) {
        let mut changes = self.feed.subscribe();
        loop {
            match on_air::get(&self.pool, id).await {
                Ok(row) => {
                    let row = row.map(Arc::new);
                    sender.send_if_modified(|current| {
                        let modified = *current != row;
                        if modified {
                            current.clone_from(&row);
                        }
                        modified
                    });
                }
                Err(error) => tracing::warn!(webinar = %id, %error, "cannot read the on-air view"),
            }
            {
                // Under the lock: nobody can subscribe to a sender that is going away.
                let mut followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
                if sender.receiver_count() == 0 {
                    followed.remove(&id);
                    return;
                }
            }
            let pause = tokio::time::sleep(REFRESH);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    change = changes.recv() => match change {
                        Ok(Change::Webinar(changed)) if changed == id => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => {
                            // No feed any more: keep reading on the timer alone.
                            (&mut pause).await;
                            break;
                        }
                    },
                }
            }
        }
    }
}
