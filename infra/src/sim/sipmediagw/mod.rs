//! A SIPMediaGW launcher: the web.py API of v1.6/v1.7 ([`legacy`]) or the FastAPI `/gateway/*`
//! API of v1.8+ ([`gateway`]). The web.py one holds `slots` streams at once (SIPMediaGW's
//! `floor(nproc / CPU_PER_GW)`: one on a 4-vCPU host); the v1.8+ one behaves like its production
//! (docker) backend, not its `MODE=fake`: it has a fixed set of initialised gateway containers
//! (`with_gw_ids`), refuses any other `gw_id`, and runs one stream per container (a second start
//! on a container replaces its stream, as `docker compose up --force-recreate` does). It answers
//! with the shapes the real launchers return (see PROTOCOLS.md, A.2 to A.6), and misbehaves on
//! demand: faults are set in code, from
//! the command line (`--fault start-latency=35s`), or over `POST /_sim/faults`; per-room counters
//! are read over `GET /_sim/counters`.
//!
//! A start or stop runs to completion even when the caller has gone (as the launcher's script
//! does), and holds its slot from the moment it begins (as the script's `flock` does).

// Handlers return a finished response as their error: boxing it would only add noise here.
#![allow(clippy::result_large_err)]

mod control;
mod gateway;
mod hls;
mod legacy;
mod proxy;

pub use hls::HlsMode;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::Value;

/// Which API the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Legacy,
    Gateway,
    /// The v1.8 proxy before the launcher's containers (`deploy/proxyAPI/proxy.py`).
    Proxy,
}

/// Injectable faults. The text form (`FromStr`) is what `--fault` and the control endpoint take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `launch-failed`: a start answers "The gateway failed to launch" (after a delay, like v1.7).
    LaunchFailed,
    /// `html-500`: a start answers web.py's HTML debug page with status 500 (which echoes the
    /// Authorization header).
    Html500,
    /// `busy`: every slot is taken by another room: "No free resources found".
    Busy,
    /// `latency=2s`: every call waits this long before it is handled.
    Latency(Duration),
    /// `start-latency=35s`: a start takes this long (a hang, when longer than the client's
    /// timeout); it completes even if the caller gave up.
    StartLatency(Duration),
    /// `stop-latency=20s`: a stop takes this long (compose's stop grace period).
    StopLatency(Duration),
    /// `stop-error`: a stop fails with a 500 (the container runtime is gone).
    StopError,
    /// `chat-latency=20ms`: typing a chat message takes this long.
    ChatLatency(Duration),
}

/// A duration as `35s`, `1.5s` or `20ms`.
fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit) = match text.strip_suffix("ms") {
        Some(n) => (n, 0.001),
        None => (text.strip_suffix('s')?, 1.0),
    };
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value * unit))
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (text.trim(), None),
        };
        let duration = || {
            value
                .and_then(parse_duration)
                .ok_or_else(|| format!("{name} takes a duration, like {name}=2s or {name}=20ms"))
        };
        Ok(match name {
            "launch-failed" => Fault::LaunchFailed,
            "html-500" => Fault::Html500,
            "busy" => Fault::Busy,
            "stop-error" => Fault::StopError,
            "latency" => Fault::Latency(duration()?),
            "start-latency" => Fault::StartLatency(duration()?),
            "stop-latency" => Fault::StopLatency(duration()?),
            "chat-latency" => Fault::ChatLatency(duration()?),
            other => {
                return Err(format!(
                    "unknown fault {other:?}: one of launch-failed, html-500, busy, stop-error, \
                     latency=D, start-latency=D, stop-latency=D, chat-latency=D"
                ))
            }
        })
    }
}

/// One room's calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RoomCounters {
    pub starts: u32,
    pub successful_starts: u32,
    pub stops: u32,
    pub successful_stops: u32,
}

/// What the simulator saw, for assertions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub starts: u32,
    pub successful_starts: u32,
    pub stops: u32,
    pub toggles: u32,
    pub unauthorized: u32,
    /// (room, message), in arrival order.
    pub chats: Vec<(String, String)>,
    /// Every (room, domain, rtmpDst) a successful start received.
    pub started_with: Vec<(String, String, String)>,
    pub rooms: BTreeMap<String, RoomCounters>,
}

/// A v1.8+ gateway container, as the docker backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Container {
    /// Initialised (`SIPMediaGW.sh -i`) and waiting: `docker compose ls` shows it running.
    Idle,
    /// Streaming this room.
    Streaming(String),
    /// Stopped (`docker compose stop gw`); a start recreates it.
    Exited,
}

/// Which v1.8+ release the launcher is (their answers differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Release {
    /// v1.8.4: a status request about an unknown id fails with a 500 (a TypeError), and the
    /// status does not say which room a container joined.
    V1_8_4,
    /// main (`564e7a5`): 404 "Gateway not found", and the room of the last call in the status.
    #[default]
    Main,
}

#[derive(Debug, Default)]
struct Inner {
    token: Option<String>,
    slots: usize,
    /// v1.8+: the gateway containers, by id.
    containers: BTreeMap<String, Container>,
    release: Release,
    /// v1.8+: streams cut by a start on a container that was streaming another room.
    replaced: u32,
    /// Rooms streaming.
    running: BTreeSet<String>,
    /// Rooms whose start is under way (their slot is held already).
    starting: BTreeSet<String>,
    faults: Vec<Fault>,
    counters: Counters,
    /// The live server the streams are pushed to.
    hls: hls::Hls,
}

/// A handle on a running simulator: set faults, read counters.
#[derive(Debug, Clone)]
pub struct SipMediaGwSim {
    api: Api,
    inner: Arc<Mutex<Inner>>,
}

impl SipMediaGwSim {
    /// One slot; `token`: the bearer token it requires (`None`: none, as the v1.8 launcher).
    pub fn new(api: Api, token: Option<&str>) -> Self {
        Self {
            api,
            inner: Arc::new(Mutex::new(Inner {
                token: token.map(str::to_owned),
                slots: 1,
                containers: BTreeMap::from([("gw0".to_owned(), Container::Idle)]),
                ..Inner::default()
            })),
        }
    }

    /// Holds `slots` streams at once.
    pub fn with_slots(self, slots: usize) -> Self {
        self.with(|i| i.slots = slots.max(1));
        self
    }

    /// v1.8+: the launcher's initialised gateway containers (`gw0` when never set).
    pub fn with_gw_ids(self, ids: &[&str]) -> Self {
        self.with(|i| {
            i.containers = ids
                .iter()
                .map(|id| ((*id).to_owned(), Container::Idle))
                .collect();
        });
        self
    }

    /// v1.8+: answers as this release does.
    pub fn with_release(self, release: Release) -> Self {
        self.with(|i| i.release = release);
        self
    }

    /// The published HLS playlist advances one segment per `segment` (2 s unless set).
    pub fn with_hls_segment(self, segment: Duration) -> Self {
        self.with(|i| i.hls.segment = segment.max(Duration::from_millis(10)));
        self
    }

    /// Makes the published HLS playlist advance, freeze, vanish or turn to garbage.
    pub fn set_hls(&self, mode: HlsMode) {
        self.with(|i| i.hls.mode = mode);
    }

    /// v1.8+: the state of a gateway container, if the launcher has it.
    pub fn container(&self, gw_id: &str) -> Option<Container> {
        self.with(|i| i.containers.get(gw_id).cloned())
    }

    /// v1.8+: streams cut because a start took a container that was streaming another room.
    pub fn replaced_streams(&self) -> u32 {
        self.with(|i| i.replaced)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_faults(&self, faults: &[Fault]) {
        self.with(|i| i.faults = faults.to_vec());
    }

    pub fn counters(&self) -> Counters {
        self.with(|i| i.counters.clone())
    }

    /// One room's counters.
    pub fn room(&self, room: &str) -> RoomCounters {
        self.with(|i| i.counters.rooms.get(room).cloned().unwrap_or_default())
    }

    /// A room streaming now, if any.
    pub fn running(&self) -> Option<String> {
        self.with(|i| {
            i.running.iter().next().cloned().or_else(|| {
                i.containers.values().find_map(|c| match c {
                    Container::Streaming(room) => Some(room.clone()),
                    _ => None,
                })
            })
        })
    }

    /// Whether `room` streams (on any container, for the v1.8+ launcher).
    pub fn is_running(&self, room: &str) -> bool {
        self.with(|i| {
            i.running.contains(room)
                || i.containers
                    .values()
                    .any(|c| *c == Container::Streaming(room.to_owned()))
        })
    }

    pub fn router(&self) -> Router {
        let routes = match self.api {
            Api::Legacy => Router::new()
                .route("/start", get(legacy::start))
                .route("/stop", get(legacy::stop))
                .route("/progress", get(legacy::progress))
                .route("/chat", get(legacy::toggle).post(legacy::chat)),
            Api::Gateway => Router::new()
                .route("/gateway/start", post(gateway::start))
                .route("/gateway/stop", post(gateway::stop))
                .route("/gateway/status", get(gateway::status))
                .route("/gateway/command", post(gateway::command)),
            Api::Proxy => Router::new()
                .route("/start", post(proxy::start))
                .route("/stop", post(proxy::stop))
                .route("/status", get(proxy::status))
                .route("/progress", get(proxy::status))
                .route("/command", post(proxy::command)),
        };
        routes
            .route("/_sim/faults", post(control::set_faults))
            .route("/_sim/counters", get(control::counters))
            .route("/_sim/hls", post(hls::set_mode))
            .route("/hls/{*path}", get(hls::serve))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    [(header::CONTENT_TYPE, "text/html")],
                    "not found",
                )
            })
            .with_state(self.clone())
    }

    fn fault_duration(&self, pick: impl Fn(&Fault) -> Option<Duration>) -> Option<Duration> {
        self.with(|i| i.faults.iter().find_map(&pick))
    }

    async fn delay(&self) {
        if let Some(latency) = self.fault_duration(|f| match f {
            Fault::Latency(d) => Some(*d),
            _ => None,
        }) {
            tokio::time::sleep(latency).await;
        }
    }

    fn has(&self, fault: Fault) -> bool {
        self.with(|i| i.faults.contains(&fault))
    }

    fn count(&self, room: &str, update: impl FnOnce(&mut Counters, &mut RoomCounters)) {
        self.with(|i| {
            let mut room_counters = i.counters.rooms.remove(room).unwrap_or_default();
            update(&mut i.counters, &mut room_counters);
            i.counters.rooms.insert(room.to_owned(), room_counters);
        });
    }

    /// Takes a slot for `room`, or says the launcher is full ("No free resources found").
    fn take_slot(&self, room: &str) -> bool {
        let busy = self.has(Fault::Busy);
        self.with(|i| {
            let full = i.running.len() + i.starting.len() >= i.slots;
            if busy || full {
                return false;
            }
            i.starting.insert(room.to_owned());
            true
        })
    }

    /// Finishes a start that took its slot: the room streams (or, with `launch-failed`, not).
    /// Runs to completion on its own task: the launcher's script does not stop when the client
    /// hangs up.
    async fn finish_start(&self, room: String, domain: String, rtmp: String) -> bool {
        let sim = self.clone();
        let latency = self.fault_duration(|f| match f {
            Fault::StartLatency(d) => Some(*d),
            _ => None,
        });
        let launch_fails = self.has(Fault::LaunchFailed);
        detached(async move {
            if let Some(latency) = latency {
                tokio::time::sleep(latency).await;
            }
            if launch_fails {
                tokio::time::sleep(Duration::from_millis(50)).await;
                sim.with(|i| i.starting.remove(&room));
                return false;
            }
            sim.with(|i| {
                i.starting.remove(&room);
                i.running.insert(room.clone());
            });
            sim.count(&room, |all, one| {
                all.successful_starts += 1;
                one.successful_starts += 1;
                all.started_with.push((room.clone(), domain, rtmp));
            });
            true
        })
        .await
        .unwrap_or(false)
    }

    /// Stops `room`: `Ok(true)` stopped, `Ok(false)` not running, `Err(())` the runtime failed.
    async fn stop_room(&self, room: String) -> Result<bool, ()> {
        let sim = self.clone();
        let latency = self.fault_duration(|f| match f {
            Fault::StopLatency(d) => Some(*d),
            _ => None,
        });
        let fails = self.has(Fault::StopError);
        self.count(&room, |all, one| {
            all.stops += 1;
            one.stops += 1;
        });
        detached(async move {
            if !sim.is_running(&room) {
                return Ok(false);
            }
            if let Some(latency) = latency {
                tokio::time::sleep(latency).await;
            }
            if fails {
                return Err(());
            }
            sim.with(|i| i.running.remove(&room));
            sim.count(&room, |_, one| one.successful_stops += 1);
            Ok(true)
        })
        .await
        .unwrap_or(Err(()))
    }

    /// A v1.8 start of `room` on container `gw_id` (`browsing`, `rtmp` as asked), run to the end
    /// even if the caller has gone: the start latency, the launch-failed fault, then the
    /// container streams (replacing, and counting, a stream of another room). Whether it started.
    async fn start_container(
        &self,
        gw_id: String,
        room: String,
        browsing: String,
        rtmp: String,
    ) -> bool {
        let latency = self.fault_duration(|f| match f {
            Fault::StartLatency(d) => Some(*d),
            _ => None,
        });
        let launch_fails = self.has(Fault::LaunchFailed);
        let sim = self.clone();
        detached(async move {
            if let Some(latency) = latency {
                tokio::time::sleep(latency).await;
            }
            if launch_fails {
                return false;
            }
            sim.with(|i| {
                let before = i
                    .containers
                    .insert(gw_id, Container::Streaming(room.clone()));
                if matches!(before, Some(Container::Streaming(other)) if other != room) {
                    i.replaced += 1;
                }
            });
            sim.count(&room, |all, one| {
                all.successful_starts += 1;
                one.successful_starts += 1;
                all.started_with.push((room.clone(), browsing, rtmp));
            });
            true
        })
        .await
        .unwrap_or(false)
    }

    /// A v1.8 command (`sendChat`, `sendKey`, …) to the container streaming `room`: recorded,
    /// and answered as the launcher's `CommandResponse` (the proxy passes it through).
    async fn run_command(&self, room: String, payload: &Value) -> Response {
        let command = payload["command"].as_str().unwrap_or_default();
        let param = payload["param1"].as_str().unwrap_or_default().to_owned();
        if command == "sendChat" {
            self.chat_delay().await;
        }
        self.with(|i| match command {
            "sendChat" => i.counters.chats.push((room, param)),
            _ => i.counters.toggles += 1,
        });
        json_response(
            StatusCode::OK,
            serde_json::json!({"status": "success", "error": null,
                "data": {"ack": true, "received": payload}}),
        )
    }

    async fn chat_delay(&self) {
        if let Some(latency) = self.fault_duration(|f| match f {
            Fault::ChatLatency(d) => Some(*d),
            _ => None,
        }) {
            tokio::time::sleep(latency).await;
        }
    }
}

/// Runs `work` on a task of its own and waits for it: dropping the wait (the client went away)
/// does not stop the work.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::spawn(work).await
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_their_text_form() {
        assert_eq!("busy".parse(), Ok(Fault::Busy));
        assert_eq!(
            "start-latency=35s".parse(),
            Ok(Fault::StartLatency(Duration::from_secs(35)))
        );
        assert_eq!(
            "chat-latency=20ms".parse(),
            Ok(Fault::ChatLatency(Duration::from_millis(20)))
        );
        assert_eq!(
            "latency=1.5s".parse(),
            Ok(Fault::Latency(Duration::from_millis(1500)))
        );
        assert!("start-latency".parse::<Fault>().is_err());
        assert!("start-latency=soon".parse::<Fault>().is_err());
        assert!("explode".parse::<Fault>().is_err());
    }
}
