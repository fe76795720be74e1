//! Statistics for analysts (and administrators).

use async_graphql::{Context, Object, ResultExt, SimpleObject, ID};
use chrono::{DateTime, NaiveDate, Utc};

use super::context::parts;
use super::error::ApiError;

/// One webinar's figures.
#[derive(SimpleObject)]
pub struct WebinarStats {
    pub webinar_id: ID,
    pub title: String,
    pub owner_id: String,
    pub gateway_id: ID,
    pub scheduled_start: DateTime<Utc>,
    pub scheduled_minutes: i32,
    pub status: String,
    /// `PRESENTER`, `BBB_CALLBACK`, `POLL`, `SLOT_OVER` or `CANCELLED`; null while it runs.
    pub ended_how: Option<String>,
    /// Seconds from the meeting's start to the stream's first `LIVE`.
    pub seconds_to_first_live: Option<i64>,
    pub live_minutes: f64,
    pub stream_failures: i32,
    pub restarts: i32,
    pub failovers: i32,
    pub chat_posted: i32,
    pub chat_relayed: i32,
    pub chat_failed: i32,
}

/// One gateway's use on one UTC day.
#[derive(SimpleObject)]
pub struct GatewayUtilization {
    pub gateway_id: ID,
    pub day: NaiveDate,
    pub reserved_minutes: i64,
    pub live_minutes: f64,
    pub failures: i32,
}

fn range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => {
            Err(ApiError::bad_input("from", "must not be after `to`"))
        }
        _ => Ok(()),
    }
}

#[derive(Default)]
pub struct StatsQuery;

#[Object]
impl StatsQuery {
    /// Webinars scheduled to start in `[from, to)`.
    async fn webinar_stats(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<Vec<WebinarStats>> {
        async {
            let (state, request) = parts(ctx)?;
            range(from, to)?;
            let rows = state
                .reads()
                .webinar_stats(&request.caller, from, to)
                .await?;
            Ok::<_, ApiError>(
                rows.into_iter()
                    .map(|r| WebinarStats {
                        webinar_id: ID(r.webinar_id.to_string()),
                        title: r.title,
                        owner_id: r.owner_id,
                        gateway_id: ID(r.gateway_id.to_string()),
                        scheduled_start: r.scheduled_start,
                        scheduled_minutes: r.scheduled_minutes,
                        status: r.status.to_string(),
                        ended_how: r.ended_how,
                        seconds_to_first_live: r.first_live_seconds,
                        live_minutes: r.live_seconds as f64 / 60.0,
                        stream_failures: r.stream_failures,
                        restarts: r.restarts,
                        failovers: r.failovers,
                        chat_posted: r.chat_posted,
                        chat_relayed: r.chat_relayed,
                        chat_failed: r.chat_failed,
                    })
                    .collect(),
            )
        }
        .await
        .extend()
    }

    /// Per gateway and UTC day, for the days in `[from, to)`.
    async fn gateway_utilization(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> async_graphql::Result<Vec<GatewayUtilization>> {
        async {
            let (state, request) = parts(ctx)?;
            range(Some(from), Some(to))?;
            let rows = state
                .reads()
                .gateway_utilization(&request.caller, from, to)
                .await?;
            Ok::<_, ApiError>(
                rows.into_iter()
                    .map(|r| GatewayUtilization {
                        gateway_id: ID(r.gateway_id.to_string()),
                        day: r.day,
                        reserved_minutes: r.reserved_minutes,
                        live_minutes: r.live_seconds as f64 / 60.0,
                        failures: r.failures,
                    })
                    .collect(),
            )
        }
        .await
        .extend()
    }
}
