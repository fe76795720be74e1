//! Infrastructure: everything that touches PostgreSQL or the outside world on behalf of the domain.
//!
//! - [`event_store`]: the cqrs-es event store over postgres-es, with metadata, snapshots and a
//!   bounded retry on optimistic-lock conflicts.
//! - [`event_log`]: the gap-free reader of the whole log in one global order.
//! - [`consumer`]: the checkpointed runtime that projectors (and reactors) run on.
//! - [`config`], [`db`], [`auth`], [`metrics`], [`secrets`], and the application services
//!   ([`gateways`]) that turn a caller's request into commands.

pub mod auth;
pub mod bbb;
pub mod chat;
pub mod config;
pub mod consumer;
pub mod db;
pub mod error;
pub mod event_log;
pub mod event_store;
pub mod gateways;
pub mod metrics;
pub mod reactors;
pub mod secrets;
pub mod sim;
pub mod sipmediagw;
pub mod webinars;
