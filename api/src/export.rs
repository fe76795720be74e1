//! `webinar audit export`: the event log, streamed row by row (constant memory), secrets
//! redacted, as JSON lines or CSV. A progress bar goes to a terminal's stderr; piped, it is silent.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sqlx::PgPool;
use webinar_infra::event_log::{self, LogRange};
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
    let range = LogRange {
        from,
        to,
        aggregate_id: aggregate,
    };
    let total = event_log::count(pool, &range).await?;
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
    let mut events = event_log::stream(pool, &range);
    while let Some(event) = events.try_next().await.context("reading the event log")? {
        let mut payload = event.payload_value().with_context(|| {
            format!("event {} has an unreadable payload", event.global_position)
        })?;
        redact(&mut payload);
        let meta = |key: &str| event.meta(key).map(str::to_owned);
        match format {
            ExportFormat::Jsonl => {
                let line = json!({
                    "position": event.global_position, "recorded_at": event.recorded_at,
                    "aggregate_type": event.aggregate_type, "aggregate_id": event.aggregate_id,
                    "sequence": event.sequence, "event_type": event.event_type,
                    "event_version": event.event_version, "actor_id": meta("actor_id"),
                    "actor_name": meta("actor_name"), "correlation_id": meta("correlation_id"),
                    "causation_id": meta("causation_id"), "request_id": meta("request_id"),
                    "payload": payload,
                });
                writeln!(out, "{line}")?;
            }
            ExportFormat::Csv => {
                let fields = [
                    event.global_position.to_string(),
                    event.recorded_at.to_rfc3339(),
                    event.aggregate_type.clone(),
                    event.aggregate_id.clone(),
                    event.sequence.to_string(),
                    event.event_type.clone(),
                    event.event_version.clone(),
                    meta("actor_id").unwrap_or_default(),
                    meta("actor_name").unwrap_or_default(),
                    meta("correlation_id").unwrap_or_default(),
                    meta("causation_id").unwrap_or_default(),
                    meta("request_id").unwrap_or_default(),
                    payload.to_string(),
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
