//! The outside world as the domain sees it: traits that the infrastructure implements and wires in
//! at start-up. BigBlueButton is a [`MeetingService`], SIPMediaGW a [`StreamGateway`], and the read
//! models answer the questions of [`GatewayDirectory`] and [`LiveWebinars`]. The errors say what
//! went wrong in the domain's words, with the rule of what is worth retrying.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ids::{GatewayId, WebinarId};
use crate::schedule::TimeSlot;
use crate::values::Site;
use crate::webinar::Participant;

/// What a read-model lookup fails with (the database, typically): opaque to the domain.
pub type LookupError = Box<dyn std::error::Error + Send + Sync>;

/// Why a call to the meeting service (BigBlueButton) failed. Messages are short and never contain
/// a secret or a whole response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeetingError {
    #[error("BigBlueButton is not configured (WEBINAR_BBB_URL and WEBINAR_BBB_SECRET)")]
    NotConfigured,
    #[error("BigBlueButton is unreachable: {0}")]
    Unreachable(String),
    #[error("BigBlueButton did not answer in time")]
    Timeout,
    #[error(
        "BigBlueButton refused our checksum (check WEBINAR_BBB_SECRET and WEBINAR_BBB_CHECKSUM)"
    )]
    Checksum,
    #[error("BigBlueButton does not know this meeting")]
    NotFound,
    #[error("BigBlueButton already has a different meeting with this id")]
    IdNotUnique,
    #[error("BigBlueButton refused the call: {key}")]
    Failed { key: String },
    #[error("BigBlueButton answered something unexpected: {0}")]
    Protocol(String),
}

/// What creating a meeting needs.
#[derive(Debug, Clone)]
pub struct NewMeeting<'a> {
    pub meeting_id: &'a str,
    pub name: &'a str,
    pub logout_url: &'a str,
    pub end_callback_url: &'a str,
    pub record: bool,
}

/// Role on joining a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingRole {
    Moderator,
    Viewer,
}

/// A meeting as BigBlueButton lists it (`getMeetings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMeeting {
    pub meeting_id: String,
    pub running: bool,
    pub attendees: Vec<Participant>,
}

/// Where presenters meet (BigBlueButton).
#[async_trait]
pub trait MeetingService: Send + Sync {
    /// The server meetings are created on, for the record (its API host).
    fn server(&self) -> Option<String> {
        None
    }
    /// Every meeting BigBlueButton has (the reconciliation sweep).
    async fn list_meetings(&self) -> Result<Vec<ListedMeeting>, MeetingError>;
    /// Registers `callback_url` as a webhook (idempotent: a hook it has already is a success).
    async fn register_hook(&self, callback_url: &str) -> Result<(), MeetingError>;
    /// Creates the meeting; creating one that exists is a success (idempotent).
    async fn create(&self, meeting: &NewMeeting<'_>) -> Result<(), MeetingError>;
    /// The URL that lets `full_name` into `meeting_id` with `role`.
    fn join_url(
        &self,
        meeting_id: &str,
        full_name: &str,
        user_id: &str,
        role: MeetingRole,
    ) -> String;
    /// Whether someone is in the meeting now; `Err(NotFound)` when the meeting does not exist
    /// (ended, or never created), which "not running" alone does not tell apart.
    async fn is_running(&self, meeting_id: &str) -> Result<bool, MeetingError>;
    /// Ends the meeting for everyone.
    async fn end(&self, meeting_id: &str) -> Result<(), MeetingError>;
    /// Posts `message` to the meeting's public chat as `user_name`.
    async fn send_chat_message(
        &self,
        meeting_id: &str,
        message: &str,
        user_name: &str,
    ) -> Result<(), MeetingError>;
}

/// Why a call to a streaming gateway (SIPMediaGW) failed, in a few words fit for an event
/// (`StreamFailed.reason`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamGatewayError {
    #[error("SIPMediaGW unreachable")]
    Unreachable,
    #[error("SIPMediaGW timed out")]
    Timeout,
    #[error("SIPMediaGW refused the token (401)")]
    Unauthorized,
    #[error("SIPMediaGW busy: no free resources")]
    Busy,
    #[error("SIPMediaGW: the gateway failed to launch")]
    LaunchFailed,
    #[error("SIPMediaGW error {status}{}", .detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Http { status: u16, detail: Option<String> },
    #[error("SIPMediaGW answered something unexpected")]
    Protocol,
    /// The v1.8+ launcher has no gateway container by this id (it answers 404, or v1.8.4 a 500,
    /// to a status request about it).
    #[error(
        "SIPMediaGW has no gateway container {0}: list in gwIds the ids its launcher initialised \
         (`docker compose ls` on the SIPMediaGW host)"
    )]
    UnknownGwId(String),
    /// The gateway cannot be called at all (not registered, its settings unreadable).
    #[error("gateway not usable: {0}")]
    NotUsable(String),
}

impl StreamGatewayError {
    /// Whether trying again later may work: a bad token or a refused request fails the same way
    /// until someone changes something.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            StreamGatewayError::Unauthorized
                | StreamGatewayError::NotUsable(_)
                | StreamGatewayError::UnknownGwId(_)
                | StreamGatewayError::Http {
                    status: 400 | 404 | 422,
                    ..
                }
        )
    }
}

/// What a stop achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Stopped,
    /// The gateway had no such stream: stopped already.
    NotRunning,
}

/// Which stream a call is about: our room, and the launcher's gateway container it runs on when
/// that was recorded (`StreamStarted.gw_id`, SIPMediaGW v1.8+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRef<'a> {
    pub room: &'a str,
    pub gw_id: Option<&'a str>,
}

impl<'a> StreamRef<'a> {
    pub fn new(room: &'a str, gw_id: Option<&'a str>) -> Self {
        Self { room, gw_id }
    }
}

/// The SIPMediaGW servers that stream a room of a meeting to the audience.
#[async_trait]
pub trait StreamGateway: Send + Sync {
    /// Starts streaming `room` to the gateway's RTMP destination. Answers the gateway container it
    /// runs on (v1.8+; `None` for launchers that know streams by room), to be recorded.
    async fn start(
        &self,
        gateway: GatewayId,
        room: &str,
    ) -> Result<Option<String>, StreamGatewayError>;
    /// Stops the stream; one that is not running counts as stopped.
    async fn stop(
        &self,
        gateway: GatewayId,
        stream: StreamRef<'_>,
    ) -> Result<Stopped, StreamGatewayError>;
    /// Whether the room streams now (a repeated start must not start twice).
    async fn is_streaming(
        &self,
        gateway: GatewayId,
        stream: StreamRef<'_>,
    ) -> Result<bool, StreamGatewayError>;
    /// Shows or hides the meeting's chat in the stream.
    async fn toggle_chat(
        &self,
        gateway: GatewayId,
        stream: StreamRef<'_>,
    ) -> Result<(), StreamGatewayError>;
    /// Types `message` into the meeting's public chat (Pod's relay).
    async fn post_chat(
        &self,
        gateway: GatewayId,
        stream: StreamRef<'_>,
        message: &str,
    ) -> Result<(), StreamGatewayError>;
}

/// Which gateways to try for a slot (a read model: it may lag; the Gateway aggregate decides).
#[async_trait]
pub trait GatewayDirectory: Send + Sync {
    /// Enabled gateways of `site`, those that look free at `slot` (for `webinar`) first.
    async fn candidates(
        &self,
        slot: &TimeSlot,
        webinar: WebinarId,
        site: &Site,
    ) -> Result<Vec<GatewayId>, LookupError>;
}

/// The SIPMediaGW v1.8+ gateway containers of `gateway` that streams other than `room`'s hold now
/// (a read model: a new stream must not take one of them, or the launcher would cut that stream).
#[async_trait]
pub trait HeldGwIds: Send + Sync {
    async fn held(&self, gateway: GatewayId, except_room: &str)
        -> Result<Vec<String>, LookupError>;
}

/// How many webinars an owner has that are scheduled or live (a read model: it may lag by a
/// moment, so a quota checked with it may be passed by a request or two racing each other).
#[async_trait]
pub trait OwnerWebinars: Send + Sync {
    async fn upcoming(&self, owner_id: &str) -> Result<u64, LookupError>;
}

/// A webinar that is live now, as the meeting watcher checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveWebinar {
    pub webinar: WebinarId,
    pub meeting_id: Option<String>,
    pub ends_at: DateTime<Utc>,
}

/// The webinars that are live now (a read model).
#[async_trait]
pub trait LiveWebinars: Send + Sync {
    async fn live(&self) -> Result<Vec<LiveWebinar>, LookupError>;
}
