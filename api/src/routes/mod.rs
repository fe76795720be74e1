//! HTTP routes: GraphQL over HTTP and WebSocket, health, readiness and metrics, and what BBB and
//! SIPMediaGW call (the end callback, the join page).

mod graphql;
mod health;
mod live;

use axum::routing::get;
use axum::Router;

use crate::graphql::AppSchema;
use crate::state::AppState;

/// Everything a handler needs: the state and the schema built on it.
#[derive(Clone)]
pub struct Shared {
    pub state: AppState,
    pub schema: AppSchema,
}

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/graphql", get(graphql::graphiql).post(graphql::graphql))
        .route("/ws", get(graphql::subscriptions))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/callbacks/bbb/end/{webinar}", get(live::bbb_end))
        .route("/live/join/{room}", get(live::join_page))
        .route("/live/join/{room}/go", get(live::join_go))
        .with_state(shared)
}
