//! The webinar mutations. Each parses its input, calls one service method, and reads the webinar
//! back once the read models it answers from include the write (read-your-writes).

use async_graphql::{Context, Object, ResultExt, ID};
use webinar_domain::WebinarId;
use webinar_infra::event_store::Written;
use webinar_infra::webinars::LiveControl;
use webinar_projections::webinars::WebinarView;

use super::inputs::{parse_webinar_id, ScheduleWebinarInput, UpdateWebinarInput};
use super::types::{StartWebinarPayload, Webinar};
use crate::graphql::catching_up;
use crate::graphql::context::parts;
use crate::graphql::error::{from_command, ApiError};
use crate::state::AppState;

/// The read models a webinar mutation touches; it answers once all have caught up.
const PROJECTORS: &[&str] = &[
    "gateways",
    "gateway_reservations",
    "webinars",
    "live_events",
];

/// Waits for the read models, then reads the webinar back. If they are still behind the write
/// (which committed), answers from the aggregate itself and says so.
async fn read_back(
    ctx: &Context<'_>,
    state: &AppState,
    written: Written<WebinarId>,
) -> Result<Webinar, ApiError> {
    let view = match state.settle(PROJECTORS, written.position).await {
        Ok(()) => state.reads().webinar_by_id(written.id).await?,
        Err(late) => {
            tracing::warn!(%late, "answering from the aggregate");
            catching_up::mark(ctx);
            let (webinar, version) = state
                .webinars()
                .load_versioned(written.id)
                .await
                .map_err(|e| from_command(e, ""))?;
            WebinarView::from_state(written.id, &webinar, version)
        }
    };
    view.map(Webinar)
        .ok_or_else(|| ApiError::not_found("webinar"))
}

/// Runs a live control (stop, restart, end) and reads the webinar back.
async fn live_control(
    ctx: &Context<'_>,
    id: &ID,
    control: LiveControl,
) -> Result<Webinar, ApiError> {
    let (state, request) = parts(ctx)?;
    let id = parse_webinar_id("id", id)?;
    let written = state
        .webinars()
        .operate(&request.caller, &request.metadata(), id, control)
        .await
        .map_err(|e| from_command(e, ""))?;
    read_back(ctx, state, written).await
}

#[derive(Default)]
pub struct WebinarMutation;

#[Object]
impl WebinarMutation {
    /// Schedules a webinar on a gateway that is free for its slot, and publishes its live event.
    async fn schedule_webinar(
        &self,
        ctx: &Context<'_>,
        input: ScheduleWebinarInput,
    ) -> async_graphql::Result<Webinar> {
        async {
            let (state, request) = parts(ctx)?;
            let new = input.parse()?;
            let written = state
                .webinars()
                .schedule(
                    &request.caller,
                    &request.metadata(),
                    new.details,
                    new.start_at,
                    new.duration_minutes,
                )
                .await
                .map_err(|e| from_command(e, "input"))?;
            read_back(ctx, state, written).await
        }
        .await
        .extend()
    }

    /// Changes any detail; a new slot may move the webinar to another gateway.
    async fn update_webinar(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateWebinarInput,
    ) -> async_graphql::Result<Webinar> {
        async {
            let (state, request) = parts(ctx)?;
            let id = parse_webinar_id("id", &id)?;
            let update = input.parse()?;
            let written = state
                .webinars()
                .update(&request.caller, &request.metadata(), id, update)
                .await
                .map_err(|e| from_command(e, "input"))?;
            read_back(ctx, state, written).await
        }
        .await
        .extend()
    }

    /// Cancels a webinar that has not started; its gateway is freed and its live event marked.
    async fn cancel_webinar(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Webinar> {
        async {
            let (state, request) = parts(ctx)?;
            let id = parse_webinar_id("id", &id)?;
            let written = state
                .webinars()
                .cancel(&request.caller, &request.metadata(), id)
                .await
                .map_err(|e| from_command(e, ""))?;
            read_back(ctx, state, written).await
        }
        .await
        .extend()
    }

    /// Starts (or rejoins) the webinar. Only the owner's start asks for the stream.
    async fn start_webinar(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<StartWebinarPayload> {
        async {
            let (state, request) = parts(ctx)?;
            let id = parse_webinar_id("id", &id)?;
            let started = state
                .webinars()
                .start(&request.caller, &request.metadata(), id)
                .await
                .map_err(|e| from_command(e, ""))?;
            let webinar = read_back(ctx, state, started.written).await?;
            Ok::<_, ApiError>(StartWebinarPayload {
                webinar,
                join_url: started.join_url,
            })
        }
        .await
        .extend()
    }

    /// Stops the live stream (the meeting goes on). Answers at once with `STOPPING`.
    async fn stop_live(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Webinar> {
        live_control(ctx, &id, LiveControl::Stop).await.extend()
    }

    /// Stops and starts the live stream again.
    async fn restart_live(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Webinar> {
        live_control(ctx, &id, LiveControl::Restart).await.extend()
    }

    /// Ends the meeting and the live stream.
    async fn end_webinar(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Webinar> {
        live_control(ctx, &id, LiveControl::End).await.extend()
    }
}
