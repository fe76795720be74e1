//! Reads a gateway's HLS playlist, as a student's player would, for the stream health watcher.
//!
//! The address obeys the gateway address policy (`gateway_allowed_networks`) like every gateway
//! URL: an IP literal is checked before the request, a host name's addresses when it is resolved,
//! and each redirect's target before it is followed (at most five). No credential is ever sent, so
//! following redirects is safe once their targets are checked. Bodies are read up to 1 MiB.

use std::sync::Arc;
use std::time::Duration;

use m3u8_rs::Playlist;
use webinar_domain::gateway::GatewayAddressPolicy;
use webinar_domain::webinar::health::{PlaylistFetch, PlaylistProgress};

use crate::sipmediagw::resolver::{refusal_within, PolicyResolver};

/// Largest playlist read; a live media playlist is a few kilobytes.
const MAX_PLAYLIST_BYTES: usize = 1 << 20;
const MAX_REDIRECTS: usize = 5;

#[derive(Clone, Debug)]
pub struct HlsProbe {
    http: reqwest::Client,
    addresses: Arc<GatewayAddressPolicy>,
}

impl HlsProbe {
    /// `timeout` bounds each request (connection included).
    pub fn new(timeout: Duration, addresses: GatewayAddressPolicy) -> Result<Self, reqwest::Error> {
        let addresses = Arc::new(addresses);
        let policy = addresses.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            match policy.check(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(format!("a redirect to an address that {refused}")),
            }
        });
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .timeout(timeout)
                .redirect(redirects)
                .dns_resolver(Arc::new(PolicyResolver::new(addresses.clone())))
                .no_proxy()
                .build()?,
            addresses,
        })
    }

    /// Fetches `url` and says what it is: a media playlist's progress (a master playlist's first
    /// variant is followed), missing, or not HLS.
    pub async fn fetch(&self, url: &str) -> PlaylistFetch {
        let (final_url, body) = match self.get(url).await {
            Ok(answer) => answer,
            Err(fetch) => return fetch,
        };
        match m3u8_rs::parse_playlist_res(&body) {
            Ok(Playlist::MediaPlaylist(media)) => PlaylistFetch::Media(progress(&media)),
            Ok(Playlist::MasterPlaylist(master)) => {
                let Some(variant) = master.variants.iter().find(|v| !v.is_i_frame) else {
                    return PlaylistFetch::NotHls("a master playlist without variants".into());
                };
                let Ok(variant_url) = final_url.join(&variant.uri) else {
                    return PlaylistFetch::NotHls("a variant URI that is not a URL".into());
                };
                let body = match self.get(variant_url.as_str()).await {
                    Ok((_, body)) => body,
                    Err(fetch) => return fetch,
                };
                match m3u8_rs::parse_media_playlist_res(&body) {
                    Ok(media) => PlaylistFetch::Media(progress(&media)),
                    Err(_) => PlaylistFetch::NotHls("the variant is not a media playlist".into()),
                }
            }
            Err(_) => PlaylistFetch::NotHls("the answer is not an HLS playlist".into()),
        }
    }

    async fn get(&self, url: &str) -> Result<(url::Url, Vec<u8>), PlaylistFetch> {
        // The detail is shown on the public live page: it never names the refused address.
        if self.addresses.check_str(url).is_err() {
            return Err(PlaylistFetch::Missing(
                "the playlist's address is refused by the gateway address policy".into(),
            ));
        }
        let response = crate::metrics::outside_call("hls", "playlist", self.http.get(url).send())
            .await
            .map_err(|e| PlaylistFetch::Missing(describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(PlaylistFetch::Missing(format!(
                "the playlist answered HTTP {}",
                status.as_u16()
            )));
        }
        let final_url = response.url().clone();
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| PlaylistFetch::Missing(describe(&e)))?
        {
            if body.len() + chunk.len() > MAX_PLAYLIST_BYTES {
                return Err(PlaylistFetch::NotHls(
                    "the answer is larger than any playlist (1 MiB)".into(),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((final_url, body))
    }
}

fn progress(media: &m3u8_rs::MediaPlaylist) -> PlaylistProgress {
    PlaylistProgress {
        media_sequence: media.media_sequence,
        last_segment: media.segments.last().map(|s| s.uri.clone()),
        segments: media.segments.len(),
        ended: media.end_list,
    }
}

/// A transport failure in a few words (never the URL's query, which could carry a key).
fn describe(error: &reqwest::Error) -> String {
    if refusal_within(error).is_some() {
        "the playlist's host resolves to an address the gateway address policy refuses".into()
    } else if error.is_timeout() {
        "the playlist did not answer in time".into()
    } else if error.is_redirect() {
        "the playlist redirects too often or to a refused address".into()
    } else {
        "the playlist's server cannot be reached".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_address_is_missing_and_the_public_detail_never_names_it() {
        let probe = HlsProbe::new(
            Duration::from_secs(1),
            GatewayAddressPolicy::new(Vec::new()),
        )
        .expect("a client");
        match probe.fetch("http://10.1.2.3/hls/a.m3u8").await {
            PlaylistFetch::Missing(detail) => {
                assert!(!detail.contains("10.1.2.3"), "{detail}");
                assert!(detail.contains("refused"), "{detail}");
            }
            other => panic!("expected MISSING, got {other:?}"),
        }
    }
}
