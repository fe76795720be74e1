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

/// Characters that show nothing: whitespace, zero-width and joiner characters, bidirectional
/// controls, the soft hyphen and the Hangul fillers people paste as "blank" names.
fn invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}'
            | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}')
}

/// Free text typed by a person: `trimmed` is at most `max` characters (counted without walking
/// past the limit, so a 10 MB string costs no more than a short one), shows at least one visible
/// character, and holds no control character (NUL included) except, in multi-line text, line
/// breaks and tabs.
pub(crate) fn check_text(trimmed: &str, max: usize, multi_line: bool) -> Result<(), InvalidValue> {
    let chars = trimmed.chars().take(max + 1).count();
    if chars > max {
        return Err(InvalidValue::new(format!(
            "must be at most {max} characters"
        )));
    }
    let allowed_control = |c: char| multi_line && matches!(c, '\n' | '\r' | '\t');
    if trimmed
        .chars()
        .any(|c| c.is_control() && !allowed_control(c))
    {
        return Err(InvalidValue::new("must not contain control characters"));
    }
    if !trimmed.chars().any(|c| !invisible(c)) {
        return Err(InvalidValue::new("must not be empty, blank or invisible"));
    }
    Ok(())
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
        check_text(trimmed, Self::MAX_CHARS, false)?;
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

/// A site of a multi-site installation (Pod's `Site`): every gateway, webinar and live event
/// belongs to one, and nobody sees, books or changes another site's. Lowercase letters, digits,
/// `.`, `-` and `_`, 1 to 64 of them; `default` unless said otherwise.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Site(String);

impl Site {
    pub const DEFAULT: &'static str = "default";

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')
            });
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue::new(
                "a site is 1 to 64 lowercase letters, digits, '.', '-' or '_'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Site {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Site {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Site> for String {
    fn from(site: Site) -> Self {
        site.0
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
        check_text(trimmed, Self::MAX_CHARS, false)?;
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
        if trimmed.is_empty() {
            return Ok(None);
        }
        check_text(trimmed, Self::MAX_CHARS, true)?;
        Ok(Some(Self(trimmed.to_owned())))
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

/// A free-text value that may be multi-line (a reason, a message): trimmed, 1..=`max` characters,
/// visible, no control characters but line breaks and tabs.
pub fn parse_free_text(raw: &str, max: usize) -> Result<String, InvalidValue> {
    let trimmed = raw.trim();
    check_text(trimmed, max, true)?;
    Ok(trimmed.to_owned())
}

/// A filter value (an id, a type name): 1..=200 characters, no control characters. Not a
/// [`Label`]: it must match stored values exactly, so it is not trimmed.
pub fn parse_filter_term(raw: &str) -> Result<&str, InvalidValue> {
    if raw.is_empty() || raw.len() > 200 {
        return Err(InvalidValue::new("must be 1 to 200 bytes"));
    }
    if raw.chars().any(char::is_control) {
        return Err(InvalidValue::new("must not contain control characters"));
    }
    Ok(raw)
}

/// Most access groups one webinar may name.
pub const MAX_GROUPS: usize = 50;

/// Access groups (the identity provider's group names), de-duplicated, at most [`MAX_GROUPS`].
/// Linear, and a list far over the limit is refused before any group is read.
pub fn parse_groups(raw: &[String]) -> Result<Vec<String>, InvalidValue> {
    let too_many = || InvalidValue(format!("at most {MAX_GROUPS} groups"));
    // Duplicates are forgiven, but not without bound.
    if raw.len() > 4 * MAX_GROUPS {
        return Err(too_many());
    }
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    let mut groups: Vec<String> = Vec::new();
    for (i, group) in raw.iter().enumerate() {
        let label =
            Label::parse(group).map_err(|e| InvalidValue(format!("group {}: {e}", i + 1)))?;
        if seen.insert(label.as_str().to_owned()) {
            groups.push(label.as_str().to_owned());
            if groups.len() > MAX_GROUPS {
                return Err(too_many());
            }
        }
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

    #[test]
    fn free_text_refuses_nul_control_and_invisible_only_input() {
        for bad in [
            "a\0b",
            "a\u{1b}[31mb",
            "\u{200B}\u{200B}",
            "\u{3164}",
            "\u{202E}",
        ] {
            assert!(Title::parse(bad).is_err(), "title {bad:?}");
            assert!(Label::parse(bad).is_err(), "label {bad:?}");
            assert!(Description::parse(bad).is_err(), "description {bad:?}");
            assert!(parse_free_text(bad, 500).is_err(), "free text {bad:?}");
        }
        assert!(Title::parse("line\nbreak").is_err());
        assert!(Description::parse("two\nlines\tand a tab").is_ok());
        assert!(Title::parse("Amphi \u{200B}A").is_ok());
        assert!(parse_filter_term("Webinar").is_ok());
        assert!(parse_filter_term("Web\0inar").is_err());
        assert!(parse_filter_term(&"x".repeat(201)).is_err());
    }

    #[test]
    fn groups_are_deduplicated_in_linear_time_and_bounded_first() {
        assert_eq!(
            parse_groups(&["L1".into(), " L1 ".into(), "L2".into()]),
            Ok(vec!["L1".to_owned(), "L2".to_owned()])
        );
        let many: Vec<String> = (0..80_000).map(|i| format!("group-{i}")).collect();
        let started = std::time::Instant::now();
        assert!(parse_groups(&many).is_err());
        assert!(started.elapsed() < std::time::Duration::from_millis(10));
        let repeated = vec!["same".to_owned(); 200];
        assert_eq!(parse_groups(&repeated).map(|g| g.len()), Ok(1));
        let long = "g".repeat(10 * 1024 * 1024);
        let refused = parse_groups(&[long]).expect_err("too long").0;
        assert!(refused.len() < 100, "{refused}");
        assert!(parse_groups(&["a\0".into()]).is_err());
    }
}
