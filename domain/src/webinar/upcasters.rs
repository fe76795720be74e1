//! Event versioning. An event whose shape changes gets a new version, and an upcaster turns the
//! stored old shape into the new one when the log is read — history is never rewritten.
//!
//! `Scheduled` 2.0 added `record` (whether the BBB meeting is recorded). Webinars scheduled before
//! it were never recorded, so 1.0 reads as `record: false`.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;

pub const SCHEDULED_VERSION: &str = "2.0";

/// `Scheduled` 1.0 → 2.0.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScheduledV1ToV2;

impl ScheduledV1ToV2 {
    /// The payload change alone, for readers that do not hold a `SerializedEvent`.
    pub fn upcast_payload(payload: &mut Value) {
        if let Some(fields) = payload.get_mut("Scheduled").and_then(Value::as_object_mut) {
            fields.entry("record").or_insert(Value::Bool(false));
        }
    }
}

impl EventUpcaster for ScheduledV1ToV2 {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "Scheduled" && event_version == "1.0"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        Self::upcast_payload(&mut event.payload);
        event.event_version = SCHEDULED_VERSION.to_owned();
        event
    }
}

/// Every upcaster of an aggregate type, in the order they apply.
pub fn upcasters(aggregate_type: &str) -> Vec<Box<dyn EventUpcaster>> {
    match aggregate_type {
        "Webinar" => vec![Box::new(ScheduledV1ToV2)],
        _ => Vec::new(),
    }
}

/// Brings a stored payload up to the current version (for log readers: projectors, as-of).
pub fn upcast_payload(
    aggregate_type: &str,
    event_type: &str,
    event_version: &str,
    payload: &mut Value,
) {
    if aggregate_type == "Webinar" && ScheduledV1ToV2.can_upcast(event_type, event_version) {
        ScheduledV1ToV2::upcast_payload(payload);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::webinar::WebinarEvent;

    #[test]
    fn a_version_1_scheduled_reads_as_not_recorded() {
        let stored = json!({"Scheduled": {
            "title": "Old", "description": null, "owner": {"id": "o", "name": "O"}, "presenters": [],
            "start_at": "2025-01-01T10:00:00Z", "duration_minutes": 60, "enable_chat": false,
            "restricted": false, "groups": [], "gateway_id": "01a20ef8-d165-7248-8ca5-72900ad296d3",
            "room": "abc"}});
        assert!(
            serde_json::from_value::<WebinarEvent>(stored.clone()).is_err(),
            "1.0 lacks `record`"
        );
        let event = SerializedEvent::new(
            "w".into(),
            1,
            "Webinar".into(),
            "Scheduled".into(),
            "1.0".into(),
            stored,
            json!({}),
        );
        let upcaster = ScheduledV1ToV2;
        assert!(upcaster.can_upcast("Scheduled", "1.0"));
        assert!(!upcaster.can_upcast("Scheduled", "2.0"));
        let upcast = upcaster.upcast(event);
        assert_eq!(upcast.event_version, "2.0");
        let event: WebinarEvent = serde_json::from_value(upcast.payload).expect("reads as 2.0");
        assert!(matches!(
            event,
            WebinarEvent::Scheduled { record: false, .. }
        ));
    }
}
