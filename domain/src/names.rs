//! Enums that travel as their SCREAMING_CASE names (events, read-model columns, GraphQL). One
//! macro gives each the same conversions, and an unknown name is an error, never a default.

/// A name that is not one of an enum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
}

/// Declares a fieldless enum with `as_str`, `Display`, `FromStr` and `TryFrom<String>` over the
/// given names (serde uses the same SCREAMING_SNAKE_CASE names).
#[macro_export]
macro_rules! named_enum {
    ($(#[$doc:meta])* $vis:vis enum $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        $vis enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::names::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::names::UnknownName {
                        kind: stringify!($name),
                        value: other.chars().take(64).collect(),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::names::UnknownName;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::named_enum! {
        enum Colour { Red = "RED", DarkBlue = "DARK_BLUE" }
    }

    #[test]
    fn names_round_trip_and_unknown_ones_are_errors() {
        for colour in Colour::ALL {
            assert_eq!(colour.as_str().parse::<Colour>(), Ok(*colour));
            assert_eq!(
                serde_json::to_value(colour).expect("serialises"),
                serde_json::json!(colour.as_str())
            );
        }
        assert_eq!(
            "GREEN".parse::<Colour>().map_err(|e| e.to_string()),
            Err("unknown Colour \"GREEN\"".to_owned())
        );
        assert!(Colour::try_from(String::new()).is_err());
    }
}
