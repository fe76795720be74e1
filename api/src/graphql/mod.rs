//! The GraphQL schema (contract: ARCHITECTURE.md section 7).

mod audit;
mod capacity;
pub mod catching_up;
mod context;
pub mod error;
mod gateways;
pub mod limits;
mod metrics;
mod pagination;
mod sessions;
mod stats;
mod viewer;
mod webinars;

use async_graphql::{MergedObject, MergedSubscription, Schema};

pub use context::RequestContext;
pub use error::ApiError;

use crate::state::AppState;

#[derive(MergedObject, Default)]
pub struct Query(
    audit::AuditQuery,
    capacity::CapacityQuery,
    gateways::GatewayQuery,
    sessions::LiveSessionQuery,
    stats::StatsQuery,
    viewer::ViewerQuery,
    webinars::WebinarQuery,
);

/// Every mutation may be sent with an `Idempotency-Key` HTTP header (1 to 128 printable ASCII
/// characters): a retry with the same key, by the same caller, within 24 hours, answers what the
/// first request answered and writes nothing new — also when the first answer was lost. The same
/// key with a different request is refused (`BAD_USER_INPUT`, field `Idempotency-Key`); a retry
/// while the first still runs waits for it, or gets `CONFLICT`.
#[derive(MergedObject, Default)]
pub struct Mutation(
    gateways::GatewayMutation,
    webinars::WebinarMutation,
    webinars::ChatMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(
    webinars::WebinarSubscription,
    webinars::OnAirSubscription,
    sessions::LiveSessionSubscription,
);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Limits that keep one request from costing the server too much.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub depth: usize,
    pub complexity: usize,
    pub query: limits::QueryLimits,
    /// `false` when `graphql_introspection = "off"`: nobody may introspect. (Anonymous callers
    /// under `authenticated` are refused per request, in `routes::graphql`.)
    pub introspection: bool,
}

pub fn build_schema(state: AppState, feed: crate::feed::ChangeFeed, limits: Limits) -> AppSchema {
    let schema = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .data(crate::on_air::OnAirHub::new(
        state.pool().clone(),
        feed.clone(),
    ))
    .data(state)
    .data(feed)
    .extension(metrics::OperationMetrics)
    .extension(catching_up::CatchingUp)
    // Before validation: async-graphql's own walks expand fragments.
    .extension(limits.query)
    .limit_depth(limits.depth)
    .limit_complexity(limits.complexity);
    if limits.introspection {
        schema.finish()
    } else {
        schema.disable_introspection().finish()
    }
}

/// The schema in SDL, as exported to `api/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .finish()
    .sdl()
}

#[cfg(test)]
mod tests {
    /// `api/schema.graphql` is what frontends build against: it must follow the code. Run with
    /// `WEBINAR_UPDATE_SCHEMA=1` to rewrite it after an intended change.
    #[test]
    fn the_exported_schema_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
        let current = super::sdl();
        if std::env::var_os("WEBINAR_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &current).expect("write api/schema.graphql");
        }
        let exported = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            exported == current,
            "api/schema.graphql differs from the code's schema; \
             run `WEBINAR_UPDATE_SCHEMA=1 cargo test -p webinar-api` and commit it"
        );
    }
}
