//! A BigBlueButton API: checksums verified (any of sha1/256/384/512, chosen by length), meetings
//! tracked, `running` meaning "has a user" as in bbb-web, errors as `FAILED` under HTTP 200, the
//! end callback fired on `end`, and `sendChatMessage`'s 1..=500 rule. With bbb-webhooks: the
//! `hooks/create|list|destroy` API, and deliveries of `user-joined`, `user-left` and
//! `meeting-ended` to every hook, signed and retried as bbb-webhooks does (its default sha1
//! checksum; see [`crate::bbb_webhooks`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::bbb::Checksum;

/// Someone in a meeting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// BigBlueButton's own id (`w_…`).
    pub internal_id: String,
    /// The `userID` given at join.
    pub external_id: String,
    pub name: String,
    pub role: String,
}

#[derive(Debug, Clone, Default)]
pub struct Meeting {
    pub id: String,
    pub name: String,
    /// `meta_*` parameters, keys lower-cased without the prefix.
    pub metadata: HashMap<String, String>,
    pub users: Vec<User>,
    pub chat: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub creates: u32,
    pub joins: u32,
    pub ends: u32,
    pub checksum_errors: u32,
    pub running_checks: u32,
    /// End callbacks fired (the URL, recordingmarks appended).
    pub callbacks: Vec<String>,
}

#[derive(Debug, Default)]
struct Inner {
    meetings: HashMap<String, Meeting>,
    counters: Counters,
    /// When false, `end` does not call the end callback (a lost callback).
    callbacks_enabled: bool,
    /// bbb-webhooks' hooks: (hook id, callback URL).
    hooks: Vec<(u32, String)>,
    /// When false, webhook deliveries are dropped (bbb-webhooks gave up on them).
    deliveries_enabled: bool,
    /// Deliveries answered 2xx (or 401, which bbb-webhooks also counts as delivered).
    delivered: u32,
    next_user: u32,
}

#[derive(Debug, Clone)]
pub struct BbbSim {
    secret: String,
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml")],
        format!("<response>{body}</response>"),
    )
        .into_response()
}

fn failed(key: &str, message: &str) -> Response {
    xml(format!(
        "<returncode>FAILED</returncode><messageKey>{key}</messageKey><message>{}</message>",
        xml_escape(message)
    ))
}

fn params(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

impl BbbSim {
    pub fn new(secret: &str) -> Self {
        Self {
            secret: secret.to_owned(),
            inner: Arc::new(Mutex::new(Inner {
                callbacks_enabled: true,
                deliveries_enabled: true,
                ..Inner::default()
            })),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Routes under `/bigbluebutton/api`, plus the client page joins redirect to.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/bigbluebutton/api", get(version))
            .route("/bigbluebutton/api/", get(version))
            .route("/bigbluebutton/api/{call}", get(call))
            .route("/bigbluebutton/api/hooks/{call}", get(hooks))
            .route(
                "/client/BigBlueButton.html",
                get(|| async { "BigBlueButton client (simulated)" }),
            )
            .with_state(self.clone())
    }

    pub fn counters(&self) -> Counters {
        self.with(|i| i.counters.clone())
    }

    pub fn meeting(&self, id: &str) -> Option<Meeting> {
        self.with(|i| i.meetings.get(id).cloned())
    }

    /// Whether `end` calls the end callback (false simulates a lost callback).
    pub fn set_callbacks(&self, enabled: bool) {
        self.with(|i| i.callbacks_enabled = enabled);
    }

    /// Whether webhook deliveries reach their hooks (false: they are lost).
    pub fn set_deliveries(&self, enabled: bool) {
        self.with(|i| i.deliveries_enabled = enabled);
    }

    /// The callback URLs of the registered hooks.
    pub fn hooks(&self) -> Vec<String> {
        self.with(|i| i.hooks.iter().map(|(_, url)| url.clone()).collect())
    }

    /// Deliveries the hooks accepted.
    pub fn delivered(&self) -> u32 {
        self.with(|i| i.delivered)
    }

    /// A person joins (as if through the client), making the meeting "running". Returns their
    /// internal id.
    pub fn add_user(&self, meeting: &str, name: &str) -> Option<String> {
        self.join_user(meeting, name, &format!("ext-{name}"), "VIEWER")
    }

    fn join_user(&self, meeting: &str, name: &str, external: &str, role: &str) -> Option<String> {
        let user = self.with(|i| {
            i.next_user += 1;
            let user = User {
                internal_id: format!("w_sim{}", i.next_user),
                external_id: external.to_owned(),
                name: name.to_owned(),
                role: role.to_owned(),
            };
            let m = i.meetings.get_mut(meeting)?;
            m.users.push(user.clone());
            Some(user)
        })?;
        let user_json = serde_json::json!({
            "internal-user-id": user.internal_id, "external-user-id": user.external_id,
            "name": user.name, "role": user.role, "presenter": false, "guest": false,
        });
        self.deliver(meeting, "user-joined", Some(user_json));
        Some(user.internal_id)
    }

    /// Someone leaves (by internal id).
    pub fn remove_user(&self, meeting: &str, internal_id: &str) -> bool {
        let left = self.with(|i| {
            let m = i.meetings.get_mut(meeting)?;
            let before = m.users.len();
            m.users.retain(|u| u.internal_id != internal_id);
            (m.users.len() < before).then_some(())
        });
        if left.is_some() {
            self.deliver(
                meeting,
                "user-left",
                Some(serde_json::json!({"internal-user-id": internal_id, "external-user-id": internal_id, "guest": false})),
            );
        }
        left.is_some()
    }

    /// Sends a mapped event to every hook, as bbb-webhooks does: a form POST signed with a sha1
    /// checksum of the callback URL, the body and the secret; retried on failure.
    fn deliver(&self, meeting: &str, id: &str, user: Option<serde_json::Value>) {
        let (hooks, enabled) = self.with(|i| (i.hooks.clone(), i.deliveries_enabled));
        if hooks.is_empty() || !enabled {
            return;
        }
        let mut attributes = serde_json::json!({"meeting": {
            "internal-meeting-id": format!("{meeting}-internal"), "external-meeting-id": meeting }});
        if let Some(user) = user {
            attributes["user"] = user;
        }
        let ts = chrono::Utc::now().timestamp_millis();
        let event = serde_json::json!({"data": {"type": "event", "id": id,
            "attributes": attributes, "event": {"ts": ts}}});
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("domain", "bbb.simulated")
            .append_pair("event", &format!("[{event}]"))
            .append_pair("timestamp", &ts.to_string())
            .finish();
        for (_, callback) in hooks {
            let checksum =
                Checksum::Sha1.hex(format!("{callback}{body}{}", self.secret).as_bytes());
            let separator = if callback.contains('?') { '&' } else { '?' };
            let url = format!("{callback}{separator}checksum={checksum}");
            let (sim, body) = (self.clone(), body.clone());
            tokio::spawn(async move {
                // bbb-webhooks retries (its defaults run to about five minutes; shorter here).
                for wait_ms in [0_u64, 100, 500, 1_000, 2_000, 5_000] {
                    tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
                    let sent = sim
                        .http
                        .post(&url)
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body.clone())
                        .send()
                        .await;
                    if let Ok(response) = sent {
                        if response.status().is_success() || response.status().as_u16() == 401 {
                            sim.with(|i| i.delivered += 1);
                            return;
                        }
                    }
                }
                tracing::warn!("simulated BBB: a webhook delivery was dropped after its retries");
            });
        }
    }

    /// The meeting ends on BBB's side (last moderator ended it), firing the callback if enabled.
    pub async fn end_from_bbb(&self, meeting: &str) -> bool {
        if self.meeting(meeting).is_some() {
            self.deliver(meeting, "meeting-ended", None);
        }
        let (existed, callback) = self.with(|i| {
            let removed = i.meetings.remove(meeting);
            let callback = removed
                .as_ref()
                .and_then(|m| m.metadata.get("endcallbackurl").cloned())
                .filter(|_| i.callbacks_enabled);
            (removed.is_some(), callback)
        });
        if let Some(url) = callback {
            self.fire(url).await;
        }
        existed
    }

    async fn fire(&self, url: String) {
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}recordingmarks=false");
        self.with(|i| i.counters.callbacks.push(url.clone()));
        if let Err(error) = self.http.get(&url).send().await {
            tracing::warn!(%error, "simulated BBB: end callback failed");
        }
    }

    /// `checksum` must be `H(call + query-without-checksum + secret)`, H chosen by its length.
    fn verify(&self, call: &str, raw_query: &str) -> bool {
        let mut checksum = None;
        let rest: Vec<&str> = raw_query
            .split('&')
            .filter(|pair| match pair.strip_prefix("checksum=") {
                Some(value) => {
                    checksum = Some(value.to_ascii_lowercase());
                    false
                }
                None => true,
            })
            .collect();
        let Some(checksum) = checksum else {
            return false;
        };
        let Some(algorithm) = Checksum::of_length(checksum.len()) else {
            return false;
        };
        let signed = format!("{call}{}{}", rest.join("&"), self.secret);
        algorithm.hex(signed.as_bytes()) == checksum
    }
}

/// bbb-webhooks' API (`/bigbluebutton/api/hooks/*`), checksummed like BigBlueButton's.
async fn hooks(
    State(sim): State<BbbSim>,
    Path(call): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let raw = query.unwrap_or_default();
    let name = format!("hooks/{call}");
    if !sim.verify(&name, &raw) {
        sim.with(|i| i.counters.checksum_errors += 1);
        return failed(
            "checksumError",
            "You did not pass the checksum security check.",
        );
    }
    let p = params(&raw);
    match call.as_str() {
        "create" => {
            let Some(callback) = p.get("callbackURL").cloned() else {
                return failed(
                    "missingParamCallbackURL",
                    "You must specify a callbackURL in the parameters.",
                );
            };
            let (id, duplicate) = sim.with(|i| {
                if let Some((id, _)) = i.hooks.iter().find(|(_, url)| *url == callback) {
                    return (*id, true);
                }
                let id = i.hooks.len() as u32 + 1;
                i.hooks.push((id, callback));
                (id, false)
            });
            if duplicate {
                xml(format!("<returncode>SUCCESS</returncode><hookID>{id}</hookID><messageKey>duplicateWarning</messageKey><message>There is already a hook for this callback URL.</message>"))
            } else {
                xml(format!("<returncode>SUCCESS</returncode><hookID>{id}</hookID><permanentHook>false</permanentHook><rawData>false</rawData>"))
            }
        }
        "list" => {
            let hooks: String = sim.with(|i| {
                i.hooks
                    .iter()
                    .map(|(id, url)| format!("<hook><hookID>{id}</hookID><callbackURL><![CDATA[{url}]]></callbackURL><permanentHook>false</permanentHook><rawData>false</rawData></hook>"))
                    .collect()
            });
            xml(format!(
                "<returncode>SUCCESS</returncode><hooks>{hooks}</hooks>"
            ))
        }
        "destroy" => {
            let Some(id) = p.get("hookID").and_then(|id| id.parse::<u32>().ok()) else {
                return failed(
                    "missingParamHookID",
                    "You must specify a hookID in the parameters.",
                );
            };
            let removed = sim.with(|i| {
                let before = i.hooks.len();
                i.hooks.retain(|(hook, _)| *hook != id);
                i.hooks.len() < before
            });
            if removed {
                xml("<returncode>SUCCESS</returncode><removed>true</removed>".into())
            } else {
                failed("destroyMissingHook", "The hook informed was not found.")
            }
        }
        _ => failed("unsupportedRequest", "This request is not supported."),
    }
}

async fn version() -> Response {
    xml("<returncode>SUCCESS</returncode><version>2.0</version><apiVersion>2.0</apiVersion><bbbVersion>3.0.0</bbbVersion>".into())
}

fn meeting_xml(m: &Meeting) -> String {
    let attendees: String = m
        .users
        .iter()
        .map(|user| {
            format!(
                "<attendee><userID>{}</userID><fullName>{}</fullName><role>{}</role>\
                 <isPresenter>false</isPresenter><isListeningOnly>true</isListeningOnly></attendee>",
                xml_escape(&user.internal_id),
                xml_escape(&user.name),
                xml_escape(&user.role)
            )
        })
        .collect();
    let metadata: String = m
        .metadata
        .iter()
        .map(|(k, v)| format!("<{k}>{}</{k}>", xml_escape(v)))
        .collect();
    format!(
        "<meetingName>{}</meetingName><meetingID>{}</meetingID><running>{}</running>\
         <participantCount>{}</participantCount><attendees>{attendees}</attendees><metadata>{metadata}</metadata>",
        xml_escape(&m.name),
        xml_escape(&m.id),
        !m.users.is_empty(),
        m.users.len()
    )
}

async fn call(
    State(sim): State<BbbSim>,
    Path(call): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let raw = query.unwrap_or_default();
    if !sim.verify(&call, &raw) {
        sim.with(|i| i.counters.checksum_errors += 1);
        return failed("checksumError", "Checksums do not match");
    }
    let p = params(&raw);
    let meeting_id = p.get("meetingID").cloned().unwrap_or_default();
    match call.as_str() {
        "create" => {
            if meeting_id.len() < 2 {
                return failed("missingParamMeetingID", "You must specify a meeting ID for the meeting.");
            }
            let metadata: HashMap<String, String> = p
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("meta_").map(|k| (k.to_ascii_lowercase(), v.clone())))
                .collect();
            let name = p.get("name").cloned().unwrap_or_default();
            let duplicate = sim.with(|i| {
                i.counters.creates += 1;
                if i.meetings.contains_key(&meeting_id) {
                    true
                } else {
                    i.meetings.insert(
                        meeting_id.clone(),
                        Meeting {
                            id: meeting_id.clone(),
                            name,
                            metadata,
                            ..Meeting::default()
                        },
                    );
                    false
                }
            });
            let warning = if duplicate {
                "<messageKey>duplicateWarning</messageKey><message>This conference was already in existence and may currently be in progress.</message>"
            } else {
                ""
            };
            xml(format!(
                "<returncode>SUCCESS</returncode><meetingID>{}</meetingID><internalMeetingID>{}</internalMeetingID>\
                 <parentMeetingID>bbb-none</parentMeetingID><createTime>0</createTime><hasUserJoined>false</hasUserJoined>\
                 <duration>0</duration><hasBeenForciblyEnded>false</hasBeenForciblyEnded>{warning}",
                xml_escape(&meeting_id),
                xml_escape(&meeting_id)
            ))
        }
        "join" => {
            let name = p.get("fullName").cloned().unwrap_or_default();
            if name.is_empty() {
                return failed("missingParamFullName", "You must specify a name for the attendee who will be joining the meeting.");
            }
            let role = p.get("role").cloned().unwrap_or_else(|| "VIEWER".into());
            let external = p.get("userID").cloned().unwrap_or_default();
            sim.with(|i| i.counters.joins += 1);
            if sim.join_user(&meeting_id, &name, &external, &role).is_none() {
                return failed(
                    "invalidMeetingIdentifier",
                    "The meeting ID that you supplied did not match any existing meetings",
                );
            }
            if p.get("redirect").map(String::as_str) == Some("false") {
                return xml("<returncode>SUCCESS</returncode><messageKey>successfullyJoined</messageKey><message>You have joined successfully.</message><url>/client/BigBlueButton.html?sessionToken=sim</url>".into());
            }
            Redirect::to("/client/BigBlueButton.html?sessionToken=sim").into_response()
        }
        "end" => {
            sim.with(|i| i.counters.ends += 1);
            if sim.end_from_bbb(&meeting_id).await {
                xml("<returncode>SUCCESS</returncode><messageKey>sentEndMeetingRequest</messageKey><message>A request to end the meeting was sent.  Please wait a few seconds, and then use the getMeetingInfo or isMeetingRunning API calls to verify that it was ended</message>".into())
            } else {
                failed("notFound", "We could not find a meeting with that meeting ID - perhaps the meeting is not yet running?")
            }
        }
        "isMeetingRunning" => {
            let running = sim.with(|i| {
                i.counters.running_checks += 1;
                i.meetings.get(&meeting_id).is_some_and(|m| !m.users.is_empty())
            });
            xml(format!("<returncode>SUCCESS</returncode><running>{running}</running>"))
        }
        "getMeetingInfo" => match sim.meeting(&meeting_id) {
            Some(m) => xml(format!("<returncode>SUCCESS</returncode>{}", meeting_xml(&m))),
            None => failed("notFound", "We could not find a meeting with that meeting ID - perhaps the meeting is not yet running?"),
        },
        "getMeetings" => {
            let meetings: Vec<Meeting> = sim.with(|i| i.meetings.values().cloned().collect());
            if meetings.is_empty() {
                xml("<returncode>SUCCESS</returncode><meetings/><messageKey>noMeetings</messageKey><message>no meetings were found on this server</message>".into())
            } else {
                let body: String = meetings.iter().map(|m| format!("<meeting>{}</meeting>", meeting_xml(m))).collect();
                xml(format!("<returncode>SUCCESS</returncode><meetings>{body}</meetings>"))
            }
        }
        "sendChatMessage" => {
            let message = p.get("message").cloned().unwrap_or_default();
            let user = p.get("userName").cloned().unwrap_or_else(|| "System".into());
            let chars = message.chars().count();
            if !(1..=500).contains(&chars) {
                return failed("validationError", "Param message must be between 1 and 500 characters");
            }
            if user.chars().count() > 255 {
                return failed("validationError", "Param userName must be at most 255 characters");
            }
            let sent = sim.with(|i| match i.meetings.get_mut(&meeting_id) {
                Some(m) => {
                    m.chat.push((user, message));
                    true
                }
                None => false,
            });
            if sent {
                xml("<returncode>SUCCESS</returncode><messageKey></messageKey><message></message>".into())
            } else {
                failed("meetingNotFound", "Meeting not found or not active")
            }
        }
        _ => failed("unsupportedRequest", "This request is not supported."),
    }
}
