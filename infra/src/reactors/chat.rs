//! The chat relay: audience messages into the meeting's public chat, each recorded as relayed or
//! failed.

use async_trait::async_trait;
use webinar_domain::chat::{ChatCommand, ChatEvent, ChatStatus};
use webinar_domain::ids::ChatMessageId;

use super::Outside;
use crate::config::ChatRelay;
use crate::consumer::Reactor;
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

    async fn relay_once(
        &self,
        webinar: &webinar_domain::webinar::Webinar,
        text: &str,
        author: &str,
    ) -> Result<(), String> {
        match self.outside.chat_relay {
            ChatRelay::Sipmediagw => {
                let (Some(gateway), Some(room)) = (webinar.gateway_id, webinar.room.as_deref())
                else {
                    return Err("the webinar has no gateway".into());
                };
                let (target, _) = self.outside.target(gateway).await?;
                self.outside
                    .sip
                    .post_chat(&target, room, &format!("({author}) {text}"))
                    .await
                    .map_err(|e| e.to_string())
            }
            ChatRelay::Bbb => {
                let (Some(bbb), Some(meeting)) = (&self.outside.bbb, webinar.meeting_id.as_deref())
                else {
                    return Err("BigBlueButton is not configured".into());
                };
                bbb.send_chat_message(meeting, text, author)
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

    async fn react(&self, event: &StoredEvent) -> Result<(), String> {
        let ChatEvent::Posted { .. } = event.decode::<ChatEvent>().map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let id: ChatMessageId = event
            .aggregate_id
            .parse()
            .map_err(|_| "bad message id".to_owned())?;
        let message = self
            .outside
            .chat
            .load(id)
            .await
            .map_err(|e| e.to_string())?;
        // Relayed (or failed) already, before a restart: never twice.
        if message.status != ChatStatus::Posted {
            return Ok(());
        }
        let (Some(webinar_id), Some(author), Some(text)) =
            (message.webinar_id, message.author, message.text)
        else {
            return Ok(());
        };
        let webinar = self
            .outside
            .webinars
            .load(webinar_id)
            .await
            .map_err(|e| e.to_string())?;
        let meta = CommandMetadata::caused_by(COMPONENT, event);
        let mut outcome = Err(String::new());
        for attempt in 1..=ATTEMPTS {
            outcome = self.relay_once(&webinar, text.as_str(), &author.name).await;
            if outcome.is_ok() || attempt == ATTEMPTS {
                break;
            }
            tokio::time::sleep(self.outside.retry * attempt).await;
        }
        let command = match outcome {
            Ok(()) => ChatCommand::RecordRelayed,
            Err(reason) => {
                tracing::warn!(message = %id, %reason, "chat relay failed");
                ChatCommand::RecordRelayFailed { reason }
            }
        };
        self.outside
            .chat
            .record(&meta, id, command)
            .await
            .map_err(|e| e.to_string())
    }
}
