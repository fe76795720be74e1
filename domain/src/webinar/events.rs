//! What happened to a webinar. Event names are contract.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{EndReason, Participant, StreamHealth};
use crate::ids::GatewayId;
use crate::values::{Description, Person, Site, Title};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebinarEvent {
    Scheduled {
        title: Title,
        description: Option<Description>,
        owner: Person,
        presenters: Vec<Person>,
        start_at: DateTime<Utc>,
        duration_minutes: i64,
        enable_chat: bool,
        restricted: bool,
        groups: Vec<String>,
        gateway_id: GatewayId,
        room: String,
        /// Since version 2.0 (see `upcasters`): whether the meeting is recorded.
        record: bool,
        /// The site it belongs to (absent from events before sites: `default`).
        #[serde(default)]
        site: Site,
    },
    Rescheduled {
        start_at: DateTime<Utc>,
        duration_minutes: i64,
    },
    DetailsUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<Title>,
        /// `Some(None)`: the description was removed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<Option<Description>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        presenters: Option<Vec<Person>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restricted: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        groups: Option<Vec<String>>,
    },
    ChatEnabled,
    ChatDisabled,
    Started {
        meeting_id: String,
        /// The BigBlueButton API host the meeting was created on (absent from older events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
    },
    StreamStartRequested,
    /// Since version 2.0 (see `upcasters`): the launcher's gateway container the stream runs on
    /// (SIPMediaGW v1.8+); none for the web.py launchers, which know streams by room.
    StreamStarted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gw_id: Option<String>,
    },
    StreamFailed {
        reason: String,
        attempt: u32,
        #[serde(rename = "final")]
        final_attempt: bool,
    },
    StreamStopRequested,
    StreamStopped,
    /// The stream could not be stopped after `attempts` tries: it may still run. Asking to stop
    /// (or end) again tries again.
    StreamStopFailed {
        reason: String,
        attempts: u32,
    },
    StreamRestartRequested,
    /// The stream as the audience sees it changed (its HLS playlist advances, stalled, vanished
    /// or is not a playlist). Recorded on a change only, never per check.
    StreamHealthChanged {
        health: StreamHealth,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    GatewayReassigned {
        from: GatewayId,
        to: GatewayId,
    },
    MeetingEnded {
        reason: EndReason,
    },
    /// Someone joined the live webinar's BigBlueButton meeting.
    ParticipantJoined(Participant),
    /// Someone left it (by BigBlueButton's internal user id).
    ParticipantLeft {
        user_id: String,
    },
    Ended,
    Cancelled,
}

impl DomainEvent for WebinarEvent {
    fn event_type(&self) -> String {
        match self {
            WebinarEvent::Scheduled { .. } => "Scheduled",
            WebinarEvent::Rescheduled { .. } => "Rescheduled",
            WebinarEvent::DetailsUpdated { .. } => "DetailsUpdated",
            WebinarEvent::ChatEnabled => "ChatEnabled",
            WebinarEvent::ChatDisabled => "ChatDisabled",
            WebinarEvent::Started { .. } => "Started",
            WebinarEvent::StreamStartRequested => "StreamStartRequested",
            WebinarEvent::StreamStarted { .. } => "StreamStarted",
            WebinarEvent::StreamFailed { .. } => "StreamFailed",
            WebinarEvent::StreamStopRequested => "StreamStopRequested",
            WebinarEvent::StreamStopped => "StreamStopped",
            WebinarEvent::StreamStopFailed { .. } => "StreamStopFailed",
            WebinarEvent::StreamRestartRequested => "StreamRestartRequested",
            WebinarEvent::StreamHealthChanged { .. } => "StreamHealthChanged",
            WebinarEvent::GatewayReassigned { .. } => "GatewayReassigned",
            WebinarEvent::MeetingEnded { .. } => "MeetingEnded",
            WebinarEvent::ParticipantJoined(_) => "ParticipantJoined",
            WebinarEvent::ParticipantLeft { .. } => "ParticipantLeft",
            WebinarEvent::Ended => "Ended",
            WebinarEvent::Cancelled => "Cancelled",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            WebinarEvent::Scheduled { .. } => super::upcasters::SCHEDULED_VERSION,
            WebinarEvent::StreamStarted { .. } => super::upcasters::STREAM_STARTED_VERSION,
            _ => "1.0",
        }
        .to_owned()
    }
}
