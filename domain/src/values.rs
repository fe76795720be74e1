//! Value objects: each can only hold a valid value, so rules are checked once, where input enters.
//!
//! Events store the plain strings these wrap (`#[serde(transparent)]`), and deserialising does not
//! re-validate: a rule tightened tomorrow must not make yesterday's history unreadable.

use std::fmt;

use serde::{Deserialize, Serialize};
use url::Url;

/// Why a value was refused. The API layer adds the name of the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl InvalidValue {
    fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// A short human label (a gateway or broadcaster name): trimmed, 1..=`max` characters, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err(InvalidValue::new("must not be empty"));
        }
        if chars > Self::MAX_CHARS {
            return Err(InvalidValue::new(format!(
                "must be at most {} characters (got {chars})",
                Self::MAX_CHARS
            )));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(InvalidValue::new("must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// URLs longer than this are refused: nobody types one, and they bloat every event.
const MAX_URL_LEN: usize = 2048;

fn parse_url(raw: &str, schemes: &[&str]) -> Result<Url, InvalidValue> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(InvalidValue::new("must not be empty"));
    }
    if trimmed.len() > MAX_URL_LEN {
        return Err(InvalidValue::new(format!(
            "must be at most {MAX_URL_LEN} bytes"
        )));
    }
    let url =
        Url::parse(trimmed).map_err(|e| InvalidValue::new(format!("not a valid URL ({e})")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(InvalidValue::new(format!(
            "must be a {} URL",
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(InvalidValue::new("must name a host"));
    }
    // Credentials in a URL end up in logs and events; tokens have their own secret field.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InvalidValue::new("must not contain credentials"));
    }
    Ok(url)
}

/// Where SIPMediaGW pushes the stream: an `rtmp://` or `rtmps://` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RtmpUrl(String);

impl RtmpUrl {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        parse_url(raw, &["rtmp", "rtmps"]).map(|_| Self(raw.trim().to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An `http://` or `https://` URL with a host (the HLS stream, the SIPMediaGW API), kept without a
/// trailing slash so that two spellings of one server compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        parse_url(raw, &["http", "https"])?;
        Ok(Self(raw.trim().trim_end_matches('/').to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names a secret without revealing it: events carry this, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenFingerprint(String);

impl TokenFingerprint {
    pub fn from_hex(hex: String) -> Self {
        Self(hex)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A webinar's title: trimmed, 1..=250 characters (Pod's `Meeting.name`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 250;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err(InvalidValue::new("must not be empty or blank"));
        }
        if chars > Self::MAX_CHARS {
            return Err(InvalidValue::new(format!(
                "must be at most {} characters (got {chars})",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A webinar's description: free text up to 10,000 characters; blank means none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 10_000;

    /// `None` for a blank description.
    pub fn parse(raw: &str) -> Result<Option<Self>, InvalidValue> {
        let trimmed = raw.trim();
        // Count at most one past the limit: a 10 MB string is refused without walking all of it.
        let chars = trimmed.chars().take(Self::MAX_CHARS + 1).count();
        if chars > Self::MAX_CHARS {
            return Err(InvalidValue::new(format!(
                "must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        Ok((chars > 0).then(|| Self(trimmed.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person named in a webinar (owner, presenter): the identity provider's id and a display name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Person {
    pub id: String,
    pub name: String,
}

impl Person {
    pub fn parse(id: &str, name: &str) -> Result<Self, InvalidValue> {
        let id = id.trim();
        if id.is_empty() || id.chars().count() > 200 || id.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                "a person's id must be 1 to 200 visible characters",
            ));
        }
        let name = Label::parse(name)?;
        Ok(Self {
            id: id.to_owned(),
            name: name.as_str().to_owned(),
        })
    }
}

/// Access groups (the identity provider's group names), de-duplicated, at most 50.
pub fn parse_groups(raw: &[String]) -> Result<Vec<String>, InvalidValue> {
    let mut groups: Vec<String> = Vec::new();
    for group in raw {
        let label =
            Label::parse(group).map_err(|e| InvalidValue(format!("group {group:?}: {e}")))?;
        if !groups.iter().any(|g| g == label.as_str()) {
            groups.push(label.as_str().to_owned());
        }
    }
    if groups.len() > 50 {
        return Err(InvalidValue::new("at most 50 groups"));
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_url_takes_rtmp_and_rtmps_only() {
        assert!(RtmpUrl::parse("rtmp://live.univ.fr/live/key").is_ok());
        assert!(RtmpUrl::parse(" rtmps://live.univ.fr:443/live/key ").is_ok());
        for bad in [
            "http://live.univ.fr/live",
            "live.univ.fr/live",
            "",
            "rtmp://",
            "rtmp://u:p@h/x",
        ] {
            assert!(RtmpUrl::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn http_url_takes_http_and_https_and_drops_the_trailing_slash() {
        assert_eq!(
            HttpUrl::parse("https://gw.univ.fr/").map(|u| u.as_str().to_owned()),
            Ok("https://gw.univ.fr".to_owned())
        );
        for bad in [
            "ftp://gw.univ.fr",
            "rtmp://gw.univ.fr",
            "gw.univ.fr",
            "https://",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn title_is_trimmed_and_one_to_250_characters() {
        assert_eq!(
            Title::parse("  Amphi  ").map(|t| t.as_str().to_owned()),
            Ok("Amphi".into())
        );
        assert!(Title::parse("").is_err());
        assert!(Title::parse(" \t ").is_err());
        assert!(Title::parse(&"t".repeat(250)).is_ok());
        assert!(Title::parse(&"t".repeat(251)).is_err());
    }

    #[test]
    fn description_is_bounded_and_blank_means_none() {
        assert_eq!(Description::parse("  "), Ok(None));
        assert!(Description::parse(&"d".repeat(10_000)).is_ok());
        assert!(Description::parse(&"d".repeat(10 * 1024 * 1024)).is_err());
    }

    #[test]
    fn label_is_trimmed_and_bounded() {
        assert_eq!(
            Label::parse("  Amphi A ").map(|l| l.to_string()),
            Ok("Amphi A".into())
        );
        assert!(Label::parse("   ").is_err());
        assert!(Label::parse(&"x".repeat(101)).is_err());
        assert!(Label::parse(&"é".repeat(100)).is_ok());
        assert!(Label::parse("a\u{7}b").is_err());
    }
}
