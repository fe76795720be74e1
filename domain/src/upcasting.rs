//! Reading old events in their current shape: the one upcasting path every reader of the log
//! takes (the event store loading an aggregate, the projectors, the replay for auditors, the
//! export).

use serde_json::Value;

/// Turns one stored version of one event type into the next.
pub trait Upcaster {
    fn applies_to(&self, event_type: &str, event_version: &str) -> bool;
    /// Rewrites `payload` in place and returns the version it now has.
    fn upcast(&self, payload: &mut Value) -> &'static str;
}

fn upcasters(aggregate_type: &str) -> &'static [&'static (dyn Upcaster + Sync)] {
    match aggregate_type {
        "Webinar" => crate::webinar::upcasters::UPCASTERS,
        _ => &[],
    }
}

/// Whether a stored event of this type and version has to be upcast (readers that keep payloads
/// as text parse them only then).
pub fn needed(aggregate_type: &str, event_type: &str, version: &str) -> bool {
    upcasters(aggregate_type)
        .iter()
        .any(|upcaster| upcaster.applies_to(event_type, version))
}

/// Brings a stored event (`version`, `payload`) up to the current version of its type.
pub fn upcast(aggregate_type: &str, event_type: &str, version: &mut String, payload: &mut Value) {
    for upcaster in upcasters(aggregate_type) {
        if upcaster.applies_to(event_type, version) {
            *version = upcaster.upcast(payload).to_owned();
        }
    }
}
