//! Webinars and the live page: scheduling, editing, the presenters' controls, the audience's chat,
//! and what everyone sees — split by concern.

mod chat;
mod inputs;
mod mutations;
mod on_air;
mod queries;
mod subscriptions;
mod types;

pub use chat::ChatMutation;
pub use mutations::WebinarMutation;
pub use on_air::OnAirSubscription;
pub use queries::WebinarQuery;
pub use subscriptions::WebinarSubscription;
pub(crate) use subscriptions::{feed, next_change};
pub(crate) use types::StreamState;
