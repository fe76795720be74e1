//! The meeting watcher: a webinar ends when its BBB meeting does, and knows who is in it.
//!
//! Ways, fastest first: BBB's webhooks (`meeting-ended`, `user-joined`, `user-left`, see
//! [`crate::bbb_webhooks`]), applied by [`MeetingWatcher::apply`]; BBB calls our signed end
//! callback (`meta_endCallbackUrl`, see [`crate::callbacks`]); then one of two checks on a
//! schedule. With webhooks on, a reconciliation **sweep** every few minutes: one `getMeetings`
//! call, which ends the webinars whose meeting BBB no longer lists (and, asked about it alone,
//! does not know), brings every live webinar's
//! participant list in line with BBB's, and registers our hook again should bbb-webhooks have
//! dropped it (it drops a hook whose deliveries keep failing). Without webhooks, **polling** every
//! 15 s: a webinar ends when its meeting is found gone twice in a row (BBB does not know it, or it
//! was seen running and now has nobody — "not running" alone only means "nobody has joined yet").
//! Either way a guard ends a webinar still live a grace period after its slot. It runs on the
//! shared leadership loop, so one instance of the cluster checks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use webinar_domain::ports::{ListedMeeting, LiveWebinar, LiveWebinars, MeetingError};
use webinar_domain::webinar::{webinar_of_meeting, EndReason, WebinarCommand, WebinarStatus};
use webinar_domain::WebinarId;

use crate::bbb_webhooks::MeetingNews;

use super::Outside;
use crate::consumer::leader::{run_led, Cause, Led, Step};
use crate::consumer::{ConsumerError, ReactorError};
use crate::error::CommandError;
use crate::event_store::CommandMetadata;

const COMPONENT: &str = "meeting-watcher";

/// Live webinars the sweep reconciles at once.
const SWEEP_CONCURRENCY: usize = 8;

/// What polling has seen of each live webinar's meeting.
#[derive(Default)]
struct Sightings {
    /// Polls in a row that found the meeting gone.
    misses: HashMap<WebinarId, u32>,
    /// Meetings seen running at least once.
    running: HashSet<WebinarId>,
}

/// How the watcher checks when webhooks are on.
#[derive(Debug, Clone, Default)]
pub struct Sweep {
    /// Our callback URL, to register with `hooks/create` when bbb-webhooks lacks it (`None`: the
    /// operator registered it, as a permanent hook).
    pub register_hook: Option<String>,
}

pub struct MeetingWatcher {
    outside: Outside,
    live: Arc<dyn LiveWebinars>,
    poll: Duration,
    grace: chrono::Duration,
    sightings: Mutex<Sightings>,
    /// Sweep instead of polling (webhooks are on).
    sweep: Option<Sweep>,
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
            sweep: None,
        }
    }

    /// Sweeps (webhooks on) instead of polling.
    pub fn sweeping(mut self, sweep: Option<Sweep>) -> Self {
        self.sweep = sweep;
        self
    }

    fn meta(&self) -> CommandMetadata {
        CommandMetadata::originating(&webinar_domain::Caller::System(COMPONENT), None)
    }

    /// Records `command` about the meeting's webinar; a webinar that is not ours, or gone, is
    /// left alone.
    async fn record(&self, id: WebinarId, command: WebinarCommand) -> Result<(), CommandError> {
        match self
            .outside
            .webinars
            .execute_system(&self.meta(), id, command)
            .await
        {
            Ok(_) | Err(CommandError::Webinar(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Applies what a webhook delivery says. Meetings that are not ours are ignored.
    #[tracing::instrument(name = "meeting_news", skip_all)]
    pub async fn apply(&self, news: MeetingNews) -> Result<(), CommandError> {
        let meeting = match &news {
            MeetingNews::Ended { meeting_id }
            | MeetingNews::Joined { meeting_id, .. }
            | MeetingNews::Left { meeting_id, .. }
            | MeetingNews::PublicChat { meeting_id, .. } => meeting_id,
        };
        let Some(id) = webinar_of_meeting(meeting) else {
            return Ok(());
        };
        match news {
            MeetingNews::Ended { .. } => self.end(id, EndReason::Webhook).await.map(|_| ()),
            MeetingNews::Joined { participant, .. } => {
                self.record(id, WebinarCommand::RecordParticipantJoined(participant))
                    .await
            }
            MeetingNews::Left { user_id, .. } => {
                self.record(id, WebinarCommand::RecordParticipantLeft { user_id })
                    .await
            }
            MeetingNews::PublicChat { .. } => Ok(()),
        }
    }

    /// Ends a live webinar for `reason`; anything else is left alone. Returns whether it ended it.
    #[tracing::instrument(name = "meeting_watcher_end", skip(self))]
    pub async fn end(&self, id: WebinarId, reason: EndReason) -> Result<bool, CommandError> {
        let webinar = self.outside.webinars.load(id).await?;
        if !webinar.scheduled || webinar.status != WebinarStatus::Live {
            return Ok(false);
        }
        self.outside
            .webinars
            .end_system(&self.meta(), id, reason)
            .await?;
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

    /// One reconciliation sweep: one `getMeetings` for every live webinar.
    async fn sweep_once(&self, sweep: &Sweep) -> Result<(), ReactorError> {
        let Some(meetings) = self.outside.meetings.as_ref() else {
            return Ok(());
        };
        if let Some(url) = &sweep.register_hook {
            if let Err(error) = meetings.register_hook(url).await {
                tracing::warn!(%error, "cannot register our BBB webhook; the sweep still runs");
            }
        }
        let live = self
            .live
            .live()
            .await
            .map_err(|e| CommandError::Internal(anyhow::anyhow!("live webinars: {e}")))?;
        if live.is_empty() {
            return Ok(());
        }
        let listed = match meetings.list_meetings().await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, "the sweep cannot list BBB's meetings");
                return Ok(());
            }
        };
        // Each webinar on its own, a few at a time: a slow `getMeetingInfo` or a failed command
        // holds up no other webinar, and the next sweep tries again.
        let now = Utc::now();
        futures::stream::iter(live)
            .for_each_concurrent(SWEEP_CONCURRENCY, |webinar| {
                let listed = &listed;
                async move {
                    let id = webinar.webinar;
                    if let Err(error) = self.reconcile(webinar, listed, now).await {
                        tracing::warn!(webinar = %id, %error, "the sweep could not reconcile");
                    }
                }
            })
            .await;
        Ok(())
    }

    /// Brings one live webinar in line with what BBB lists.
    async fn reconcile(
        &self,
        webinar: LiveWebinar,
        listed: &[ListedMeeting],
        now: chrono::DateTime<Utc>,
    ) -> Result<(), CommandError> {
        let id = webinar.webinar;
        if now > webinar.ends_at + self.grace {
            return self.end(id, EndReason::SlotOver).await.map(|_| ());
        }
        let (Some(meeting), Some(meetings)) = (webinar.meeting_id, self.outside.meetings.as_ref())
        else {
            return Ok(());
        };
        match listed.iter().find(|m| m.meeting_id == meeting) {
            Some(found) => {
                let present = found.attendees.clone();
                self.record(id, WebinarCommand::SyncParticipants { present })
                    .await
            }
            // Not listed: ended, its `meeting-ended` delivery lost — unless the list was partial
            // (Scalelite leaves out a server it cannot reach), so ask about this one meeting
            // before ending anything.
            None => match meetings.is_running(&meeting).await {
                Err(MeetingError::NotFound) => self.end(id, EndReason::Sweep).await.map(|_| ()),
                Ok(_) => {
                    tracing::warn!(webinar = %id, "getMeetings left out a meeting that exists");
                    Ok(())
                }
                Err(error) => {
                    tracing::warn!(webinar = %id, %error, "cannot confirm the meeting ended");
                    Ok(())
                }
            },
        }
    }

    async fn poll_once(&self) -> Result<(), ReactorError> {
        if let Some(sweep) = &self.sweep {
            return self.sweep_once(sweep).await;
        }
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
