//! Reactors: they tail the log with their own checkpoints and act on the outside world through
//! the domain's ports.
//!
//! - [`stream::StreamReactor`]: SIPMediaGW start, stop, restart, chat toggle; retries scheduled
//!   with back-off, then fail-over to a free gateway.
//! - [`chat::ChatRelayReactor`]: audience messages into the meeting (SIPMediaGW `POST /chat` or
//!   BBB `sendChatMessage`).
//! - [`meetings::MeetingWatcher`]: ends webinars whose BBB meeting ended (callback, polling, slot
//!   over).
//! - [`reservations::ReservationReactor`]: the scheduling saga's durable half — frees a gateway
//!   when its webinar ended, was cancelled or moved, and frees a reservation whose webinar never
//!   came (a request that crashed between its two steps).
//!
//! All are at least once; each makes its effect idempotent by checking the aggregate first.

pub mod chat;
pub mod health;
pub mod meetings;
pub mod reservations;
pub mod stream;

use std::sync::Arc;

use chrono::Utc;
use rand::Rng;
use webinar_domain::ports::{MeetingService, StreamGateway};
use webinar_domain::retry::Backoff;

use crate::chat::ChatService;
use crate::config::ChatRelay;
use webinar_domain::webinar::WebinarCommand;
use webinar_domain::WebinarId;

use crate::consumer::{Reaction, ReactorError};
use crate::error::CommandError;
use crate::event_store::CommandMetadata;
use crate::gateways::GatewayService;
use crate::webinars::WebinarService;

/// What the reactors share: the application services and the outside world.
#[derive(Clone)]
pub struct Outside {
    pub webinars: Arc<WebinarService>,
    pub gateways: Arc<GatewayService>,
    pub chat: Arc<ChatService>,
    pub streams: Arc<dyn StreamGateway>,
    pub meetings: Option<Arc<dyn MeetingService>>,
    /// Start attempts on one gateway before the stream fails over.
    pub start_attempts: u32,
    /// Stop attempts before the stream is recorded as `StreamStopFailed`.
    pub stop_attempts: u32,
    /// The longest a start call may take: after a start that may have happened, the next attempt
    /// waits at least this long, so that the gateway can tell for sure.
    pub start_timeout: std::time::Duration,
    /// How long a reservation may wait for its webinar before it is freed.
    pub reservation_grace: std::time::Duration,
    /// Pauses between attempts.
    pub backoff: Backoff,
    pub chat_relay: ChatRelay,
}

impl Outside {
    /// Records `command` on webinar `id` for a reactor; a refusal because the state moved on
    /// means someone else decided, and is not an error.
    pub async fn record(
        &self,
        meta: &CommandMetadata,
        id: WebinarId,
        command: WebinarCommand,
    ) -> Result<(), ReactorError> {
        match self.webinars.execute_system(meta, id, command).await {
            Ok(_) | Err(CommandError::Webinar(_)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// "See this event again after the back-off of failed attempt `attempt`" (with ±20 % of
    /// jitter, so that a gateway coming back is not hit by every webinar at once).
    pub fn retry_after(&self, attempt: u32, why: impl Into<String>) -> Reaction {
        self.retry_after_at_least(attempt, std::time::Duration::ZERO, why)
    }

    /// The same, but never sooner than `floor`.
    pub fn retry_after_at_least(
        &self,
        attempt: u32,
        floor: std::time::Duration,
        why: impl Into<String>,
    ) -> Reaction {
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        let pause = self.backoff.delay(attempt).mul_f64(jitter).max(floor);
        let pause = chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::seconds(30));
        Reaction::RetryAt(Utc::now() + pause, why.into())
    }
}
