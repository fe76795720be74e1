//! Scheduling is a small saga across two aggregates: `Reserve` on a Gateway (its optimistic lock
//! makes double booking impossible), then `Schedule` on the Webinar; if that fails, the
//! reservation is released. A reservation conflict moves on to the next gateway.

use chrono::{DateTime, Utc};
use webinar_domain::gateway::GatewayError;
use webinar_domain::schedule::SlotError;
use webinar_domain::webinar::{
    DetailsChange, Webinar, WebinarCommand, WebinarDetails, WebinarError, WebinarStatus,
};
use webinar_domain::{Action, Caller, GatewayId, Person, Site, TimeSlot, WebinarId};

use super::{new_room_key, WebinarService};
use crate::error::{from_aggregate, CommandError};
use crate::event_log::Position;
use crate::event_store::{CommandMetadata, Written};

/// How many gateways the scheduler tries before giving up.
const MAX_GATEWAY_ATTEMPTS: usize = 25;

/// What `update` changes; `None` keeps.
#[derive(Debug, Clone, Default)]
pub struct WebinarUpdate {
    pub change: DetailsChange,
    pub chat: Option<bool>,
    pub start_at: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i64>,
}

fn slot_error(error: SlotError) -> CommandError {
    match error {
        SlotError::Duration(e) => CommandError::invalid("durationMinutes", e),
        SlotError::Start(e) => CommandError::invalid("startAt", e),
    }
}

impl WebinarService {
    /// Schedules a webinar owned by the caller on a gateway that is free for its slot.
    #[tracing::instrument(name = "schedule_webinar", skip_all, fields(actor = %metadata.actor_id))]
    pub async fn schedule(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        details: WebinarDetails,
        start_at: DateTime<Utc>,
        duration_minutes: i64,
    ) -> Result<Written<WebinarId>, CommandError> {
        self.policy.authorize(caller, Action::CreateWebinar)?;
        let owner = match caller.actor() {
            Some(actor) => Person {
                id: actor.id.clone(),
                name: actor.name.clone(),
            },
            None => return Err(CommandError::invalid("owner", "a webinar needs a person")),
        };
        let slot = TimeSlot::parse(start_at, duration_minutes, &self.rules, Utc::now())
            .map_err(slot_error)?;
        if let Some(quota) = &self.quota {
            let upcoming = quota.upcoming.upcoming(&owner.id).await.map_err(|e| {
                if crate::error::unreachable_within(&*e) {
                    CommandError::Unavailable
                } else {
                    CommandError::Internal(anyhow::anyhow!("owner quota: {e}"))
                }
            })?;
            if upcoming >= u64::from(quota.max) {
                return Err(CommandError::QuotaExceeded(format!(
                    "you already have {upcoming} webinars scheduled or live (the most one person \
                     may have); cancel or end one first"
                )));
            }
        }
        let id = WebinarId::new();
        // A webinar belongs to its owner's site, and streams on that site's gateways.
        let site = caller.site().cloned().unwrap_or_default();
        let gateway = self.hold_a_gateway(metadata, id, slot, &site, None).await?;
        let command = WebinarCommand::Schedule {
            owner,
            details,
            slot,
            gateway,
            room: new_room_key(),
            site,
        };
        match self.bus.execute(id, command, metadata).await {
            Ok(written) => Ok(written),
            Err(error) => {
                self.gateways.release(metadata, gateway, id).await?;
                Err(from_aggregate(error))
            }
        }
    }

    /// Reserves `slot` on the first gateway that takes it (`prefer` first, when given).
    async fn hold_a_gateway(
        &self,
        metadata: &CommandMetadata,
        webinar: WebinarId,
        slot: TimeSlot,
        site: &Site,
        prefer: Option<GatewayId>,
    ) -> Result<GatewayId, CommandError> {
        let mut candidates = self.gateways.candidates(&slot, webinar, site).await?;
        if let Some(preferred) = prefer {
            candidates.retain(|g| *g != preferred);
            candidates.insert(0, preferred);
        }
        for gateway in candidates.into_iter().take(MAX_GATEWAY_ATTEMPTS) {
            match self
                .gateways
                .reserve(metadata, gateway, webinar, slot, site)
                .await
            {
                Ok(_) => return Ok(gateway),
                // Taken, disabled, retired or gone since the read model said otherwise; or too
                // contended right now: the next gateway may do.
                Err(CommandError::Gateway(_)) | Err(CommandError::Conflict) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(CommandError::Gateway(GatewayError::SlotTaken))
    }

    /// Changes details, chat and slot in turn. A new slot keeps the gateway when it is free there,
    /// moves the webinar to a free gateway otherwise, or fails and changes nothing.
    #[tracing::instrument(name = "update_webinar", skip_all, fields(webinar = %id))]
    pub async fn update(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        id: WebinarId,
        update: WebinarUpdate,
    ) -> Result<Written<WebinarId>, CommandError> {
        let WebinarUpdate {
            change,
            chat,
            start_at,
            duration_minutes,
        } = update;
        let loaded = self
            .authorized(caller, id, |w| Action::EditWebinar(w))
            .await?;
        let current = loaded.state().slot.ok_or(WebinarError::NotFound)?;
        let slot = TimeSlot::change(current, start_at, duration_minutes, &self.rules, Utc::now())
            .map_err(slot_error)?;
        let written = match slot.filter(|s| *s != current) {
            // The slot moves first; the details then go onto the moved webinar.
            Some(slot) => {
                let position = self.move_to(metadata, id, loaded.state(), slot).await?;
                self.execute(id, WebinarCommand::UpdateDetails(change), metadata)
                    .await?
                    .and(position)
            }
            None => {
                self.execute_loaded(id, loaded, WebinarCommand::UpdateDetails(change), metadata)
                    .await?
            }
        };
        match chat {
            Some(enabled) => Ok(self
                .execute(id, WebinarCommand::SetChat { enabled }, metadata)
                .await?
                .and(written.position)),
            None => Ok(written),
        }
    }

    async fn move_to(
        &self,
        metadata: &CommandMetadata,
        id: WebinarId,
        webinar: &Webinar,
        slot: TimeSlot,
    ) -> Result<Option<Position>, CommandError> {
        let current = webinar.gateway_id.ok_or(WebinarError::NotFound)?;
        // Refuse early what the aggregate would refuse, before touching any gateway.
        webinar.decide(WebinarCommand::Reschedule {
            slot,
            gateway: current,
        })?;
        let target = if webinar.status == WebinarStatus::Live {
            // A live stream stays where it is: only its own gateway may take the new slot.
            match self
                .gateways
                .reserve(metadata, current, id, slot, &webinar.site)
                .await
            {
                Ok(_) => current,
                Err(CommandError::Gateway(_)) => return Err(GatewayError::SlotTaken.into()),
                Err(other) => return Err(other),
            }
        } else {
            self.hold_a_gateway(metadata, id, slot, &webinar.site, Some(current))
                .await?
        };
        let command = WebinarCommand::Reschedule {
            slot,
            gateway: target,
        };
        match self.bus.execute(id, command, metadata).await {
            Ok(written) => {
                if target != current {
                    self.free_now(metadata, Some(current), id).await;
                }
                Ok(written.position)
            }
            Err(error) => {
                // Put the gateways back as they were.
                if target == current {
                    if let Some(old_slot) = webinar.slot {
                        self.gateways
                            .reserve(metadata, target, id, old_slot, &webinar.site)
                            .await?;
                    }
                } else {
                    self.gateways.release(metadata, target, id).await?;
                }
                Err(from_aggregate(error))
            }
        }
    }

    /// Cancels a webinar that has not started, and frees its gateway.
    #[tracing::instrument(name = "cancel_webinar", skip_all, fields(webinar = %id))]
    pub async fn cancel(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        id: WebinarId,
    ) -> Result<Written<WebinarId>, CommandError> {
        let loaded = self
            .authorized(caller, id, |w| Action::OperateWebinar(w))
            .await?;
        let gateway = loaded.state().gateway_id;
        let written = self
            .execute_loaded(id, loaded, WebinarCommand::Cancel, metadata)
            .await?;
        self.free_now(metadata, gateway, id).await;
        Ok(written)
    }
}
