//! What happened to a gateway. Names and shapes are part of the event log's contract.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{BrowsingName, GatewayApi, GwId};
use crate::ids::WebinarId;
use crate::schedule::TimeSlot;
use crate::values::{HttpUrl, Label, RtmpUrl, Site, TokenFingerprint};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatewayEvent {
    GatewayRegistered {
        name: Label,
        rtmp_url: RtmpUrl,
        hls_url: HttpUrl,
        broadcaster: Label,
        sipmediagw_url: HttpUrl,
        api: GatewayApi,
        token_fingerprint: Option<TokenFingerprint>,
        /// Added with SIPMediaGW v1.8 support; absent from older events, which read as none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gw_ids: Vec<GwId>,
        /// Absent from older events, which read as `bigbluebutton`.
        #[serde(default)]
        browsing_name: BrowsingName,
        /// The site it serves (absent from events before sites: `default`).
        #[serde(default)]
        site: Site,
    },
    /// Only the fields that changed are present.
    GatewayUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<Label>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rtmp_url: Option<RtmpUrl>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hls_url: Option<HttpUrl>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        broadcaster: Option<Label>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sipmediagw_url: Option<HttpUrl>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api: Option<GatewayApi>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gw_ids: Option<Vec<GwId>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        browsing_name: Option<BrowsingName>,
    },
    GatewayTokenRotated {
        token_fingerprint: Option<TokenFingerprint>,
    },
    GatewayDisabled {
        reason: Option<String>,
    },
    GatewayEnabled,
    GatewayRetired,
    SlotReserved {
        webinar_id: WebinarId,
        slot: TimeSlot,
    },
    SlotReleased {
        webinar_id: WebinarId,
    },
}

impl DomainEvent for GatewayEvent {
    fn event_type(&self) -> String {
        match self {
            GatewayEvent::GatewayRegistered { .. } => "GatewayRegistered",
            GatewayEvent::GatewayUpdated { .. } => "GatewayUpdated",
            GatewayEvent::GatewayTokenRotated { .. } => "GatewayTokenRotated",
            GatewayEvent::GatewayDisabled { .. } => "GatewayDisabled",
            GatewayEvent::GatewayEnabled => "GatewayEnabled",
            GatewayEvent::GatewayRetired => "GatewayRetired",
            GatewayEvent::SlotReserved { .. } => "SlotReserved",
            GatewayEvent::SlotReleased { .. } => "SlotReleased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
