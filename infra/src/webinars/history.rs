//! A webinar as it was at a moment: its own events recorded up to then, replayed through the
//! aggregate (never a read model), for auditors.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use webinar_domain::webinar::{Webinar, WebinarEvent};
use webinar_domain::{Action, Caller, WebinarId};

use super::WebinarService;
use crate::error::CommandError;
use crate::event_log;

/// The replayed state and how many events it took.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub webinar: Webinar,
    pub events: i64,
}

impl WebinarService {
    /// `None` when the webinar did not exist yet at `at`.
    #[tracing::instrument(name = "webinar_as_of", skip_all, fields(webinar = %id, %at))]
    pub async fn as_of(
        &self,
        caller: &Caller,
        id: WebinarId,
        at: DateTime<Utc>,
    ) -> Result<Option<Replayed>, CommandError> {
        self.policy.authorize(caller, Action::ReadAudit)?;
        let events =
            event_log::aggregate_events_until(&self.pool, "Webinar", &id.to_string(), at).await?;
        if events.is_empty() {
            return Ok(None);
        }
        let mut webinar = Webinar::default();
        for event in &events {
            let payload: WebinarEvent = event.decode().map_err(|e| {
                CommandError::Internal(anyhow::anyhow!("cannot read a webinar event: {e}"))
            })?;
            webinar.apply(payload);
        }
        // Another site's webinar does not exist for this auditor.
        if !caller.in_site(&webinar.site) {
            return Ok(None);
        }
        Ok(Some(Replayed {
            webinar,
            events: events.len() as i64,
        }))
    }
}
