//! The SIPMediaGW client, for both API generations (PROTOCOLS.md, part A), and [`gateways`], the
//! domain's `StreamGateway` over it.
//!
//! Success is `res == "ok"`, never just HTTP 200: v1.6/v1.7 report "No free resources found" and
//! "The gateway failed to launch" under 200. A response body is never logged or kept whole — the
//! web.py debug page echoes the Authorization header — only short, known fields are read.
//!
//! Every request obeys the gateway address policy (`gateway_allowed_networks`): an IP literal is
//! checked before the request, a host name's addresses by [`resolver`] at connection time, and
//! redirects are never followed (one could point at the metadata service with our token).

pub mod gateways;
pub mod resolver;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use webinar_domain::gateway::{GatewayAddressPolicy, GatewayApi};
use webinar_domain::ports::{Stopped, StreamGatewayError, StreamRef};

/// Where and how to reach one gateway's SIPMediaGW.
#[derive(Debug, Clone)]
pub struct SipTarget {
    pub base_url: String,
    pub api: GatewayApi,
    pub token: Option<SecretString>,
    /// The launcher's browsing script (v1.8+): `bigbluebutton` for our meetings.
    pub browsing_name: String,
}

/// The v1.8+ launcher names its gateway container in every call.
fn gw_id<'a>(stream: &StreamRef<'a>) -> Result<&'a str, StreamGatewayError> {
    stream
        .gw_id
        .ok_or_else(|| StreamGatewayError::NotUsable("no gateway container (gw_id) chosen".into()))
}

/// A short, printable excerpt of a known error field.
fn short(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(120).collect()
}

#[derive(Clone, Debug)]
pub struct SipMediaGwClient {
    http: reqwest::Client,
    addresses: Arc<GatewayAddressPolicy>,
}

impl SipMediaGwClient {
    /// `timeout` bounds start and stop (SIPMediaGW may take 10-25 s); quick calls get 10 s.
    /// `addresses` says where gateways may be reached.
    pub fn new(timeout: Duration, addresses: GatewayAddressPolicy) -> Result<Self, reqwest::Error> {
        let addresses = Arc::new(addresses);
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(Arc::new(resolver::PolicyResolver::new(addresses.clone())))
                // Through a proxy, the proxy would resolve the gateway's name and the resolver
                // above would judge only the proxy's address.
                .no_proxy()
                .build()?,
            addresses,
        })
    }

    fn url(target: &SipTarget, path: &str) -> String {
        format!("{}{path}", target.base_url.trim_end_matches('/'))
    }

    /// A request to `target`, or `NotUsable` when its URL breaks the address policy (a gateway
    /// registered before the policy was tightened keeps its events, not its reach).
    fn request(
        &self,
        target: &SipTarget,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::RequestBuilder, StreamGatewayError> {
        let url = Self::url(target, path);
        self.addresses
            .check_str(&url)
            .map_err(|refused| StreamGatewayError::NotUsable(format!("its URL {refused}")))?;
        let request = self.http.request(method, url);
        Ok(match &target.token {
            Some(token) => request.header(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", token.expose_secret()),
            ),
            None => request,
        })
    }

    /// Sends and reads the JSON body, mapping transport and HTTP failures.
    async fn send(
        &self,
        call: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), StreamGatewayError> {
        crate::metrics::outside_call("sipmediagw", call, self.send_untimed(request)).await
    }

    async fn send_untimed(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Value), StreamGatewayError> {
        let response = request.send().await.map_err(|e| {
            if let Some(refused) = resolver::refusal_within(&e) {
                StreamGatewayError::NotUsable(format!("its host {refused}"))
            } else if e.is_timeout() {
                StreamGatewayError::Timeout
            } else {
                StreamGatewayError::Unreachable
            }
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                StreamGatewayError::Timeout
            } else {
                StreamGatewayError::Protocol
            }
        })?;
        if status == 401 {
            return Err(StreamGatewayError::Unauthorized);
        }
        // An HTML page (web.py's debug page) is never parsed, kept or logged.
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, body))
    }

    fn http_error(status: u16, body: &Value) -> StreamGatewayError {
        let detail = body
            .get("Error")
            .and_then(Value::as_str)
            .or_else(|| body.pointer("/error/detail").and_then(Value::as_str))
            .or_else(|| body.get("error").and_then(Value::as_str))
            .map(short);
        StreamGatewayError::Http { status, detail }
    }

    /// Starts streaming the room (joined through `domain` by the web.py launchers; the v1.8+
    /// launcher joins through its own configured domain, on the container `stream.gw_id`) to
    /// `rtmp`.
    pub async fn start(
        &self,
        target: &SipTarget,
        stream: StreamRef<'_>,
        domain: &str,
        rtmp: &str,
    ) -> Result<Option<String>, StreamGatewayError> {
        let room = stream.room;
        match target.api {
            GatewayApi::Legacy => {
                let request = self
                    .request(target, reqwest::Method::GET, "/start")?
                    .query(&[("room", room), ("domain", domain), ("rtmpDst", rtmp)]);
                let (status, body) = self.send("start", request).await?;
                if status != 200 {
                    return Err(Self::http_error(status, &body));
                }
                // v1.6+: {"status":"success","details":{…}}; v1.5: the details alone.
                let details = body.get("details").unwrap_or(&body);
                match details.get("res").and_then(Value::as_str) {
                    Some("ok") => Ok(None),
                    Some(_) => Err(match details.get("type").and_then(Value::as_str) {
                        Some("No free resources found") => StreamGatewayError::Busy,
                        Some("The gateway failed to launch") => StreamGatewayError::LaunchFailed,
                        other => StreamGatewayError::Http {
                            status,
                            detail: other.map(short),
                        },
                    }),
                    None => Err(Self::http_error(status, &body)),
                }
            }
            GatewayApi::Gateway => {
                let id = gw_id(&stream)?;
                let request = self
                    .request(target, reqwest::Method::POST, "/gateway/start")?
                    .json(&json!({
                        "room": room, "gw_id": id, "main_app": "streaming",
                        "browsing_name": target.browsing_name, "rtmp_dst": rtmp,
                    }));
                let (status, body) = self.send("start", request).await?;
                match (
                    status,
                    body.pointer("/data/processing_state")
                        .and_then(Value::as_str),
                ) {
                    (200, Some("working")) => Ok(Some(id.to_owned())),
                    // "Failed to start gateway container": the launch script did not answer ok.
                    (404, _) => Err(StreamGatewayError::LaunchFailed),
                    _ => Err(Self::http_error(status, &body)),
                }
            }
            GatewayApi::Proxy => {
                // `browsing` is what the proxy checks (main); the launcher reads `browsing_name`.
                let request = self
                    .request(target, reqwest::Method::POST, "/start")?
                    .json(&json!({
                        "room": room, "main_app": "streaming", "browsing": target.browsing_name,
                        "browsing_name": target.browsing_name, "rtmp_dst": rtmp,
                    }));
                let (status, body) = self.send("start", request).await?;
                let picked = body.pointer("/data/gw_id").and_then(Value::as_str);
                match (status, picked) {
                    (200, Some(id)) => Ok(Some(short(id))),
                    (503, _)
                        if body.pointer("/error/detail").and_then(Value::as_str)
                            == Some("No available gateways") =>
                    {
                        Err(StreamGatewayError::Busy)
                    }
                    // Any launcher failure reads "Faild to parse Gateway Json response" (sic).
                    (503, _) => Err(StreamGatewayError::LaunchFailed),
                    _ => Err(Self::http_error(status, &body)),
                }
            }
        }
    }

    /// The proxy's record of a stream (by its container, else by room): (gw_id, state, room).
    /// `None` when it has none.
    async fn proxy_status(
        &self,
        target: &SipTarget,
        stream: StreamRef<'_>,
    ) -> Result<Option<(String, String, String)>, StreamGatewayError> {
        let key = match stream.gw_id {
            Some(id) => ("gw_id", id),
            None => ("room", stream.room),
        };
        let (status, body) = self
            .send(
                "status",
                self.request(target, reqwest::Method::GET, "/status")?
                    .query(&[key]),
            )
            .await?;
        let text = |pointer| {
            body.pointer(pointer)
                .and_then(Value::as_str)
                .map(short)
                .unwrap_or_default()
        };
        match status {
            200 => Ok(Some((
                text("/data/gw_id"),
                text("/data/gw_state"),
                text("/data/room"),
            ))),
            404 => Ok(None),
            _ => Err(Self::http_error(status, &body)),
        }
    }

    /// The container a proxied stream runs on: recorded, or found by room.
    async fn proxied_gw_id(
        &self,
        target: &SipTarget,
        stream: StreamRef<'_>,
    ) -> Result<Option<String>, StreamGatewayError> {
        if let Some(id) = stream.gw_id {
            return Ok(Some(id.to_owned()));
        }
        Ok(self
            .proxy_status(target, stream)
            .await?
            .map(|(id, _, _)| id)
            .filter(|id| !id.is_empty()))
    }

    /// Stops the stream; one that is not running counts as stopped.
    pub async fn stop(
        &self,
        target: &SipTarget,
        stream: StreamRef<'_>,
    ) -> Result<Stopped, StreamGatewayError> {
        let (status, body) = match target.api {
            GatewayApi::Legacy => {
                self.send(
                    "stop",
                    self.request(target, reqwest::Method::GET, "/stop")?
                        .query(&[("room", stream.room)]),
                )
                .await?
            }
            GatewayApi::Gateway => {
                self.send(
                    "stop",
                    self.request(target, reqwest::Method::POST, "/gateway/stop")?
                        .json(&json!({ "gw_id": gw_id(&stream)? })),
                )
                .await?
            }
            GatewayApi::Proxy => {
                let Some(id) = self.proxied_gw_id(target, stream).await? else {
                    return Ok(Stopped::NotRunning);
                };
                self.send(
                    "stop",
                    self.request(target, reqwest::Method::POST, "/stop")?
                        .json(&json!({ "gw_id": id })),
                )
                .await?
            }
        };
        let detail = Self::http_error(status, &body);
        // web.py and the launcher: "no running container for …"; main: "Gateway not found"; the
        // proxy: "No mapping found for gateway …".
        let not_running = |d: &str| {
            d.starts_with("no running container")
                || d == "Gateway not found"
                || d.starts_with("No mapping found")
        };
        match status {
            200 => Ok(Stopped::Stopped),
            400 | 404 if matches!(&detail, StreamGatewayError::Http { detail: Some(d), .. } if not_running(d)) => {
                Ok(Stopped::NotRunning)
            }
            _ => Err(detail),
        }
    }

    /// Whether the room is streaming now (to make a repeated start idempotent).
    ///
    /// The v1.8+ launcher's status says whether the container runs (an initialised one always
    /// does) and, since main, which room it last joined; v1.8.4 does not say. So "streaming" is
    /// up *and* our room; anything less reads as not streaming, which is safe there: starting a
    /// container again restarts it, it never starts a second stream.
    pub async fn is_streaming(
        &self,
        target: &SipTarget,
        stream: StreamRef<'_>,
    ) -> Result<bool, StreamGatewayError> {
        let room = stream.room;
        match target.api {
            GatewayApi::Legacy => {
                let (status, body) = self
                    .send(
                        "status",
                        self.request(target, reqwest::Method::GET, "/progress")?
                            .query(&[("room", room)]),
                    )
                    .await?;
                if status != 200 {
                    return Err(Self::http_error(status, &body));
                }
                // v1.7: "gw_state":"down" when no container; no key at all when up.
                Ok(body.get("gw_state").and_then(Value::as_str) != Some("down"))
            }
            GatewayApi::Gateway => {
                let id = gw_id(&stream)?;
                let (status, body) = self
                    .send(
                        "status",
                        self.request(target, reqwest::Method::GET, "/gateway/status")?
                            .query(&[("gw_id", id)]),
                    )
                    .await?;
                let detail = body.pointer("/error/detail").and_then(Value::as_str);
                match status {
                    200 => Ok(
                        body.pointer("/data/gw_state").and_then(Value::as_str) == Some("up")
                            && body.pointer("/data/room").and_then(Value::as_str) == Some(room),
                    ),
                    // "Gateway not found" (main); v1.8.4 fails on the missing container with a
                    // TypeError: "argument of type 'NoneType' is not iterable".
                    404 => Err(StreamGatewayError::UnknownGwId(short(id))),
                    500 if detail.is_some_and(|d| d.contains("NoneType")) => {
                        Err(StreamGatewayError::UnknownGwId(short(id)))
                    }
                    // main reads a history file that a container that never streamed may lack:
                    // it cannot say, and a start is safe (see above).
                    500 => Ok(false),
                    _ => Err(Self::http_error(status, &body)),
                }
            }
            // The proxy's record: `working` on our room.
            GatewayApi::Proxy => Ok(self
                .proxy_status(target, stream)
                .await?
                .is_some_and(|(_, state, on)| state == "working" && on == room)),
        }
    }

    /// A `/gateway/command` (launcher) or `/command` (proxy) for the stream's container.
    async fn command(
        &self,
        target: &SipTarget,
        stream: StreamRef<'_>,
        call: &'static str,
        payload: Value,
    ) -> Result<(u16, Value), StreamGatewayError> {
        let (path, id) = match target.api {
            GatewayApi::Proxy => (
                "/command",
                self.proxied_gw_id(target, stream).await?.ok_or_else(|| {
                    StreamGatewayError::Http {
                        status: 404,
                        detail: Some("the proxy has no gateway for this room".into()),
                    }
                })?,
            ),
            _ => ("/gateway/command", gw_id(&stream)?.to_owned()),
        };
        self.send(
            call,
            self.request(target, reqwest::Method::POST, path)?
                .json(&json!({ "gw_id": id, "payload": payload })),
        )
        .await
    }

    /// A command's answer: `{"res": "ok"}` (web.py), or the gateway API's
    /// `{"status": "success", "data": {"ack": true, …}}` (`CommandResponse`).
    fn acknowledged(status: u16, body: &Value) -> Result<(), StreamGatewayError> {
        let ok = body.get("res").and_then(Value::as_str) == Some("ok")
            || body.pointer("/data/ack") == Some(&Value::Bool(true));
        if status == 200 && ok {
            Ok(())
        } else {
            Err(Self::http_error(status, body))
        }
    }

    /// Shows or hides the BBB chat in the stream.
    pub async fn toggle_chat(
        &self,
        target: &SipTarget,
        stream: StreamRef<'_>,
    ) -> Result<(), StreamGatewayError> {
        let room = stream.room;
        let (status, body) = match target.api {
            GatewayApi::Legacy => {
                self.send(
                    "toggle_chat",
                    self.request(target, reqwest::Method::GET, "/chat")?
                        .query(&[("room", room), ("toggle", "True")]),
                )
                .await?
            }
            GatewayApi::Gateway | GatewayApi::Proxy => {
                self.command(
                    target,
                    stream,
                    "toggle_chat",
                    json!({ "command": "sendKey", "param1": "chat-toggle" }),
                )
                .await?
            }
        };
        Self::acknowledged(status, &body)
    }

    /// Types `message` into the meeting's public chat (Pod-compatible relay).
    pub async fn post_chat(
        &self,
        target: &SipTarget,
        stream: StreamRef<'_>,
        message: &str,
    ) -> Result<(), StreamGatewayError> {
        let room = stream.room;
        let (status, body) = match target.api {
            GatewayApi::Legacy => {
                // web.py's POST /chat takes no token; sending one does no harm.
                self.send(
                    "post_chat",
                    self.request(target, reqwest::Method::POST, "/chat")?
                        .json(&json!({ "room": room, "msg": message })),
                )
                .await?
            }
            GatewayApi::Gateway | GatewayApi::Proxy => {
                self.command(
                    target,
                    stream,
                    "post_chat",
                    json!({ "command": "sendChat", "param1": message }),
                )
                .await?
            }
        };
        Self::acknowledged(status, &body)
    }
}
