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
use webinar_domain::ports::{Stopped, StreamGatewayError};

/// Where and how to reach one gateway's SIPMediaGW.
#[derive(Debug, Clone)]
pub struct SipTarget {
    pub base_url: String,
    pub api: GatewayApi,
    pub token: Option<SecretString>,
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

    /// Starts streaming `room` (joined through `domain`) to `rtmp`.
    pub async fn start(
        &self,
        target: &SipTarget,
        room: &str,
        domain: &str,
        rtmp: &str,
    ) -> Result<(), StreamGatewayError> {
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
                    Some("ok") => Ok(()),
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
                let request = self
                    .request(target, reqwest::Method::POST, "/gateway/start")?
                    .json(&json!({
                        "room": room, "gw_id": room, "main_app": "streaming",
                        "browsing_name": domain, "rtmp_dst": rtmp,
                    }));
                let (status, body) = self.send("start", request).await?;
                match (
                    status,
                    body.pointer("/data/processing_state")
                        .and_then(Value::as_str),
                ) {
                    (200, Some("working")) => Ok(()),
                    (404, _) => Err(StreamGatewayError::LaunchFailed),
                    _ => Err(Self::http_error(status, &body)),
                }
            }
        }
    }

    /// Stops `room`; a room that is not running counts as stopped.
    pub async fn stop(
        &self,
        target: &SipTarget,
        room: &str,
    ) -> Result<Stopped, StreamGatewayError> {
        let (status, body) = match target.api {
            GatewayApi::Legacy => {
                self.send(
                    "stop",
                    self.request(target, reqwest::Method::GET, "/stop")?
                        .query(&[("room", room)]),
                )
                .await?
            }
            GatewayApi::Gateway => {
                self.send(
                    "stop",
                    self.request(target, reqwest::Method::POST, "/gateway/stop")?
                        .json(&json!({ "gw_id": room })),
                )
                .await?
            }
        };
        let detail = Self::http_error(status, &body);
        match status {
            200 => Ok(Stopped::Stopped),
            400 | 404 if matches!(&detail, StreamGatewayError::Http { detail: Some(d), .. } if d.starts_with("no running container")) => {
                Ok(Stopped::NotRunning)
            }
            _ => Err(detail),
        }
    }

    /// Whether `room` is streaming now (to make a repeated start idempotent).
    pub async fn is_streaming(
        &self,
        target: &SipTarget,
        room: &str,
    ) -> Result<bool, StreamGatewayError> {
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
                let (status, body) = self
                    .send(
                        "status",
                        self.request(target, reqwest::Method::GET, "/gateway/status")?
                            .query(&[("gw_id", room)]),
                    )
                    .await?;
                match status {
                    200 => Ok(body.pointer("/data/gw_state").and_then(Value::as_str) == Some("up")),
                    404 => Ok(false),
                    _ => Err(Self::http_error(status, &body)),
                }
            }
        }
    }

    /// A command's answer: `{"res": "ok"}` (web.py) or `{"ack": true}` (the gateway API).
    fn acknowledged(status: u16, body: &Value) -> Result<(), StreamGatewayError> {
        let ok = body.get("res").and_then(Value::as_str) == Some("ok")
            || body.get("ack") == Some(&Value::Bool(true));
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
        room: &str,
    ) -> Result<(), StreamGatewayError> {
        let (status, body) = match target.api {
            GatewayApi::Legacy => {
                self.send(
                    "toggle_chat",
                    self.request(target, reqwest::Method::GET, "/chat")?
                        .query(&[("room", room), ("toggle", "True")]),
                )
                .await?
            }
            GatewayApi::Gateway => {
                self.send("toggle_chat", self.request(target, reqwest::Method::POST, "/gateway/command")?.json(&json!({
                    "gw_id": room, "payload": { "command": "sendKey", "param1": "chat-toggle" }
                })))
                .await?
            }
        };
        Self::acknowledged(status, &body)
    }

    /// Types `message` into the meeting's public chat (Pod-compatible relay).
    pub async fn post_chat(
        &self,
        target: &SipTarget,
        room: &str,
        message: &str,
    ) -> Result<(), StreamGatewayError> {
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
            GatewayApi::Gateway => {
                self.send(
                    "post_chat",
                    self.request(target, reqwest::Method::POST, "/gateway/command")?
                        .json(&json!({
                            "gw_id": room, "payload": { "command": "sendChat", "param1": message }
                        })),
                )
                .await?
            }
        };
        Self::acknowledged(status, &body)
    }
}
