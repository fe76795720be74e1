//! The Webinar's state and its decisions.

use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{
    DetailsChange, EndReason, Participant, StreamHealth, StreamState, WebinarCommand,
    WebinarDetails, WebinarEvent, WebinarStatus,
};
use crate::ids::{GatewayId, Identified, WebinarId};
use crate::policy::WebinarAccess;
use crate::schedule::TimeSlot;
use crate::values::{Description, Person, Site, Title};

/// Why a webinar command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebinarError {
    #[error("no such webinar")]
    NotFound,
    #[error("a webinar with this id is already scheduled")]
    AlreadyScheduled,
    #[error("the webinar is {state}: {action} is not possible")]
    InvalidState {
        state: &'static str,
        action: &'static str,
    },
    #[error("the stream is {state}: {action} is not possible")]
    InvalidStreamState {
        state: &'static str,
        action: &'static str,
    },
}

impl WebinarError {
    pub fn code(&self) -> &'static str {
        match self {
            WebinarError::NotFound => "NOT_FOUND",
            WebinarError::AlreadyScheduled => "CONFLICT",
            WebinarError::InvalidState { .. } | WebinarError::InvalidStreamState { .. } => {
                "INVALID_STATE"
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webinar {
    pub scheduled: bool,
    pub title: Option<Title>,
    pub description: Option<Description>,
    pub owner: Option<Person>,
    pub presenters: Vec<Person>,
    pub slot: Option<TimeSlot>,
    pub enable_chat: bool,
    pub restricted: bool,
    pub groups: Vec<String>,
    pub gateway_id: Option<GatewayId>,
    pub room: Option<String>,
    #[serde(default)]
    pub record: bool,
    #[serde(default)]
    pub site: Site,
    pub meeting_id: Option<String>,
    pub status: WebinarStatus,
    pub stream: StreamState,
    pub stream_error: Option<String>,
    /// Start attempts that failed since the stream was last asked to start.
    #[serde(default)]
    pub stream_attempts: u32,
    /// Where the stream last started: the gateway and its launcher's container (v1.8+).
    #[serde(default)]
    pub stream_seat: Option<StreamSeat>,
    /// Who is in the BigBlueButton meeting now, by internal user id.
    #[serde(default)]
    pub participants: BTreeMap<String, Participant>,
    pub end_reason: Option<EndReason>,
    /// How the running stream looks from the audience's side (`UNKNOWN` when none runs).
    #[serde(default)]
    pub stream_health: StreamHealth,
    #[serde(default)]
    pub stream_health_detail: Option<String>,
    /// Restarts asked while the live stream was unwatchable, since it was last healthy or moved:
    /// after one, the next remedy is a fail-over.
    #[serde(default)]
    pub unwatchable_restarts: u32,
}

/// A SIPMediaGW v1.8+ gateway container a stream runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSeat {
    pub gateway_id: GatewayId,
    pub gw_id: String,
}

impl Webinar {
    fn in_status(
        &self,
        allowed: &[WebinarStatus],
        action: &'static str,
    ) -> Result<(), WebinarError> {
        if !self.scheduled {
            return Err(WebinarError::NotFound);
        }
        if allowed.contains(&self.status) {
            Ok(())
        } else {
            Err(WebinarError::InvalidState {
                state: self.status.as_str(),
                action,
            })
        }
    }

    fn stream_error(&self, action: &'static str) -> WebinarError {
        WebinarError::InvalidStreamState {
            state: self.stream.as_str(),
            action,
        }
    }

    /// `gone` leave the meeting. If the streaming participant is among them and no other remains
    /// while the stream is live, the stream is not live any more: it is restarted.
    fn leaving(&self, gone: &[String]) -> Vec<WebinarEvent> {
        let gone: Vec<&Participant> = gone
            .iter()
            .filter_map(|id| self.participants.get(id))
            .collect();
        let mut events: Vec<WebinarEvent> = gone
            .iter()
            .map(|p| WebinarEvent::ParticipantLeft {
                user_id: p.user_id.clone(),
            })
            .collect();
        let bot_left = gone.iter().any(|p| p.streaming);
        let bot_stays = self
            .participants
            .values()
            .any(|p| p.streaming && !gone.iter().any(|g| g.user_id == p.user_id));
        if bot_left && !bot_stays && self.stream == StreamState::Live {
            events.push(WebinarEvent::StreamRestartRequested);
        }
        events
    }

    /// No stream runs (or a new one begins): nobody has seen it yet.
    fn clear_health(&mut self) {
        self.stream_health = StreamHealth::Unknown;
        self.stream_health_detail = None;
    }

    /// The launcher container the stream runs on at `gateway`, if it was recorded there.
    pub fn gw_id_on(&self, gateway: GatewayId) -> Option<&str> {
        self.stream_seat
            .as_ref()
            .filter(|seat| seat.gateway_id == gateway)
            .map(|seat| seat.gw_id.as_str())
    }

    /// The slot this webinar should hold on `gateway`: its own slot while it is scheduled or live
    /// there, nothing otherwise (ended, cancelled, moved elsewhere, never scheduled).
    pub fn reservation_on(&self, gateway: GatewayId) -> Option<TimeSlot> {
        let active = matches!(self.status, WebinarStatus::Scheduled | WebinarStatus::Live);
        self.slot
            .filter(|_| self.scheduled && active && self.gateway_id == Some(gateway))
    }

    /// Whether `caller` may see this webinar's live event (the policy's rule).
    pub fn visible_to(&self, caller: &crate::actor::Caller) -> bool {
        crate::policy::may_see(caller, self)
    }

    fn details_change(&self, change: DetailsChange) -> Option<WebinarEvent> {
        fn differs<T: PartialEq>(new: Option<T>, old: &T) -> Option<T> {
            new.filter(|n| n != old)
        }
        let groups = differs(change.groups, &self.groups);
        // Any group makes the event restricted (Pod's rule), whatever `restricted` says.
        let will_have_groups = groups
            .as_ref()
            .map_or(!self.groups.is_empty(), |g| !g.is_empty());
        let restricted = differs(
            change
                .restricted
                .map(|r| r || will_have_groups)
                .or_else(|| (will_have_groups && !self.restricted).then_some(true)),
            &self.restricted,
        );
        let title = change.title.filter(|t| Some(t) != self.title.as_ref());
        let description = differs(change.description, &self.description);
        let presenters = differs(change.presenters, &self.presenters);
        if title.is_none()
            && description.is_none()
            && presenters.is_none()
            && restricted.is_none()
            && groups.is_none()
        {
            return None;
        }
        Some(WebinarEvent::DetailsUpdated {
            title,
            description,
            presenters,
            restricted,
            groups,
        })
    }

    /// Decides which events a command produces. Pure, so a retry after a conflict is safe.
    pub fn decide(&self, command: WebinarCommand) -> Result<Vec<WebinarEvent>, WebinarError> {
        use StreamState as S;
        use WebinarEvent::*;
        use WebinarStatus::{
            Cancelled as StatusCancelled, Ended as StatusEnded, Live, Scheduled as StatusScheduled,
        };
        Ok(match command {
            WebinarCommand::Schedule {
                owner,
                details,
                slot,
                gateway,
                room,
                site,
            } => {
                if self.scheduled {
                    return Err(WebinarError::AlreadyScheduled);
                }
                let WebinarDetails {
                    title,
                    description,
                    presenters,
                    enable_chat,
                    restricted,
                    groups,
                    record,
                } = details;
                vec![Scheduled {
                    title,
                    description,
                    owner,
                    presenters,
                    start_at: slot.start(),
                    duration_minutes: slot.duration_minutes(),
                    enable_chat,
                    restricted: restricted || !groups.is_empty(),
                    groups,
                    gateway_id: gateway,
                    room,
                    record,
                    site,
                }]
            }
            WebinarCommand::Reschedule { slot, gateway } => {
                self.in_status(&[StatusScheduled, Live], "rescheduling")?;
                let mut events = Vec::new();
                if self.slot != Some(slot) {
                    events.push(Rescheduled {
                        start_at: slot.start(),
                        duration_minutes: slot.duration_minutes(),
                    });
                }
                if let Some(from) = self.gateway_id.filter(|g| *g != gateway) {
                    if self.status == Live {
                        return Err(WebinarError::InvalidState {
                            state: self.status.as_str(),
                            action: "moving it to another gateway",
                        });
                    }
                    events.push(GatewayReassigned { from, to: gateway });
                }
                events
            }
            WebinarCommand::UpdateDetails(change) => {
                self.in_status(&[StatusScheduled, Live], "changing its details")?;
                self.details_change(change).into_iter().collect()
            }
            WebinarCommand::SetChat { enabled } => {
                self.in_status(&[StatusScheduled, Live], "changing its chat")?;
                match (enabled, self.enable_chat) {
                    (true, false) => vec![ChatEnabled],
                    (false, true) => vec![ChatDisabled],
                    _ => vec![],
                }
            }
            WebinarCommand::Start {
                meeting_id,
                by_owner,
                server,
            } => {
                self.in_status(&[StatusScheduled, Live], "starting")?;
                let mut events = Vec::new();
                if self.status == StatusScheduled {
                    events.push(Started { meeting_id, server });
                }
                if by_owner && self.stream == S::Idle {
                    events.push(StreamStartRequested);
                }
                events
            }
            WebinarCommand::StopLive => {
                self.in_status(&[Live], "stopping the live stream")?;
                match self.stream {
                    S::Starting | S::Live => vec![StreamStopRequested],
                    S::Idle | S::Stopping | S::Stopped | S::Failed => vec![],
                }
            }
            WebinarCommand::RestartLive => {
                self.in_status(&[Live], "restarting the live stream")?;
                vec![StreamRestartRequested]
            }
            WebinarCommand::End { reason } => {
                if self.scheduled && self.status == StatusEnded {
                    // Ending again retries a stop that failed; otherwise it changes nothing.
                    return Ok(match self.stream {
                        S::Starting | S::Live => vec![StreamStopRequested],
                        _ => vec![],
                    });
                }
                self.in_status(&[Live], "ending it (cancel a webinar that has not started)")?;
                let mut events = vec![MeetingEnded { reason }];
                if matches!(self.stream, S::Starting | S::Live) {
                    events.push(StreamStopRequested);
                }
                events.push(Ended);
                events
            }
            WebinarCommand::Cancel => {
                if self.scheduled && self.status == StatusCancelled {
                    return Ok(vec![]);
                }
                self.in_status(
                    &[StatusScheduled],
                    "cancelling it (end a live webinar instead)",
                )?;
                vec![Cancelled]
            }
            WebinarCommand::RecordStreamStarted { gw_id } => {
                self.in_status(&[Live, StatusEnded], "recording a started stream")?;
                match self.stream {
                    S::Starting => vec![StreamStarted { gw_id }],
                    S::Live => vec![],
                    _ => return Err(self.stream_error("recording a started stream")),
                }
            }
            WebinarCommand::RecordStreamFailed {
                reason,
                attempt,
                final_attempt,
            } => {
                self.in_status(&[Live, StatusEnded], "recording a failed stream")?;
                match self.stream {
                    S::Starting => vec![StreamFailed {
                        reason,
                        attempt,
                        final_attempt,
                    }],
                    S::Failed => vec![],
                    _ => return Err(self.stream_error("recording a failed stream")),
                }
            }
            WebinarCommand::RecordStreamHealth { health, detail } => {
                // A watcher late for a stream that stopped meanwhile has nothing to say.
                if !self.scheduled {
                    return Err(WebinarError::NotFound);
                }
                let watched = self.status == Live && matches!(self.stream, S::Starting | S::Live);
                if !watched || health == self.stream_health {
                    vec![]
                } else {
                    vec![StreamHealthChanged { health, detail }]
                }
            }
            WebinarCommand::RecoverUnwatchableStream {
                reason,
                spare_gateway,
            } => {
                if !self.scheduled {
                    return Err(WebinarError::NotFound);
                }
                if self.status != Live || self.stream != S::Live || !self.stream_health.is_bad() {
                    vec![]
                } else if self.unwatchable_restarts == 0 || !spare_gateway {
                    // Failing with nowhere to go would leave the room running, unwatched and
                    // never looked at again: another restart is the better bet.
                    vec![StreamRestartRequested]
                } else {
                    vec![StreamFailed {
                        reason,
                        attempt: self.stream_attempts + 1,
                        final_attempt: true,
                    }]
                }
            }
            WebinarCommand::FailOver { to } => {
                self.in_status(&[Live], "failing over to another gateway")?;
                if self.stream != S::Failed {
                    return Err(self.stream_error("failing over to another gateway"));
                }
                let from = self.gateway_id.ok_or(WebinarError::NotFound)?;
                if from == to {
                    return Ok(vec![]);
                }
                vec![GatewayReassigned { from, to }, StreamStartRequested]
            }
            WebinarCommand::RecordStreamStopFailed { reason, attempts } => {
                self.in_status(&[Live, StatusEnded], "recording a failed stop")?;
                match self.stream {
                    S::Stopping => vec![StreamStopFailed { reason, attempts }],
                    // Recorded already (a repeated delivery), or superseded.
                    S::Live => vec![],
                    _ => return Err(self.stream_error("recording a failed stop")),
                }
            }
            // What BigBlueButton reports of a meeting that is not live (any more) changes
            // nothing: deliveries arrive late, and twice.
            WebinarCommand::RecordParticipantJoined(participant) => {
                if self.status != Live
                    || self.participants.get(&participant.user_id) == Some(&participant)
                {
                    vec![]
                } else {
                    vec![ParticipantJoined(participant)]
                }
            }
            WebinarCommand::RecordParticipantLeft { user_id } => {
                if self.status != Live {
                    vec![]
                } else {
                    self.leaving(&[user_id])
                }
            }
            WebinarCommand::SyncParticipants { present } => {
                if self.status != Live {
                    return Ok(vec![]);
                }
                let gone: Vec<String> = self
                    .participants
                    .keys()
                    .filter(|id| !present.iter().any(|p| &p.user_id == *id))
                    .cloned()
                    .collect();
                let mut events: Vec<WebinarEvent> = present
                    .into_iter()
                    .filter(|p| self.participants.get(&p.user_id) != Some(p))
                    .map(ParticipantJoined)
                    .collect();
                events.extend(self.leaving(&gone));
                events
            }
            WebinarCommand::RecordStreamStopped => {
                self.in_status(&[Live, StatusEnded], "recording a stopped stream")?;
                match self.stream {
                    S::Stopping => vec![StreamStopped],
                    S::Stopped => vec![],
                    _ => return Err(self.stream_error("recording a stopped stream")),
                }
            }
        })
    }
}

impl WebinarAccess for Webinar {
    fn owner_id(&self) -> Option<&str> {
        self.owner.as_ref().map(|o| o.id.as_str())
    }
    fn presenters(&self) -> &[Person] {
        &self.presenters
    }
    fn restricted(&self) -> bool {
        self.restricted
    }
    fn groups(&self) -> &[String] {
        &self.groups
    }
    fn site(&self) -> &Site {
        &self.site
    }
}

impl Identified for Webinar {
    type Id = WebinarId;
}

impl Aggregate for Webinar {
    const TYPE: &'static str = "Webinar";
    type Command = WebinarCommand;
    type Event = WebinarEvent;
    type Error = WebinarError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use WebinarEvent::*;
        match event {
            Scheduled {
                title,
                description,
                owner,
                presenters,
                start_at,
                duration_minutes,
                enable_chat,
                restricted,
                groups,
                gateway_id,
                room,
                record,
                site,
            } => {
                self.scheduled = true;
                self.site = site;
                self.record = record;
                self.title = Some(title);
                self.description = description;
                self.owner = Some(owner);
                self.presenters = presenters;
                self.slot = Some(TimeSlot::new_unchecked(start_at, duration_minutes));
                self.enable_chat = enable_chat;
                self.restricted = restricted;
                self.groups = groups;
                self.gateway_id = Some(gateway_id);
                self.room = Some(room);
                self.status = WebinarStatus::Scheduled;
                self.stream = StreamState::Idle;
            }
            Rescheduled {
                start_at,
                duration_minutes,
            } => self.slot = Some(TimeSlot::new_unchecked(start_at, duration_minutes)),
            DetailsUpdated {
                title,
                description,
                presenters,
                restricted,
                groups,
            } => {
                if let Some(title) = title {
                    self.title = Some(title);
                }
                if let Some(description) = description {
                    self.description = description;
                }
                if let Some(presenters) = presenters {
                    self.presenters = presenters;
                }
                if let Some(restricted) = restricted {
                    self.restricted = restricted;
                }
                if let Some(groups) = groups {
                    self.groups = groups;
                }
            }
            ChatEnabled => self.enable_chat = true,
            ChatDisabled => self.enable_chat = false,
            Started { meeting_id, .. } => {
                self.meeting_id = Some(meeting_id);
                self.status = WebinarStatus::Live;
            }
            StreamStartRequested | StreamRestartRequested => {
                if self.stream == StreamState::Live && self.stream_health.is_bad() {
                    self.unwatchable_restarts += 1;
                }
                self.clear_health();
                self.stream = StreamState::Starting;
                self.stream_error = None;
                self.stream_attempts = 0;
            }
            StreamStarted { gw_id } => {
                self.stream = StreamState::Live;
                self.stream_error = None;
                self.stream_seat = match (gw_id, self.gateway_id) {
                    (Some(gw_id), Some(gateway_id)) => Some(StreamSeat { gateway_id, gw_id }),
                    _ => None,
                };
            }
            StreamFailed {
                reason,
                final_attempt,
                attempt,
            } => {
                self.stream_error = Some(reason);
                self.stream_attempts = attempt;
                if final_attempt {
                    self.stream = StreamState::Failed;
                    self.clear_health();
                }
            }
            StreamStopRequested => self.stream = StreamState::Stopping,
            StreamStopped => {
                self.stream = StreamState::Stopped;
                self.clear_health();
            }
            StreamStopFailed { reason, .. } => {
                // It may still be running: it is live as far as anyone knows.
                self.stream = StreamState::Live;
                self.stream_error = Some(reason);
            }
            StreamHealthChanged { health, detail } => {
                self.stream_health = health;
                self.stream_health_detail = detail;
                if health == StreamHealth::Healthy {
                    self.unwatchable_restarts = 0;
                }
            }
            GatewayReassigned { to, .. } => {
                self.gateway_id = Some(to);
                self.unwatchable_restarts = 0;
            }
            MeetingEnded { reason } => self.end_reason = Some(reason),
            ParticipantJoined(participant) => {
                self.participants
                    .insert(participant.user_id.clone(), participant);
            }
            ParticipantLeft { user_id } => {
                self.participants.remove(&user_id);
            }
            Ended => self.status = WebinarStatus::Ended,
            Cancelled => self.status = WebinarStatus::Cancelled,
        }
    }
}
