//! How a gateway's SIPMediaGW launcher is addressed beyond its URL (PROTOCOLS.md, A.4).
//!
//! The v1.8+ launcher (`GATEWAY` API) starts only a gateway container that exists: one initialised
//! beforehand by `SIPMediaGW.sh -i`, whose compose project name is its `gw_id` (24 random
//! characters, listed by `docker compose ls`). Any other `gw_id` is refused with a 404. So a
//! gateway of that API names the ids its launcher has, and a stream runs on one of them; the id is
//! recorded in `StreamStarted` and used for every later call about that stream. Starting an id
//! that streams already does not fail: the launcher recreates the container, cutting the stream
//! it was running. [`choose_gw_id`] is therefore careful to pick an id no other stream holds.
//!
//! `browsing_name` picks the launcher's browsing script (`browsing/<name>.py`, a key of its
//! `webrtc_domains`); for a BigBlueButton meeting it is `bigbluebutton`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::values::InvalidValue;

/// One gateway container of a v1.8+ launcher: a docker compose project name (lower-case letters,
/// digits, `-` and `_`, starting with a letter or digit, as compose requires).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GwId(String);

impl GwId {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let id = raw.trim();
        let first_ok = id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !first_ok || !rest_ok || id.len() > Self::MAX_CHARS {
            return Err(InvalidValue(format!(
                "a gateway id is a docker compose project name: 1 to {} lower-case letters, \
                 digits, '-' or '_', starting with a letter or digit",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GwId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a list of gateway ids: each valid, none repeated, at most 32.
pub fn parse_gw_ids<S: AsRef<str>>(raw: &[S]) -> Result<Vec<GwId>, InvalidValue> {
    const MAX_IDS: usize = 32;
    if raw.len() > MAX_IDS {
        return Err(InvalidValue(format!("at most {MAX_IDS} gateway ids")));
    }
    let mut ids: Vec<GwId> = Vec::with_capacity(raw.len());
    for one in raw {
        let id = GwId::parse(one.as_ref())?;
        if ids.contains(&id) {
            return Err(InvalidValue(format!("gateway id {id} is listed twice")));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Which browsing script of the launcher joins the meeting (`-b` of `SIPMediaGW.sh`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BrowsingName(String);

impl BrowsingName {
    pub const DEFAULT: &'static str = "bigbluebutton";

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let name = raw.trim();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(InvalidValue(
                "a browsing name is 1 to 64 letters, digits, '-' or '_' (like bigbluebutton)"
                    .into(),
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for BrowsingName {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

/// The id a new stream should run on: the first of `configured` that no other stream holds
/// (`held_by_others`). `None` when every id is taken: starting one of them would cut a stream.
pub fn choose_gw_id<'a>(configured: &'a [GwId], held_by_others: &[String]) -> Option<&'a GwId> {
    configured
        .iter()
        .find(|id| !held_by_others.iter().any(|held| held == id.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_ids_are_compose_project_names() {
        assert!(GwId::parse("3pi8m7isj175s0mtrnd7dyj6").is_ok());
        assert!(GwId::parse("gw0").is_ok());
        assert_eq!(GwId::parse(" gw_1-a ").map(|i| i.0), Ok("gw_1-a".into()));
        for bad in ["", "Gw0", "-gw", "gw/0", "gw 0", "gw0;rm", &"a".repeat(65)] {
            assert!(GwId::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_gw_ids(&["a", "b"]).is_ok());
        assert!(parse_gw_ids(&["a", "a"]).is_err());
    }

    #[test]
    fn browsing_names_are_script_keys() {
        assert_eq!(BrowsingName::default().as_str(), "bigbluebutton");
        assert!(BrowsingName::parse("bigbluebutton").is_ok());
        for bad in ["", "bbb.example.org", "../x", "a b"] {
            assert!(BrowsingName::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn a_new_stream_takes_the_first_id_nobody_holds() {
        let ids = parse_gw_ids(&["a", "b"]).expect("valid");
        assert_eq!(choose_gw_id(&ids, &[]).map(GwId::as_str), Some("a"));
        assert_eq!(
            choose_gw_id(&ids, &["a".into()]).map(GwId::as_str),
            Some("b")
        );
        assert_eq!(choose_gw_id(&ids, &["a".into(), "b".into()]), None);
        assert_eq!(choose_gw_id(&[], &[]), None);
    }
}
