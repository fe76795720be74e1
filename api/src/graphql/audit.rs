//! The audit log for auditors: every event, in log order, filtered and paginated.

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Json, Object, ResultExt, SimpleObject, ID};
use chrono::{DateTime, Utc};
use webinar_projections::audit_log::{AuditFilter as Filter, AuditRow};

use webinar_domain::values::parse_filter_term;

use super::context::parts;
use super::error::ApiError;
use super::pagination::{page_cost, Page, AUDIT_PAGES};

const AGGREGATE_TYPES: &[&str] = &["Webinar", "Gateway", "ChatMessage", "CapacityWatch"];

/// One event, as auditors see it.
#[derive(SimpleObject)]
pub struct AuditEntry {
    /// The event's global position in the log.
    pub position: String,
    pub recorded_at: DateTime<Utc>,
    pub aggregate_type: String,
    pub aggregate_id: ID,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub actor_id: String,
    pub actor_name: Option<String>,
    pub correlation_id: Option<String>,
    /// What caused it: the originating request's correlation id, or the position of the event a
    /// component reacted to.
    pub causation_id: Option<String>,
    /// The event's data, secrets redacted.
    pub payload: Json<serde_json::Value>,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        AuditEntry {
            position: row.global_position.to_string(),
            recorded_at: row.recorded_at,
            aggregate_type: row.aggregate_type,
            aggregate_id: ID(row.aggregate_id),
            sequence: row.sequence,
            event_type: row.event_type,
            event_version: row.event_version,
            actor_id: row.actor_id,
            actor_name: row.actor_name,
            correlation_id: row.correlation_id,
            causation_id: row.causation_id,
            payload: Json(row.payload),
        }
    }
}

#[derive(InputObject, Default)]
pub struct AuditFilter {
    /// `Webinar`, `Gateway` or `ChatMessage`.
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<ID>,
    pub actor_id: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub correlation_id: Option<String>,
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to: Option<DateTime<Utc>>,
}

/// More event types than the log has is a mistake or an attack.
const MAX_EVENT_TYPES: usize = 64;

impl AuditFilter {
    fn parse(self) -> Result<Filter, ApiError> {
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from > to {
                return Err(ApiError::bad_input("filter.from", "must not be after `to`"));
            }
        }
        if let Some(kind) = &self.aggregate_type {
            if !AGGREGATE_TYPES.contains(&kind.as_str()) {
                return Err(ApiError::bad_input(
                    "filter.aggregateType",
                    format!("must be one of {}", AGGREGATE_TYPES.join(", ")),
                ));
            }
        }
        let term = |field: &'static str, value: Option<&str>| match value {
            Some(value) => parse_filter_term(value)
                .map(|_| ())
                .map_err(|e| ApiError::bad_input(field, e.to_string())),
            None => Ok(()),
        };
        term(
            "filter.aggregateId",
            self.aggregate_id.as_ref().map(|id| id.as_str()),
        )?;
        term("filter.actorId", self.actor_id.as_deref())?;
        term("filter.correlationId", self.correlation_id.as_deref())?;
        if let Some(types) = &self.event_types {
            if types.len() > MAX_EVENT_TYPES {
                return Err(ApiError::bad_input(
                    "filter.eventTypes",
                    format!("at most {MAX_EVENT_TYPES} event types"),
                ));
            }
            for event_type in types {
                term("filter.eventTypes", Some(event_type))?;
            }
        }
        Ok(Filter {
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id.map(|id| id.0),
            actor_id: self.actor_id,
            event_types: self.event_types,
            correlation_id: self.correlation_id,
            from: self.from,
            to: self.to,
        })
    }
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Every event, in log order. Auditors and administrators.
    #[graphql(complexity = "page_cost(first, AUDIT_PAGES, child_complexity)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, AuditEntry>> {
        async {
            let (state, request) = parts(ctx)?;
            let page = Page::<(i64, i64)>::parse(first, after.as_deref(), AUDIT_PAGES)?;
            let filter = filter.unwrap_or_default().parse()?;
            let rows = state
                .reads()
                .audit_log(&request.caller, &filter, page.after, page.limit())
                .await?;
            let connection = page.connection(
                rows,
                |row| (row.tx_id, row.global_position),
                AuditEntry::from,
            );
            Ok::<_, ApiError>(connection)
        }
        .await
        .extend()
    }
}
