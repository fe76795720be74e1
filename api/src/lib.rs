//! The webinar backend's API: the axum server, the GraphQL schema, and the command-line interface.
//!
//! Requests flow one way: a GraphQL resolver parses its input into domain values and calls one
//! application service (`webinar_infra`), which asks the permission policy and runs commands on
//! aggregates; the events reach the read models through the projector runners; the resolver waits
//! for them (read-your-writes) and answers from the read models (`webinar_projections`'
//! `ReadModels`, which ask the policy for reads). No resolver decides a right or calls BBB or
//! SIPMediaGW.

pub mod cli;
pub mod demo;
pub mod export;
pub mod feed;
pub mod graphql;
pub mod history;
pub mod on_air;
pub mod routes;
mod simulate;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use startup::Application;
pub use state::AppState;
