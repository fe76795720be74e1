//! The Gateway aggregate: one SIPMediaGW server, the RTMP destination it pushes to, and the HLS
//! URL the audience plays.
//!
//! Its bearer token never enters this aggregate: the infrastructure stores the token apart and
//! hands the aggregate only a `TokenFingerprint`, so the event log cannot leak it.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{Gateway, GatewayError};
pub use commands::{GatewayChanges, GatewayCommand, GatewaySpec, TokenChange};
pub use events::GatewayEvent;

use serde::{Deserialize, Serialize};

/// Which HTTP API a SIPMediaGW server speaks (see PROTOCOLS.md, A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GatewayApi {
    /// web.py launcher, v1.6/v1.7: `GET /start|/stop|/chat|/progress`, bearer token.
    Legacy,
    /// FastAPI launcher, v1.8+: `POST /gateway/start|stop|command`, `GET /gateway/status`.
    Gateway,
}

impl GatewayApi {
    pub fn as_str(&self) -> &'static str {
        match self {
            GatewayApi::Legacy => "LEGACY",
            GatewayApi::Gateway => "GATEWAY",
        }
    }
}
