//! The stream reactor: asks the stream gateway (SIPMediaGW) to start and stop streams, and
//! records what happened. A failed start is recorded and tried again after a back-off (the
//! runner shows the event again); after the last attempt the stream fails over to a free gateway.

use async_trait::async_trait;
use webinar_domain::ports::MeetingError;
use webinar_domain::webinar::{EndReason, StreamState, WebinarCommand, WebinarEvent};
use webinar_domain::WebinarId;

use super::Outside;
use crate::consumer::{Reaction, Reactor, ReactorError};
use crate::error::CommandError;
use crate::event_log::StoredEvent;
use crate::event_store::CommandMetadata;

const COMPONENT: &str = "stream-reactor";

/// The back-off step used for calls whose attempts are not counted in events (stops, meeting
/// ends): a few seconds with the default settings.
const UNCOUNTED_ATTEMPT: u32 = 3;

pub struct StreamReactor {
    outside: Outside,
}

impl StreamReactor {
    pub fn new(outside: Outside) -> Self {
        Self { outside }
    }

    /// Records `command`; a refusal because the state moved on means someone else decided.
    async fn record(
        &self,
        meta: &CommandMetadata,
        id: WebinarId,
        command: WebinarCommand,
    ) -> Result<(), ReactorError> {
        match self
            .outside
            .webinars
            .execute_system(meta, id, command)
            .await
        {
            Ok(_) | Err(CommandError::Webinar(_)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// One start attempt (for a restart, the first attempt stops the old stream first).
    async fn start(
        &self,
        meta: &CommandMetadata,
        id: WebinarId,
        restart: bool,
    ) -> Result<Reaction, ReactorError> {
        let webinar = self.outside.webinars.load(id).await?;
        if webinar.stream != StreamState::Starting {
            return Ok(Reaction::Done);
        }
        let (Some(gateway), Some(room)) = (webinar.gateway_id, webinar.room.clone()) else {
            return Ok(Reaction::Done);
        };
        let streams = &self.outside.streams;
        if restart && webinar.stream_attempts == 0 {
            // A stream that is not running is stopped already.
            if let Err(error) = streams.stop(gateway, &room).await {
                tracing::warn!(webinar = %id, %error, "stop before restart failed; starting anyway");
            }
        } else if streams.is_streaming(gateway, &room).await == Ok(true) {
            // Started before a crash or a timeout, not yet recorded: do not start twice.
            self.record(meta, id, WebinarCommand::RecordStreamStarted)
                .await?;
            return Ok(Reaction::Done);
        }
        match streams.start(gateway, &room).await {
            Ok(()) => {
                tracing::info!(webinar = %id, gateway = %gateway, "stream started");
                self.record(meta, id, WebinarCommand::RecordStreamStarted)
                    .await?;
                Ok(Reaction::Done)
            }
            Err(error) => {
                let attempt = webinar.stream_attempts + 1;
                let final_attempt = attempt >= self.outside.start_attempts;
                tracing::warn!(webinar = %id, gateway = %gateway, attempt, %error, "stream start failed");
                let reason = error.to_string();
                self.record(
                    meta,
                    id,
                    WebinarCommand::RecordStreamFailed {
                        reason: reason.clone(),
                        attempt,
                        final_attempt,
                    },
                )
                .await?;
                if final_attempt {
                    self.fail_over(meta, id).await?;
                    return Ok(Reaction::Done);
                }
                Ok(self.outside.retry_after(attempt, reason))
            }
        }
    }

    /// Moves a failed stream to a gateway that is free for the rest of the slot, if any.
    async fn fail_over(&self, meta: &CommandMetadata, id: WebinarId) -> Result<(), ReactorError> {
        let webinar = self.outside.webinars.load(id).await?;
        let (Some(slot), Some(from)) = (webinar.slot, webinar.gateway_id) else {
            return Ok(());
        };
        let gateways = &self.outside.gateways;
        let candidates = gateways.candidates(&slot, id).await?;
        for to in candidates.into_iter().filter(|g| *g != from) {
            if gateways.reserve(meta, to, id, slot).await.is_err() {
                continue;
            }
            match self
                .outside
                .webinars
                .execute_system(meta, id, WebinarCommand::FailOver { to })
                .await
            {
                Ok(_) => {
                    tracing::info!(webinar = %id, %from, %to, "stream failed over");
                    gateways.release(meta, from, id).await?;
                    return Ok(());
                }
                Err(error) => {
                    gateways.release(meta, to, id).await?;
                    return match error {
                        CommandError::Webinar(_) => Ok(()),
                        other => Err(other.into()),
                    };
                }
            }
        }
        tracing::error!(webinar = %id, "stream failed for good: no other gateway is free");
        Ok(())
    }

    async fn stop(&self, meta: &CommandMetadata, id: WebinarId) -> Result<Reaction, ReactorError> {
        let webinar = self.outside.webinars.load(id).await?;
        if webinar.stream != StreamState::Stopping {
            return Ok(Reaction::Done);
        }
        let (Some(gateway), Some(room)) = (webinar.gateway_id, webinar.room.clone()) else {
            return Ok(Reaction::Done);
        };
        match self.outside.streams.stop(gateway, &room).await {
            Ok(_) => {
                self.record(meta, id, WebinarCommand::RecordStreamStopped)
                    .await?;
                Ok(Reaction::Done)
            }
            // The stream must not be left running: try again.
            Err(error) => Ok(self.outside.retry_after(
                UNCOUNTED_ATTEMPT,
                format!("stopping the stream of {id}: {error}"),
            )),
        }
    }

    async fn toggle_chat(&self, id: WebinarId) -> Result<Reaction, ReactorError> {
        let webinar = self.outside.webinars.load(id).await?;
        if webinar.stream != StreamState::Live {
            return Ok(Reaction::Done);
        }
        let (Some(gateway), Some(room)) = (webinar.gateway_id, webinar.room.as_deref()) else {
            return Ok(Reaction::Done);
        };
        // Best effort, as in Pod: a toggle lost is not worth holding anything up for.
        if let Err(error) = self.outside.streams.toggle_chat(gateway, room).await {
            tracing::warn!(webinar = %id, %error, "chat toggle failed");
        }
        Ok(Reaction::Done)
    }

    async fn end_meeting(&self, id: WebinarId) -> Result<Reaction, ReactorError> {
        let webinar = self.outside.webinars.load(id).await?;
        let (Some(meetings), Some(meeting)) = (&self.outside.meetings, webinar.meeting_id) else {
            return Ok(Reaction::Done);
        };
        match meetings.end(&meeting).await {
            Ok(()) | Err(MeetingError::NotFound) => Ok(Reaction::Done),
            Err(error) => Ok(self.outside.retry_after(
                UNCOUNTED_ATTEMPT,
                format!("ending the BBB meeting of {id}: {error}"),
            )),
        }
    }
}

#[async_trait]
impl Reactor for StreamReactor {
    fn name(&self) -> &'static str {
        "stream_reactor"
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Webinar"])
    }

    #[tracing::instrument(name = "stream_reactor", skip_all, fields(webinar = %event.aggregate_id, event = %event.event_type))]
    async fn react(&self, event: &StoredEvent) -> Result<Reaction, ReactorError> {
        let Some(id) = event.aggregate::<WebinarId>() else {
            return Ok(Reaction::GiveUp("the webinar id is not a UUID".into()));
        };
        let payload: WebinarEvent = match event.decode() {
            Ok(payload) => payload,
            Err(error) => return Ok(Reaction::GiveUp(format!("cannot decode: {error}"))),
        };
        let meta = CommandMetadata::caused_by(COMPONENT, event);
        match payload {
            WebinarEvent::StreamStartRequested => self.start(&meta, id, false).await,
            WebinarEvent::StreamRestartRequested => self.start(&meta, id, true).await,
            WebinarEvent::StreamStopRequested => self.stop(&meta, id).await,
            WebinarEvent::ChatEnabled | WebinarEvent::ChatDisabled => self.toggle_chat(id).await,
            // The presenter ended it here: end the BBB meeting too (BBB's own end needs nothing).
            WebinarEvent::MeetingEnded {
                reason: EndReason::Presenter,
            } => self.end_meeting(id).await,
            _ => Ok(Reaction::Done),
        }
    }
}
