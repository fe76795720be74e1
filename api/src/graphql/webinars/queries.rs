//! The webinar queries: the live page, one webinar, the caller's webinars, and the replay of a
//! webinar's history for auditors.

use async_graphql::connection::Connection;
use async_graphql::{Context, Object, ResultExt, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use webinar_projections::live_events::LiveEventFilter;
use webinar_projections::webinars::WebinarView;

use super::inputs::parse_webinar_id;
use super::types::{LiveEvent, LiveEventStatus, Webinar};
use crate::graphql::context::parts;
use crate::graphql::error::{from_command, ApiError};
use crate::graphql::pagination::{page_cost, Page, WEBINAR_PAGES};

#[derive(Default)]
pub struct WebinarQuery;

#[Object]
impl WebinarQuery {
    /// The live page, in start order. Restricted events need a login, and membership of one of
    /// their groups when they have any; hosts and administrators always see theirs.
    #[graphql(complexity = "page_cost(first, WEBINAR_PAGES, child_complexity)")]
    async fn live_events(
        &self,
        ctx: &Context<'_>,
        status: Option<Vec<LiveEventStatus>>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, LiveEvent>> {
        async {
            let (state, request) = parts(ctx)?;
            if let (Some(from), Some(to)) = (from, to) {
                if from > to {
                    return Err(ApiError::bad_input("from", "must not be after `to`"));
                }
            }
            let page =
                Page::<(DateTime<Utc>, Uuid)>::parse(first, after.as_deref(), WEBINAR_PAGES)?;
            let filter = LiveEventFilter {
                statuses: status.map(|s| s.into_iter().map(Into::into).collect()),
                from,
                to,
                after: page.after,
                limit: page.limit(),
            };
            let rows = state.reads().live_events(&request.caller, &filter).await?;
            Ok(page.connection(
                rows,
                |row| (row.starts_at, row.live_event_id.as_uuid()),
                LiveEvent::from,
            ))
        }
        .await
        .extend()
    }

    /// One live event, when the caller may see it.
    async fn live_event(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<LiveEvent>> {
        async {
            let (state, request) = parts(ctx)?;
            let id = parse_webinar_id("id", &id)?;
            let row = state.reads().live_event(&request.caller, id).await?;
            Ok::<_, ApiError>(row.map(LiveEvent::from))
        }
        .await
        .extend()
    }

    /// A webinar, for its owner, presenters and administrators (null for anyone else).
    async fn webinar(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Webinar>> {
        async {
            let (state, request) = parts(ctx)?;
            let id = parse_webinar_id("id", &id)?;
            let webinar = state.reads().webinar(&request.caller, id).await?;
            Ok::<_, ApiError>(webinar.map(Webinar))
        }
        .await
        .extend()
    }

    /// Auditors: the webinar as it was at `at`, replayed from its own events (not a read model).
    async fn webinar_as_of(
        &self,
        ctx: &Context<'_>,
        id: ID,
        at: DateTime<Utc>,
    ) -> async_graphql::Result<Option<Webinar>> {
        async {
            let (state, request) = parts(ctx)?;
            let id = parse_webinar_id("id", &id)?;
            let replayed = state
                .webinars()
                .as_of(&request.caller, id, at)
                .await
                .map_err(|e| from_command(e, ""))?;
            Ok::<_, ApiError>(
                replayed
                    .and_then(|r| WebinarView::from_state(id, &r.webinar, r.events).map(Webinar)),
            )
        }
        .await
        .extend()
    }

    /// The webinars the caller owns or presents, in start order.
    #[graphql(complexity = "page_cost(first, WEBINAR_PAGES, child_complexity)")]
    async fn my_webinars(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Webinar>> {
        async {
            let (state, request) = parts(ctx)?;
            let page =
                Page::<(DateTime<Utc>, Uuid)>::parse(first, after.as_deref(), WEBINAR_PAGES)?;
            let rows = state
                .reads()
                .my_webinars(&request.caller, page.after, page.limit())
                .await?;
            Ok::<_, ApiError>(page.connection(rows, |w| (w.slot.start(), w.id.as_uuid()), Webinar))
        }
        .await
        .extend()
    }
}
