//! What may be asked of a webinar. Values are already parsed; permissions were checked by the
//! application service (the aggregate enforces only state rules).

use super::Participant;
use crate::ids::GatewayId;
use crate::schedule::TimeSlot;
use crate::values::{Description, Person, Site, Title};

/// What a presenter describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebinarDetails {
    pub title: Title,
    pub description: Option<Description>,
    pub presenters: Vec<Person>,
    pub enable_chat: bool,
    pub restricted: bool,
    pub groups: Vec<String>,
    /// Record the BBB meeting (off by default, as Pod's `MEETING_DISABLE_RECORD`).
    pub record: bool,
}

/// A partial change of details; `None` keeps a field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetailsChange {
    pub title: Option<Title>,
    /// `Some(None)` removes the description.
    pub description: Option<Option<Description>>,
    pub presenters: Option<Vec<Person>>,
    pub restricted: Option<bool>,
    pub groups: Option<Vec<String>>,
}

crate::named_enum! {
    /// Why a meeting ended.
    pub enum EndReason {
        /// The owner or an administrator ended it.
        Presenter = "PRESENTER",
        /// BBB called our end callback.
        BbbCallback = "BBB_CALLBACK",
        /// `isMeetingRunning` said no, twice in a row.
        Poll = "POLL",
        /// BigBlueButton's webhook said `meeting-ended`.
        Webhook = "WEBHOOK",
        /// The reconciliation sweep found the meeting gone (`getMeetings` no longer lists it).
        Sweep = "SWEEP",
        /// The slot ended long enough ago.
        SlotOver = "SLOT_OVER",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebinarCommand {
    Schedule {
        owner: Person,
        details: WebinarDetails,
        slot: TimeSlot,
        gateway: GatewayId,
        /// The SIPMediaGW room: lowercase letters and digits (a compose project name).
        room: String,
        /// The site of the person scheduling it (and of its gateway); it never changes.
        site: Site,
    },
    /// A new slot, on `gateway` (the same one, or another one that is free then).
    Reschedule {
        slot: TimeSlot,
        gateway: GatewayId,
    },
    UpdateDetails(DetailsChange),
    SetChat {
        enabled: bool,
    },
    /// Someone allowed to start joins: the BBB meeting exists (`meeting_id`). Only the owner's
    /// start asks for the stream.
    Start {
        meeting_id: String,
        by_owner: bool,
        /// The BigBlueButton API host, for the record.
        server: Option<String>,
    },
    StopLive,
    RestartLive,
    End {
        reason: EndReason,
    },
    Cancel,
    /// Reactor: SIPMediaGW started the stream (on `gw_id`, for the v1.8+ launchers).
    RecordStreamStarted {
        gw_id: Option<String>,
    },
    /// Reactor: a start attempt failed.
    RecordStreamFailed {
        reason: String,
        attempt: u32,
        final_attempt: bool,
    },
    /// Reactor: SIPMediaGW stopped the stream.
    RecordStreamStopped,
    /// Reactor: the stream could not be stopped after `attempts` tries.
    RecordStreamStopFailed {
        reason: String,
        attempts: u32,
    },
    /// BigBlueButton says someone joined the meeting.
    RecordParticipantJoined(Participant),
    /// BigBlueButton says someone left it.
    RecordParticipantLeft {
        user_id: String,
    },
    /// The sweep's view of who is in the meeting: everyone else has left.
    SyncParticipants {
        present: Vec<Participant>,
    },
    /// Health watcher: how the stream looks from the audience's side now.
    RecordStreamHealth {
        health: super::StreamHealth,
        detail: Option<String>,
    },
    /// Health watcher: the live stream has been unwatchable too long. The first time it is
    /// restarted; if it is still unwatchable after that restart, it fails (and fails over) when
    /// there is another gateway to try, and is restarted again otherwise.
    RecoverUnwatchableStream {
        reason: String,
        /// Whether the site has another enabled gateway (the fail-over then tries it).
        spare_gateway: bool,
    },
    /// Reactor: the stream failed for good on its gateway; move to `to` (already reserved) and
    /// start again there.
    FailOver {
        to: GatewayId,
    },
}
