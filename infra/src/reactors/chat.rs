//! The chat relay: audience messages into the meeting's public chat, each recorded as relayed or
//! failed.

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

    #[tracing::instrument(name = "chat_relay", skip_all, fields(message = %event.aggregate_id))]
    async fn react(&self, event: &StoredEvent) -> Result<Reaction, ReactorError> {
        let Ok(ChatEvent::Posted { .. }) = event.decode::<ChatEvent>() else {
            return Ok(Reaction::Done);
        };
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
        let meta = CommandMetadata::caused_by(COMPONENT, event);
        let mut outcome = Err(String::new());
        for attempt in 1..=ATTEMPTS {
            outcome = self.relay_once(&webinar, text.as_str(), &author.name).await;
            if outcome.is_ok() || attempt == ATTEMPTS {
                break;
            }
            tokio::time::sleep(self.outside.backoff.delay(attempt)).await;
        }
        let command = match outcome {
            Ok(()) => ChatCommand::RecordRelayed,
            Err(reason) => {
                tracing::warn!(message = %id, %reason, "chat relay failed");
                ChatCommand::RecordRelayFailed { reason }
            }
        };
        self.outside.chat.record(&meta, id, command).await?;
        Ok(Reaction::Done)
    }
}
