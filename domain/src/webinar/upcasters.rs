//! The Webinar's event versions. An event whose shape changes gets a new version, and an upcaster
//! turns the stored old shape into the new one when the log is read — history is never rewritten.
//!
//! `Scheduled` 2.0 added `record` (whether the BBB meeting is recorded). Webinars scheduled before
//! it were never recorded, so 1.0 reads as `record: false`.

use serde_json::Value;

use crate::upcasting::Upcaster;

pub const SCHEDULED_VERSION: &str = "2.0";

/// `Scheduled` 1.0 → 2.0.
pub struct ScheduledV1ToV2;

impl Upcaster for ScheduledV1ToV2 {
    fn applies_to(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "Scheduled" && event_version == "1.0"
    }

    fn upcast(&self, payload: &mut Value) -> &'static str {
        if let Some(fields) = payload.get_mut("Scheduled").and_then(Value::as_object_mut) {
            fields.entry("record").or_insert(Value::Bool(false));
        }
        SCHEDULED_VERSION
    }
}

pub const STREAM_STARTED_VERSION: &str = "2.0";

/// `StreamStarted` 1.0 (`"StreamStarted"`) → 2.0 (`{"StreamStarted": {}}`).
pub struct StreamStartedV1ToV2;

impl Upcaster for StreamStartedV1ToV2 {
    fn applies_to(&self, event_type: &str, event_version: &str) -> bool {
        event_type == "StreamStarted" && event_version == "1.0"
    }

    fn upcast(&self, payload: &mut Value) -> &'static str {
        if payload.as_str() == Some("StreamStarted") {
            *payload = serde_json::json!({"StreamStarted": {}});
        }
        STREAM_STARTED_VERSION
    }
}

/// Every upcaster of the Webinar's events, in the order they apply.
pub const UPCASTERS: &[&(dyn Upcaster + Sync)] = &[&ScheduledV1ToV2, &StreamStartedV1ToV2];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::upcasting::upcast;
    use crate::webinar::WebinarEvent;

    #[test]
    fn a_version_1_stream_started_reads_as_having_no_gw_id() {
        let mut payload = json!("StreamStarted");
        let mut version = "1.0".to_owned();
        upcast("Webinar", "StreamStarted", &mut version, &mut payload);
        assert_eq!(version, "2.0");
        let event: WebinarEvent = serde_json::from_value(payload).expect("reads as 2.0");
        assert_eq!(event, WebinarEvent::StreamStarted { gw_id: None });
        let current = serde_json::to_value(WebinarEvent::StreamStarted {
            gw_id: Some("gw0".into()),
        })
        .expect("serialises");
        assert_eq!(current, json!({"StreamStarted": {"gw_id": "gw0"}}));
    }

    #[test]
    fn a_version_1_scheduled_reads_as_not_recorded() {
        let mut payload = json!({"Scheduled": {
            "title": "Old", "description": null, "owner": {"id": "o", "name": "O"}, "presenters": [],
            "start_at": "2025-01-01T10:00:00Z", "duration_minutes": 60, "enable_chat": false,
            "restricted": false, "groups": [], "gateway_id": "01a20ef8-d165-7248-8ca5-72900ad296d3",
            "room": "abc"}});
        assert!(
            serde_json::from_value::<WebinarEvent>(payload.clone()).is_err(),
            "1.0 lacks `record`"
        );
        let mut version = "1.0".to_owned();
        upcast("Webinar", "Scheduled", &mut version, &mut payload);
        assert_eq!(version, "2.0");
        let event: WebinarEvent = serde_json::from_value(payload.clone()).expect("reads as 2.0");
        assert!(matches!(
            event,
            WebinarEvent::Scheduled { record: false, .. }
        ));
        // Already current: left alone.
        let before = payload.clone();
        upcast("Webinar", "Scheduled", &mut version, &mut payload);
        assert_eq!((version.as_str(), &payload), ("2.0", &before));
    }
}
