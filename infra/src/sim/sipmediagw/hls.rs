//! The live server behind the simulated gateway: while a room streams, `GET /hls/<name>.m3u8`
//! answers an HLS media playlist that advances one segment every segment duration (2 s unless set),
//! as nginx-rtmp's `hls` module does for the RTMP stream SIPMediaGW pushes. Register a simulated
//! gateway with `hlsUrl = <simulator>/hls/<anything>.m3u8` and its stream looks healthy.
//!
//! For tests, `POST /_sim/hls` with `{"mode": "advance" | "freeze" | "drop" | "corrupt"}` makes it
//! keep advancing, stop advancing (the same playlist again and again), vanish (404) or answer
//! something that is not a playlist.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{json_response, SipMediaGwSim};

/// What the playlist does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HlsMode {
    #[default]
    Advance,
    Freeze,
    Drop,
    Corrupt,
}

impl std::str::FromStr for HlsMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "advance" => HlsMode::Advance,
            "freeze" => HlsMode::Freeze,
            "drop" => HlsMode::Drop,
            "corrupt" => HlsMode::Corrupt,
            other => {
                return Err(format!(
                    "unknown HLS mode {other:?}: advance, freeze, drop or corrupt"
                ))
            }
        })
    }
}

/// The live server's state.
#[derive(Debug)]
pub(super) struct Hls {
    pub(super) mode: HlsMode,
    pub(super) segment: Duration,
    /// The room the playlist is of, and when its stream began.
    stream: Option<(String, Instant)>,
    /// The media sequence the playlist froze at.
    frozen: Option<u64>,
}

impl Default for Hls {
    fn default() -> Self {
        Self {
            mode: HlsMode::Advance,
            segment: Duration::from_secs(2),
            stream: None,
            frozen: None,
        }
    }
}

/// Segments listed in each playlist (nginx-rtmp's default `hls_playlist_length` is 30 s; a short
/// window is enough here).
const WINDOW: u64 = 3;

impl Hls {
    /// The playlist of `room` at `now`, following the mode.
    fn playlist(&mut self, room: &str, now: Instant) -> String {
        let began = match &self.stream {
            Some((streaming, began)) if streaming == room => *began,
            _ => {
                self.stream = Some((room.to_owned(), now));
                self.frozen = None;
                now
            }
        };
        let advanced = (now.duration_since(began).as_secs_f64()
            / self.segment.as_secs_f64().max(0.001)) as u64;
        let sequence = match self.mode {
            HlsMode::Freeze => *self.frozen.get_or_insert(advanced),
            _ => {
                self.frozen = None;
                advanced
            }
        };
        let seconds = self.segment.as_secs_f64();
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{sequence}\n",
            seconds.ceil().max(1.0) as u64
        );
        // Segment names never carry the room: its key opens the join page.
        for n in sequence..sequence + WINDOW {
            text.push_str(&format!("#EXTINF:{seconds:.3},\nsegment-{n}.ts\n"));
        }
        text
    }
}

pub(super) async fn serve(State(sim): State<SipMediaGwSim>, Path(path): Path<String>) -> Response {
    let Some(room) = sim.running() else {
        sim.with(|i| i.hls.stream = None);
        return (StatusCode::NOT_FOUND, "no stream").into_response();
    };
    if !path.ends_with(".m3u8") {
        // A segment: one MPEG-TS null packet (the simulator has no picture to send).
        let mut packet = vec![0xFFu8; 188];
        packet[..4].copy_from_slice(&[0x47, 0x1F, 0xFF, 0x10]);
        return ([(header::CONTENT_TYPE, "video/mp2t")], packet).into_response();
    }
    let (mode, playlist) = sim.with(|i| {
        let playlist = i.hls.playlist(&room, Instant::now());
        (i.hls.mode, playlist)
    });
    match mode {
        HlsMode::Drop => (StatusCode::NOT_FOUND, "no stream").into_response(),
        HlsMode::Corrupt => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response(),
        HlsMode::Advance | HlsMode::Freeze => (
            [
                (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            playlist,
        )
            .into_response(),
    }
}

pub(super) async fn set_mode(State(sim): State<SipMediaGwSim>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let parsed = request
        .get("mode")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            "expected {\"mode\": \"advance\" | \"freeze\" | \"drop\" | \"corrupt\"}".to_owned()
        })
        .and_then(str::parse::<HlsMode>);
    match parsed {
        Ok(mode) => {
            sim.set_hls(mode);
            json_response(StatusCode::OK, json!({"mode": request["mode"]}))
        }
        Err(error) => json_response(StatusCode::BAD_REQUEST, json!({"error": error})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(playlist: &str) -> u64 {
        m3u8_rs::parse_media_playlist_res(playlist.as_bytes())
            .map(|p| p.media_sequence)
            .unwrap_or(u64::MAX)
    }

    #[test]
    fn the_playlist_advances_freezes_and_never_names_the_room() {
        let mut hls = Hls {
            segment: Duration::from_secs(1),
            ..Hls::default()
        };
        let t = Instant::now();
        let first = hls.playlist("secretroomkey", t);
        assert!(!first.contains("secretroomkey"), "{first}");
        assert_eq!(sequence(&first), 0);
        assert_eq!(
            sequence(&hls.playlist("secretroomkey", t + Duration::from_secs(3))),
            3
        );
        hls.mode = HlsMode::Freeze;
        let frozen = hls.playlist("secretroomkey", t + Duration::from_secs(5));
        assert_eq!(
            frozen,
            hls.playlist("secretroomkey", t + Duration::from_secs(9))
        );
        hls.mode = HlsMode::Advance;
        assert_eq!(
            sequence(&hls.playlist("secretroomkey", t + Duration::from_secs(9))),
            9
        );
        // Another room's stream starts its own playlist.
        assert_eq!(
            sequence(&hls.playlist("otherroom", t + Duration::from_secs(10))),
            0
        );
    }
}
