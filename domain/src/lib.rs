//! The webinar domain: every business rule, and nothing else.
//!
//! This crate is pure: no SQL, no HTTP, no clock. Aggregates (`Gateway`, later `Webinar` and
//! `ChatMessage`) implement `cqrs_es::Aggregate`; value objects parse untrusted input once, at the
//! edge, so that the rest of the code can only hold valid values; policies decide who may do what.

pub mod actor;
pub mod chat;
pub mod gateway;
pub mod ids;
pub mod schedule;
pub mod values;
pub mod webinar;

pub use actor::{Actor, Caller, PermissionPolicy};
pub use ids::{GatewayId, IdError, WebinarId};
pub use schedule::{SlotRules, TimeSlot};
pub use values::{
    Description, HttpUrl, InvalidValue, Label, Person, RtmpUrl, Title, TokenFingerprint,
};
