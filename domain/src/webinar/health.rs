//! Stream health as the audience sees it: what the gateway's HLS playlist says, judged over time.
//!
//! SIPMediaGW answers "ok" even when its browser never joined the meeting, and its status call only
//! knows whether a container runs. The playlist the students play is the honest signal: a live
//! stream's media sequence (or its segment list) advances every target duration. The rules here
//! are pure; the watcher (infra) fetches, parses and passes the time in.

use std::time::{Duration, Instant};

crate::named_enum! {
    /// How the stream looks from the audience's side.
    #[derive(Default)]
    pub enum StreamHealth {
        /// Not watched (the stream is not starting or live), or not judged yet.
        #[default]
        Unknown = "UNKNOWN",
        /// The playlist advances.
        Healthy = "HEALTHY",
        /// The playlist is there but stopped advancing.
        Stalled = "STALLED",
        /// The playlist cannot be fetched (404, unreachable, timeout).
        Missing = "MISSING",
        /// Something answers, but not an HLS playlist.
        NotHls = "NOT_HLS",
    }
}

impl StreamHealth {
    /// Whether the audience cannot watch.
    pub fn is_bad(self) -> bool {
        matches!(
            self,
            StreamHealth::Stalled | StreamHealth::Missing | StreamHealth::NotHls
        )
    }
}

/// What one fetch of the playlist came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaylistFetch {
    /// A media playlist (of the first variant, for a master playlist).
    Media(PlaylistProgress),
    /// Not there: a 404 or other error status, a refused address, a timeout.
    Missing(String),
    /// An answer that is not an HLS playlist.
    NotHls(String),
}

/// What tells whether a media playlist advances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaylistProgress {
    pub media_sequence: u64,
    /// The URI of its newest segment, if it has any.
    pub last_segment: Option<String>,
    pub segments: usize,
    /// `#EXT-X-ENDLIST`: the stream is over, nothing more will come.
    pub ended: bool,
}

/// The watcher's tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthRules {
    /// A playlist that has not advanced for this long is `STALLED`.
    pub stall_after: Duration,
    /// A live stream that stays unwatchable this long is restarted, then failed over (`None`:
    /// only report it).
    pub act_after: Option<Duration>,
}

impl Default for HealthRules {
    fn default() -> Self {
        Self {
            stall_after: Duration::from_secs(12),
            act_after: Some(Duration::from_secs(30)),
        }
    }
}

/// A judgement: the health, and a short human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub health: StreamHealth,
    pub detail: String,
}

/// One watch of one stream run: what was last seen, and since when.
#[derive(Debug, Clone)]
pub struct HealthWatch {
    rules: HealthRules,
    /// The last progress seen, and when it last changed.
    progress: Option<(PlaylistProgress, Instant)>,
    /// The last verdict, and since when the stream has been unwatchable.
    health: StreamHealth,
    bad_since: Option<Instant>,
    /// When the stream was first seen live during this watch.
    live_since: Option<Instant>,
    /// Failed fetches in a row: one alone (a lost packet, a live server's hiccup) says nothing.
    failures: u32,
}

/// Failed fetches in a row before a playlist is `MISSING` or `NOT_HLS`.
const FAILURES_TO_JUDGE: u32 = 2;

impl HealthWatch {
    /// A watch that starts from what was last recorded (after a restart of the watcher, the
    /// stall clock starts again: nothing is concluded from a single sight).
    pub fn new(rules: HealthRules, recorded: StreamHealth) -> Self {
        Self {
            rules,
            progress: None,
            health: recorded,
            bad_since: None,
            live_since: None,
            failures: 0,
        }
    }

    /// Judges one fetch made at `now`. `None`: too early to say anything new (a first sight of a
    /// playlist, or one that has not advanced for less than the stall threshold).
    pub fn observe(&mut self, fetch: PlaylistFetch, now: Instant) -> Option<Verdict> {
        let failed = |health, detail| Verdict { health, detail };
        let verdict = match fetch {
            PlaylistFetch::Missing(detail) => self.failed(failed(StreamHealth::Missing, detail)),
            PlaylistFetch::NotHls(detail) => self.failed(failed(StreamHealth::NotHls, detail)),
            PlaylistFetch::Media(seen) => {
                self.failures = 0;
                self.progress_of(seen, now)
            }
        };
        // While a stream starts, its playlist does not exist yet (the gateway's browser is
        // joining, then pushing RTMP): missing is expected then, and says nothing.
        let starting = self.live_since.is_none();
        let verdict = verdict.filter(|v| !(starting && v.health == StreamHealth::Missing));
        if let Some(verdict) = &verdict {
            if verdict.health.is_bad() {
                self.bad_since.get_or_insert(now);
            } else {
                self.bad_since = None;
            }
            self.health = verdict.health;
        }
        verdict
    }

    /// A failed fetch: judged once it is not alone; then the playlist must be seen anew.
    fn failed(&mut self, verdict: Verdict) -> Option<Verdict> {
        self.failures += 1;
        if self.failures < FAILURES_TO_JUDGE {
            return None;
        }
        self.progress = None;
        Some(verdict)
    }

    fn progress_of(&mut self, seen: PlaylistProgress, now: Instant) -> Option<Verdict> {
        let describe = |p: &PlaylistProgress| {
            format!(
                "media sequence {}, {} segments",
                p.media_sequence, p.segments
            )
        };
        match self.progress.take() {
            Some((last, since)) if last == seen => {
                let still = now.saturating_duration_since(since);
                let verdict = if seen.ended {
                    Some(Verdict {
                        health: StreamHealth::Stalled,
                        detail: "the playlist ended (EXT-X-ENDLIST)".into(),
                    })
                } else if still >= self.rules.stall_after {
                    Some(Verdict {
                        health: StreamHealth::Stalled,
                        detail: format!(
                            "the playlist has not advanced for {} s ({})",
                            still.as_secs(),
                            describe(&seen)
                        ),
                    })
                } else {
                    None
                };
                self.progress = Some((last, since));
                verdict
            }
            Some(_) => {
                let verdict = Verdict {
                    health: StreamHealth::Healthy,
                    detail: describe(&seen),
                };
                self.progress = Some((seen, now));
                Some(verdict)
            }
            None => {
                // A first sight proves nothing yet: wait for it to move (or not).
                self.progress = Some((seen, now));
                None
            }
        }
    }

    /// Tells the watch whether the stream is live now (the clock to act starts at `LIVE`; before,
    /// a missing playlist is not reported).
    pub fn stream_live(&mut self, live: bool, now: Instant) {
        if live {
            self.live_since.get_or_insert(now);
        } else {
            self.live_since = None;
        }
    }

    /// Whether a live stream has been unwatchable long enough to act on.
    pub fn should_act(&self, now: Instant) -> bool {
        let (Some(act_after), Some(bad_since), Some(live_since)) =
            (self.rules.act_after, self.bad_since, self.live_since)
        else {
            return false;
        };
        self.health.is_bad()
            && now.saturating_duration_since(bad_since.max(live_since)) >= act_after
    }

    /// After acting, the clock starts again.
    pub fn acted(&mut self, now: Instant) {
        self.bad_since = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    fn media(seq: u64) -> PlaylistFetch {
        PlaylistFetch::Media(PlaylistProgress {
            media_sequence: seq,
            last_segment: Some(format!("seg-{}.ts", seq + 2)),
            segments: 3,
            ended: false,
        })
    }

    fn rules() -> HealthRules {
        HealthRules {
            stall_after: Duration::from_secs(10),
            act_after: Some(Duration::from_secs(30)),
        }
    }

    #[test]
    fn advancing_is_healthy_and_a_first_sight_says_nothing() {
        let t = Instant::now();
        let mut watch = HealthWatch::new(rules(), StreamHealth::Unknown);
        assert_eq!(watch.observe(media(1), t), None);
        let verdict = watch.observe(media(2), at(t, 4)).expect("a verdict");
        assert_eq!(verdict.health, StreamHealth::Healthy);
    }

    #[test]
    fn a_frozen_playlist_stalls_after_the_threshold_and_recovers_when_it_moves() {
        let t = Instant::now();
        let mut watch = HealthWatch::new(rules(), StreamHealth::Unknown);
        watch.observe(media(1), t);
        watch.observe(media(2), at(t, 4));
        assert_eq!(watch.observe(media(2), at(t, 8)), None);
        assert_eq!(watch.observe(media(2), at(t, 13)), None);
        let stalled = watch.observe(media(2), at(t, 14)).expect("stalled");
        assert_eq!(stalled.health, StreamHealth::Stalled);
        assert!(stalled.detail.contains("10 s"), "{}", stalled.detail);
        let back = watch.observe(media(3), at(t, 18)).expect("moves");
        assert_eq!(back.health, StreamHealth::Healthy);
    }

    #[test]
    fn missing_and_garbage_are_judged_on_the_second_failure_in_a_row() {
        let t = Instant::now();
        let mut watch = HealthWatch::new(rules(), StreamHealth::Healthy);
        let missing = || PlaylistFetch::Missing("404".into());
        // Starting: a missing playlist is expected.
        assert_eq!(watch.observe(missing(), t), None);
        assert_eq!(watch.observe(missing(), t), None);
        watch.stream_live(true, t);
        // A blip alone says nothing, and the playlist's progress is kept across it.
        watch.observe(media(1), t);
        assert_eq!(watch.observe(missing(), t), None);
        assert_eq!(
            watch.observe(media(2), t).map(|v| v.health),
            Some(StreamHealth::Healthy)
        );
        assert_eq!(watch.observe(missing(), t), None);
        let missing = watch.observe(missing(), t);
        assert_eq!(missing.map(|v| v.health), Some(StreamHealth::Missing));
        let garbage = watch.observe(PlaylistFetch::NotHls("no #EXTM3U".into()), at(t, 1));
        assert_eq!(garbage.map(|v| v.health), Some(StreamHealth::NotHls));
        // Back to a playlist: a first sight again, then progress.
        assert_eq!(watch.observe(media(5), at(t, 2)), None);
        assert_eq!(
            watch.observe(media(6), at(t, 3)).map(|v| v.health),
            Some(StreamHealth::Healthy)
        );
    }

    #[test]
    fn an_ended_playlist_is_stalled() {
        let t = Instant::now();
        let mut watch = HealthWatch::new(rules(), StreamHealth::Healthy);
        let ended = PlaylistFetch::Media(PlaylistProgress {
            media_sequence: 9,
            last_segment: None,
            segments: 0,
            ended: true,
        });
        watch.observe(ended.clone(), t);
        let verdict = watch.observe(ended, at(t, 1)).expect("stalled");
        assert_eq!(verdict.health, StreamHealth::Stalled);
    }

    #[test]
    fn acting_waits_for_live_and_the_threshold_and_starts_again_after() {
        let t = Instant::now();
        let mut watch = HealthWatch::new(rules(), StreamHealth::Unknown);
        // A playlist left over from an earlier run, frozen.
        watch.observe(media(1), t);
        let stalled = watch.observe(media(1), at(t, 10));
        assert_eq!(stalled.map(|v| v.health), Some(StreamHealth::Stalled));
        // Not live yet (starting): never act.
        assert!(!watch.should_act(at(t, 100)));
        watch.stream_live(true, at(t, 20));
        assert!(!watch.should_act(at(t, 49)));
        assert!(watch.should_act(at(t, 50)));
        watch.acted(at(t, 50));
        assert!(!watch.should_act(at(t, 60)));
        assert!(watch.should_act(at(t, 80)));
        // Watchable again: nothing to act on.
        watch.observe(media(1), at(t, 81));
        watch.observe(media(2), at(t, 82));
        assert!(!watch.should_act(at(t, 200)));
    }

    #[test]
    fn acting_can_be_switched_off() {
        let t = Instant::now();
        let mut watch = HealthWatch::new(
            HealthRules {
                act_after: None,
                ..rules()
            },
            StreamHealth::Unknown,
        );
        watch.stream_live(true, t);
        watch.observe(PlaylistFetch::Missing("404".into()), t);
        watch.observe(PlaylistFetch::Missing("404".into()), t);
        assert!(!watch.should_act(at(t, 1000)));
    }
}
