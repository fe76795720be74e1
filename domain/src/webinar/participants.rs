//! Who is in a live webinar's BigBlueButton meeting, as BigBlueButton reports it (webhooks, and the
//! reconciliation sweep's `getMeetings`), and the one rule that depends on it: a stream whose
//! streaming participant left the meeting is not live, so it is restarted.

use serde::{Deserialize, Serialize};

/// The display name SIPMediaGW's browser joins with (its `MAIN_APP`), and the prefix of the user
/// id our join page gives it (`streaming-<room>`).
pub const STREAMING_NAME: &str = "streaming";

/// One person (or the streaming bot) in the meeting. Built from BigBlueButton's data, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// BigBlueButton's internal user id (one per session in the meeting).
    pub user_id: String,
    pub name: String,
    pub moderator: bool,
    /// The SIPMediaGW browser that streams the meeting.
    pub streaming: bool,
}

/// `text` without control characters, at most `max` characters.
fn bounded(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect::<String>()
        .trim()
        .to_owned()
}

impl Participant {
    /// From what BigBlueButton says: `role` is `MODERATOR` or `VIEWER`; `external_id` is the user
    /// id given at join (ours for the streaming bot is `streaming-<room>`). `None` without an id.
    pub fn from_bbb(user_id: &str, external_id: &str, name: &str, role: &str) -> Option<Self> {
        let user_id = bounded(user_id, 200);
        if user_id.is_empty() {
            return None;
        }
        let name = bounded(name, 200);
        let streaming = name.eq_ignore_ascii_case(STREAMING_NAME)
            || external_id.starts_with(&format!("{STREAMING_NAME}-"));
        Some(Self {
            user_id,
            name,
            moderator: role.eq_ignore_ascii_case("MODERATOR"),
            streaming,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streaming_bot_is_known_by_its_name_or_our_user_id() {
        let bot = Participant::from_bbb("w_1", "streaming-abc", "Amphi A", "VIEWER").expect("id");
        assert!(bot.streaming);
        let v18 = Participant::from_bbb("w_2", "w_2", "streaming", "VIEWER").expect("id");
        assert!(v18.streaming);
        let person = Participant::from_bbb("w_3", "u42", "Ada\u{0}", "MODERATOR").expect("id");
        assert!(!person.streaming && person.moderator);
        assert_eq!(person.name, "Ada");
        assert_eq!(Participant::from_bbb(" ", "x", "y", "VIEWER"), None);
    }
}
