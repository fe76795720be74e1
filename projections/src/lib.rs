//! The read models: plain SQL tables built from the event log by checkpointed projectors, and the
//! queries the API runs against them. Analysts may query these tables directly.

pub mod audit_log;
pub mod chat_messages;
pub mod gateways;
pub mod live_events;
pub mod stats;
pub mod webinars;

use std::sync::Arc;

use webinar_infra::consumer::Projector;

/// Every projector, in the order they are listed to operators.
pub fn all() -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(gateways::GatewaysProjector),
        Arc::new(webinars::GatewayReservationsProjector),
        Arc::new(webinars::WebinarsProjector),
        Arc::new(live_events::LiveEventsProjector),
        Arc::new(chat_messages::ChatMessagesProjector),
        Arc::new(audit_log::AuditLogProjector),
        Arc::new(stats::StatsProjector),
    ]
}

/// The projector called `name`.
pub fn by_name(name: &str) -> Option<Arc<dyn Projector>> {
    all().into_iter().find(|p| p.name() == name)
}
