//! Keeping a gateway's reservation in step with its webinar: held exactly while the webinar is
//! scheduled or live there, for its slot (the domain's `Webinar::reservation_on`). The reservation
//! reactor applies it durably, in reaction to events; a request whose events free a gateway also
//! applies it at once, so that the slot is free when the answer arrives — if that fails, the reactor
//! still does it, and the request is not reported as failed.

use webinar_domain::{GatewayId, WebinarId};

use super::WebinarService;
use crate::error::CommandError;
use crate::event_store::CommandMetadata;

/// What reconciling changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    Unchanged,
    Released,
    Reserved,
}

impl WebinarService {
    /// Makes `gateway`'s reservation for `webinar` what the webinar says it should be.
    pub async fn reconcile_reservation(
        &self,
        metadata: &CommandMetadata,
        gateway: GatewayId,
        webinar: WebinarId,
    ) -> Result<Reconciled, CommandError> {
        let loaded = self.load(webinar).await?;
        let wanted = loaded.reservation_on(gateway);
        let held = self
            .gateways
            .load(gateway)
            .await?
            .reservations
            .get(&webinar)
            .copied();
        match (held, wanted) {
            (Some(_), None) => {
                self.gateways.release(metadata, gateway, webinar).await?;
                Ok(Reconciled::Released)
            }
            (held, Some(slot)) if held != Some(slot) => {
                self.gateways
                    .reserve(metadata, gateway, webinar, slot, &loaded.site)
                    .await?;
                Ok(Reconciled::Reserved)
            }
            _ => Ok(Reconciled::Unchanged),
        }
    }

    /// The fast path after a request (or a fail-over) that freed `gateway`: best effort, never
    /// an error.
    pub async fn free_now(
        &self,
        metadata: &CommandMetadata,
        gateway: Option<GatewayId>,
        webinar: WebinarId,
    ) {
        let Some(gateway) = gateway else {
            return;
        };
        if let Err(error) = self.reconcile_reservation(metadata, gateway, webinar).await {
            tracing::warn!(%webinar, %gateway, %error, "gateway not freed at once; the reservation reactor will");
        }
    }
}
