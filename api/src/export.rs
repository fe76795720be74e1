//! `webinar audit export`: the event log, streamed row by row (constant memory), secrets
//! redacted, as JSON lines or CSV. A progress bar goes to a terminal's stderr; piped, it is silent.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sqlx::PgPool;
use webinar_projections::audit_log::redact;

use crate::cli::ExportFormat;

const COLUMNS: [&str; 13] = [
    "position",
    "recorded_at",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "event_version",
    "actor_id",
    "actor_name",
    "correlation_id",
    "causation_id",
    "request_id",
    "payload",
];

#[derive(sqlx::FromRow)]
struct Row {
    global_position: i64,
    recorded_at: DateTime<Utc>,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

pub async fn export(
    pool: &PgPool,
    format: ExportFormat,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    aggregate: Option<String>,
) -> anyhow::Result<()> {
    if let (Some(from), Some(to)) = (from, to) {
        anyhow::ensure!(from <= to, "--from must not be after --to");
    }
    let total: i64 = sqlx::query_scalar(
        "select count(*) from events
          where ($1::timestamptz is null or recorded_at >= $1)
            and ($2::timestamptz is null or recorded_at < $2)
            and ($3::text is null or aggregate_id = $3)",
    )
    .bind(from)
    .bind(to)
    .bind(&aggregate)
    .fetch_one(pool)
    .await?;
    let bar = ProgressBar::with_draw_target(
        Some(total.max(0) as u64),
        indicatif::ProgressDrawTarget::stderr(),
    )
    .with_style(ProgressStyle::with_template(
        "exporting [{bar:40}] {pos}/{len} events ({per_sec})",
    )?);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if matches!(format, ExportFormat::Csv) {
        writeln!(out, "{}", COLUMNS.join(","))?;
    }
    let mut rows = sqlx::query_as::<_, Row>(
        "select global_position, recorded_at, aggregate_type, aggregate_id, sequence, event_type,
                event_version, payload::jsonb as payload, metadata::jsonb as metadata
           from events
          where ($1::timestamptz is null or recorded_at >= $1)
            and ($2::timestamptz is null or recorded_at < $2)
            and ($3::text is null or aggregate_id = $3)
          order by tx_id, global_position",
    )
    .bind(from)
    .bind(to)
    .bind(&aggregate)
    .fetch(pool);
    while let Some(mut row) = rows.try_next().await.context("reading the event log")? {
        redact(&mut row.payload);
        let meta = |key: &str| {
            row.metadata
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match format {
            ExportFormat::Jsonl => {
                let line = json!({
                    "position": row.global_position, "recorded_at": row.recorded_at,
                    "aggregate_type": row.aggregate_type, "aggregate_id": row.aggregate_id,
                    "sequence": row.sequence, "event_type": row.event_type,
                    "event_version": row.event_version, "actor_id": meta("actor_id"),
                    "actor_name": meta("actor_name"), "correlation_id": meta("correlation_id"),
                    "causation_id": meta("causation_id"), "request_id": meta("request_id"),
                    "payload": row.payload,
                });
                writeln!(out, "{line}")?;
            }
            ExportFormat::Csv => {
                let fields = [
                    row.global_position.to_string(),
                    row.recorded_at.to_rfc3339(),
                    row.aggregate_type.clone(),
                    row.aggregate_id.clone(),
                    row.sequence.to_string(),
                    row.event_type.clone(),
                    row.event_version.clone(),
                    meta("actor_id").unwrap_or_default(),
                    meta("actor_name").unwrap_or_default(),
                    meta("correlation_id").unwrap_or_default(),
                    meta("causation_id").unwrap_or_default(),
                    meta("request_id").unwrap_or_default(),
                    row.payload.to_string(),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", line.join(","))?;
            }
        }
        bar.inc(1);
    }
    out.flush()?;
    bar.finish_and_clear();
    Ok(())
}
