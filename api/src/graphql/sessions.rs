//! Live sessions, for administrators: each started webinar's BigBlueButton session (who is in it,
//! whether the streaming participant is there) and its stream (gateway, SIPMediaGW container,
//! state), as BigBlueButton's webhooks and the sweep report them — Pod's "live sessions" page.

use async_graphql::connection::Connection;
use async_graphql::{Context, Object, ResultExt, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use futures::Stream;
use uuid::Uuid;
use webinar_domain::webinar::StreamState as DomainStreamState;
use webinar_domain::WebinarId;
use webinar_projections::live_sessions::LiveSessionRow;

use super::context::parts;
use super::error::ApiError;
use super::pagination::{page_cost, Page, PageSizes};
use super::webinars::{feed, next_change, StreamState};
use crate::feed::Change;

const SESSION_PAGES: PageSizes = PageSizes {
    default: 50,
    max: 200,
};

/// Someone in a BigBlueButton meeting.
#[derive(SimpleObject)]
pub struct Participant {
    /// BigBlueButton's internal user id.
    pub user_id: String,
    pub name: String,
    pub moderator: bool,
    /// The SIPMediaGW browser streaming the meeting.
    pub streaming: bool,
}

/// A webinar's BigBlueButton session.
#[derive(SimpleObject)]
pub struct LiveSession {
    /// The BigBlueButton meeting id.
    pub meeting_id: String,
    pub webinar_id: ID,
    pub title: String,
    /// The BigBlueButton API host the meeting was created on.
    pub server: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Whether the meeting runs (false once it ended).
    pub running: bool,
    pub participant_count: i32,
    pub moderator_count: i32,
    /// Whether the streaming participant is in the meeting.
    pub streaming_present: bool,
    pub participants: Vec<Participant>,
    pub gateway_id: ID,
    /// The SIPMediaGW v1.8+ gateway container the stream runs on.
    pub gw_id: Option<String>,
    pub stream_state: StreamState,
    pub updated_at: DateTime<Utc>,
}

impl LiveSession {
    fn from_row(row: LiveSessionRow) -> Result<Self, ApiError> {
        let stream: DomainStreamState = row
            .stream_state
            .parse()
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("live_sessions.stream_state: {e}")))?;
        Ok(LiveSession {
            meeting_id: row.meeting_id.unwrap_or_default(),
            webinar_id: ID(row.webinar_id.to_string()),
            title: row.title,
            server: row.server,
            started_at: row.started_at.unwrap_or(row.updated_at),
            ended_at: row.ended_at,
            running: row.running,
            participant_count: row.participant_count,
            moderator_count: row.moderator_count,
            streaming_present: row.streaming_present,
            participants: row
                .participants
                .0
                .into_iter()
                .map(|p| Participant {
                    user_id: p.user_id,
                    name: p.name,
                    moderator: p.moderator,
                    streaming: p.streaming,
                })
                .collect(),
            gateway_id: ID(row.gateway_id.to_string()),
            gw_id: row.gw_id,
            stream_state: stream.into(),
            updated_at: row.updated_at,
        })
    }
}

#[derive(Default)]
pub struct LiveSessionQuery;

#[Object]
impl LiveSessionQuery {
    /// BigBlueButton sessions of started webinars, newest first; `running` keeps only those that
    /// run (true) or ended (false). Administrators.
    #[graphql(complexity = "page_cost(first, SESSION_PAGES, child_complexity)")]
    async fn live_sessions(
        &self,
        ctx: &Context<'_>,
        running: Option<bool>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, LiveSession>> {
        async {
            let (state, request) = parts(ctx)?;
            let page =
                Page::<(DateTime<Utc>, Uuid)>::parse(first, after.as_deref(), SESSION_PAGES)?;
            let rows = state
                .reads()
                .live_sessions(&request.caller, running, page.after, page.limit())
                .await?;
            let sessions = rows
                .into_iter()
                .map(|row| {
                    let cursor = (row.started_at.unwrap_or(row.updated_at), row.webinar_id);
                    LiveSession::from_row(row).map(|s| (cursor, s))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, ApiError>(page.connection(sessions, |(cursor, _)| *cursor, |(_, s)| s))
        }
        .await
        .extend()
    }
}

#[derive(Default)]
pub struct LiveSessionSubscription;

#[Subscription]
impl LiveSessionSubscription {
    /// Every change to a live session (a meeting starts or ends, someone joins or leaves, its
    /// stream changes). Administrators.
    async fn live_session_changed(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = LiveSession>> {
        let (state, request) = parts(ctx).extend()?;
        state
            .reads()
            .authorize_live_sessions(&request.caller)
            .map_err(ApiError::from)
            .extend()?;
        let rx = feed(ctx).extend()?.subscribe();
        let (reads, caller) = (state.reads().clone(), request.caller.clone());
        Ok(futures::stream::unfold(
            (rx, reads, caller),
            |(mut rx, reads, caller)| async move {
                loop {
                    let id: WebinarId = next_change(&mut rx, |c| match c {
                        Change::LiveSession(id) => Some(id),
                        _ => None,
                    })
                    .await?;
                    match reads.live_session(&caller, id).await {
                        Ok(Some(row)) => match LiveSession::from_row(row) {
                            Ok(session) => return Some((session, (rx, reads, caller))),
                            Err(error) => tracing::warn!(%error, "liveSessionChanged"),
                        },
                        Ok(None) => continue,
                        Err(error) => {
                            tracing::warn!(%error, "liveSessionChanged: cannot read the session");
                        }
                    }
                }
            },
        ))
    }
}
