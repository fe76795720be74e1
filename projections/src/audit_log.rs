//! `audit_log`: every event, for auditors, with who did it and why.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

pub struct AuditLogProjector;

/// Replaces the value of any key that names a secret. Events carry none by design (tokens are
/// stored apart, by fingerprint); this keeps a future mistake out of the audit trail.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                let key = key.to_ascii_lowercase();
                let secret = key == "token"
                    || key.ends_with("_token")
                    || key.contains("secret")
                    || key.contains("password");
                if secret && !inner.is_null() {
                    *inner = Value::String("[REDACTED]".into());
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[async_trait]
impl Projector for AuditLogProjector {
    fn name(&self) -> &'static str {
        "audit_log"
    }
    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        None
    }
    fn tables(&self) -> &'static [&'static str] {
        &["audit_log"]
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        _announce: bool,
    ) -> Result<(), ProjectionError> {
        let payloads: Vec<Value> = events
            .iter()
            .map(|event| {
                let mut payload = event.payload.clone();
                redact(&mut payload);
                payload
            })
            .collect();
        let meta = |key: &str| events.iter().map(|e| e.meta(key)).collect::<Vec<_>>();
        sqlx::query(
            "insert into audit_log (global_position, tx_id, recorded_at, aggregate_type,
                aggregate_id, sequence, event_type, event_version, actor_id, actor_name,
                correlation_id, causation_id, request_id, payload)
             select * from unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::text[],
                                  $5::text[], $6::bigint[], $7::text[], $8::text[], $9::text[],
                                  $10::text[], $11::text[], $12::text[], $13::text[], $14::jsonb[])
             on conflict (global_position) do nothing",
        )
        .bind(events.iter().map(|e| e.global_position).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.tx_id).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.aggregate_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.aggregate_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|e| e.sequence).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.event_version.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events
                .iter()
                .map(|e| e.meta("actor_id").unwrap_or("unknown"))
                .collect::<Vec<_>>(),
        )
        .bind(meta("actor_name"))
        .bind(meta("correlation_id"))
        .bind(meta("causation_id"))
        .bind(meta("request_id"))
        .bind(payloads)
        .execute(conn)
        .await?;
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditRow {
    pub global_position: i64,
    pub tx_id: i64,
    pub recorded_at: DateTime<Utc>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub actor_id: String,
    pub actor_name: Option<String>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub payload: Value,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub actor_id: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub correlation_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Entries matching `filter` after the cursor `(tx_id, global_position)`, in log order.
pub async fn list(
    pool: &PgPool,
    filter: &AuditFilter,
    after: Option<(i64, i64)>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        "select global_position, tx_id, recorded_at, aggregate_type, aggregate_id, sequence,
                event_type, event_version, actor_id, actor_name, correlation_id, causation_id, payload
           from audit_log
          where ($1::text is null or aggregate_type = $1)
            and ($2::text is null or aggregate_id = $2)
            and ($3::text is null or actor_id = $3)
            and ($4::text[] is null or event_type = any($4))
            and ($5::text is null or correlation_id = $5)
            and ($6::timestamptz is null or recorded_at >= $6)
            and ($7::timestamptz is null or recorded_at < $7)
            and ($8::bigint is null or (tx_id, global_position) > ($8, $9))
          order by tx_id, global_position
          limit $10",
    )
    .bind(&filter.aggregate_type)
    .bind(&filter.aggregate_id)
    .bind(&filter.actor_id)
    .bind(&filter.event_types)
    .bind(&filter.correlation_id)
    .bind(filter.from)
    .bind(filter.to)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_redacted_wherever_they_hide() {
        let mut value = json!({"A": {"token": "t", "bbb_secret": "s", "token_fingerprint": "sha256:ab",
                                     "list": [{"password": "p"}], "title": "ok"}});
        redact(&mut value);
        assert_eq!(
            value,
            json!({"A": {"token": "[REDACTED]", "bbb_secret": "[REDACTED]", "token_fingerprint": "sha256:ab",
                         "list": [{"password": "[REDACTED]"}], "title": "ok"}})
        );
    }
}
