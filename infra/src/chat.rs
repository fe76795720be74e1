//! Posting to a webinar's chat: the checks that span the Webinar and the new ChatMessage.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use chrono::Utc;
use webinar_domain::chat::{ChatCommand, ChatMessage, ChatText};
use webinar_domain::webinar::{WebinarError, WebinarStatus};
use webinar_domain::{Action, Caller, Denied, PermissionPolicy, Person, WebinarId};

use crate::error::{from_aggregate, CommandError};
use crate::event_store::{CommandBus, CommandMetadata, Written};
use crate::webinars::WebinarService;

pub use webinar_domain::ids::ChatMessageId;

/// A sliding-window limit per author. Per process: with several instances behind a balancer the
/// effective limit is per instance, which is what it is for (keeping one poster from flooding).
pub struct RateLimiter {
    limit: usize,
    window: Duration,
    recent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1) as usize,
            window,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one post by `who`, or says how long to wait.
    pub fn check(&self, who: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() > 10_000 {
            recent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        let times = recent.entry(who.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() >= self.limit {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        times.push_back(now);
        Ok(())
    }
}

pub struct ChatService {
    bus: CommandBus<ChatMessage>,
    webinars: Arc<WebinarService>,
    policy: PermissionPolicy,
    limiter: RateLimiter,
}

impl ChatService {
    pub fn new(
        bus: CommandBus<ChatMessage>,
        webinars: Arc<WebinarService>,
        policy: PermissionPolicy,
        limiter: RateLimiter,
    ) -> Self {
        Self {
            bus,
            webinars,
            policy,
            limiter,
        }
    }

    pub async fn load(&self, id: ChatMessageId) -> Result<ChatMessage, CommandError> {
        self.bus.load(id).await.map_err(from_aggregate)
    }

    /// Records what the relay did (a component's command: no permission check).
    pub async fn record(
        &self,
        metadata: &CommandMetadata,
        id: ChatMessageId,
        command: ChatCommand,
    ) -> Result<(), CommandError> {
        self.bus
            .execute(id, command, metadata)
            .await
            .map_err(from_aggregate)?;
        Ok(())
    }

    /// Posts `text` to `webinar_id` as the caller: someone who may see the event, while it is live
    /// with its chat on, within the rate limit.
    #[tracing::instrument(name = "post_chat_message", skip_all, fields(webinar = %webinar_id))]
    pub async fn post(
        &self,
        caller: &Caller,
        metadata: &CommandMetadata,
        webinar_id: WebinarId,
        text: ChatText,
    ) -> Result<Written<ChatMessageId>, CommandError> {
        self.policy.require_sign_in(caller)?;
        let actor = caller.actor().ok_or(Denied::Unauthenticated)?;
        let webinar = self.webinars.load(webinar_id).await?;
        if !webinar.scheduled {
            return Err(WebinarError::NotFound.into());
        }
        self.policy.authorize(caller, Action::PostChat(&webinar))?;
        if webinar.status != WebinarStatus::Live {
            return Err(CommandError::ChatClosed(format!(
                "the webinar is {}: its chat opens when it is live",
                webinar.status.as_str()
            )));
        }
        if !webinar.enable_chat {
            return Err(CommandError::ChatClosed(
                "the presenters have turned the chat off".into(),
            ));
        }
        self.limiter
            .check(&actor.id)
            .map_err(|wait| CommandError::RateLimited {
                retry_after_seconds: wait.as_secs().max(1),
            })?;
        let command = ChatCommand::Post {
            webinar: webinar_id,
            author: Person {
                id: actor.id.clone(),
                name: actor.name.clone(),
            },
            text,
            at: Utc::now(),
        };
        self.bus
            .execute(ChatMessageId::new(), command, metadata)
            .await
            .map_err(from_aggregate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_allows_the_limit_then_refuses_with_a_wait() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        let wait = limiter.check("a").expect_err("third in the window");
        assert!(wait > Duration::from_secs(50));
        assert!(limiter.check("b").is_ok(), "limits are per author");
    }
}
