//! Subscriptions: changes to live events and to one webinar, as the projectors announce them.

use async_graphql::{Context, ResultExt, Subscription, ID};
use futures::Stream;

use super::inputs::parse_webinar_id;
use super::types::{LiveEvent, Webinar};
use crate::feed::{Change, ChangeFeed};
use crate::graphql::context::parts;
use crate::graphql::error::ApiError;
use webinar_projections::live_events::LiveEventRow;

#[derive(Default)]
pub struct WebinarSubscription;

/// The next change of kind `pick` that the stream should look at; `None` when the feed closed.
pub(crate) async fn next_change<T>(
    rx: &mut tokio::sync::broadcast::Receiver<Change>,
    pick: impl Fn(Change) -> Option<T>,
) -> Option<T> {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(change) => {
                if let Some(id) = pick(change) {
                    return Some(id);
                }
            }
            // A slow subscriber skips what it missed; the next change brings it up to date.
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return None,
        }
    }
}

pub(crate) fn feed<'a>(ctx: &'a Context<'_>) -> Result<&'a ChangeFeed, ApiError> {
    ctx.data::<ChangeFeed>()
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("schema built without a change feed")))
}

#[Subscription]
impl WebinarSubscription {
    /// Every change to a live event the caller may see (visibility is checked on each change).
    // In memory, against the row the change feed read once for every subscriber.
    async fn live_event_changed(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = LiveEvent>> {
        let (state, request) = parts(ctx).extend()?;
        let rx = feed(ctx).extend()?.subscribe();
        let (reads, caller) = (state.reads().clone(), request.caller.clone());
        Ok(futures::stream::unfold(
            (rx, reads, caller),
            |(mut rx, reads, caller)| async move {
                loop {
                    let row = next_change(&mut rx, |c| match c {
                        Change::LiveEvent(row) => Some(row),
                        _ => None,
                    })
                    .await?;
                    if reads.may_see_live_event(&caller, &row) {
                        let event = LiveEvent::from(LiveEventRow::clone(&row));
                        return Some((event, (rx, reads, caller)));
                    }
                }
            },
        ))
    }

    /// Every change to one webinar, for its owner, presenters and administrators; it completes
    /// when the subscriber may no longer see the webinar.
    async fn webinar_changed(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = Webinar>> {
        let (state, request) = parts(ctx).extend()?;
        let id = parse_webinar_id("id", &id).extend()?;
        // Subscribe first, then check: no change can slip between the two.
        let rx = feed(ctx).extend()?.subscribe();
        let reads = state.reads().clone();
        if reads
            .webinar(&request.caller, id)
            .await
            .map_err(ApiError::from)
            .extend()?
            .is_none()
        {
            return Err(ApiError::not_found("webinar")).extend();
        }
        let caller = request.caller.clone();
        Ok(futures::stream::unfold(
            (rx, reads, caller),
            move |(mut rx, reads, caller)| async move {
                loop {
                    next_change(&mut rx, |c| match c {
                        Change::Webinar(changed) if changed == id => Some(changed),
                        _ => None,
                    })
                    .await?;
                    // Asked again on every change: a presenter removed from the webinar, or an
                    // owner who lost it, hears nothing more and the subscription completes.
                    match reads.webinar(&caller, id).await {
                        Ok(Some(view)) => return Some((Webinar(view), (rx, reads, caller))),
                        Ok(None) => {
                            tracing::info!(webinar = %id, "webinarChanged: no longer visible to the subscriber; completed");
                            return None;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "webinarChanged: cannot read the webinar");
                            continue;
                        }
                    }
                }
            },
        ))
    }
}
