//! Infrastructure: everything that touches PostgreSQL or the outside world on behalf of the domain.
//!
//! - [`event_store`]: the cqrs-es event store over postgres-es, with metadata, snapshots, a bounded
//!   retry on optimistic-lock conflicts, and typed ids in and out ([`event_store::CommandBus`]).
//! - [`event_log`]: the gap-free reader of the whole log in one global order; the only reader of
//!   the `events` table besides the store.
//! - [`consumer`]: the checkpointed runtime that projectors and reactors run on.
//! - The application services, one per aggregate ([`gateways`], [`webinars`], [`chat`]): each asks
//!   the domain's permission policy once, then runs commands; [`wiring`] builds them all.
//! - The outside world behind the domain's ports: [`bbb`] (BigBlueButton), [`sipmediagw`], the
//!   [`reactors`] that call them, and their simulators ([`sim`]).
//! - [`config`], [`db`], [`auth`], [`callbacks`], [`metrics`], [`secrets`].

pub mod auth;
pub mod bbb;
pub mod bbb_webhooks;
pub mod callbacks;
pub mod capacity;
pub mod chat;
pub mod config;
pub mod consumer;
pub mod db;
pub mod error;
pub mod event_log;
pub mod event_store;
pub mod fresh;
pub mod gateways;
pub mod hls;
pub mod idempotency;
pub mod metrics;
pub mod presence;
pub mod reactors;
pub mod secrets;
pub mod sim;
pub mod sipmediagw;
pub mod webinars;
pub mod wiring;
