//! A BigBlueButton API: checksums verified (any of sha1/256/384/512, chosen by length), meetings
//! tracked, `running` meaning "has a user" as in bbb-web, errors as `FAILED` under HTTP 200, the
//! end callback fired on `end`, and `sendChatMessage`'s 1..=500 rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::bbb::Checksum;

#[derive(Debug, Clone, Default)]
pub struct Meeting {
    pub id: String,
    pub name: String,
    /// `meta_*` parameters, keys lower-cased without the prefix.
    pub metadata: HashMap<String, String>,
    /// (full name, role)
    pub users: Vec<(String, String)>,
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

    /// A person joins (as if through the client), making the meeting "running".
    pub fn add_user(&self, meeting: &str, name: &str) -> bool {
        self.with(|i| match i.meetings.get_mut(meeting) {
            Some(m) => {
                m.users.push((name.to_owned(), "VIEWER".to_owned()));
                true
            }
            None => false,
        })
    }

    /// The meeting ends on BBB's side (last moderator ended it), firing the callback if enabled.
    pub async fn end_from_bbb(&self, meeting: &str) -> bool {
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
        let algorithm = match checksum.len() {
            40 => Checksum::Sha1,
            64 => Checksum::Sha256,
            96 => Checksum::Sha384,
            128 => Checksum::Sha512,
            _ => return false,
        };
        let signed = format!("{call}{}{}", rest.join("&"), self.secret);
        algorithm.hex(signed.as_bytes()) == checksum
    }
}

async fn version() -> Response {
    xml("<returncode>SUCCESS</returncode><version>2.0</version><apiVersion>2.0</apiVersion><bbbVersion>3.0.0</bbbVersion>".into())
}

fn meeting_xml(m: &Meeting) -> String {
    let attendees: String = m
        .users
        .iter()
        .map(|(name, role)| {
            format!(
                "<attendee><fullName>{}</fullName><role>{role}</role></attendee>",
                xml_escape(name)
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
            let joined = sim.with(|i| {
                i.counters.joins += 1;
                match i.meetings.get_mut(&meeting_id) {
                    Some(m) => {
                        m.users.push((name, role));
                        true
                    }
                    None => false,
                }
            });
            if !joined {
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
