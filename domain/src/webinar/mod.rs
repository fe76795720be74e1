//! The Webinar aggregate: a BBB meeting for presenters, streamed to a live event for the audience.
//!
//! Two state machines live here: the lifecycle (`SCHEDULED → LIVE → ENDED`, or `CANCELLED`) and
//! the stream (`IDLE → STARTING → LIVE → STOPPING → STOPPED`, `FAILED`). Commands a person issues
//! and commands the reactors issue (recording what SIPMediaGW answered) meet here; everything that
//! talks to BBB or SIPMediaGW happens after the events are committed, in reactors.

mod aggregate;
mod commands;
mod events;
pub mod health;
mod participants;
pub mod upcasters;

pub use aggregate::{StreamSeat, Webinar, WebinarError};
pub use commands::{DetailsChange, EndReason, WebinarCommand, WebinarDetails};
pub use events::WebinarEvent;
pub use health::StreamHealth;
pub use participants::{Participant, STREAMING_NAME};

use crate::ids::WebinarId;

crate::named_enum! {
    /// Where a webinar is in its life.
    #[derive(Default)]
    pub enum WebinarStatus {
        #[default]
        Scheduled = "SCHEDULED",
        Live = "LIVE",
        Ended = "ENDED",
        Cancelled = "CANCELLED",
    }
}

crate::named_enum! {
    /// Where a webinar's stream is.
    #[derive(Default)]
    pub enum StreamState {
        #[default]
        Idle = "IDLE",
        Starting = "STARTING",
        Live = "LIVE",
        Stopping = "STOPPING",
        Stopped = "STOPPED",
        Failed = "FAILED",
    }
}

crate::named_enum! {
    /// A webinar as the live page shows it.
    pub enum LiveEventStatus {
        Upcoming = "UPCOMING",
        Live = "LIVE",
        Ended = "ENDED",
        Cancelled = "CANCELLED",
    }
}

impl From<WebinarStatus> for LiveEventStatus {
    fn from(status: WebinarStatus) -> Self {
        match status {
            WebinarStatus::Scheduled => LiveEventStatus::Upcoming,
            WebinarStatus::Live => LiveEventStatus::Live,
            WebinarStatus::Ended => LiveEventStatus::Ended,
            WebinarStatus::Cancelled => LiveEventStatus::Cancelled,
        }
    }
}

/// The BBB meeting id of a webinar: derived from its id, so a repeated start finds the same
/// meeting (BBB's `create` is idempotent on it). Built here and nowhere else.
pub fn meeting_id(webinar: WebinarId) -> String {
    format!("webinar-{webinar}")
}

/// The webinar a BigBlueButton meeting id of ours belongs to (`None` for anyone else's meeting).
pub fn webinar_of_meeting(meeting_id: &str) -> Option<WebinarId> {
    meeting_id.strip_prefix("webinar-")?.parse().ok()
}

#[cfg(test)]
mod tests;
