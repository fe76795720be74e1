//! The presenters' on-air view of one webinar: its stream, how the audience sees it, its gateway,
//! its chat and its audience, in one query over the read models (`webinars`, `gateways`,
//! `chat_messages`) and the audience presence.

use sqlx::PgPool;
use uuid::Uuid;
use webinar_domain::webinar::{StreamHealth, StreamState, WebinarStatus};
use webinar_domain::WebinarId;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OnAirRow {
    #[sqlx(try_from = "Uuid")]
    pub webinar_id: WebinarId,
    #[sqlx(try_from = "String")]
    pub status: WebinarStatus,
    #[sqlx(try_from = "String")]
    pub stream_state: StreamState,
    #[sqlx(try_from = "String")]
    pub stream_health: StreamHealth,
    pub stream_health_detail: Option<String>,
    pub gateway_name: Option<String>,
    pub chat_enabled: bool,
    /// Audience messages not relayed into the meeting yet.
    pub relay_queue: i64,
    /// Open viewers, on every instance.
    pub audience: i64,
}

pub async fn get(pool: &PgPool, id: WebinarId) -> Result<Option<OnAirRow>, sqlx::Error> {
    sqlx::query_as(
        "select w.webinar_id, w.status, w.stream_state, w.stream_health, w.stream_health_detail,
                (select g.name from gateways g where g.gateway_id = w.gateway_id) as gateway_name,
                w.enable_chat as chat_enabled,
                (select count(*) from chat_messages c
                  where c.webinar_id = w.webinar_id and c.status = 'POSTED') as relay_queue,
                (select coalesce(sum(p.viewers), 0)::bigint from audience_presence p
                  where p.webinar_id = w.webinar_id and p.expires_at > now()) as audience
           from webinars w where w.webinar_id = $1",
    )
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await
}

/// Open viewers of a webinar, on every instance.
pub async fn audience(pool: &PgPool, id: WebinarId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select coalesce(sum(viewers), 0)::bigint from audience_presence
          where webinar_id = $1 and expires_at > now()",
    )
    .bind(id.as_uuid())
    .fetch_one(pool)
    .await
}
