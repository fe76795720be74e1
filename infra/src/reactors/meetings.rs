//! The meeting watcher: a webinar ends when its BBB meeting does.
//!
//! Three ways, fastest first: BBB calls our signed end callback (`meta_endCallbackUrl`, see
//! [`crate::callbacks`]); polling finds the meeting gone twice in a row (BBB does not know it, or
//! it was seen running and now has nobody — "not running" alone only means "nobody has joined
//! yet"); a guard ends a webinar still live a grace period after its slot. It polls on the shared
//! leadership loop, so one instance of the cluster polls.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use webinar_domain::ports::{LiveWebinars, MeetingError};
use webinar_domain::webinar::{EndReason, WebinarStatus};
use webinar_domain::WebinarId;

use super::Outside;
use crate::consumer::leader::{run_led, Cause, Led, Step};
use crate::consumer::{ConsumerError, ReactorError};
use crate::error::CommandError;
use crate::event_store::CommandMetadata;

const COMPONENT: &str = "meeting-watcher";

/// What polling has seen of each live webinar's meeting.
#[derive(Default)]
struct Sightings {
    /// Polls in a row that found the meeting gone.
    misses: HashMap<WebinarId, u32>,
    /// Meetings seen running at least once.
    running: HashSet<WebinarId>,
}

pub struct MeetingWatcher {
    outside: Outside,
    live: Arc<dyn LiveWebinars>,
    poll: Duration,
    grace: chrono::Duration,
    sightings: Mutex<Sightings>,
}

impl MeetingWatcher {
    pub fn new(
        outside: Outside,
        live: Arc<dyn LiveWebinars>,
        poll: Duration,
        grace_minutes: i64,
    ) -> Self {
        Self {
            outside,
            live,
            poll,
            grace: chrono::Duration::minutes(grace_minutes),
            sightings: Mutex::new(Sightings::default()),
        }
    }

    /// Ends a live webinar for `reason`; anything else is left alone. Returns whether it ended it.
    #[tracing::instrument(name = "meeting_watcher_end", skip(self))]
    pub async fn end(&self, id: WebinarId, reason: EndReason) -> Result<bool, CommandError> {
        let webinar = self.outside.webinars.load(id).await?;
        if !webinar.scheduled || webinar.status != WebinarStatus::Live {
            return Ok(false);
        }
        let caller = webinar_domain::Caller::System(COMPONENT);
        let meta = CommandMetadata::originating(&caller, None);
        self.outside.webinars.end_system(&meta, id, reason).await?;
        tracing::info!(webinar = %id, ?reason, "webinar ended");
        Ok(true)
    }

    /// Polls until `cancel`, while this instance leads the watcher.
    pub async fn run(
        self: Arc<Self>,
        leads: watch::Receiver<bool>,
        wake: watch::Receiver<u64>,
        cancel: CancellationToken,
    ) {
        run_led(self.as_ref(), leads, wake, cancel).await;
    }

    fn sightings(&self) -> std::sync::MutexGuard<'_, Sightings> {
        // A poisoned lock only means a panic elsewhere mid-update; the sightings are still usable.
        self.sightings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the meeting is gone (`None`: BBB could not tell).
    async fn gone(&self, id: WebinarId, meeting: &str) -> Option<bool> {
        let meetings = self.outside.meetings.as_ref()?;
        match meetings.is_running(meeting).await {
            Ok(true) => {
                self.sightings().running.insert(id);
                Some(false)
            }
            Ok(false) => Some(self.sightings().running.contains(&id)),
            Err(MeetingError::NotFound) => Some(true),
            Err(error) => {
                tracing::warn!(webinar = %id, %error, "cannot ask BBB about the meeting");
                None
            }
        }
    }

    async fn poll_once(&self) -> Result<(), ReactorError> {
        let live = self
            .live
            .live()
            .await
            .map_err(|e| CommandError::Internal(anyhow::anyhow!("live webinars: {e}")))?;
        let now = Utc::now();
        self.sightings()
            .misses
            .retain(|id, _| live.iter().any(|l| l.webinar == *id));
        for webinar in live {
            let id = webinar.webinar;
            if now > webinar.ends_at + self.grace {
                self.end(id, EndReason::SlotOver).await?;
                continue;
            }
            let Some(meeting) = webinar.meeting_id else {
                continue;
            };
            let Some(gone) = self.gone(id, &meeting).await else {
                continue;
            };
            let ended = {
                let mut sightings = self.sightings();
                let count = sightings.misses.entry(id).or_insert(0);
                *count = if gone { *count + 1 } else { 0 };
                let ended = *count >= 2;
                if ended {
                    sightings.misses.remove(&id);
                    sightings.running.remove(&id);
                }
                ended
            };
            if ended {
                self.end(id, EndReason::Poll).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Led for MeetingWatcher {
    fn name(&self) -> &'static str {
        "meeting_watcher"
    }
    fn poll(&self) -> Duration {
        self.poll
    }
    /// It polls BigBlueButton on its own schedule; the log's news is not its news.
    fn wakes_on_log(&self) -> bool {
        false
    }
    async fn step(&self, _cause: Cause) -> Result<Step, ConsumerError> {
        self.poll_once().await?;
        Ok(Step::CaughtUp)
    }
}
