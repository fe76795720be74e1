//! How far each projector has got, shared by the runners (which publish) and the API (which waits
//! for a mutation's events to reach the read models it answers from: read-your-writes).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::event_log::Position;

#[derive(Clone, Default)]
pub struct ProjectionProgress {
    positions: Arc<HashMap<&'static str, watch::Sender<Position>>>,
}

/// A projector did not reach a position in time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the {projector} read model did not catch up within {timeout:?}")]
pub struct CatchUpTimeout {
    pub projector: &'static str,
    pub timeout: Duration,
}

impl ProjectionProgress {
    pub fn new(names: impl IntoIterator<Item = &'static str>) -> Self {
        let positions = names
            .into_iter()
            .map(|name| (name, watch::channel(Position::START).0))
            .collect();
        Self {
            positions: Arc::new(positions),
        }
    }

    pub fn position(&self, name: &str) -> Option<Position> {
        self.positions.get(name).map(|s| *s.borrow())
    }

    /// Records that `name` has applied everything up to `at` (never moves back).
    pub fn publish(&self, name: &str, at: Position) {
        if let Some(sender) = self.positions.get(name) {
            sender.send_if_modified(|current| {
                let newer = at > *current;
                if newer {
                    *current = at;
                }
                newer
            });
        }
    }

    /// Waits until `projector` has applied everything up to `target`.
    pub async fn wait_for(
        &self,
        projector: &'static str,
        target: Position,
        timeout: Duration,
    ) -> Result<(), CatchUpTimeout> {
        let Some(sender) = self.positions.get(projector) else {
            return Ok(());
        };
        let mut rx = sender.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|at| *at >= target)).await;
        match reached {
            Ok(_) => Ok(()),
            Err(_) => Err(CatchUpTimeout { projector, timeout }),
        }
    }
}
