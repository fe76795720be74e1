//! The webinar use cases. Each asks the permission policy once, then runs commands:
//!
//! - [`scheduling`]: schedule, update, cancel — the saga that holds a gateway for the slot;
//! - [`live`]: start (the BBB meeting and the moderator's join URL), the live controls, and the
//!   commands our own components issue;
//! - [`history`]: a webinar as it was at a moment, replayed for auditors.

mod history;
mod live;
mod reservations;
mod scheduling;

use std::sync::Arc;

use rand::Rng;
use sqlx::PgPool;
use webinar_domain::ports::{MeetingService, OwnerWebinars};
use webinar_domain::webinar::{Webinar, WebinarCommand, WebinarError};
use webinar_domain::{Action, Caller, PermissionPolicy, SlotRules, WebinarId};

pub use history::Replayed;
pub use live::{LiveControl, StartedWebinar};
pub use reservations::Reconciled;
pub use scheduling::WebinarUpdate;

use crate::callbacks::CallbackSigner;
use crate::error::{from_aggregate, CommandError};
use crate::event_store::{CommandBus, CommandMetadata, Loaded, Written};
use crate::gateways::GatewayService;

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

/// How BigBlueButton reaches us back: the logout page and the signed end callback.
#[derive(Clone)]
pub struct MeetingLinks {
    pub public_url: String,
    pub signer: CallbackSigner,
}

pub struct WebinarService {
    bus: CommandBus<Webinar>,
    policy: PermissionPolicy,
    rules: SlotRules,
    gateways: Arc<GatewayService>,
    meetings: Option<Arc<dyn MeetingService>>,
    links: MeetingLinks,
    pool: PgPool,
    quota: Option<OwnerQuota>,
}

/// At most `max` webinars scheduled or live per owner.
#[derive(Clone)]
pub struct OwnerQuota {
    pub upcoming: Arc<dyn OwnerWebinars>,
    pub max: u32,
}

impl WebinarService {
    pub fn new(
        bus: CommandBus<Webinar>,
        policy: PermissionPolicy,
        rules: SlotRules,
        gateways: Arc<GatewayService>,
        meetings: Option<Arc<dyn MeetingService>>,
        links: MeetingLinks,
        pool: PgPool,
    ) -> Self {
        Self {
            bus,
            policy,
            rules,
            gateways,
            meetings,
            links,
            pool,
            quota: None,
        }
    }

    /// Refuses a new webinar to an owner who already has `quota.max` scheduled or live.
    pub fn with_owner_quota(mut self, quota: OwnerQuota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// The aggregate's state (an unscheduled default when it has no event).
    pub async fn load(&self, id: WebinarId) -> Result<Webinar, CommandError> {
        self.bus.load(id).await.map_err(from_aggregate)
    }

    /// The aggregate's state and the sequence number of its last event: the answer to a write
    /// while the read models are still behind it.
    pub async fn load_versioned(&self, id: WebinarId) -> Result<(Webinar, i64), CommandError> {
        self.bus.load_versioned(id).await.map_err(from_aggregate)
    }

    /// Webinar `id`, when `caller` may do `action` with it, loaded for the command that follows
    /// ([`Self::execute_loaded`]: one load for the check and the command). A webinar that does
    /// not exist is `NotFound` to anyone signed in (and the sign-in is asked for first).
    async fn authorized(
        &self,
        caller: &Caller,
        id: WebinarId,
        action: impl FnOnce(&Webinar) -> Action<'_>,
    ) -> Result<Loaded<Webinar>, CommandError> {
        self.policy.require_sign_in(caller)?;
        let loaded = self
            .bus
            .load_for_command(id)
            .await
            .map_err(from_aggregate)?;
        let webinar = loaded.state();
        if !webinar.scheduled {
            return Err(WebinarError::NotFound.into());
        }
        self.policy.authorize(caller, action(webinar))?;
        Ok(loaded)
    }

    /// Runs `command` on the webinar as [`Self::authorized`] loaded it.
    async fn execute_loaded(
        &self,
        id: WebinarId,
        loaded: Loaded<Webinar>,
        command: WebinarCommand,
        metadata: &CommandMetadata,
    ) -> Result<Written<WebinarId>, CommandError> {
        self.bus
            .execute_loaded(id, loaded, command, metadata)
            .await
            .map_err(from_aggregate)
    }

    async fn execute(
        &self,
        id: WebinarId,
        command: WebinarCommand,
        metadata: &CommandMetadata,
    ) -> Result<Written<WebinarId>, CommandError> {
        self.bus
            .execute(id, command, metadata)
            .await
            .map_err(from_aggregate)
    }

    /// Runs a command on behalf of a component (reactors, the meeting watcher): the command is
    /// theirs to issue.
    pub async fn execute_system(
        &self,
        metadata: &CommandMetadata,
        id: WebinarId,
        command: WebinarCommand,
    ) -> Result<Written<WebinarId>, CommandError> {
        self.execute(id, command, metadata).await
    }
}
