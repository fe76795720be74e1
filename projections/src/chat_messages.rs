//! `chat_messages`: what the audience posted and whether it reached the meeting.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::chat::{ChatEvent, ChatStatus};
use webinar_domain::ids::ChatMessageId;
use webinar_domain::{Person, WebinarId};
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::{self, StoredEvent};

use crate::events::decoded;

pub struct ChatMessagesProjector;

/// A row of `chat_messages`, as folded in memory.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Record {
    message_id: Uuid,
    webinar_id: Uuid,
    author_id: String,
    author_name: String,
    text: String,
    posted_at: DateTime<Utc>,
    status: String,
    failure_reason: Option<String>,
    version: i64,
}

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

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        _announce: bool,
    ) -> Result<(), ProjectionError> {
        let batch: Vec<(Uuid, ChatEvent, &StoredEvent)> = events
            .iter()
            .map(|event| decoded(event).map(|(id, payload)| (id, payload, event)))
            .collect::<Result<_, _>>()?;
        // Only outcomes of messages posted before this batch need their row.
        let earlier: Vec<Uuid> = batch
            .iter()
            .filter(|(_, payload, _)| !matches!(payload, ChatEvent::Posted { .. }))
            .map(|(id, _, _)| *id)
            .collect();
        let mut rows: HashMap<Uuid, Record> = sqlx::query_as::<_, Record>(
            "select message_id, webinar_id, author_id, author_name, text, posted_at, status,
                    failure_reason, version
               from chat_messages where message_id = any($1)",
        )
        .bind(&earlier)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| (row.message_id, row))
        .collect();
        let changed = fold(&mut rows, batch);
        let rows: Vec<&Record> = changed.iter().filter_map(|id| rows.get(id)).collect();
        if rows.is_empty() {
            return Ok(());
        }
        let text = |f: fn(&Record) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        sqlx::query(
            "insert into chat_messages (message_id, webinar_id, author_id, author_name, text,
                posted_at, status, failure_reason, version)
             select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                                  $6::timestamptz[], $7::text[], $8::text[], $9::bigint[])
             on conflict (message_id) do update set status = excluded.status,
                failure_reason = excluded.failure_reason, version = excluded.version",
        )
        .bind(rows.iter().map(|r| r.message_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.webinar_id).collect::<Vec<_>>())
        .bind(text(|r| &r.author_id))
        .bind(text(|r| &r.author_name))
        .bind(text(|r| &r.text))
        .bind(rows.iter().map(|r| r.posted_at).collect::<Vec<_>>())
        .bind(text(|r| &r.status))
        .bind(
            rows.iter()
                .map(|r| r.failure_reason.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// Folds a batch of (message, event) into `rows`; returns the messages whose row changed.
fn fold<'e>(
    rows: &mut HashMap<Uuid, Record>,
    batch: impl IntoIterator<Item = (Uuid, ChatEvent, &'e StoredEvent)>,
) -> Vec<Uuid> {
    let mut changed = Vec::new();
    for (id, payload, event) in batch {
        match (rows.get_mut(&id), payload) {
            (Some(row), _) if row.version >= event.sequence => continue,
            (
                None,
                ChatEvent::Posted {
                    webinar_id,
                    author,
                    text,
                    posted_at,
                },
            ) => {
                rows.insert(
                    id,
                    Record {
                        message_id: id,
                        webinar_id: webinar_id.as_uuid(),
                        author_id: author.id,
                        author_name: author.name,
                        text: text.as_str().to_owned(),
                        posted_at,
                        status: ChatStatus::Posted.as_str().to_owned(),
                        failure_reason: None,
                        version: event.sequence,
                    },
                );
            }
            (Some(row), ChatEvent::Relayed) => {
                row.status = ChatStatus::Relayed.as_str().to_owned();
                row.failure_reason = None;
                row.version = event.sequence;
            }
            (Some(row), ChatEvent::RelayFailed { reason }) => {
                row.status = ChatStatus::Failed.as_str().to_owned();
                row.failure_reason = Some(reason);
                row.version = event.sequence;
            }
            _ => continue,
        }
        changed.push(id);
    }
    changed.sort();
    changed.dedup();
    changed
}

/// One message's row as its own events make it, without the table: the answer to a post while
/// the read model is still behind it.
pub async fn from_log(
    pool: &PgPool,
    id: ChatMessageId,
) -> Result<Option<ChatMessageRow>, ProjectionError> {
    let events = event_log::aggregate_events(pool, "ChatMessage", &id.to_string(), &[]).await?;
    let batch = events
        .iter()
        .map(|event| decoded(event).map(|(id, payload)| (id, payload, event)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = HashMap::new();
    fold(&mut rows, batch);
    rows.remove(&id.as_uuid())
        .map(|record| {
            Ok(ChatMessageRow {
                message_id: id,
                webinar_id: WebinarId::from_uuid(record.webinar_id),
                status: record
                    .status
                    .parse()
                    .map_err(|e| ProjectionError::InvalidRow(format!("chat status: {e}")))?,
                author_id: record.author_id,
                author_name: record.author_name,
                text: record.text,
                posted_at: record.posted_at,
            })
        })
        .transpose()
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
