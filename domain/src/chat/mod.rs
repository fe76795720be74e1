//! The ChatMessage aggregate: one per audience message, so a lecture hall of posters never
//! contends on the webinar's stream. `Posted → Relayed | RelayFailed`.
//!
//! Whether a message may be posted at all (the webinar is live, its chat enabled, the author may
//! see it, the rate limit) depends on other aggregates: the application service checks it before
//! `Post`, and [`ChatText`] can only hold a valid text.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{ChatMessageId, Identified, WebinarId};
use crate::values::{InvalidValue, Person};

/// 1..=500 characters after trimming (BBB's `sendChatMessage` limit), visible, no control
/// characters but line breaks and tabs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChatText(String);

impl ChatText {
    pub const MAX_CHARS: usize = 500;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let trimmed = raw.trim();
        crate::values::check_text(trimmed, Self::MAX_CHARS, true)?;
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::named_enum! {
    /// Whether a message reached the meeting.
    #[derive(Default)]
    pub enum ChatStatus {
        #[default]
        Posted = "POSTED",
        Relayed = "RELAYED",
        Failed = "FAILED",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCommand {
    Post {
        webinar: WebinarId,
        author: Person,
        text: ChatText,
        at: DateTime<Utc>,
    },
    RecordRelayed,
    RecordRelayFailed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatEvent {
    Posted {
        webinar_id: WebinarId,
        author: Person,
        text: ChatText,
        posted_at: DateTime<Utc>,
    },
    Relayed,
    RelayFailed {
        reason: String,
    },
}

impl DomainEvent for ChatEvent {
    fn event_type(&self) -> String {
        match self {
            ChatEvent::Posted { .. } => "Posted",
            ChatEvent::Relayed => "Relayed",
            ChatEvent::RelayFailed { .. } => "RelayFailed",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    #[error("no such chat message")]
    NotFound,
    #[error("this message was already posted")]
    AlreadyPosted,
}

impl ChatError {
    pub fn code(&self) -> &'static str {
        match self {
            ChatError::NotFound => "NOT_FOUND",
            ChatError::AlreadyPosted => "CONFLICT",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub webinar_id: Option<WebinarId>,
    pub author: Option<Person>,
    pub text: Option<ChatText>,
    pub status: ChatStatus,
}

impl ChatMessage {
    pub fn decide(&self, command: ChatCommand) -> Result<Vec<ChatEvent>, ChatError> {
        let posted = self.webinar_id.is_some();
        Ok(match command {
            ChatCommand::Post {
                webinar,
                author,
                text,
                at,
            } => {
                if posted {
                    return Err(ChatError::AlreadyPosted);
                }
                vec![ChatEvent::Posted {
                    webinar_id: webinar,
                    author,
                    text,
                    posted_at: at,
                }]
            }
            _ if !posted => return Err(ChatError::NotFound),
            // A relay outcome is final: a repeat (at-least-once delivery) records nothing.
            ChatCommand::RecordRelayed | ChatCommand::RecordRelayFailed { .. }
                if self.status != ChatStatus::Posted =>
            {
                vec![]
            }
            ChatCommand::RecordRelayed => vec![ChatEvent::Relayed],
            ChatCommand::RecordRelayFailed { reason } => vec![ChatEvent::RelayFailed { reason }],
        })
    }
}

impl Identified for ChatMessage {
    type Id = ChatMessageId;
}

impl Aggregate for ChatMessage {
    const TYPE: &'static str = "ChatMessage";
    type Command = ChatCommand;
    type Event = ChatEvent;
    type Error = ChatError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ChatEvent::Posted {
                webinar_id,
                author,
                text,
                ..
            } => {
                self.webinar_id = Some(webinar_id);
                self.author = Some(author);
                self.text = Some(text);
                self.status = ChatStatus::Posted;
            }
            ChatEvent::Relayed => self.status = ChatStatus::Relayed,
            ChatEvent::RelayFailed { .. } => self.status = ChatStatus::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    fn posted() -> ChatEvent {
        ChatEvent::Posted {
            webinar_id: WebinarId::from_uuid(uuid::Uuid::from_u128(7)),
            author: Person::parse("u", "U").expect("valid"),
            text: ChatText::parse("hello").expect("valid"),
            posted_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn text_is_one_to_500_characters() {
        assert!(ChatText::parse("  ").is_err());
        assert!(ChatText::parse(&"x".repeat(500)).is_ok());
        assert!(ChatText::parse(&"x".repeat(501)).is_err());
        assert!(ChatText::parse("hel\0lo").is_err());
        assert!(ChatText::parse("\u{200B}").is_err());
        assert!(ChatText::parse("two\nlines").is_ok());
    }

    #[tokio::test]
    async fn a_relay_outcome_is_recorded_once() {
        TestFramework::<ChatMessage>::with(())
            .given(vec![posted()])
            .when_async(ChatCommand::RecordRelayed)
            .await
            .then_expect_events(vec![ChatEvent::Relayed]);
        TestFramework::<ChatMessage>::with(())
            .given(vec![posted(), ChatEvent::Relayed])
            .when_async(ChatCommand::RecordRelayFailed {
                reason: "late".into(),
            })
            .await
            .then_expect_events(vec![]);
        TestFramework::<ChatMessage>::with(())
            .given_no_previous_events()
            .when_async(ChatCommand::RecordRelayed)
            .await
            .then_expect_error(ChatError::NotFound);
    }
}
