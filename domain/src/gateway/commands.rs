//! What may be asked of a gateway. Every field is an already-parsed value object.

use super::{BrowsingName, GatewayApi, GwId};
use crate::ids::WebinarId;
use crate::schedule::TimeSlot;
use crate::values::{HttpUrl, Label, RtmpUrl, Site, TokenFingerprint};

/// Everything that describes a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySpec {
    pub name: Label,
    pub rtmp_url: RtmpUrl,
    pub hls_url: HttpUrl,
    pub broadcaster: Label,
    pub sipmediagw_url: HttpUrl,
    pub api: GatewayApi,
    /// The launcher's gateway containers (`GATEWAY` API: at least one).
    pub gw_ids: Vec<GwId>,
    pub browsing_name: BrowsingName,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayChanges {
    pub name: Option<Label>,
    pub rtmp_url: Option<RtmpUrl>,
    pub hls_url: Option<HttpUrl>,
    pub broadcaster: Option<Label>,
    pub sipmediagw_url: Option<HttpUrl>,
    pub api: Option<GatewayApi>,
    pub gw_ids: Option<Vec<GwId>>,
    pub browsing_name: Option<BrowsingName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayCommand {
    Register {
        spec: GatewaySpec,
        token: Option<TokenFingerprint>,
        /// The site of the administrator registering it; it never changes.
        site: Site,
    },
    /// Change any of the fields and, in the same step, the token.
    Update {
        changes: GatewayChanges,
        token: TokenChange,
    },
    Disable {
        reason: Option<String>,
    },
    Enable,
    Retire,
    /// Hold `slot` for `webinar` (replacing the webinar's earlier slot here, if any).
    Reserve {
        webinar: WebinarId,
        slot: TimeSlot,
        /// The webinar's site: a gateway serves its own site only.
        site: Site,
    },
    /// Free whatever `webinar` holds here.
    Release {
        webinar: WebinarId,
    },
}

/// What an update does to the bearer token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenChange {
    /// Keep it, unless the SIPMediaGW URL changes: then the update is refused, because the old
    /// server's token would go to the new server.
    #[default]
    Keep,
    /// Keep it even though the SIPMediaGW URL changes (the administrator said so: the same
    /// server under a new name, say).
    KeepAcrossMove,
    /// A new token, stored apart, named by its fingerprint.
    Set(TokenFingerprint),
    Clear,
}
