//! Time slots: when a webinar runs, and the rules a slot must follow.
//!
//! A slot is half-open, `[start, end)`: a webinar ending at 11:00 and one starting at 11:00 do not
//! overlap and may share a gateway.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::values::InvalidValue;

/// A half-open interval of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeSlot {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// What a slot must satisfy when a person asks for it (replayed events are not re-checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRules {
    /// Longest webinar, in minutes (Pod: `MEETING_MAX_DURATION`, in hours).
    pub max_duration_minutes: i64,
    /// How far in the past a start may lie (a presenter who is a few minutes late).
    pub max_start_in_past_minutes: i64,
    /// How far ahead a webinar may be scheduled, in days: gateways are not booked for years.
    pub max_days_ahead: i64,
}

impl Default for SlotRules {
    fn default() -> Self {
        Self {
            max_duration_minutes: 300,
            max_start_in_past_minutes: 15,
            max_days_ahead: 400,
        }
    }
}

/// Which part of a slot request was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("{0}")]
    Duration(InvalidValue),
    #[error("{0}")]
    Start(InvalidValue),
}

impl TimeSlot {
    /// A slot from `start` lasting `minutes`, checked against `rules` at time `now`.
    pub fn parse(
        start: DateTime<Utc>,
        minutes: i64,
        rules: &SlotRules,
        now: DateTime<Utc>,
    ) -> Result<Self, SlotError> {
        if minutes < 1 || minutes > rules.max_duration_minutes {
            return Err(SlotError::Duration(InvalidValue(format!(
                "must be between 1 and {} minutes (got {minutes})",
                rules.max_duration_minutes
            ))));
        }
        if start < now - Duration::minutes(rules.max_start_in_past_minutes) {
            return Err(SlotError::Start(InvalidValue(format!(
                "must not be more than {} minutes in the past",
                rules.max_start_in_past_minutes
            ))));
        }
        if start > now + Duration::days(rules.max_days_ahead) {
            return Err(SlotError::Start(InvalidValue(format!(
                "must be within {} days from now",
                rules.max_days_ahead
            ))));
        }
        Ok(Self::new_unchecked(start, minutes))
    }

    /// The slot a change of start and/or duration asks for, given the current slot; `None` when
    /// neither is given. An unchanged start may lie in the past (the webinar may have begun):
    /// then only the duration is checked.
    pub fn change(
        current: TimeSlot,
        start: Option<DateTime<Utc>>,
        minutes: Option<i64>,
        rules: &SlotRules,
        now: DateTime<Utc>,
    ) -> Result<Option<Self>, SlotError> {
        if start.is_none() && minutes.is_none() {
            return Ok(None);
        }
        let start = start.unwrap_or(current.start);
        let minutes = minutes.unwrap_or(current.duration_minutes());
        let now = if start == current.start { start } else { now };
        Self::parse(start, minutes, rules, now).map(Some)
    }

    /// A slot with no rule checked (replays, tests, migrations).
    pub fn new_unchecked(start: DateTime<Utc>, minutes: i64) -> Self {
        Self {
            start,
            end: start + Duration::minutes(minutes.max(0)),
        }
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }
    pub fn duration_minutes(&self) -> i64 {
        (self.end - self.start).num_minutes()
    }

    /// Half-open intersection: touching slots do not overlap.
    pub fn overlaps(&self, other: &TimeSlot) -> bool {
        self.start < other.end && other.start < self.end
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 7, hour, minute, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn back_to_back_slots_do_not_overlap_but_a_minute_of_overlap_does() {
        let ten = TimeSlot::new_unchecked(at(10, 0), 60);
        let eleven = TimeSlot::new_unchecked(at(11, 0), 60);
        let ten_fifty_nine = TimeSlot::new_unchecked(at(10, 59), 61);
        assert!(!ten.overlaps(&eleven) && !eleven.overlaps(&ten));
        assert!(ten.overlaps(&ten_fifty_nine) && ten_fifty_nine.overlaps(&ten));
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name_and_an_unchanged_past_start_is_fine() {
        let rules = SlotRules::default();
        let current = TimeSlot::new_unchecked(at(8, 0), 60);
        let now = at(10, 0);
        assert_eq!(TimeSlot::change(current, None, None, &rules, now), Ok(None));
        assert_eq!(
            TimeSlot::change(current, None, Some(90), &rules, now),
            Ok(Some(TimeSlot::new_unchecked(at(8, 0), 90)))
        );
        assert!(matches!(
            TimeSlot::change(current, Some(at(8, 30)), None, &rules, now),
            Err(SlotError::Start(_))
        ));
        assert!(matches!(
            TimeSlot::change(current, None, Some(0), &rules, now),
            Err(SlotError::Duration(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn overlap_is_symmetric_and_half_open(
            a_start in 0i64..10_000, a_len in 1i64..600, b_start in 0i64..10_000, b_len in 1i64..600,
        ) {
            let base = at(0, 0);
            let a = TimeSlot::new_unchecked(base + Duration::minutes(a_start), a_len);
            let b = TimeSlot::new_unchecked(base + Duration::minutes(b_start), b_len);
            proptest::prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
            // Half-open: they overlap exactly when some minute lies in both.
            let shared = (a_start.max(b_start)..(a_start + a_len).min(b_start + b_len)).next().is_some();
            proptest::prop_assert_eq!(a.overlaps(&b), shared);
            // A slot that starts where another ends never overlaps it.
            let next = TimeSlot::new_unchecked(a.end(), b_len);
            proptest::prop_assert!(!a.overlaps(&next) && !next.overlaps(&a));
            proptest::prop_assert!(a.overlaps(&a));
        }
    }

    #[test]
    fn durations_and_starts_follow_the_rules() {
        let rules = SlotRules::default();
        let now = at(9, 0);
        assert!(matches!(
            TimeSlot::parse(at(10, 0), 0, &rules, now),
            Err(SlotError::Duration(_))
        ));
        assert!(matches!(
            TimeSlot::parse(at(10, 0), 301, &rules, now),
            Err(SlotError::Duration(_))
        ));
        assert!(TimeSlot::parse(at(10, 0), 300, &rules, now).is_ok());
        assert!(TimeSlot::parse(at(8, 50), 60, &rules, now).is_ok());
        assert!(matches!(
            TimeSlot::parse(at(8, 0), 60, &rules, now),
            Err(SlotError::Start(_))
        ));
    }
}
