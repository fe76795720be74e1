//! BigBlueButton's webhooks (the `bbb-webhooks` package): how its deliveries are authenticated and
//! read, and how our hook is registered.
//!
//! A delivery is a form POST `domain=<server>&event=[<event JSON>…]&timestamp=<ms>` to the callback
//! URL we registered. bbb-webhooks signs it one of two ways (`src/out/webhooks/callback-emitter.js`):
//! - checksum (the default): `?checksum=` (or `&checksum=`) appended to the callback URL, the hex
//!   `H(callbackURL + body + secret)`, H being `hookChecksumAlgorithm` (sha1 unless configured;
//!   told here by the checksum's length, as bbb-web does);
//! - bearer (`auth2_0: true`): `Authorization: Bearer <secret>`.
//!
//! The secret is BigBlueButton's shared secret. A failed delivery is retried a dozen times over
//! about five minutes, then dropped; a 401 answer counts as delivered and is not retried.
//! Events are mapped ("meeting-ended", "user-joined", …) unless the hook asked for raw data; only
//! the mapped shape is read.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use subtle::ConstantTimeEq;
use webinar_domain::webinar::Participant;

use crate::bbb::Checksum;

/// Why a delivery was refused (counted, never detailed to the sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Neither a checksum nor a bearer token.
    Unsigned,
    /// A checksum or token that does not match.
    BadSignature,
}

impl Refused {
    pub fn as_str(&self) -> &'static str {
        match self {
            Refused::Unsigned => "unsigned",
            Refused::BadSignature => "bad_signature",
        }
    }
}

/// Checks deliveries to our callback URL.
#[derive(Clone)]
pub struct WebhookVerifier {
    /// The callback URL exactly as registered with `hooks/create` (the checksum covers it).
    callback_url: String,
    secret: SecretString,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("callback_url", &self.callback_url)
            .finish_non_exhaustive()
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl WebhookVerifier {
    pub fn new(callback_url: String, secret: SecretString) -> Self {
        Self {
            callback_url,
            secret,
        }
    }

    pub fn callback_url(&self) -> &str {
        &self.callback_url
    }

    /// The checksum bbb-webhooks appends for `body`, with `algorithm`.
    pub fn checksum(&self, body: &[u8], algorithm: Checksum) -> String {
        let mut signed = Vec::with_capacity(self.callback_url.len() + body.len() + 64);
        signed.extend_from_slice(self.callback_url.as_bytes());
        signed.extend_from_slice(body);
        signed.extend_from_slice(self.secret.expose_secret().as_bytes());
        algorithm.hex(&signed)
    }

    /// Whether a delivery is BigBlueButton's: `query` is the request's raw query string,
    /// `authorization` its header.
    pub fn verify(
        &self,
        query: Option<&str>,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<(), Refused> {
        if let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
            return if same(token.as_bytes(), self.secret.expose_secret().as_bytes()) {
                Ok(())
            } else {
                Err(Refused::BadSignature)
            };
        }
        let checksum = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("checksum="))
            .ok_or(Refused::Unsigned)?
            .to_ascii_lowercase();
        let algorithm = Checksum::of_length(checksum.len()).ok_or(Refused::BadSignature)?;
        if same(
            self.checksum(body, algorithm).as_bytes(),
            checksum.as_bytes(),
        ) {
            Ok(())
        } else {
            Err(Refused::BadSignature)
        }
    }
}

/// What a delivery tells us, per event, in our words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingNews {
    Ended {
        meeting_id: String,
    },
    Joined {
        meeting_id: String,
        participant: Participant,
    },
    Left {
        meeting_id: String,
        user_id: String,
    },
    /// A message in the meeting's public chat.
    PublicChat {
        meeting_id: String,
        author: String,
        text: String,
    },
}

/// The events of a delivery body (form `event=[…]`, or the bare JSON array), in order. Events we
/// do not use, and malformed ones, are skipped.
pub fn read_delivery(body: &[u8]) -> Vec<MeetingNews> {
    let trimmed = body.trim_ascii_start();
    let json: Option<Value> = if trimmed.starts_with(b"[") || trimmed.starts_with(b"{") {
        serde_json::from_slice(trimmed).ok()
    } else {
        url::form_urlencoded::parse(body)
            .find(|(key, _)| key == "event")
            .and_then(|(_, value)| serde_json::from_str(&value).ok())
    };
    let mut events = Vec::new();
    if let Some(json) = json {
        flatten(json, &mut events);
    }
    events.iter().filter_map(news).collect()
}

/// With `multiEvent`, bbb-webhooks nests arrays of events in the array it sends.
fn flatten(value: Value, into: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.into_iter().for_each(|v| flatten(v, into)),
        event @ Value::Object(_) => into.push(event),
        _ => {}
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn news(event: &Value) -> Option<MeetingNews> {
    let data = event.get("data")?;
    let kind = text(data, "/id")?;
    let meeting_id = text(data, "/attributes/meeting/external-meeting-id")?.to_owned();
    match kind {
        "meeting-ended" => Some(MeetingNews::Ended { meeting_id }),
        "user-joined" => {
            let user = data.pointer("/attributes/user")?;
            let participant = Participant::from_bbb(
                text(user, "/internal-user-id")?,
                text(user, "/external-user-id").unwrap_or_default(),
                text(user, "/name").unwrap_or_default(),
                text(user, "/role").unwrap_or("VIEWER"),
            )?;
            Some(MeetingNews::Joined {
                meeting_id,
                participant,
            })
        }
        "user-left" => Some(MeetingNews::Left {
            meeting_id,
            user_id: text(data, "/attributes/user/internal-user-id")?.to_owned(),
        }),
        "chat-group-message-sent"
            if text(data, "/attributes/chat-id") == Some("MAIN-PUBLIC-GROUP-CHAT") =>
        {
            let message = data.pointer("/attributes/chat-message")?;
            Some(MeetingNews::PublicChat {
                meeting_id,
                author: text(message, "/sender/name").unwrap_or_default().to_owned(),
                text: text(message, "/message")?.to_owned(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> WebhookVerifier {
        WebhookVerifier::new(
            "https://pod.example.org/bbb/webhooks".into(),
            SecretString::from("secret".to_owned()),
        )
    }

    #[test]
    fn a_checksum_covers_the_callback_url_the_body_and_the_secret() {
        let body = b"domain=bbb.example.org&event=%5B%5D&timestamp=1";
        // sha1("https://pod.example.org/bbb/webhooks" + body + "secret"), computed apart
        // (Python's hashlib), as bbb-webhooks' default hookChecksumAlgorithm does.
        let expected = "78f7bb66ad7cbe1829edc9cdee59e7f8ee45bd7c";
        assert_eq!(verifier().checksum(body, Checksum::Sha1), expected);
        let query = format!("checksum={expected}");
        assert_eq!(verifier().verify(Some(&query), None, body), Ok(()));
        assert_eq!(
            verifier().verify(Some(&query), None, b"domain=x"),
            Err(Refused::BadSignature)
        );
        assert_eq!(verifier().verify(None, None, body), Err(Refused::Unsigned));
        assert_eq!(verifier().verify(None, Some("Bearer secret"), body), Ok(()));
        assert_eq!(
            verifier().verify(None, Some("Bearer nope"), body),
            Err(Refused::BadSignature)
        );
    }

    #[test]
    fn deliveries_read_as_meeting_news() {
        let events = r#"[{"data":{"type":"event","id":"user-joined","attributes":{"meeting":{"internal-meeting-id":"i","external-meeting-id":"webinar-1"},"user":{"internal-user-id":"w_1","external-user-id":"u1","name":"Ada","role":"MODERATOR","presenter":false,"guest":false}},"event":{"ts":1}}},
            [{"data":{"type":"event","id":"user-left","attributes":{"meeting":{"internal-meeting-id":"i","external-meeting-id":"webinar-1"},"user":{"internal-user-id":"w_1","external-user-id":"u1"}},"event":{"ts":2}}}],
            {"data":{"type":"event","id":"user-audio-muted","attributes":{"meeting":{"internal-meeting-id":"i","external-meeting-id":"webinar-1"}}}},
            {"data":{"type":"event","id":"meeting-ended","attributes":{"meeting":{"internal-meeting-id":"i","external-meeting-id":"webinar-1"}},"event":{"ts":3}}}]"#;
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("domain", "bbb.example.org")
            .append_pair("event", events)
            .append_pair("timestamp", "1")
            .finish();
        let news = read_delivery(body.as_bytes());
        assert_eq!(news.len(), 3, "{news:?}");
        assert!(
            matches!(&news[0], MeetingNews::Joined { participant, .. } if participant.moderator && participant.name == "Ada")
        );
        assert_eq!(
            news[1],
            MeetingNews::Left {
                meeting_id: "webinar-1".into(),
                user_id: "w_1".into()
            }
        );
        assert_eq!(
            news[2],
            MeetingNews::Ended {
                meeting_id: "webinar-1".into()
            }
        );
        assert!(read_delivery(b"garbage").is_empty());
    }
}
