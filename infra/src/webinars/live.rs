//! Going live and the live controls: starting (the BBB meeting, the moderator's join URL), stop,
//! restart, end — and the end that BigBlueButton or the meeting watcher reports.

use webinar_domain::ports::{MeetingError, MeetingRole, NewMeeting};
use webinar_domain::webinar::{self, EndReason, WebinarCommand, WebinarStatus};
use webinar_domain::{Action, Caller, WebinarAccess, WebinarId};

use super::WebinarService;
use crate::error::CommandError;
use crate::event_store::{CommandMetadata, Written};

/// The live controls of `operate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveControl {
    Stop,
    Restart,
    End,
}

/// A started webinar: what was written, and where the caller joins the meeting.
#[derive(Debug, Clone)]
pub struct StartedWebinar {
    pub written: Written<WebinarId>,
    pub join_url: String,
}

impl WebinarService {
    /// Starts (or rejoins) the webinar: creates the BBB meeting — before anything is recorded, so
    /// a meeting that cannot be created changes nothing — records the start (only the owner's asks
    /// for the stream), and returns the caller's moderator join URL.
    #[tracing::instrument(name = "start_webinar", skip_all, fields(webinar = %id))]
    pub async fn start(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        id: WebinarId,
    ) -> Result<StartedWebinar, CommandError> {
        let loaded = self
            .authorized(caller, id, |w| Action::StartWebinar(w))
            .await?;
        let webinar = loaded.state();
        let meetings = self.meetings.as_ref().ok_or(MeetingError::NotConfigured)?;
        let meeting_id = webinar
            .meeting_id
            .clone()
            .unwrap_or_else(|| webinar::meeting_id(id));
        if matches!(
            webinar.status,
            WebinarStatus::Scheduled | WebinarStatus::Live
        ) {
            let callback = self.links.signer.callback_url(&self.links.public_url, id);
            let title = webinar
                .title
                .as_ref()
                .map(|t| t.as_str())
                .unwrap_or_default();
            // Idempotent on BBB's side: a second start finds the meeting and joins it.
            meetings
                .create(&NewMeeting {
                    meeting_id: &meeting_id,
                    name: title,
                    logout_url: &self.links.public_url,
                    end_callback_url: &callback,
                    record: webinar.record,
                })
                .await?;
        }
        let (actor_id, actor_name) = match caller.actor() {
            Some(actor) => (actor.id.as_str(), actor.name.as_str()),
            None => ("system", "system"),
        };
        let command = WebinarCommand::Start {
            meeting_id: meeting_id.clone(),
            by_owner: webinar.is_owner(actor_id),
            server: meetings.server(),
        };
        let written = self.execute_loaded(id, loaded, command, metadata).await?;
        let join_url = meetings.join_url(&meeting_id, actor_name, actor_id, MeetingRole::Moderator);
        Ok(StartedWebinar { written, join_url })
    }

    /// Stop, restart or end: the owner's and administrators' live controls. Ending frees the
    /// gateway.
    #[tracing::instrument(name = "operate_webinar", skip_all, fields(webinar = %id, ?control))]
    pub async fn operate(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        id: WebinarId,
        control: LiveControl,
    ) -> Result<Written<WebinarId>, CommandError> {
        let loaded = self
            .authorized(caller, id, |w| Action::OperateWebinar(w))
            .await?;
        let gateway = loaded.state().gateway_id;
        let command = match control {
            LiveControl::Stop => WebinarCommand::StopLive,
            LiveControl::Restart => WebinarCommand::RestartLive,
            LiveControl::End => WebinarCommand::End {
                reason: EndReason::Presenter,
            },
        };
        let written = self.execute_loaded(id, loaded, command, metadata).await?;
        if control == LiveControl::End {
            self.free_now(metadata, gateway, id).await;
        }
        Ok(written)
    }

    /// Ends a live webinar for `reason` (BBB callback, poll, slot over), and frees its gateway.
    #[tracing::instrument(name = "end_webinar", skip_all, fields(webinar = %id, ?reason))]
    pub async fn end_system(
        &self,
        metadata: &CommandMetadata,
        id: WebinarId,
        reason: EndReason,
    ) -> Result<Written<WebinarId>, CommandError> {
        let loaded = self
            .authorized(&Caller::System("meeting-watcher"), id, |w| {
                Action::OperateWebinar(w)
            })
            .await?;
        let gateway = loaded.state().gateway_id;
        let written = self
            .execute_loaded(id, loaded, WebinarCommand::End { reason }, metadata)
            .await?;
        self.free_now(metadata, gateway, id).await;
        Ok(written)
    }
}
