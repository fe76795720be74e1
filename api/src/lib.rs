//! The webinar backend's API: the axum server, the GraphQL schema, and the command-line interface.
//!
//! Requests flow one way: a GraphQL resolver checks input and calls an application service
//! (`webinar_infra`), which runs a command on an aggregate; the events it writes reach the read
//! models through the projector runners; the resolver waits for them (read-your-writes) and answers
//! from the read models.

pub mod cli;
pub mod demo;
pub mod export;
pub mod feed;
pub mod graphql;
pub mod history;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use startup::Application;
pub use state::AppState;
