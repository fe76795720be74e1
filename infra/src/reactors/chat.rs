//! The chat relay: audience messages into the meeting's public chat, each recorded as relayed or
//! failed. One webinar's messages are relayed in the order they were posted (a lane per webinar);
//! different webinars' at once.
//!
//! Neither SIPMediaGW's `POST /chat` nor BBB's `sendChatMessage` takes an id to de-duplicate on,
//! so a message whose relay succeeded but whose `Relayed` was not recorded (a crash in between) is
//! relayed again after the restart. The window is one call: `Relayed` is recorded right after it,
//! and a message already recorded is never sent again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use webinar_domain::chat::{ChatCommand, ChatEvent, ChatStatus};
use webinar_domain::ids::ChatMessageId;
use webinar_domain::ports::StreamRef;
use webinar_domain::{GatewayId, WebinarId};

use super::Outside;
use crate::config::ChatRelay;
use crate::consumer::{Delivery, Reaction, Reactor, ReactorError};
use crate::event_log::StoredEvent;
use crate::event_store::CommandMetadata;

/// Where a webinar's messages go: its gateway's room, or its BBB meeting.
#[derive(Debug, Clone)]
struct Route {
    gw_id: Option<String>,
    gateway: Option<GatewayId>,
    room: Option<String>,
    meeting_id: Option<String>,
}

/// How long a webinar's route is reused: a lecture hall posting hundreds of messages a second
/// needs it read once, not each time; a fail-over is followed within this long (a message sent to
/// the old room fails, and is tried again).
const ROUTE_TTL: Duration = Duration::from_secs(1);

pub struct ChatRelayReactor {
    outside: Outside,
    routes: Mutex<HashMap<WebinarId, (Instant, Route)>>,
}

const COMPONENT: &str = "chat-relay";
/// Relay attempts before a message is recorded as failed.
const ATTEMPTS: u32 = 3;

impl ChatRelayReactor {
    pub fn new(outside: Outside) -> Self {
        Self {
            outside,
            routes: Mutex::new(HashMap::new()),
        }
    }

    async fn route(&self, webinar: WebinarId) -> Result<Route, ReactorError> {
        let cached = {
            let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            routes
                .get(&webinar)
                .filter(|(at, _)| at.elapsed() < ROUTE_TTL)
                .map(|(_, route)| route.clone())
        };
        if let Some(route) = cached {
            return Ok(route);
        }
        let state = self.outside.webinars.load(webinar).await?;
        let route = Route {
            gw_id: state
                .gateway_id
                .and_then(|g| state.gw_id_on(g))
                .map(str::to_owned),
            gateway: state.gateway_id,
            room: state.room,
            meeting_id: state.meeting_id,
        };
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.retain(|_, (at, _)| at.elapsed() < ROUTE_TTL);
        routes.insert(webinar, (Instant::now(), route.clone()));
        Ok(route)
    }

    async fn relay_once(&self, route: &Route, text: &str, author: &str) -> Result<(), String> {
        match self.outside.chat_relay {
            ChatRelay::Sipmediagw => {
                let (Some(gateway), Some(room)) = (route.gateway, route.room.as_deref()) else {
                    return Err("the webinar has no gateway".into());
                };
                self.outside
                    .streams
                    .post_chat(
                        gateway,
                        StreamRef::new(room, route.gw_id.as_deref()),
                        &format!("({author}) {text}"),
                    )
                    .await
                    .map_err(|e| e.to_string())
            }
            ChatRelay::Bbb => {
                let (Some(meetings), Some(meeting)) =
                    (&self.outside.meetings, route.meeting_id.as_deref())
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

    #[tracing::instrument(name = "chat_relay", skip_all, fields(message = %event.aggregate_id, attempt = delivery.attempt))]
    async fn react(
        &self,
        event: &StoredEvent,
        delivery: Delivery,
    ) -> Result<Reaction, ReactorError> {
        let Some(id) = event.aggregate::<ChatMessageId>() else {
            return Ok(Reaction::GiveUp("the message id is not a UUID".into()));
        };
        let Ok(ChatEvent::Posted {
            webinar_id,
            author,
            text,
            ..
        }) = event.decode::<ChatEvent>()
        else {
            return Ok(Reaction::Done);
        };
        // Relayed (or failed) already, before a restart: never twice. (Nobody has acted on a
        // fresh delivery yet.)
        if !delivery.fresh && self.outside.chat.load(id).await?.status != ChatStatus::Posted {
            return Ok(Reaction::Done);
        }
        let route = self.route(webinar_id).await?;
        let command = match self.relay_once(&route, text.as_str(), &author.name).await {
            Ok(()) => ChatCommand::RecordRelayed,
            Err(reason) if delivery.attempt < ATTEMPTS => {
                self.routes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&webinar_id);
                return Ok(self.outside.retry_after(delivery.attempt, reason));
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
