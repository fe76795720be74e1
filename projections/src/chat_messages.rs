//! `chat_messages`: what the audience posted and whether it reached the meeting.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::chat::{ChatEvent, ChatStatus};
use webinar_domain::ids::ChatMessageId;
use webinar_domain::{Person, WebinarId};
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

use crate::events::decoded;

pub struct ChatMessagesProjector;

#[async_trait]
impl Projector for ChatMessagesProjector {
    fn name(&self) -> &'static str {
        "chat_messages"
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["ChatMessage"])
    }
    fn tables(&self) -> &'static [&'static str] {
        &["chat_messages"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let (id, payload): (_, ChatEvent) = decoded(event)?;
        let version = event.sequence;
        match payload {
            ChatEvent::Posted {
                webinar_id,
                author,
                text,
                posted_at,
            } => {
                sqlx::query(
                    "insert into chat_messages (message_id, webinar_id, author_id, author_name, text,
                        posted_at, status, version)
                     values ($1, $2, $3, $4, $5, $6, 'POSTED', $7)
                     on conflict (message_id) do nothing",
                )
                .bind(id)
                .bind(webinar_id.as_uuid())
                .bind(&author.id)
                .bind(&author.name)
                .bind(text.as_str())
                .bind(posted_at)
                .bind(version)
                .execute(conn)
                .await?;
            }
            ChatEvent::Relayed | ChatEvent::RelayFailed { .. } => {
                let (status, reason) = match payload {
                    ChatEvent::RelayFailed { reason } => (ChatStatus::Failed, Some(reason)),
                    _ => (ChatStatus::Relayed, None),
                };
                sqlx::query(
                    "update chat_messages set status = $3, failure_reason = $4, version = $2
                      where message_id = $1 and version < $2",
                )
                .bind(id)
                .bind(version)
                .bind(status.as_str())
                .bind(reason)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// One row of `chat_messages`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChatMessageRow {
    #[sqlx(try_from = "Uuid")]
    pub message_id: ChatMessageId,
    #[sqlx(try_from = "Uuid")]
    pub webinar_id: WebinarId,
    pub author_id: String,
    pub author_name: String,
    pub text: String,
    pub posted_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub status: ChatStatus,
}

impl ChatMessageRow {
    pub fn author(&self) -> Person {
        Person {
            id: self.author_id.clone(),
            name: self.author_name.clone(),
        }
    }
}

pub async fn get(pool: &PgPool, id: ChatMessageId) -> Result<Option<ChatMessageRow>, sqlx::Error> {
    sqlx::query_as(
        "select message_id, webinar_id, author_id, author_name, text, posted_at, status
           from chat_messages where message_id = $1",
    )
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await
}
