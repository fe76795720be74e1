//! `audit_log`: every event, for auditors, with who did it and why.

use std::borrow::Cow;
use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use webinar_domain::Site;
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::StoredEvent;

pub struct AuditLogProjector;

/// Whether a key names a secret: `token`, `*_token`, `*secret*`, `*password*`, in any case.
fn secret_key(key: &str) -> bool {
    let key = key.as_bytes();
    let contains = |needle: &[u8]| {
        key.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    key.eq_ignore_ascii_case(b"token")
        || (key.len() >= 6 && key[key.len() - 6..].eq_ignore_ascii_case(b"_token"))
        || contains(b"secret")
        || contains(b"password")
}

/// Whether [`redact`] would change `value` (checked without copying it: almost no event has
/// anything to hide).
fn holds_secret(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(key, inner)| (secret_key(key) && !inner.is_null()) || holds_secret(inner)),
        Value::Array(items) => items.iter().any(holds_secret),
        _ => false,
    }
}

/// Replaces the value of any key that names a secret. Events carry none by design (tokens are
/// stored apart, by fingerprint); this keeps a future mistake out of the audit trail.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if secret_key(key) && !inner.is_null() {
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
        &["audit_log", "audit_sites"]
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        _announce: bool,
    ) -> Result<(), ProjectionError> {
        // COPY is the fastest way into a table (rebuilds write a million rows). The checkpoint
        // moves in the same transaction, so a batch is applied exactly once; should a row exist
        // all the same, the batch is written again with `on conflict do nothing`.
        sqlx::query("savepoint audit_copy")
            .execute(&mut *conn)
            .await?;
        match copy_rows(conn, events).await {
            Ok(()) => {
                sqlx::query("release savepoint audit_copy")
                    .execute(&mut *conn)
                    .await?;
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                sqlx::query("rollback to savepoint audit_copy")
                    .execute(&mut *conn)
                    .await?;
                insert_rows(conn, events).await?;
            }
            Err(error) => return Err(error.into()),
        }
        record_sites(conn, events).await?;
        Ok(())
    }
}

/// The site an aggregate's first event names: a webinar's `Scheduled`, a gateway's
/// `GatewayRegistered`, a capacity watch's first `CapacityShortfallAppeared` (`default` when the
/// event predates sites); a chat message's `Posted` names its webinar, whose site it takes.
enum Birth {
    Site(String),
    Of(String),
}

fn birth(event: &StoredEvent) -> Result<Option<Birth>, ProjectionError> {
    let key = match (event.aggregate_type.as_str(), event.event_type.as_str()) {
        ("Webinar", "Scheduled") => "Scheduled",
        ("Gateway", "GatewayRegistered") => "GatewayRegistered",
        ("CapacityWatch", "CapacityShortfallAppeared") => "CapacityShortfallAppeared",
        ("ChatMessage", "Posted") => "Posted",
        _ => return Ok(None),
    };
    let payload = event
        .payload_value()
        .map_err(|e| ProjectionError::decode(event, e))?;
    let field = |name: &str| payload[key][name].as_str().map(str::to_owned);
    Ok(Some(if key == "Posted" {
        match field("webinar_id") {
            Some(webinar) => Birth::Of(webinar),
            None => return Ok(None),
        }
    } else {
        Birth::Site(field("site").unwrap_or_else(|| Site::DEFAULT.to_owned()))
    }))
}

/// Keeps `audit_sites` (one row per aggregate) for the events of a batch that start an aggregate.
async fn record_sites(
    conn: &mut PgConnection,
    events: &[StoredEvent],
) -> Result<(), ProjectionError> {
    let mut known: HashMap<String, String> = HashMap::new();
    let mut chats: Vec<(String, String)> = Vec::new();
    for event in events {
        match birth(event)? {
            Some(Birth::Site(site)) => {
                known.insert(event.aggregate_id.clone(), site);
            }
            Some(Birth::Of(webinar)) => chats.push((event.aggregate_id.clone(), webinar)),
            None => {}
        }
    }
    let unknown: Vec<&str> = chats
        .iter()
        .map(|(_, webinar)| webinar.as_str())
        .filter(|webinar| !known.contains_key(*webinar))
        .collect();
    if !unknown.is_empty() {
        let found: Vec<(String, String)> = sqlx::query_as(
            "select aggregate_id, site from audit_sites where aggregate_id = any($1)",
        )
        .bind(&unknown)
        .fetch_all(&mut *conn)
        .await?;
        known.extend(found);
    }
    for (chat, webinar) in chats {
        let site = known
            .get(&webinar)
            .cloned()
            .unwrap_or_else(|| Site::DEFAULT.to_owned());
        known.insert(chat, site);
    }
    if known.is_empty() {
        return Ok(());
    }
    let (ids, sites): (Vec<String>, Vec<String>) = known.into_iter().unzip();
    sqlx::query(
        "insert into audit_sites (aggregate_id, site)
         select * from unnest($1::text[], $2::text[]) on conflict (aggregate_id) do nothing",
    )
    .bind(&ids)
    .bind(&sites)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether JSON text may name a secret: any `token`, `secret` or `password`, in any case, or an
/// escape that could spell one. Most payloads say none of these and are kept as they are, unparsed.
/// One pass over the bytes (this runs for every event of a rebuild).
fn mentions_secret(json: &str) -> bool {
    let bytes = json.as_bytes();
    let at = |i: usize, word: &[u8]| {
        bytes
            .get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    (0..bytes.len()).any(|i| match bytes[i] | 0x20 {
        b't' => at(i, b"token"),
        b's' => at(i, b"secret"),
        b'p' => at(i, b"password"),
        _ => bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'u'),
    })
}

/// The payload as the audit log keeps it (JSON text), redacted when it holds a secret.
fn audited(event: &StoredEvent) -> Result<Cow<'_, str>, ProjectionError> {
    let raw = event.payload.get();
    if !mentions_secret(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut value = event
        .payload_value()
        .map_err(|e| ProjectionError::decode(event, e))?;
    if !holds_secret(&value) {
        return Ok(Cow::Borrowed(raw));
    }
    redact(&mut value);
    Ok(Cow::Owned(value.to_string()))
}

const COLUMNS: &str = "global_position, tx_id, recorded_at, aggregate_type, aggregate_id,
    sequence, event_type, event_version, actor_id, actor_name, correlation_id, causation_id,
    request_id, payload";

/// COPY's binary format: a header, then per row its field count and each field as a length and
/// bytes (PostgreSQL's binary send format: big-endian integers, microseconds since 2000 for
/// timestamps, a version byte before jsonb's text). Nothing to escape, nothing for the server
/// to parse but the payload.
mod binary {
    use chrono::{DateTime, Utc};

    pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
    pub const TRAILER: &[u8] = &(-1i16).to_be_bytes();

    /// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
    const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

    pub fn row(out: &mut Vec<u8>, fields: i16) {
        out.extend_from_slice(&fields.to_be_bytes());
    }

    pub fn bigint(out: &mut Vec<u8>, value: i64) {
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }

    pub fn timestamptz(out: &mut Vec<u8>, at: DateTime<Utc>) {
        bigint(out, at.timestamp_micros() - POSTGRES_EPOCH_MICROS);
    }

    pub fn text(out: &mut Vec<u8>, value: Option<&str>) {
        match value {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(value) => {
                out.extend_from_slice(&(value.len() as i32).to_be_bytes());
                out.extend_from_slice(value.as_bytes());
            }
        }
    }

    pub fn jsonb(out: &mut Vec<u8>, json: &str) {
        out.extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
        out.push(1);
        out.extend_from_slice(json.as_bytes());
    }
}

/// Appends the rows of `events` in COPY's binary format.
fn copy_rows_of(out: &mut Vec<u8>, events: &[StoredEvent]) -> Result<(), ProjectionError> {
    for event in events {
        let payload = audited(event)?;
        binary::row(out, 14);
        binary::bigint(out, event.global_position);
        binary::bigint(out, event.tx_id);
        binary::timestamptz(out, event.recorded_at);
        binary::text(out, Some(&event.aggregate_type));
        binary::text(out, Some(&event.aggregate_id));
        binary::bigint(out, event.sequence);
        binary::text(out, Some(&event.event_type));
        binary::text(out, Some(&event.event_version));
        binary::text(out, Some(event.meta("actor_id").unwrap_or("unknown")));
        binary::text(out, event.meta("actor_name"));
        binary::text(out, event.meta("correlation_id"));
        binary::text(out, event.meta("causation_id"));
        binary::text(out, event.meta("request_id"));
        binary::jsonb(out, &payload);
    }
    Ok(())
}

/// Rows per COPY message: PostgreSQL stores one chunk while the next is being encoded.
const COPY_CHUNK: usize = 1_000;

async fn copy_rows(conn: &mut PgConnection, events: &[StoredEvent]) -> Result<(), sqlx::Error> {
    let mut copy = conn
        .copy_in_raw(&format!(
            "copy audit_log ({COLUMNS}) from stdin with (format binary)"
        ))
        .await?;
    let mut data = binary::HEADER.to_vec();
    for chunk in events.chunks(COPY_CHUNK) {
        data.reserve(chunk.len() * 400);
        if let Err(error) = copy_rows_of(&mut data, chunk) {
            copy.abort(error.to_string()).await?;
            return Err(sqlx::Error::Protocol(error.to_string()));
        }
        copy.send(std::mem::take(&mut data)).await?;
    }
    copy.send(binary::TRAILER).await?;
    copy.finish().await?;
    Ok(())
}

/// The same rows with `insert … on conflict do nothing`: for a batch some of whose rows exist.
async fn insert_rows(
    conn: &mut PgConnection,
    events: &[StoredEvent],
) -> Result<(), ProjectionError> {
    let payloads = events.iter().map(audited).collect::<Result<Vec<_>, _>>()?;
    let meta = |key: &str| events.iter().map(|e| e.meta(key)).collect::<Vec<_>>();
    let text = |f: fn(&StoredEvent) -> &str| events.iter().map(f).collect::<Vec<_>>();
    sqlx::query(&format!(
        "insert into audit_log ({COLUMNS})
         select g, t, r, at, ai, s, et, ev, a, an, c, ca, rq, p::jsonb
           from unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[],
                       $6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[],
                       $11::text[], $12::text[], $13::text[], $14::text[])
             as e(g, t, r, at, ai, s, et, ev, a, an, c, ca, rq, p)
         on conflict (tx_id, global_position) do nothing"
    ))
    .bind(events.iter().map(|e| e.global_position).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.tx_id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
    .bind(text(|e| &e.aggregate_type))
    .bind(text(|e| &e.aggregate_id))
    .bind(events.iter().map(|e| e.sequence).collect::<Vec<_>>())
    .bind(text(|e| &e.event_type))
    .bind(text(|e| &e.event_version))
    .bind(text(|e| e.meta("actor_id").unwrap_or("unknown")))
    .bind(meta("actor_name"))
    .bind(meta("correlation_id"))
    .bind(meta("causation_id"))
    .bind(meta("request_id"))
    .bind(payloads.iter().map(|p| p.as_ref()).collect::<Vec<&str>>())
    .execute(conn)
    .await?;
    Ok(())
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

/// Entries of `site`'s aggregates matching `filter` after the cursor `(tx_id, global_position)`,
/// in log order.
pub async fn list(
    pool: &PgPool,
    site: &Site,
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
            and coalesce((select s.site from audit_sites s where s.aggregate_id = audit_log.aggregate_id),
                         'default') = $11
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
    .bind(site.as_str())
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
        assert!(holds_secret(&value));
        redact(&mut value);
        assert_eq!(
            value,
            json!({"A": {"token": "[REDACTED]", "bbb_secret": "[REDACTED]", "token_fingerprint": "sha256:ab",
                         "list": [{"password": "[REDACTED]"}], "title": "ok"}})
        );
    }

    #[test]
    fn any_spelling_of_a_secret_word_is_looked_at() {
        for (json, mentions) in [
            (r#"{"Scheduled":{"title":"t"}}"#, false),
            (r#"{"a":{"TOKEN":1}}"#, true),
            (r#"{"bbb_Secret":1}"#, true),
            (r#"{"x":"passWORD"}"#, true),
            (r#"{"\u0074oken":1}"#, true),
            (r#"{"tok":"sec pass"}"#, false),
        ] {
            assert_eq!(mentions_secret(json), mentions, "{json}");
        }
    }

    #[test]
    fn only_what_redaction_would_change_counts_as_a_secret() {
        for (value, secret) in [
            (
                json!({"Scheduled": {"title": "t", "token_fingerprint": "sha256:ab"}}),
                false,
            ),
            (json!({"Rotated": {"token": null}}), false),
            (json!({"Rotated": {"Gateway_Token": "x"}}), true),
            (json!([{"a": [{"MyPassword1": 1}]}]), true),
            (json!("token"), false),
        ] {
            assert_eq!(holds_secret(&value), secret, "{value}");
            let mut redacted = value.clone();
            redact(&mut redacted);
            assert_eq!(redacted != value, secret, "{value}");
        }
    }
}
