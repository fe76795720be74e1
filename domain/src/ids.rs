//! Typed identifiers. Aggregate ids are UUIDs chosen by us before the first event is written; an
//! id is only ever made on purpose (`new`), never by a `Default` that would invent one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An identifier that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id: expected a UUID")]
pub struct IdError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new id, time-ordered (UUID v7) so that ids sort roughly by creation.
            #[allow(clippy::new_without_default)] // a `Default` would invent ids by accident
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|_| IdError)
            }
        }
    };
}

/// An aggregate whose instances are named by a typed id (the command bus takes and returns it).
pub trait Identified {
    type Id: Copy + fmt::Display + FromStr + Send + Sync + 'static;
}

id_type!(
    /// Identifies a live gateway (one SIPMediaGW server and its RTMP/HLS destination).
    GatewayId
);
id_type!(
    /// Identifies a webinar.
    WebinarId
);
id_type!(
    /// Identifies one audience chat message.
    ChatMessageId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_its_own_display() {
        let id = GatewayId::new();
        assert_eq!(id.to_string().parse::<GatewayId>(), Ok(id));
    }

    #[test]
    fn rejects_what_is_not_a_uuid() {
        assert_eq!("not-a-uuid".parse::<GatewayId>(), Err(IdError));
        assert_eq!("".parse::<WebinarId>(), Err(IdError));
    }
}
