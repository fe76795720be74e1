//! Posting to a webinar's chat: the checks that span the Webinar and the new ChatMessage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use chrono::Utc;
use webinar_domain::chat::{ChatCommand, ChatMessage, ChatText};
use webinar_domain::webinar::{WebinarError, WebinarStatus};
use webinar_domain::{Action, Caller, Denied, PermissionPolicy, Person, WebinarId};

use crate::error::{from_aggregate, CommandError};
use crate::event_store::{CommandBus, CommandMetadata, Written};
use crate::webinars::WebinarService;

pub use webinar_domain::ids::ChatMessageId;

/// A rate: at most `limit` posts in any `window`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub limit: u32,
    pub window: Duration,
}

impl Rate {
    /// The generic cell rate algorithm's spacing: one post per `window / limit` once the burst of
    /// `limit` is spent.
    fn interval(&self) -> Duration {
        self.window / self.limit.max(1)
    }
}

/// Chat rate limits kept in PostgreSQL (`chat_rate_limits`), so they hold across instances: one
/// per author and one per webinar (all its viewers together). Each is a generic cell rate
/// algorithm cell — a burst of `limit`, then one post per `window / limit` — updated by one
/// conditional upsert, so two instances admitting at the same moment cannot both take the last
/// place. Time is the database's clock, the same for every instance.
pub struct ChatRateLimiter {
    pool: PgPool,
    per_author: Rate,
    per_webinar: Rate,
    posts: AtomicU64,
}

/// Expired cells are swept every this many admitted posts.
const SWEEP_EVERY: u64 = 1_000;

impl ChatRateLimiter {
    pub fn new(pool: PgPool, per_author: Rate, per_webinar: Rate) -> Self {
        Self {
            pool,
            per_author,
            per_webinar,
            posts: AtomicU64::new(0),
        }
    }

    /// Counts one post by `author` in `webinar`, or says how long to wait. Nothing is counted
    /// when either limit refuses.
    pub async fn admit(&self, author: &str, webinar: WebinarId) -> Result<(), CommandError> {
        let mut tx = self.pool.begin().await?;
        // A webinar's cell is one row every viewer's post updates: its lock is held until the
        // commit, and a commit that waited for the WAL flush made the whole audience post one
        // at a time, one fsync each (525 posts/s here). A cell is not acknowledged data: a crash
        // that loses the last few milliseconds of admissions only lets a few more posts through.
        sqlx::query("set local synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        for (scope, rate) in [
            (format!("author:{author}"), self.per_author),
            (format!("webinar:{webinar}"), self.per_webinar),
        ] {
            if let Some(wait) = take(&mut tx, &scope, rate).await? {
                // Rolling back returns the author's place when the webinar's cap refused.
                tx.rollback().await?;
                return Err(CommandError::RateLimited {
                    retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
                });
            }
        }
        tx.commit().await?;
        if self.posts.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep().await;
        }
        Ok(())
    }

    /// Deletes cells that no longer limit anyone (best effort: a failure only leaves rows).
    async fn sweep(&self) {
        let swept =
            sqlx::query("delete from chat_rate_limits where tat < now() - interval '1 minute'")
                .execute(&self.pool)
                .await;
        if let Err(error) = swept {
            tracing::warn!(%error, "chat rate limits: sweep failed");
        }
    }
}

/// Takes one place in `scope`'s cell, or returns how long until one frees.
async fn take(
    tx: &mut sqlx::PgConnection,
    scope: &str,
    rate: Rate,
) -> Result<Option<Duration>, CommandError> {
    let interval = rate.interval().as_secs_f64();
    let window = rate.window.as_secs_f64();
    // A post is admitted when the cell's arrival time, pushed one interval on, stays within one
    // window of now; the row lock of the upsert orders concurrent posts.
    let admitted: Option<(i32,)> = sqlx::query_as(
        "insert into chat_rate_limits as c (scope, tat) \
         values ($1, now() + make_interval(secs => $2)) \
         on conflict (scope) do update \
           set tat = greatest(c.tat, now()) + make_interval(secs => $2) \
           where greatest(c.tat, now()) + make_interval(secs => $2) <= now() + make_interval(secs => $3) \
         returning 1",
    )
    .bind(scope)
    .bind(interval)
    .bind(window)
    .fetch_optional(&mut *tx)
    .await
    ?;
    if admitted.is_some() {
        return Ok(None);
    }
    let wait: (f64,) = sqlx::query_as(
        "select greatest(extract(epoch from (tat - now()))::float8 - $2 + $3, 0) \
         from chat_rate_limits where scope = $1",
    )
    .bind(scope)
    .bind(window)
    .bind(interval)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Some(Duration::from_secs_f64(wait.0)))
}

pub struct ChatService {
    bus: CommandBus<ChatMessage>,
    webinars: Arc<WebinarService>,
    policy: PermissionPolicy,
    limiter: ChatRateLimiter,
}

impl ChatService {
    pub fn new(
        bus: CommandBus<ChatMessage>,
        webinars: Arc<WebinarService>,
        policy: PermissionPolicy,
        limiter: ChatRateLimiter,
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
        self.limiter.admit(&actor.id, webinar_id).await?;
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
