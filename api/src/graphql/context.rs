//! What a resolver knows about the request it serves.

use async_graphql::Context;
use webinar_domain::{Actor, Caller};
use webinar_infra::event_store::CommandMetadata;

use super::error::ApiError;
use crate::state::AppState;

/// Per-request data: who calls, and the request id that ties logs and events together.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub caller: Caller,
    pub request_id: Option<String>,
}

impl RequestContext {
    pub fn metadata(&self) -> CommandMetadata {
        CommandMetadata::originating(&self.caller, self.request_id.clone())
    }

    pub fn actor(&self) -> Result<&Actor, ApiError> {
        self.caller
            .actor()
            .ok_or_else(|| ApiError::Unauthenticated("you must be signed in to do this".into()))
    }
}

/// The application state and the request context, which every resolver needs.
pub fn parts<'a>(ctx: &'a Context<'_>) -> Result<(&'a AppState, &'a RequestContext), ApiError> {
    let state = ctx
        .data::<AppState>()
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("schema built without AppState")))?;
    let request = ctx
        .data::<RequestContext>()
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("request without RequestContext")))?;
    Ok((state, request))
}
