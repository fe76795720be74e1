//! The meeting watcher: a webinar ends when its BBB meeting does.
//!
//! Three ways, fastest first: BBB calls our signed end callback (`meta_endCallbackUrl`); polling
//! finds the meeting gone twice in a row (`getMeetingInfo` says `notFound`, or the meeting was seen
//! running and now has nobody — "not running" alone only means "nobody has joined yet"); a guard
//! ends a webinar still live a grace period after its slot.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use webinar_domain::webinar::{EndReason, WebinarStatus};
use webinar_domain::WebinarId;

use super::Outside;
use crate::bbb::BbbError;
use crate::consumer::LeaderLock;
use crate::error::CommandError;
use crate::event_store::CommandMetadata;

type HmacSha256 = Hmac<Sha256>;

/// Signs end-callback URLs so that only BBB (which got the URL from us) can end a webinar.
#[derive(Clone)]
pub struct CallbackSigner {
    key: Vec<u8>,
}

impl CallbackSigner {
    /// A key derived from the JWT secret: one secret to configure, separate uses.
    pub fn from_secret(secret: &SecretString) -> Self {
        let mut mac =
            HmacSha256::new_from_slice(secret.expose_secret().as_bytes()).unwrap_or_else(|_| {
                HmacSha256::new_from_slice(b"webinar").expect("HMAC takes any key")
            });
        mac.update(b"bbb-end-callback");
        Self {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, webinar: WebinarId) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(webinar.to_string().as_bytes());
        mac
    }

    pub fn sign(&self, webinar: WebinarId) -> String {
        hex::encode(self.mac(webinar).finalize().into_bytes())
    }

    /// Constant-time check of `signature` for `webinar`.
    pub fn verify(&self, webinar: WebinarId, signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(bytes) => self.mac(webinar).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// The URL BBB calls when the meeting ends.
    pub fn callback_url(&self, public_url: &str, webinar: WebinarId) -> String {
        format!(
            "{public_url}/callbacks/bbb/end/{webinar}?sig={}",
            self.sign(webinar)
        )
    }
}

const COMPONENT: &str = "meeting-watcher";

pub struct MeetingWatcher {
    outside: Outside,
    poll: Duration,
    grace: chrono::Duration,
}

impl MeetingWatcher {
    pub fn new(outside: Outside, poll: Duration, grace_minutes: i64) -> Self {
        Self {
            outside,
            poll,
            grace: chrono::Duration::minutes(grace_minutes),
        }
    }

    /// Ends a live webinar for `reason`; anything else is left alone.
    pub async fn end(&self, id: WebinarId, reason: EndReason) -> Result<bool, CommandError> {
        let webinar = self.outside.webinars.load(id).await?;
        if !webinar.scheduled || webinar.status != WebinarStatus::Live {
            return Ok(false);
        }
        let caller = webinar_domain::Caller::System(COMPONENT);
        let meta = CommandMetadata::originating(&caller, None);
        self.outside
            .webinars
            .end_system(&meta, &self.outside.gateways, id, reason)
            .await?;
        tracing::info!(webinar = %id, ?reason, "webinar ended");
        Ok(true)
    }

    /// Polls until `cancel`. Only one instance polls (an advisory lock); the others wait.
    pub async fn run(self: std::sync::Arc<Self>, cancel: CancellationToken) {
        let mut misses: HashMap<Uuid, u32> = HashMap::new();
        let mut seen_running: HashSet<Uuid> = HashSet::new();
        let mut leader: Option<LeaderLock> = None;
        while !cancel.is_cancelled() {
            if let Some(lock) = leader.as_mut() {
                if !lock.is_held().await {
                    leader = None;
                }
            }
            if leader.is_none() {
                leader = LeaderLock::try_acquire(&self.outside.pool, "webinar:meeting-watcher")
                    .await
                    .ok()
                    .flatten();
            }
            if leader.is_some() {
                if let Err(error) = self.poll_once(&mut misses, &mut seen_running).await {
                    tracing::warn!(%error, "meeting watcher poll failed");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
        if let Some(lock) = leader {
            lock.release().await;
        }
    }

    async fn poll_once(
        &self,
        misses: &mut HashMap<Uuid, u32>,
        seen_running: &mut HashSet<Uuid>,
    ) -> Result<(), String> {
        let live: Vec<(Uuid, Option<String>, DateTime<Utc>)> = sqlx::query_as(
            "select webinar_id, meeting_id, ends_at from webinars where status = 'LIVE'",
        )
        .fetch_all(&self.outside.pool)
        .await
        .map_err(|e| e.to_string())?;
        let now = Utc::now();
        misses.retain(|id, _| live.iter().any(|(l, _, _)| l == id));
        for (id, meeting, ends_at) in live {
            let webinar = WebinarId::from_uuid(id);
            if now > ends_at + self.grace {
                self.end(webinar, EndReason::SlotOver)
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
            let (Some(bbb), Some(meeting)) = (&self.outside.bbb, meeting) else {
                continue;
            };
            let gone = match bbb.get_meeting_info(&meeting).await {
                Ok(info) if info.running => {
                    seen_running.insert(id);
                    false
                }
                Ok(_) => seen_running.contains(&id),
                Err(BbbError::NotFound) => true,
                Err(error) => {
                    tracing::warn!(webinar = %webinar, %error, "cannot ask BBB about the meeting");
                    continue;
                }
            };
            let count = misses.entry(id).or_insert(0);
            *count = if gone { *count + 1 } else { 0 };
            if *count >= 2 {
                misses.remove(&id);
                seen_running.remove(&id);
                self.end(webinar, EndReason::Poll)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}
