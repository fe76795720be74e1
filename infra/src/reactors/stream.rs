//! The stream reactor: asks SIPMediaGW to start and stop streams, and records what happened.

use async_trait::async_trait;
use webinar_domain::webinar::{EndReason, StreamState, Webinar, WebinarCommand, WebinarEvent};
use webinar_domain::WebinarId;

use super::Outside;
use crate::consumer::Reactor;
use crate::error::CommandError;
use crate::event_log::StoredEvent;
use crate::event_store::CommandMetadata;
use crate::sipmediagw::Stopped;

pub struct StreamReactor {
    outside: Outside,
}

const COMPONENT: &str = "stream-reactor";

impl StreamReactor {
    pub fn new(outside: Outside) -> Self {
        Self { outside }
    }

    async fn load(&self, id: WebinarId) -> Result<Webinar, String> {
        self.outside
            .webinars
            .load(id)
            .await
            .map_err(|e| e.to_string())
    }

    /// Records `command`; a refusal because the state moved on means someone else decided.
    async fn record(
        &self,
        meta: &CommandMetadata,
        id: WebinarId,
        command: WebinarCommand,
    ) -> Result<(), String> {
        match self
            .outside
            .webinars
            .execute_system(meta, id, command)
            .await
        {
            Ok(_) | Err(CommandError::Webinar(_)) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn start(
        &self,
        meta: &CommandMetadata,
        id: WebinarId,
        restart: bool,
    ) -> Result<(), String> {
        let mut webinar = self.load(id).await?;
        if webinar.stream != StreamState::Starting {
            return Ok(());
        }
        let (Some(gateway), Some(room)) = (webinar.gateway_id, webinar.room.clone()) else {
            return Ok(());
        };
        let (target, rtmp) = self.outside.target(gateway).await?;
        if restart {
            // Stop first; a stream that is not running is stopped already.
            if let Err(error) = self.outside.sip.stop(&target, &room).await {
                tracing::warn!(webinar = %id, %error, "stop before restart failed; starting anyway");
            }
        } else if self.outside.sip.is_streaming(&target, &room).await == Ok(true) {
            // Started before a crash, not yet recorded: do not start twice.
            return self
                .record(meta, id, WebinarCommand::RecordStreamStarted)
                .await;
        }
        loop {
            match self
                .outside
                .sip
                .start(&target, &room, &self.outside.join_domain, &rtmp)
                .await
            {
                Ok(()) => {
                    tracing::info!(webinar = %id, gateway = %gateway, "stream started");
                    return self
                        .record(meta, id, WebinarCommand::RecordStreamStarted)
                        .await;
                }
                Err(error) => {
                    let attempt = webinar.stream_attempts + 1;
                    let final_attempt = attempt >= self.outside.start_attempts;
                    tracing::warn!(webinar = %id, gateway = %gateway, attempt, %error, "stream start failed");
                    self.record(
                        meta,
                        id,
                        WebinarCommand::RecordStreamFailed {
                            reason: error.to_string(),
                            attempt,
                            final_attempt,
                        },
                    )
                    .await?;
                    if final_attempt {
                        return self.fail_over(meta, id).await;
                    }
                    let pause = self.outside.retry * 2u32.saturating_pow(attempt - 1);
                    tokio::time::sleep(pause).await;
                    webinar = self.load(id).await?;
                    if webinar.stream != StreamState::Starting {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Moves a failed stream to a gateway that is free for the rest of the slot, if any.
    async fn fail_over(&self, meta: &CommandMetadata, id: WebinarId) -> Result<(), String> {
        let webinar = self.load(id).await?;
        let (Some(slot), Some(from)) = (webinar.slot, webinar.gateway_id) else {
            return Ok(());
        };
        let gateways = &self.outside.gateways;
        let candidates = gateways
            .candidates(&slot, id)
            .await
            .map_err(|e| e.to_string())?;
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
                    gateways
                        .release(meta, from, id)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(());
                }
                Err(error) => {
                    gateways
                        .release(meta, to, id)
                        .await
                        .map_err(|e| e.to_string())?;
                    return match error {
                        CommandError::Webinar(_) => Ok(()),
                        other => Err(other.to_string()),
                    };
                }
            }
        }
        tracing::error!(webinar = %id, "stream failed for good: no other gateway is free");
        Ok(())
    }

    async fn stop(&self, meta: &CommandMetadata, id: WebinarId) -> Result<(), String> {
        let webinar = self.load(id).await?;
        if webinar.stream != StreamState::Stopping {
            return Ok(());
        }
        let (Some(gateway), Some(room)) = (webinar.gateway_id, webinar.room.clone()) else {
            return Ok(());
        };
        let (target, _) = self.outside.target(gateway).await?;
        match self.outside.sip.stop(&target, &room).await {
            Ok(Stopped::Stopped | Stopped::NotRunning) => {
                self.record(meta, id, WebinarCommand::RecordStreamStopped)
                    .await
            }
            // Retried by the runner: the stream must not be left running.
            Err(error) => Err(format!("stopping the stream of {id}: {error}")),
        }
    }

    async fn toggle_chat(&self, id: WebinarId) -> Result<(), String> {
        let webinar = self.load(id).await?;
        if webinar.stream != StreamState::Live {
            return Ok(());
        }
        let (Some(gateway), Some(room)) = (webinar.gateway_id, webinar.room.clone()) else {
            return Ok(());
        };
        let (target, _) = self.outside.target(gateway).await?;
        // Best effort, as in Pod: a toggle lost is not worth stalling every stream for.
        if let Err(error) = self.outside.sip.toggle_chat(&target, &room).await {
            tracing::warn!(webinar = %id, %error, "chat toggle failed");
        }
        Ok(())
    }

    async fn end_meeting(&self, id: WebinarId) -> Result<(), String> {
        let webinar = self.load(id).await?;
        let (Some(bbb), Some(meeting)) = (&self.outside.bbb, webinar.meeting_id) else {
            return Ok(());
        };
        match bbb.end(&meeting).await {
            Ok(()) | Err(crate::bbb::BbbError::NotFound) => Ok(()),
            Err(error) => Err(format!("ending the BBB meeting of {id}: {error}")),
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

    async fn react(&self, event: &StoredEvent) -> Result<(), String> {
        let payload: WebinarEvent = event.decode().map_err(|e| e.to_string())?;
        let id: WebinarId = event
            .aggregate_id
            .parse()
            .map_err(|_| "bad webinar id".to_owned())?;
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
            _ => Ok(()),
        }
    }
}
