//! The stream health watcher: while a webinar's stream is starting or live, it reads the gateway's
//! HLS playlist every few seconds, as the audience's players do, and records what it sees when
//! that changes (`StreamHealthChanged`). A live stream that stays unwatchable is restarted, then
//! failed over to a free gateway (the domain's `RecoverUnwatchableStream` decides which).
//!
//! It runs on the reactor runtime: each stream start (or restart) is a piece of work in a lane of
//! its own that answers "watch again at …" until the stream is no longer starting or live, so
//! webinars are watched concurrently, a slow playlist holds up only its own webinar, and the watch
//! survives a restart or a change of leader. A newer start of the same webinar supersedes the
//! older watch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use webinar_domain::webinar::health::{HealthRules, HealthWatch, PlaylistFetch};
use webinar_domain::webinar::{StreamState, Webinar, WebinarCommand, WebinarStatus};
use webinar_domain::{GatewayId, WebinarId};

use super::Outside;
use crate::consumer::{Delivery, Reaction, Reactor, ReactorError};
use crate::event_log::StoredEvent;
use crate::event_store::CommandMetadata;
use crate::hls::HlsProbe;

const COMPONENT: &str = "stream-health-watcher";

/// How the watcher works.
#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    /// Between two reads of a playlist.
    pub interval: Duration,
    /// Of one playlist read.
    pub timeout: Duration,
    pub rules: HealthRules,
}

/// One webinar's watch: the start it belongs to (its log position) and what it has seen.
struct Watching {
    position: i64,
    /// When it last checked: a watch left idle longer (another instance led meanwhile) starts
    /// again from nothing rather than from old evidence.
    checked: Instant,
    watch: HealthWatch,
    /// The gateway's HLS address, and when it was read (a gateway is not loaded at every check).
    hls: Option<(GatewayId, Option<String>, Instant)>,
}

/// How long a gateway's HLS address is used before it is read again (an administrator may change
/// it; a fail-over changes the gateway, which is read at once).
const HLS_ADDRESS_KEPT: Duration = Duration::from_secs(30);

pub struct StreamHealthWatcher {
    outside: Outside,
    probe: HlsProbe,
    settings: HealthSettings,
    watches: Mutex<HashMap<WebinarId, Watching>>,
}

impl StreamHealthWatcher {
    pub fn new(outside: Outside, probe: HlsProbe, settings: HealthSettings) -> Self {
        Self {
            outside,
            probe,
            settings,
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// The next check, one interval after this one began (a slow check does not stretch it).
    fn again(&self, began: chrono::DateTime<Utc>) -> Reaction {
        let pause = chrono::Duration::from_std(self.settings.interval)
            .unwrap_or(chrono::Duration::seconds(4));
        Reaction::WatchAgainAt(began + pause)
    }

    fn still_watching(&self, id: WebinarId, position: i64) -> bool {
        let watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        watches.get(&id).is_some_and(|w| w.position == position)
    }

    /// Whether the webinar's site has an enabled gateway other than `current` (free ones first in
    /// the directory; the fail-over finds out whether it takes the slot).
    async fn spare_gateway(
        &self,
        webinar: &Webinar,
        id: WebinarId,
        current: GatewayId,
    ) -> Result<bool, ReactorError> {
        let Some(slot) = webinar.slot else {
            return Ok(false);
        };
        let candidates = self
            .outside
            .gateways
            .candidates(&slot, id, &webinar.site)
            .await?;
        Ok(candidates.iter().any(|g| *g != current))
    }

    fn forget(&self, id: WebinarId, position: i64) {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        if watches.get(&id).is_some_and(|w| w.position == position) {
            watches.remove(&id);
        }
    }

    async fn watch(&self, event: &StoredEvent, id: WebinarId) -> Result<Reaction, ReactorError> {
        let began = Utc::now();
        let position = event.global_position;
        let webinar = self.outside.webinars.load(id).await?;
        let watched = webinar.status == WebinarStatus::Live
            && matches!(webinar.stream, StreamState::Starting | StreamState::Live);
        let (true, Some(gateway)) = (watched, webinar.gateway_id) else {
            self.forget(id, position);
            return Ok(Reaction::Done);
        };
        {
            let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
            match watches.get(&id) {
                // A newer start of this webinar is watched: this one is over.
                Some(current) if current.position > position => return Ok(Reaction::Done),
                Some(current)
                    if current.position == position
                        && current.checked.elapsed() < self.settings.interval * 3 => {}
                _ => {
                    watches.insert(
                        id,
                        Watching {
                            position,
                            checked: Instant::now(),
                            watch: HealthWatch::new(self.settings.rules, webinar.stream_health),
                            hls: None,
                        },
                    );
                }
            }
        }
        let kept = {
            let watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
            watches
                .get(&id)
                .and_then(|w| w.hls.clone())
                .filter(|(on, _, read)| *on == gateway && read.elapsed() < HLS_ADDRESS_KEPT)
        };
        let hls_url = match kept {
            Some((_, url, _)) => url,
            None => {
                let url = self
                    .outside
                    .gateways
                    .load(gateway)
                    .await?
                    .hls_url
                    .map(|url| url.as_str().to_owned());
                let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(current) = watches.get_mut(&id).filter(|w| w.position == position) {
                    current.hls = Some((gateway, url.clone(), Instant::now()));
                }
                url
            }
        };
        let fetch = match hls_url {
            // One deadline for the whole read (a master playlist and its variant included).
            Some(url) => tokio::time::timeout(self.settings.timeout, self.probe.fetch(&url))
                .await
                .unwrap_or_else(|_| {
                    PlaylistFetch::Missing("the playlist did not answer in time".into())
                }),
            None => PlaylistFetch::Missing("the gateway has no HLS address".into()),
        };
        let now = Instant::now();
        let (verdict, act) = {
            let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
            let Some(current) = watches.get_mut(&id).filter(|w| w.position == position) else {
                return Ok(Reaction::Done);
            };
            current.checked = now;
            current
                .watch
                .stream_live(webinar.stream == StreamState::Live, now);
            let verdict = current.watch.observe(fetch, now);
            let act = current.watch.should_act(now);
            if act {
                current.watch.acted(now);
            }
            (verdict, act)
        };
        let meta = CommandMetadata::caused_by(COMPONENT, event);
        // A newer start's watch took over while this one fetched: what this one saw is of the
        // stream before (the aggregate would take it for the new one's).
        if !self.still_watching(id, position) {
            return Ok(Reaction::Done);
        }
        if let Some(verdict) = verdict.filter(|v| v.health != webinar.stream_health) {
            tracing::info!(webinar = %id, health = %verdict.health, detail = verdict.detail, "stream health changed");
            self.outside
                .record(
                    &meta,
                    id,
                    WebinarCommand::RecordStreamHealth {
                        health: verdict.health,
                        detail: Some(verdict.detail),
                    },
                )
                .await?;
        }
        if act {
            let reason = format!(
                "the audience could not watch for {} s",
                self.settings
                    .rules
                    .act_after
                    .unwrap_or_default()
                    .as_secs_f64()
                    .round()
            );
            self.outside
                .record(
                    &meta,
                    id,
                    WebinarCommand::RecoverUnwatchableStream {
                        reason: reason.clone(),
                        spare_gateway: self.spare_gateway(&webinar, id, gateway).await?,
                    },
                )
                .await?;
            // A restart is the stream reactor's reaction to `StreamRestartRequested`, a
            // fail-over its reaction to the final `StreamFailed`.
            tracing::warn!(webinar = %id, %gateway, reason, "the audience cannot watch: recovering");
        }
        Ok(self.again(began))
    }
}

#[async_trait]
impl Reactor for StreamHealthWatcher {
    fn name(&self) -> &'static str {
        "stream_health_watcher"
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Webinar"])
    }

    fn lane(&self, event: &StoredEvent) -> Option<String> {
        match event.event_type.as_str() {
            // Each start is watched in its own lane: a watch never ends while its stream runs, so
            // a newer one must not queue behind it.
            "StreamStartRequested" | "StreamRestartRequested" => Some(format!(
                "{}:health:{}",
                event.aggregate_id, event.global_position
            )),
            _ => None,
        }
    }

    #[tracing::instrument(name = "stream_health_watcher", skip_all, fields(webinar = %event.aggregate_id))]
    async fn react(
        &self,
        event: &StoredEvent,
        _delivery: Delivery,
    ) -> Result<Reaction, ReactorError> {
        let Some(id) = event.aggregate::<WebinarId>() else {
            return Ok(Reaction::GiveUp("the webinar id is not a UUID".into()));
        };
        self.watch(event, id).await
    }
}
