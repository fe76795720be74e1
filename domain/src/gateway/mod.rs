//! The Gateway aggregate: one SIPMediaGW server, the RTMP destination it pushes to, and the HLS
//! URL the audience plays.
//!
//! Its bearer token never enters this aggregate: the infrastructure stores the token apart and
//! hands the aggregate only a `TokenFingerprint`, so the event log cannot leak it.

mod address;
mod aggregate;
mod commands;
mod events;
mod launcher;

pub use address::{classify, AddressClass, AddressRefused, BadNetwork, GatewayAddressPolicy};
pub use aggregate::{Gateway, GatewayError};
pub use commands::{GatewayChanges, GatewayCommand, GatewaySpec, TokenChange};
pub use events::GatewayEvent;
pub use launcher::{choose_gw_id, parse_gw_ids, BrowsingName, GwId};

crate::named_enum! {
    /// Which HTTP API a SIPMediaGW server speaks (see PROTOCOLS.md, A.1).
    pub enum GatewayApi {
        /// web.py launcher, v1.6/v1.7: `GET /start|/stop|/chat|/progress`, bearer token.
        Legacy = "LEGACY",
        /// FastAPI launcher, v1.8+: `POST /gateway/start|stop|command`, `GET /gateway/status`, on
        /// one of the gateway's configured `gw_ids`.
        Gateway = "GATEWAY",
        /// The v1.8+ proxy (`deploy/proxyAPI/proxy.py`) before a pool of launchers: `POST /start`
        /// picks a free gateway container and answers its `gw_id`; `/stop`, `/status`,
        /// `/command` take it; bearer token.
        Proxy = "PROXY",
    }
}
