//! The chat relay: audience messages into the meeting's public chat, each recorded as relayed or
//! failed. One webinar's messages are relayed in the order they were posted (a lane per webinar);
//! different webinars' at once.
//!
//! Neither SIPMediaGW's `POST /chat` nor BBB's `sendChatMessage` takes an id to de-duplicate on,
//! so a message whose relay succeeded but whose `Relayed` was not recorded (a crash in between) is
//! relayed again after the restart. The window is one call: `Relayed` is recorded right after it,
//! and a message already recorded is never sent again.

use async_trait::async_trait;
use webinar_domain::chat::{ChatCommand, ChatEvent, ChatStatus};
use webinar_domain::ids::ChatMessageId;
use webinar_domain::webinar::Webinar;

use super::Outside;
use crate::config::ChatRelay;
use crate::consumer::{Reaction, Reactor, ReactorError};
use crate::event_log::StoredEvent;
use crate::event_store::CommandMetadata;

pub struct ChatRelayReactor {
    outside: Outside,
}

const COMPONENT: &str = "chat-relay";
/// Relay attempts before a message is recorded as failed.
const ATTEMPTS: u32 = 3;

impl ChatRelayReactor {
    pub fn new(outside: Outside) -> Self {
        Self { outside }
    }

    async fn relay_once(&self, webinar: &Webinar, text: &str, author: &str) -> Result<(), String> {
        match self.outside.chat_relay {
            ChatRelay::Sipmediagw => {
                let (Some(gateway), Some(room)) = (webinar.gateway_id, webinar.room.as_deref())
                else {
                    return Err("the webinar has no gateway".into());
                };
                self.outside
                    .streams
                    .post_chat(gateway, room, &format!("({author}) {text}"))
                    .await
                    .map_err(|e| e.to_string())
            }
            ChatRelay::Bbb => {
                let (Some(meetings), Some(meeting)) =
                    (&self.outside.meetings, webinar.meeting_id.as_deref())
                else {
                    return Err("BigBlueButton is not configured".into());
                };
                meetings
                    .send_chat_message(meeting, text, author)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }
}

#[async_trait]
impl Reactor for ChatRelayReactor {
    fn name(&self) -> &'static str {
        "chat_relay"
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["ChatMessage"])
    }

    /// A lane per webinar: its messages in order, other webinars' alongside.
    fn lane(&self, event: &StoredEvent) -> Option<String> {
        match event.decode::<ChatEvent>() {
            Ok(ChatEvent::Posted { webinar_id, .. }) => Some(webinar_id.to_string()),
            _ => None,
        }
    }

    #[tracing::instrument(name = "chat_relay", skip_all, fields(message = %event.aggregate_id, attempt = attempt))]
    async fn react(&self, event: &StoredEvent, attempt: u32) -> Result<Reaction, ReactorError> {
        let Some(id) = event.aggregate::<ChatMessageId>() else {
            return Ok(Reaction::GiveUp("the message id is not a UUID".into()));
        };
        let message = self.outside.chat.load(id).await?;
        // Relayed (or failed) already, before a restart: never twice.
        if message.status != ChatStatus::Posted {
            return Ok(Reaction::Done);
        }
        let (Some(webinar_id), Some(author), Some(text)) =
            (message.webinar_id, message.author, message.text)
        else {
            return Ok(Reaction::Done);
        };
        let webinar = self.outside.webinars.load(webinar_id).await?;
        let command = match self.relay_once(&webinar, text.as_str(), &author.name).await {
            Ok(()) => ChatCommand::RecordRelayed,
            Err(reason) if attempt < ATTEMPTS => {
                return Ok(self.outside.retry_after(attempt, reason));
            }
            Err(reason) => {
                tracing::warn!(message = %id, %reason, "chat relay failed");
                ChatCommand::RecordRelayFailed { reason }
            }
        };
        let meta = CommandMetadata::caused_by(COMPONENT, event);
        self.outside.chat.record(&meta, id, command).await?;
        Ok(Reaction::Done)
    }
}
