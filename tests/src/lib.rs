//! End-to-end tests against real PostgreSQL and the real HTTP server on loopback.
//!
//! Each test makes its own database (and drops it), so tests run in parallel. The harness is in
//! [`harness`]; the tests are grouped by what they prove.

pub mod harness;

#[cfg(test)]
mod allocation_properties;
#[cfg(test)]
mod bbb_events;
#[cfg(test)]
mod capacity;
#[cfg(test)]
mod clients;
#[cfg(test)]
mod event_log;
#[cfg(test)]
mod gateway_api;
#[cfg(test)]
mod gateway_policy;
#[cfg(test)]
mod hostile;
#[cfg(test)]
mod http_surface;
#[cfg(test)]
mod idempotency;
#[cfg(test)]
mod isolation;
#[cfg(test)]
mod live;
#[cfg(test)]
mod live_page;
#[cfg(test)]
mod on_air;
#[cfg(test)]
mod permissions;
#[cfg(test)]
mod projectors;
#[cfg(test)]
mod read_models;
#[cfg(test)]
mod sagas;
#[cfg(test)]
mod server;
#[cfg(test)]
mod sites;
#[cfg(test)]
mod stream_health;
#[cfg(test)]
mod subscriptions;
#[cfg(test)]
mod visibility;
#[cfg(test)]
mod webinar_api;
