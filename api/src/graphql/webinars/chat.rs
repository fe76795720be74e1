//! The audience's chat: posting a message to a live webinar.

use async_graphql::{Context, Object, ResultExt, ID};
use webinar_domain::chat::ChatText;

use super::inputs::parse_webinar_id;
use super::types::ChatMessage;
use crate::graphql::catching_up;
use crate::graphql::context::parts;
use crate::graphql::error::{from_command, ApiError};

#[derive(Default)]
pub struct ChatMutation;

#[Object]
impl ChatMutation {
    /// Posts a message to a live webinar's chat (signed-in people who may see the event).
    async fn post_chat_message(
        &self,
        ctx: &Context<'_>,
        webinar_id: ID,
        text: String,
    ) -> async_graphql::Result<ChatMessage> {
        async {
            let (state, request) = parts(ctx)?;
            let webinar_id = parse_webinar_id("webinarId", &webinar_id)?;
            let text = ChatText::parse(&text).map_err(|e| ApiError::bad_input("text", e))?;
            let written = state
                .chat()
                .post(&request.caller, &request.metadata(), webinar_id, text)
                .await
                .map_err(|e| from_command(e, ""))?;
            // The post committed: if the read model is behind, the message's own events answer.
            let row = match state.settle(&["chat_messages"], written.position).await {
                Ok(()) => state.reads().chat_message_by_id(written.id).await?,
                Err(late) => {
                    tracing::warn!(%late, "answering from the message's events");
                    catching_up::mark(ctx);
                    state.reads().chat_message_from_log(written.id).await?
                }
            };
            row.map(ChatMessage::from)
                .ok_or_else(|| ApiError::not_found("chat message"))
        }
        .await
        .extend()
    }
}
