//! The stream reactor: asks the stream gateway (SIPMediaGW) to start and stop streams, and
//! records what happened. Each webinar is its own lane: a slow or dead gateway holds up only the
//! webinars on it.
//!
//! Starting never happens blind: before every attempt, and after a timeout or a "busy" (which, for
//! our own room, may mean "started by an attempt whose answer we lost"), the gateway is asked
//! whether the room already streams. A failed attempt is recorded (`StreamFailed`) and tried again
//! after a back-off; a refusal that will not change (a bad token, a bad request) is not retried on
//! that gateway. After the last attempt the stream fails over to a free gateway, in a reaction to
//! the final `StreamFailed` (which the health watcher also records, for a stream the audience has
//! not been able to watch even after a restart), and the room is stopped on the old one (in a lane
//! of its own, retried until it answers). A stop that keeps failing ends in `StreamStopFailed`;
//! asking to stop again tries again.

use async_trait::async_trait;
use webinar_domain::ports::{MeetingError, StreamGatewayError, StreamRef};
use webinar_domain::webinar::{
    EndReason, StreamState, Webinar, WebinarCommand, WebinarEvent, WebinarStatus,
};
use webinar_domain::{GatewayId, WebinarId};

use super::Outside;
use crate::consumer::{Delivery, Reaction, Reactor, ReactorError};
use crate::error::CommandError;
use crate::event_log::StoredEvent;
use crate::event_store::CommandMetadata;

const COMPONENT: &str = "stream-reactor";

/// Attempts to end a BBB meeting before giving up (BBB ends empty meetings itself).
const MEETING_END_ATTEMPTS: u32 = 8;

pub struct StreamReactor {
    outside: Outside,
}

/// What one start attempt came to.
enum Attempt {
    /// Streaming, on this launcher container (v1.8+) if known.
    Started(Option<String>),
    Failed(StreamGatewayError),
}

impl StreamReactor {
    pub fn new(outside: Outside) -> Self {
        Self { outside }
    }

    /// One start attempt: never blind, and a lost answer is checked before it counts as failed.
    /// `seat` is the launcher container the stream last ran on here (v1.8+), if any.
    async fn attempt(
        &self,
        gateway: GatewayId,
        room: &str,
        seat: Option<&str>,
        restart: bool,
    ) -> Attempt {
        let streams = &self.outside.streams;
        let known = StreamRef::new(room, seat);
        if restart {
            // A stream that is not running is stopped already.
            if let Err(error) = streams.stop(gateway, known).await {
                tracing::warn!(%gateway, %error, "stop before restart failed; starting anyway");
            }
        } else {
            match streams.is_streaming(gateway, known).await {
                Ok(true) => return Attempt::Started(seat.map(str::to_owned)),
                Ok(false) => {}
                // It cannot say: starting now could start twice.
                Err(error) => return Attempt::Failed(error),
            }
        }
        match streams.start(gateway, room).await {
            Ok(gw_id) => Attempt::Started(gw_id),
            // Maybe it started and we lost the answer (timeout), or our own earlier attempt holds
            // the slot (busy): look before concluding.
            Err(error @ (StreamGatewayError::Timeout | StreamGatewayError::Busy)) => {
                match streams.is_streaming(gateway, known).await {
                    Ok(true) => Attempt::Started(seat.map(str::to_owned)),
                    _ => Attempt::Failed(error),
                }
            }
            Err(error) => Attempt::Failed(error),
        }
    }

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
        let restart = restart && webinar.stream_attempts == 0;
        let seat = webinar.gw_id_on(gateway);
        let error = match self.attempt(gateway, &room, seat, restart).await {
            Attempt::Started(gw_id) => {
                tracing::info!(webinar = %id, %gateway, gw_id = gw_id.as_deref(), "stream started");
                self.outside
                    .record(meta, id, WebinarCommand::RecordStreamStarted { gw_id })
                    .await?;
                return Ok(Reaction::Done);
            }
            Attempt::Failed(error) => error,
        };
        let attempt = webinar.stream_attempts + 1;
        // Busy or timed out: maybe our own earlier call is still starting the room.
        let maybe_started = matches!(
            error,
            StreamGatewayError::Timeout | StreamGatewayError::Busy
        );
        // A refusal that will not change is not retried on this gateway.
        let final_attempt = attempt >= self.outside.start_attempts || !error.is_transient();
        tracing::warn!(webinar = %id, %gateway, attempt, final_attempt, %error, "stream start failed");
        let reason = error.to_string();
        self.outside
            .record(
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
            // The fail-over is a reaction to the `StreamFailed` just recorded.
            return Ok(Reaction::Done);
        }
        if maybe_started {
            // Long enough for any start call still under way to have finished: then the gateway
            // can say for sure whether the room streams.
            return Ok(self.outside.retry_after_at_least(
                attempt,
                self.outside.start_timeout,
                reason,
            ));
        }
        Ok(self.outside.retry_after(attempt, reason))
    }

    async fn stop(
        &self,
        meta: &CommandMetadata,
        id: WebinarId,
        attempt: u32,
    ) -> Result<Reaction, ReactorError> {
        let webinar = self.outside.webinars.load(id).await?;
        if webinar.stream != StreamState::Stopping {
            return Ok(Reaction::Done);
        }
        let (Some(gateway), Some(room)) = (webinar.gateway_id, webinar.room.clone()) else {
            return Ok(Reaction::Done);
        };
        let stream = StreamRef::new(&room, webinar.gw_id_on(gateway));
        match self.outside.streams.stop(gateway, stream).await {
            Ok(_) => {
                self.outside
                    .record(meta, id, WebinarCommand::RecordStreamStopped)
                    .await?;
                Ok(Reaction::Done)
            }
            Err(error) if attempt >= self.outside.stop_attempts || !error.is_transient() => {
                tracing::error!(webinar = %id, %gateway, attempt, %error, "the stream could not be stopped");
                let reason = format!("stopping the stream failed: {error}");
                self.outside
                    .record(
                        meta,
                        id,
                        WebinarCommand::RecordStreamStopFailed {
                            reason,
                            attempts: attempt,
                        },
                    )
                    .await?;
                Ok(Reaction::Done)
            }
            Err(error) => Ok(self
                .outside
                .retry_after(attempt, format!("stopping the stream of {id}: {error}"))),
        }
    }

    /// After a fail-over (or any move of a webinar that had a meeting), the room must not stream
    /// on the gateway it left.
    async fn stop_on_old_gateway(
        &self,
        id: WebinarId,
        from: GatewayId,
        attempt: u32,
    ) -> Result<Reaction, ReactorError> {
        let webinar: Webinar = self.outside.webinars.load(id).await?;
        if webinar.status == WebinarStatus::Scheduled || webinar.gateway_id == Some(from) {
            return Ok(Reaction::Done);
        }
        let Some(room) = webinar.room.as_deref() else {
            return Ok(Reaction::Done);
        };
        match self
            .outside
            .streams
            .stop(from, StreamRef::new(room, webinar.gw_id_on(from)))
            .await
        {
            Ok(_) => {
                tracing::info!(webinar = %id, gateway = %from, "room stopped on the gateway it left");
                Ok(Reaction::Done)
            }
            Err(error) if !error.is_transient() => Ok(Reaction::GiveUp(format!(
                "cannot stop the room of {id} on gateway {from}: {error}"
            ))),
            Err(error) => Ok(self.outside.retry_after(
                attempt,
                format!("stopping the room of {id} on the gateway it left: {error}"),
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
        let stream = StreamRef::new(room, webinar.gw_id_on(gateway));
        if let Err(error) = self.outside.streams.toggle_chat(gateway, stream).await {
            tracing::warn!(webinar = %id, %error, "chat toggle failed");
        }
        Ok(Reaction::Done)
    }

    async fn end_meeting(&self, id: WebinarId, attempt: u32) -> Result<Reaction, ReactorError> {
        let webinar = self.outside.webinars.load(id).await?;
        let (Some(meetings), Some(meeting)) = (&self.outside.meetings, webinar.meeting_id) else {
            return Ok(Reaction::Done);
        };
        match meetings.end(&meeting).await {
            Ok(()) | Err(MeetingError::NotFound) => Ok(Reaction::Done),
            Err(error) if attempt >= MEETING_END_ATTEMPTS => Ok(Reaction::GiveUp(format!(
                "ending the BBB meeting of {id}: {error}"
            ))),
            Err(error) => Ok(self
                .outside
                .retry_after(attempt, format!("ending the BBB meeting of {id}: {error}"))),
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

    fn lane(&self, event: &StoredEvent) -> Option<String> {
        match event.event_type.as_str() {
            "StreamStartRequested"
            | "StreamRestartRequested"
            | "StreamStopRequested"
            | "StreamFailed"
            | "ChatEnabled"
            | "ChatDisabled"
            | "MeetingEnded" => Some(event.aggregate_id.clone()),
            // Stopping the room on a gateway the webinar left holds up nothing else of it.
            "GatewayReassigned" => Some(format!(
                "{}:left:{}",
                event.aggregate_id, event.global_position
            )),
            _ => None,
        }
    }

    #[tracing::instrument(name = "stream_reactor", skip_all, fields(webinar = %event.aggregate_id, event = %event.event_type, attempt = delivery.attempt))]
    async fn react(
        &self,
        event: &StoredEvent,
        delivery: Delivery,
    ) -> Result<Reaction, ReactorError> {
        let attempt = delivery.attempt;
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
            WebinarEvent::StreamStopRequested => self.stop(&meta, id, attempt).await,
            WebinarEvent::StreamFailed {
                final_attempt: true,
                ..
            } => {
                fail_over(&self.outside, &meta, id).await?;
                Ok(Reaction::Done)
            }
            WebinarEvent::GatewayReassigned { from, .. } => {
                self.stop_on_old_gateway(id, from, attempt).await
            }
            WebinarEvent::ChatEnabled | WebinarEvent::ChatDisabled => self.toggle_chat(id).await,
            // The presenter ended it here: end the BBB meeting too (BBB's own end needs nothing).
            WebinarEvent::MeetingEnded {
                reason: EndReason::Presenter,
            } => self.end_meeting(id, attempt).await,
            _ => Ok(Reaction::Done),
        }
    }
}

/// Moves a failed stream to a gateway that is free for the rest of the slot, if any. The room
/// is stopped on the old gateway, and (should freeing it now fail) its reservation released, by
/// reactions to the `GatewayReassigned` this records.
async fn fail_over(
    outside: &Outside,
    meta: &CommandMetadata,
    id: WebinarId,
) -> Result<(), ReactorError> {
    let webinar = outside.webinars.load(id).await?;
    if webinar.stream != StreamState::Failed || webinar.status != WebinarStatus::Live {
        return Ok(());
    }
    let (Some(slot), Some(from)) = (webinar.slot, webinar.gateway_id) else {
        return Ok(());
    };
    let gateways = &outside.gateways;
    let candidates = gateways.candidates(&slot, id, &webinar.site).await?;
    for to in candidates.into_iter().filter(|g| *g != from) {
        if gateways
            .reserve(meta, to, id, slot, &webinar.site)
            .await
            .is_err()
        {
            continue;
        }
        return match outside
            .webinars
            .execute_system(meta, id, WebinarCommand::FailOver { to })
            .await
        {
            Ok(_) => {
                tracing::info!(webinar = %id, %from, %to, "stream failed over");
                outside.webinars.free_now(meta, Some(from), id).await;
                Ok(())
            }
            // The state moved on: the reservation just made is an orphan the janitor frees.
            Err(CommandError::Webinar(_)) => Ok(()),
            Err(other) => Err(other.into()),
        };
    }
    tracing::error!(webinar = %id, "stream failed for good: no other gateway is free");
    Ok(())
}
