//! The webinar domain: every business rule, and nothing else.
//!
//! This crate is pure: no SQL, no HTTP, no clock. The aggregates (`Gateway`, `Webinar`,
//! `ChatMessage`) implement `cqrs_es::Aggregate` with pure decisions; value objects parse untrusted
//! input once, at the edge, so that the rest of the code can only hold valid values; [`policy`]
//! decides who may do what; [`ports`] are the traits through which the outside world (BigBlueButton,
//! SIPMediaGW, the read models) is reached; [`upcasting`] reads old events in their current shape.

pub mod actor;
pub mod capacity;
pub mod chat;
pub mod gateway;
pub mod ids;
pub mod names;
pub mod policy;
pub mod ports;
pub mod retry;
pub mod schedule;
pub mod upcasting;
pub mod values;
pub mod webinar;

pub use actor::{Actor, Caller};
pub use ids::{GatewayId, IdError, Identified, WebinarId};
pub use policy::{Action, Denied, PermissionPolicy, WebinarAccess};
pub use schedule::{SlotRules, TimeSlot};
pub use values::{
    Description, HttpUrl, InvalidValue, Label, Person, RtmpUrl, Site, Title, TokenFingerprint,
};
