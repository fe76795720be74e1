//! The durable half of the scheduling saga. A gateway's reservation for a webinar must exist
//! exactly while the webinar is scheduled or live on that gateway, for its slot. Requests do it at
//! once when they can; this reactor makes sure, by reacting to events, idempotently and with
//! retries:
//!
//! - `Ended`, `Cancelled`: free the webinar's gateway;
//! - `GatewayReassigned { from }` (a move, a fail-over): free the gateway it left;
//! - `SlotReserved`, once a grace period has passed: free a reservation whose webinar never came
//!   (the request crashed, or its compensation failed, between its two steps), or put back the
//!   slot of a webinar that lost it.

use async_trait::async_trait;
use chrono::Utc;
use webinar_domain::gateway::GatewayEvent;
use webinar_domain::webinar::WebinarEvent;
use webinar_domain::{GatewayId, WebinarId};

use super::Outside;
use crate::consumer::{Delivery, Reaction, Reactor, ReactorError};
use crate::error::CommandError;
use crate::event_log::StoredEvent;
use crate::event_store::CommandMetadata;
use crate::webinars::Reconciled;

const COMPONENT: &str = "reservations";

pub struct ReservationReactor {
    outside: Outside,
}

impl ReservationReactor {
    pub fn new(outside: Outside) -> Self {
        Self { outside }
    }

    async fn reconcile(
        &self,
        meta: &CommandMetadata,
        gateway: GatewayId,
        webinar: WebinarId,
    ) -> Result<Reaction, ReactorError> {
        match self
            .outside
            .webinars
            .reconcile_reservation(meta, gateway, webinar)
            .await
        {
            Ok(Reconciled::Unchanged) => Ok(Reaction::Done),
            Ok(done) => {
                tracing::info!(%webinar, %gateway, ?done, "reservation reconciled");
                Ok(Reaction::Done)
            }
            // The slot went to someone else meanwhile: nothing this reactor can decide.
            Err(CommandError::Gateway(error)) => Ok(Reaction::GiveUp(format!(
                "reservation of {webinar} on {gateway}: {error}"
            ))),
            Err(error) => Err(error.into()),
        }
    }
}

#[async_trait]
impl Reactor for ReservationReactor {
    fn name(&self) -> &'static str {
        "reservations"
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Webinar", "Gateway"])
    }

    fn lane(&self, event: &StoredEvent) -> Option<String> {
        match (event.aggregate_type.as_str(), event.event_type.as_str()) {
            ("Webinar", "Ended" | "Cancelled" | "GatewayReassigned") => {
                Some(event.aggregate_id.clone())
            }
            // Each waits out its grace period in a lane of its own, holding up nothing.
            ("Gateway", "SlotReserved") => Some(format!(
                "{}:reserved:{}",
                event.aggregate_id, event.global_position
            )),
            _ => None,
        }
    }

    #[tracing::instrument(name = "reservations", skip_all, fields(aggregate = %event.aggregate_id, event = %event.event_type))]
    async fn react(
        &self,
        event: &StoredEvent,
        _delivery: Delivery,
    ) -> Result<Reaction, ReactorError> {
        let meta = CommandMetadata::caused_by(COMPONENT, event);
        if event.aggregate_type == "Gateway" {
            let Some(gateway) = event.aggregate::<GatewayId>() else {
                return Ok(Reaction::GiveUp("the gateway id is not a UUID".into()));
            };
            let Ok(GatewayEvent::SlotReserved { webinar_id, .. }) = event.decode() else {
                return Ok(Reaction::Done);
            };
            // A request normally schedules within milliseconds of reserving: leave it the time.
            let grace = chrono::Duration::from_std(self.outside.reservation_grace)
                .unwrap_or(chrono::Duration::minutes(2));
            let due = event.recorded_at + grace;
            if Utc::now() < due {
                return Ok(Reaction::RetryAt(
                    due,
                    "waiting for the webinar to be scheduled".into(),
                ));
            }
            return self.reconcile(&meta, gateway, webinar_id).await;
        }
        let Some(webinar) = event.aggregate::<WebinarId>() else {
            return Ok(Reaction::GiveUp("the webinar id is not a UUID".into()));
        };
        let gateway = match event.decode::<WebinarEvent>() {
            Ok(WebinarEvent::GatewayReassigned { from, .. }) => Some(from),
            Ok(WebinarEvent::Ended | WebinarEvent::Cancelled) => {
                self.outside.webinars.load(webinar).await?.gateway_id
            }
            _ => None,
        };
        match gateway {
            Some(gateway) => self.reconcile(&meta, gateway, webinar).await,
            None => Ok(Reaction::Done),
        }
    }
}
