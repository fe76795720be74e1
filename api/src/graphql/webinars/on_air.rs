//! The presenters' on-air view (`onAir`) and the audience count the live page's players keep
//! (`watching`).

use std::sync::Arc;

use async_graphql::{Context, ResultExt, SimpleObject, Subscription, ID};
use futures::Stream;
use tokio::sync::watch;
use webinar_projections::on_air::OnAirRow;

use super::inputs::parse_webinar_id;
use super::types::{StreamHealth, StreamState, WebinarStatus};
use crate::graphql::context::parts;
use crate::graphql::error::ApiError;
use crate::on_air::OnAirHub;

/// Everything a presenter needs to know while on air, in one message.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct OnAir {
    pub webinar_id: ID,
    pub status: WebinarStatus,
    pub stream_state: StreamState,
    /// How the stream looks from the audience's side.
    pub stream_health: StreamHealth,
    pub stream_health_detail: Option<String>,
    /// The gateway streaming the webinar.
    pub gateway_name: Option<String>,
    pub chat_enabled: bool,
    /// Audience chat messages not yet relayed into the meeting.
    pub relay_queue: i64,
    /// Players open on the live page now (`watching` subscriptions, on every server).
    pub audience: i64,
}

impl From<&OnAirRow> for OnAir {
    fn from(row: &OnAirRow) -> Self {
        OnAir {
            webinar_id: ID(row.webinar_id.to_string()),
            status: row.status.into(),
            stream_state: row.stream_state.into(),
            stream_health: row.stream_health.into(),
            stream_health_detail: row.stream_health_detail.clone(),
            gateway_name: row.gateway_name.clone(),
            chat_enabled: row.chat_enabled,
            relay_queue: row.relay_queue,
            audience: row.audience,
        }
    }
}

fn hub<'a>(ctx: &'a Context<'_>) -> Result<&'a OnAirHub, ApiError> {
    ctx.data::<OnAirHub>()
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("schema built without an on-air hub")))
}

/// The next row that `pick` turns into something new; `None` when the hub is gone.
async fn next_distinct<T: PartialEq + Clone>(
    rx: &mut watch::Receiver<Option<Arc<OnAirRow>>>,
    last: &Option<T>,
    pick: impl Fn(&OnAirRow) -> T,
) -> Option<T> {
    loop {
        let seen = rx.borrow_and_update().as_deref().map(&pick);
        if let Some(seen) = seen.filter(|s| Some(s) != last.as_ref()) {
            return Some(seen);
        }
        rx.changed().await.ok()?;
    }
}

#[derive(Default)]
pub struct OnAirSubscription;

#[Subscription]
impl OnAirSubscription {
    /// The on-air view of a webinar, for its owner, presenters and administrators: sent at once,
    /// then within a second of any change (stream state, health, gateway, chat, relay queue,
    /// audience). It completes when the subscriber may no longer see the webinar.
    async fn on_air(
        &self,
        ctx: &Context<'_>,
        webinar_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = OnAir>> {
        let (state, request) = parts(ctx).extend()?;
        let id = parse_webinar_id("webinarId", &webinar_id).extend()?;
        let reads = state.reads().clone();
        let caller = request.caller.clone();
        if reads
            .webinar(&caller, id)
            .await
            .map_err(ApiError::from)
            .extend()?
            .is_none()
        {
            return Err(ApiError::not_found("webinar")).extend();
        }
        let rx = hub(ctx).extend()?.follow(id);
        Ok(futures::stream::unfold(
            (rx, None::<OnAir>, reads, caller),
            move |(mut rx, last, reads, caller)| async move {
                let next = next_distinct(&mut rx, &last, |row: &OnAirRow| OnAir::from(row)).await?;
                // A presenter removed from the webinar hears nothing more.
                match reads.webinar(&caller, id).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return None,
                    Err(error) => tracing::warn!(%error, "onAir: cannot check the subscriber"),
                }
                Some((next.clone(), (rx, Some(next), reads, caller)))
            },
        ))
    }

    /// Keep this open while a player plays the webinar's stream: it counts the viewer in the
    /// audience presenters see, and sends the audience (players open, on every server) at once
    /// and whenever it changes. Anyone who may see the live event may watch.
    async fn watching(
        &self,
        ctx: &Context<'_>,
        webinar_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = i64>> {
        let (state, request) = parts(ctx).extend()?;
        let id = parse_webinar_id("webinarId", &webinar_id).extend()?;
        if state
            .reads()
            .live_event(&request.caller, id)
            .await
            .map_err(ApiError::from)
            .extend()?
            .is_none()
        {
            return Err(ApiError::not_found("live event")).extend();
        }
        // Counted for as long as the stream (this subscription) lives.
        let viewing = state.presence().watch(id);
        let rx = hub(ctx).extend()?.follow(id);
        Ok(futures::stream::unfold(
            (rx, None::<i64>, viewing),
            |(mut rx, last, viewing)| async move {
                let audience = next_distinct(&mut rx, &last, |row: &OnAirRow| row.audience).await?;
                Some((audience, (rx, Some(audience), viewing)))
            },
        ))
    }
}
