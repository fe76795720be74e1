//! The read models: plain SQL tables built from the event log by checkpointed projectors, the
//! queries the API runs against them ([`queries::ReadModels`]), and the answers they give the
//! domain's questions ([`read_ports`]). These modules own their tables: nothing else reads them.
//! Analysts may query the tables directly (see `docs/ANALYTICS.md`).

pub mod audit_log;
pub mod capacity;
pub mod chat_messages;
mod events;
pub mod gateway_reservations;
pub mod gateways;
pub mod live_events;
pub mod live_sessions;
pub mod on_air;
pub mod queries;
pub mod stats;
pub mod webinars;

use std::sync::Arc;

use sqlx::PgPool;
use webinar_infra::consumer::Projector;
use webinar_infra::wiring::ReadPorts;

/// Every projector, in the order they are listed to operators.
pub fn all() -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(gateways::GatewaysProjector),
        Arc::new(gateway_reservations::GatewayReservationsProjector),
        Arc::new(webinars::WebinarsProjector),
        Arc::new(live_events::LiveEventsProjector),
        Arc::new(live_sessions::LiveSessionsProjector),
        Arc::new(chat_messages::ChatMessagesProjector),
        Arc::new(audit_log::AuditLogProjector),
        Arc::new(stats::StatsProjector),
    ]
}

/// The projector called `name`.
pub fn by_name(name: &str) -> Option<Arc<dyn Projector>> {
    all().into_iter().find(|p| p.name() == name)
}

/// What the read models answer for the application services.
pub fn read_ports(pool: &PgPool) -> ReadPorts {
    ReadPorts {
        gateway_directory: Arc::new(gateway_reservations::PgGatewayDirectory {
            pool: pool.clone(),
        }),
        live_webinars: Arc::new(webinars::PgLiveWebinars { pool: pool.clone() }),
        owner_webinars: Arc::new(webinars::PgOwnerWebinars { pool: pool.clone() }),
        held_gw_ids: Arc::new(live_sessions::PgHeldGwIds { pool: pool.clone() }),
    }
}
