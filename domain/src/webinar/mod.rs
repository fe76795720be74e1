//! The Webinar aggregate: a BBB meeting for presenters, streamed to a live event for the audience.
//!
//! Two state machines live here: the lifecycle (`SCHEDULED → LIVE → ENDED`, or `CANCELLED`) and
//! the stream (`IDLE → STARTING → LIVE → STOPPING → STOPPED`, `FAILED`). Commands a person issues
//! and commands the reactors issue (recording what SIPMediaGW answered) meet here; everything that
//! talks to BBB or SIPMediaGW happens after the events are committed, in reactors.

mod aggregate;
mod commands;
mod events;
pub mod upcasters;

pub use aggregate::{Webinar, WebinarError};
pub use commands::{DetailsChange, EndReason, WebinarCommand, WebinarDetails};
pub use events::WebinarEvent;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WebinarStatus {
    #[default]
    Scheduled,
    Live,
    Ended,
    Cancelled,
}

impl WebinarStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            WebinarStatus::Scheduled => "SCHEDULED",
            WebinarStatus::Live => "LIVE",
            WebinarStatus::Ended => "ENDED",
            WebinarStatus::Cancelled => "CANCELLED",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamState {
    #[default]
    Idle,
    Starting,
    Live,
    Stopping,
    Stopped,
    Failed,
}

impl StreamState {
    pub fn as_str(&self) -> &'static str {
        match self {
            StreamState::Idle => "IDLE",
            StreamState::Starting => "STARTING",
            StreamState::Live => "LIVE",
            StreamState::Stopping => "STOPPING",
            StreamState::Stopped => "STOPPED",
            StreamState::Failed => "FAILED",
        }
    }
}

#[cfg(test)]
mod tests;
