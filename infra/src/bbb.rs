//! BigBlueButton API addressing: checksums and signed URLs (PROTOCOLS.md, B.1).
//!
//! `checksum = hex(H(call + query + secret))` over the query exactly as sent. BBB picks H by the
//! checksum's length; sha256 is the portable default (Scalelite accepts sha1, sha256, sha512).

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use webinar_domain::ports::{ListedMeeting, MeetingError, MeetingRole, MeetingService, NewMeeting};
use webinar_domain::webinar::Participant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checksum {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Checksum {
    /// The algorithm of a hex checksum, told by its length (as BigBlueButton and bbb-webhooks do).
    pub fn of_length(length: usize) -> Option<Self> {
        match length {
            40 => Some(Checksum::Sha1),
            64 => Some(Checksum::Sha256),
            96 => Some(Checksum::Sha384),
            128 => Some(Checksum::Sha512),
            _ => None,
        }
    }

    pub fn hex(&self, input: &[u8]) -> String {
        match self {
            Checksum::Sha1 => hex::encode(Sha1::digest(input)),
            Checksum::Sha256 => hex::encode(Sha256::digest(input)),
            Checksum::Sha384 => hex::encode(Sha384::digest(input)),
            Checksum::Sha512 => hex::encode(Sha512::digest(input)),
        }
    }
}

/// Where BBB's API is and how to sign calls to it. `Debug` never shows the secret.
#[derive(Clone)]
pub struct BbbApi {
    base: String,
    secret: SecretString,
    checksum: Checksum,
}

impl std::fmt::Debug for BbbApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BbbApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes a query value (`application/x-www-form-urlencoded`, as BBB's examples do).
fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl BbbApi {
    pub fn new(base: &str, secret: SecretString, checksum: Checksum) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            secret,
            checksum,
        }
    }

    /// The API base (`https://bbb.example.org/bigbluebutton/api`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The signed URL of `call` with `params` (in this order).
    pub fn url(&self, call: &str, params: &[(&str, &str)]) -> String {
        let query = params
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let checksum = self
            .checksum
            .hex(format!("{call}{query}{}", self.secret.expose_secret()).as_bytes());
        if query.is_empty() {
            format!("{}/{call}?checksum={checksum}", self.base)
        } else {
            format!("{}/{call}?{query}&checksum={checksum}", self.base)
        }
    }

    /// Where a person joins `meeting_id` under `full_name`.
    pub fn join_url(
        &self,
        meeting_id: &str,
        full_name: &str,
        user_id: &str,
        role: MeetingRole,
    ) -> String {
        let role = match role {
            MeetingRole::Moderator => "MODERATOR",
            MeetingRole::Viewer => "VIEWER",
        };
        self.url(
            "join",
            &[
                ("fullName", full_name),
                ("meetingID", meeting_id),
                ("role", role),
                ("userID", user_id),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_matches_the_bbb_documentation_example() {
        let input = "createname=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444639259d4-9dd8-4b25-bf01-95f9567eaf4b";
        assert_eq!(
            Checksum::Sha1.hex(input.as_bytes()),
            "1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17"
        );
        assert_eq!(Checksum::Sha256.hex(b"").len(), 64);
        assert_eq!(Checksum::Sha384.hex(b"").len(), 96);
        assert_eq!(Checksum::Sha512.hex(b"").len(), 128);
    }

    #[test]
    fn a_signed_url_reproduces_the_documented_checksum() {
        let api = BbbApi::new(
            "https://bbb.example.org/bigbluebutton/api/",
            SecretString::from("639259d4-9dd8-4b25-bf01-95f9567eaf4b".to_owned()),
            Checksum::Sha1,
        );
        let url = api.url(
            "create",
            &[
                ("name", "Test Meeting"),
                ("meetingID", "abc123"),
                ("attendeePW", "111222"),
                ("moderatorPW", "333444"),
            ],
        );
        assert_eq!(
            url,
            "https://bbb.example.org/bigbluebutton/api/create?name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444&checksum=1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17"
        );
        assert!(!format!("{api:?}").contains("639259d4"));
    }
}

/// What `getMeetingInfo` tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingInfo {
    pub meeting_id: String,
    pub running: bool,
    pub participant_count: u32,
    /// From `<attendee>`: `userID` (BigBlueButton's internal id), `fullName`, `role`.
    pub attendees: Vec<Participant>,
}

/// The BBB API over HTTP: every call has a timeout, TLS is verified, and XML is parsed into typed
/// values; `FAILED` under HTTP 200 becomes a typed error.
#[derive(Clone, Debug)]
pub struct BbbClient {
    api: BbbApi,
    http: reqwest::Client,
}

fn text_of(node: roxmltree::Node<'_, '_>, tag: &str) -> Option<String> {
    node.children()
        .find(|n| n.has_tag_name(tag))
        .map(|n| n.text().unwrap_or("").trim().to_owned())
}

fn meeting_info(node: roxmltree::Node<'_, '_>) -> MeetingInfo {
    MeetingInfo {
        meeting_id: text_of(node, "meetingID").unwrap_or_default(),
        running: text_of(node, "running").as_deref() == Some("true"),
        participant_count: text_of(node, "participantCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        attendees: node
            .children()
            .find(|n| n.has_tag_name("attendees"))
            .map(|a| {
                a.children()
                    .filter(|n| n.has_tag_name("attendee"))
                    .filter_map(|n| {
                        Participant::from_bbb(
                            &text_of(n, "userID").unwrap_or_default(),
                            "",
                            &text_of(n, "fullName").unwrap_or_default(),
                            &text_of(n, "role").unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl BbbClient {
    pub fn new(api: BbbApi, timeout: std::time::Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { api, http })
    }

    pub fn api(&self) -> &BbbApi {
        &self.api
    }

    /// Calls `call` and returns the `<response>` body text on SUCCESS.
    async fn call(
        &self,
        call: &'static str,
        params: &[(&str, &str)],
    ) -> Result<String, MeetingError> {
        crate::metrics::outside_call("bbb", call, self.call_untimed(call, params)).await
    }

    async fn call_untimed(
        &self,
        call: &str,
        params: &[(&str, &str)],
    ) -> Result<String, MeetingError> {
        let url = self.api.url(call, params);
        let response = self.http.get(&url).send().await.map_err(|e| {
            if e.is_timeout() {
                MeetingError::Timeout
            } else {
                // The URL carries a checksum, not the secret; still, say only what kind of failure.
                MeetingError::Unreachable(if e.is_connect() {
                    "connection refused or failed".into()
                } else {
                    "request failed".into()
                })
            }
        })?;
        let status = response.status();
        let body = response.text().await.map_err(|_| MeetingError::Timeout)?;
        if !status.is_success() {
            return Err(MeetingError::Protocol(format!("HTTP {}", status.as_u16())));
        }
        let doc = roxmltree::Document::parse(&body)
            .map_err(|_| MeetingError::Protocol("not XML".into()))?;
        let root = doc.root_element();
        match text_of(root, "returncode").as_deref() {
            Some("SUCCESS") => Ok(body),
            Some("FAILED") => {
                let key = text_of(root, "messageKey").unwrap_or_default();
                Err(match key.as_str() {
                    "checksumError" => MeetingError::Checksum,
                    "notFound" | "invalidMeetingIdentifier" | "meetingNotFound" => {
                        MeetingError::NotFound
                    }
                    "idNotUnique" => MeetingError::IdNotUnique,
                    _ => MeetingError::Failed {
                        key: key
                            .chars()
                            .filter(char::is_ascii_alphanumeric)
                            .take(64)
                            .collect(),
                    },
                })
            }
            _ => Err(MeetingError::Protocol("no returncode".into())),
        }
    }

    /// Creates the meeting (idempotent: `duplicateWarning` is a success).
    async fn create_meeting(&self, meeting: &NewMeeting<'_>) -> Result<(), MeetingError> {
        let record = if meeting.record { "true" } else { "false" };
        self.call(
            "create",
            &[
                ("name", meeting.name),
                ("meetingID", meeting.meeting_id),
                ("logoutURL", meeting.logout_url),
                ("guestPolicy", "ALWAYS_ACCEPT"),
                ("record", record),
                ("autoStartRecording", "false"),
                ("allowStartStopRecording", record),
                ("meta_endCallbackUrl", meeting.end_callback_url),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn end_meeting(&self, meeting_id: &str) -> Result<(), MeetingError> {
        self.call("end", &[("meetingID", meeting_id)])
            .await
            .map(|_| ())
    }

    pub async fn is_meeting_running(&self, meeting_id: &str) -> Result<bool, MeetingError> {
        let body = self
            .call("isMeetingRunning", &[("meetingID", meeting_id)])
            .await?;
        let doc = roxmltree::Document::parse(&body)
            .map_err(|_| MeetingError::Protocol("not XML".into()))?;
        Ok(text_of(doc.root_element(), "running").as_deref() == Some("true"))
    }

    pub async fn get_meeting_info(&self, meeting_id: &str) -> Result<MeetingInfo, MeetingError> {
        let body = self
            .call("getMeetingInfo", &[("meetingID", meeting_id)])
            .await?;
        let doc = roxmltree::Document::parse(&body)
            .map_err(|_| MeetingError::Protocol("not XML".into()))?;
        Ok(meeting_info(doc.root_element()))
    }

    pub async fn get_meetings(&self) -> Result<Vec<MeetingInfo>, MeetingError> {
        let body = self.call("getMeetings", &[]).await?;
        let doc = roxmltree::Document::parse(&body)
            .map_err(|_| MeetingError::Protocol("not XML".into()))?;
        Ok(doc
            .root_element()
            .children()
            .find(|n| n.has_tag_name("meetings"))
            .map(|m| {
                m.children()
                    .filter(|n| n.has_tag_name("meeting"))
                    .map(meeting_info)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The callback URLs of the hooks bbb-webhooks has (`hooks/list`).
    pub async fn list_hooks(&self) -> Result<Vec<String>, MeetingError> {
        let body = self.call("hooks/list", &[]).await?;
        let doc = roxmltree::Document::parse(&body)
            .map_err(|_| MeetingError::Protocol("not XML".into()))?;
        Ok(doc
            .descendants()
            .filter(|n| n.has_tag_name("hook"))
            .filter_map(|n| text_of(n, "callbackURL"))
            .collect())
    }

    /// `hooks/create`; "There is already a hook for this callback URL" (`duplicateWarning`, under
    /// SUCCESS) is a success.
    pub async fn create_hook(&self, callback_url: &str) -> Result<(), MeetingError> {
        self.call("hooks/create", &[("callbackURL", callback_url)])
            .await
            .map(|_| ())
    }

    /// BBB 3.0+: posts `message` (1..=500 characters) to the public chat as `user_name`.
    async fn post_chat_message(
        &self,
        meeting_id: &str,
        message: &str,
        user_name: &str,
    ) -> Result<(), MeetingError> {
        let user_name: String = user_name.chars().take(255).collect();
        self.call(
            "sendChatMessage",
            &[
                ("meetingID", meeting_id),
                ("message", message),
                ("userName", &user_name),
            ],
        )
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl MeetingService for BbbClient {
    fn server(&self) -> Option<String> {
        url::Url::parse(self.api.base())
            .ok()?
            .host_str()
            .map(str::to_owned)
    }

    async fn create(&self, meeting: &NewMeeting<'_>) -> Result<(), MeetingError> {
        self.create_meeting(meeting).await
    }

    async fn list_meetings(&self) -> Result<Vec<ListedMeeting>, MeetingError> {
        Ok(self
            .get_meetings()
            .await?
            .into_iter()
            .map(|m| ListedMeeting {
                meeting_id: m.meeting_id,
                running: m.running,
                attendees: m.attendees,
            })
            .collect())
    }

    /// Checks `hooks/list` first: a hook bbb-webhooks still has needs no new call.
    async fn register_hook(&self, callback_url: &str) -> Result<(), MeetingError> {
        if self
            .list_hooks()
            .await?
            .iter()
            .any(|hook| hook == callback_url)
        {
            return Ok(());
        }
        self.create_hook(callback_url).await
    }

    fn join_url(
        &self,
        meeting_id: &str,
        full_name: &str,
        user_id: &str,
        role: MeetingRole,
    ) -> String {
        self.api.join_url(meeting_id, full_name, user_id, role)
    }

    /// From `getMeetingInfo`: unlike `isMeetingRunning`, it tells an unknown meeting (`notFound`)
    /// from one nobody has joined yet.
    async fn is_running(&self, meeting_id: &str) -> Result<bool, MeetingError> {
        Ok(self.get_meeting_info(meeting_id).await?.running)
    }

    async fn end(&self, meeting_id: &str) -> Result<(), MeetingError> {
        self.end_meeting(meeting_id).await
    }

    async fn send_chat_message(
        &self,
        meeting_id: &str,
        message: &str,
        user_name: &str,
    ) -> Result<(), MeetingError> {
        self.post_chat_message(meeting_id, message, user_name).await
    }
}
