//! The webinar use cases: who may do what, and the scheduling saga across Gateway and Webinar.
//!
//! Scheduling holds a gateway before the webinar exists: `Reserve` on a Gateway (its optimistic
//! lock makes double booking impossible), then `Schedule` on the Webinar; if that fails, the
//! reservation is released. A reservation conflict moves on to the next gateway.

use rand::Rng;
use webinar_domain::actor::Denied;
use webinar_domain::gateway::GatewayError;
use webinar_domain::webinar::{
    DetailsChange, EndReason, Webinar, WebinarCommand, WebinarDetails, WebinarError,
};
use webinar_domain::{Caller, GatewayId, PermissionPolicy, Person, TimeSlot, WebinarId};

use crate::error::{from_aggregate, CommandError};
use crate::event_store::{CommandBus, CommandMetadata};
use crate::gateways::{GatewayService, Written};

/// How many gateways the scheduler tries before giving up.
const MAX_GATEWAY_ATTEMPTS: usize = 25;

pub struct WebinarService {
    bus: CommandBus<Webinar>,
    policy: PermissionPolicy,
}

/// What a caller may do to one webinar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Right {
    /// Edit details and slot: owner, presenters, administrators.
    Edit,
    /// Join as moderator and start: owner and presenters.
    Start,
    /// Stop, restart, end, cancel: owner and administrators.
    Operate,
}

/// A random SIPMediaGW room key: lowercase letters and digits, valid as a compose project name.
pub fn new_room_key() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    // A letter first: compose project names must start with a letter or digit; a letter also
    // keeps it from looking like a number.
    let mut key = String::with_capacity(16);
    key.push(ALPHABET[rng.gen_range(0..26)] as char);
    for _ in 1..16 {
        key.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    key
}

impl WebinarService {
    pub fn new(bus: CommandBus<Webinar>, policy: PermissionPolicy) -> Self {
        Self { bus, policy }
    }

    pub async fn load(&self, id: WebinarId) -> Result<Webinar, CommandError> {
        self.bus.load(&id.to_string()).await.map_err(from_aggregate)
    }

    async fn load_scheduled(&self, id: WebinarId) -> Result<Webinar, CommandError> {
        let webinar = self.load(id).await?;
        if webinar.scheduled {
            Ok(webinar)
        } else {
            Err(WebinarError::NotFound.into())
        }
    }

    fn check(&self, caller: &Caller, webinar: &Webinar, right: Right) -> Result<(), CommandError> {
        let actor = match caller {
            Caller::System(_) => return Ok(()),
            Caller::Anonymous => return Err(Denied::Unauthenticated.into()),
            Caller::User(actor) => actor,
        };
        let allowed = match right {
            Right::Edit => webinar.is_host(&actor.id) || actor.is_admin(),
            Right::Start => webinar.is_host(&actor.id),
            Right::Operate => webinar.is_owner(&actor.id) || actor.is_admin(),
        };
        if allowed {
            return Ok(());
        }
        // Someone who may not even see the webinar learns nothing about it.
        let message = match right {
            Right::Edit => {
                "only the webinar's owner, its presenters or an administrator may change it"
            }
            Right::Start => "only the webinar's owner or presenters may start it",
            Right::Operate => "only the webinar's owner or an administrator may do this",
        };
        Err(Denied::Forbidden(message).into())
    }

    pub async fn schedule(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        gateways: &GatewayService,
        details: WebinarDetails,
        slot: TimeSlot,
    ) -> Result<Written<WebinarId>, CommandError> {
        let actor = caller.actor().ok_or(Denied::Unauthenticated)?;
        if !self.policy.can_create_webinar(actor) {
            return Err(Denied::Forbidden(
                "you may not create webinars (ask for the webinar admin group)",
            )
            .into());
        }
        let owner = Person {
            id: actor.id.clone(),
            name: actor.name.clone(),
        };
        let id = WebinarId::new();
        let gateway = self
            .hold_a_gateway(metadata, gateways, id, slot, None)
            .await?;
        let command = WebinarCommand::Schedule {
            owner,
            details,
            slot,
            gateway,
            room: new_room_key(),
        };
        match self.bus.execute(&id.to_string(), command, metadata).await {
            Ok(position) => Ok(Written { id, position }),
            Err(error) => {
                gateways.release(metadata, gateway, id).await?;
                Err(from_aggregate(error))
            }
        }
    }

    /// Reserves `slot` on the first gateway that takes it (`prefer` first, when given).
    async fn hold_a_gateway(
        &self,
        metadata: &CommandMetadata,
        gateways: &GatewayService,
        webinar: WebinarId,
        slot: TimeSlot,
        prefer: Option<GatewayId>,
    ) -> Result<GatewayId, CommandError> {
        let mut candidates = gateways.candidates(&slot, webinar).await?;
        if let Some(preferred) = prefer {
            candidates.retain(|g| *g != preferred);
            candidates.insert(0, preferred);
        }
        for gateway in candidates.into_iter().take(MAX_GATEWAY_ATTEMPTS) {
            match gateways.reserve(metadata, gateway, webinar, slot).await {
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
    pub async fn update(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        gateways: &GatewayService,
        id: WebinarId,
        update: WebinarUpdate,
    ) -> Result<Written<WebinarId>, CommandError> {
        let WebinarUpdate { change, chat, slot } = update;
        let webinar = self.load_scheduled(id).await?;
        self.check(caller, &webinar, Right::Edit)?;
        let mut position = None;
        if let Some(slot) = slot.filter(|s| Some(*s) != webinar.slot) {
            position = self.move_to(metadata, gateways, id, &webinar, slot).await?;
        }
        let key = id.to_string();
        let updated = self
            .bus
            .execute(&key, WebinarCommand::UpdateDetails(change), metadata)
            .await
            .map_err(from_aggregate)?;
        position = position.max(updated);
        if let Some(enabled) = chat {
            let chatted = self
                .bus
                .execute(&key, WebinarCommand::SetChat { enabled }, metadata)
                .await
                .map_err(from_aggregate)?;
            position = position.max(chatted);
        }
        Ok(Written { id, position })
    }

    async fn move_to(
        &self,
        metadata: &CommandMetadata,
        gateways: &GatewayService,
        id: WebinarId,
        webinar: &Webinar,
        slot: TimeSlot,
    ) -> Result<Option<crate::event_log::Position>, CommandError> {
        // Refuse early what the aggregate would refuse, before touching any gateway.
        webinar.decide(WebinarCommand::Reschedule {
            slot,
            gateway: webinar.gateway_id.unwrap_or_default(),
        })?;
        let current = webinar.gateway_id;
        let live = webinar.status == webinar_domain::webinar::WebinarStatus::Live;
        let target = if live {
            // A live stream stays where it is: only its own gateway may take the new slot.
            let gateway = current.ok_or(WebinarError::NotFound)?;
            match gateways.reserve(metadata, gateway, id, slot).await {
                Ok(_) => gateway,
                Err(CommandError::Gateway(_)) => return Err(GatewayError::SlotTaken.into()),
                Err(other) => return Err(other),
            }
        } else {
            self.hold_a_gateway(metadata, gateways, id, slot, current)
                .await?
        };
        let command = WebinarCommand::Reschedule {
            slot,
            gateway: target,
        };
        match self.bus.execute(&id.to_string(), command, metadata).await {
            Ok(position) => {
                let released = match current.filter(|old| *old != target) {
                    Some(old) => gateways.release(metadata, old, id).await?.position,
                    None => None,
                };
                Ok(position.max(released))
            }
            Err(error) => {
                // Put the gateways back as they were.
                if Some(target) == current {
                    if let Some(old_slot) = webinar.slot {
                        gateways.reserve(metadata, target, id, old_slot).await?;
                    }
                } else {
                    gateways.release(metadata, target, id).await?;
                }
                Err(from_aggregate(error))
            }
        }
    }

    pub async fn cancel(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        gateways: &GatewayService,
        id: WebinarId,
    ) -> Result<Written<WebinarId>, CommandError> {
        let webinar = self.load_scheduled(id).await?;
        self.check(caller, &webinar, Right::Operate)?;
        let position = self
            .bus
            .execute(&id.to_string(), WebinarCommand::Cancel, metadata)
            .await
            .map_err(from_aggregate)?;
        let released = match webinar.gateway_id {
            Some(gateway) => gateways.release(metadata, gateway, id).await?.position,
            None => None,
        };
        Ok(Written {
            id,
            position: position.max(released),
        })
    }

    /// Records that the caller starts the webinar; the BBB meeting id is derived from the webinar.
    pub async fn start(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        id: WebinarId,
    ) -> Result<(Written<WebinarId>, Webinar), CommandError> {
        let webinar = self.load_scheduled(id).await?;
        self.check(caller, &webinar, Right::Start)?;
        let by_owner = caller.actor().is_some_and(|a| webinar.is_owner(&a.id));
        let command = WebinarCommand::Start {
            meeting_id: format!("webinar-{id}"),
            by_owner,
        };
        let position = self
            .bus
            .execute(&id.to_string(), command, metadata)
            .await
            .map_err(from_aggregate)?;
        let webinar = self.load(id).await?;
        Ok((Written { id, position }, webinar))
    }

    /// Runs a command on behalf of a component (reactors, the meeting watcher): no permission
    /// check, the command is theirs to issue.
    pub async fn execute_system(
        &self,
        metadata: &CommandMetadata,
        id: WebinarId,
        command: WebinarCommand,
    ) -> Result<Written<WebinarId>, CommandError> {
        let position = self
            .bus
            .execute(&id.to_string(), command, metadata)
            .await
            .map_err(from_aggregate)?;
        Ok(Written { id, position })
    }

    /// Ends a live webinar for `reason` (BBB callback, poll, slot over) and frees its gateway.
    pub async fn end_system(
        &self,
        metadata: &CommandMetadata,
        gateways: &GatewayService,
        id: WebinarId,
        reason: EndReason,
    ) -> Result<Written<WebinarId>, CommandError> {
        let webinar = self.load_scheduled(id).await?;
        let written = self
            .execute_system(metadata, id, WebinarCommand::End { reason })
            .await?;
        let released = match webinar.gateway_id {
            Some(gateway) => gateways.release(metadata, gateway, id).await?.position,
            None => None,
        };
        Ok(Written {
            id,
            position: written.position.max(released),
        })
    }

    /// Stop, restart or end: the owner's and administrators' live controls.
    pub async fn operate(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        gateways: &GatewayService,
        id: WebinarId,
        command: LiveControl,
    ) -> Result<Written<WebinarId>, CommandError> {
        let webinar = self.load_scheduled(id).await?;
        self.check(caller, &webinar, Right::Operate)?;
        let command = match command {
            LiveControl::Stop => WebinarCommand::StopLive,
            LiveControl::Restart => WebinarCommand::RestartLive,
            LiveControl::End => WebinarCommand::End {
                reason: EndReason::Presenter,
            },
        };
        let ends = matches!(command, WebinarCommand::End { .. });
        let position = self
            .bus
            .execute(&id.to_string(), command, metadata)
            .await
            .map_err(from_aggregate)?;
        let released = match webinar.gateway_id.filter(|_| ends) {
            Some(gateway) => gateways.release(metadata, gateway, id).await?.position,
            None => None,
        };
        Ok(Written {
            id,
            position: position.max(released),
        })
    }
}

/// What `update` changes; `None` keeps.
#[derive(Debug, Clone, Default)]
pub struct WebinarUpdate {
    pub change: DetailsChange,
    pub chat: Option<bool>,
    pub slot: Option<TimeSlot>,
}

/// The live controls of `operate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveControl {
    Stop,
    Restart,
    End,
}

/// The webinar as it was at `at`: its own events recorded up to then, replayed (never a read
/// model). Returns the state and how many events it took (`None` when it did not exist yet).
pub async fn webinar_as_of(
    pool: &sqlx::PgPool,
    id: WebinarId,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<(Webinar, i64)>, CommandError> {
    use cqrs_es::Aggregate;
    let payloads: Vec<(String, String, serde_json::Value)> = sqlx::query_as(
        "select event_type, event_version, payload::jsonb from events
          where aggregate_type = 'Webinar' and aggregate_id = $1 and recorded_at <= $2
          order by sequence",
    )
    .bind(id.to_string())
    .bind(at)
    .fetch_all(pool)
    .await?;
    if payloads.is_empty() {
        return Ok(None);
    }
    let mut webinar = Webinar::default();
    let count = payloads.len() as i64;
    for (event_type, version, mut payload) in payloads {
        webinar_domain::webinar::upcasters::upcast_payload(
            "Webinar",
            &event_type,
            &version,
            &mut payload,
        );
        let event: webinar_domain::webinar::WebinarEvent = serde_json::from_value(payload)
            .map_err(|e| {
                CommandError::Internal(anyhow::anyhow!("cannot read a webinar event: {e}"))
            })?;
        webinar.apply(event);
    }
    Ok(Some((webinar, count)))
}
