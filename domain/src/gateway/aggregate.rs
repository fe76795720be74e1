//! The Gateway's state and its decisions.

use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{
    BrowsingName, GatewayApi, GatewayChanges, GatewayCommand, GatewayEvent, GwId, TokenChange,
};
use crate::ids::{GatewayId, Identified, WebinarId};
use crate::schedule::TimeSlot;
use crate::values::{HttpUrl, Label, RtmpUrl, Site, TokenFingerprint};

/// Why a gateway command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("no such gateway")]
    NotFound,
    #[error("a gateway with this id is already registered")]
    AlreadyRegistered,
    #[error("the gateway is {state}: {action} is not possible")]
    InvalidState {
        state: &'static str,
        action: &'static str,
    },
    #[error("the gateway still holds {0} reservation(s): cancel or move those webinars first")]
    HasReservations(usize),
    /// Another webinar holds an overlapping slot (the scheduler then tries another gateway).
    #[error("the gateway is already booked during this slot")]
    SlotTaken,
    /// The SIPMediaGW URL changes but the token would stay: the next call would hand the old
    /// server's secret to the new one, so the administrator must say what to do with it.
    #[error(
        "the SIPMediaGW URL changes: give the new server's token, clear the token, or confirm \
         keeping the old one (keepToken)"
    )]
    TokenNotReentered,
    /// A v1.8+ launcher starts only the gateway containers it has: without their ids, every
    /// start would fail.
    #[error(
        "a GATEWAY (SIPMediaGW v1.8+) gateway needs the ids of its launcher's gateway containers \
         (gwIds: the project names `docker compose ls` lists on the SIPMediaGW host)"
    )]
    GwIdsRequired,
}

impl GatewayError {
    /// The stable code clients see (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NotFound => "NOT_FOUND",
            GatewayError::AlreadyRegistered => "CONFLICT",
            GatewayError::InvalidState { .. } | GatewayError::HasReservations(_) => "INVALID_STATE",
            GatewayError::SlotTaken => "NO_GATEWAY_AVAILABLE",
            GatewayError::TokenNotReentered | GatewayError::GwIdsRequired => "BAD_USER_INPUT",
        }
    }

    /// The input field a `BAD_USER_INPUT` refusal is about.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            GatewayError::TokenNotReentered => Some("sipmediagwToken"),
            GatewayError::GwIdsRequired => Some("gwIds"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    pub registered: bool,
    pub name: Option<Label>,
    pub rtmp_url: Option<RtmpUrl>,
    pub hls_url: Option<HttpUrl>,
    pub broadcaster: Option<Label>,
    pub sipmediagw_url: Option<HttpUrl>,
    pub api: Option<GatewayApi>,
    pub token_fingerprint: Option<TokenFingerprint>,
    /// The launcher's gateway containers (`GATEWAY` API).
    #[serde(default)]
    pub gw_ids: Vec<GwId>,
    #[serde(default)]
    pub browsing_name: BrowsingName,
    #[serde(default)]
    pub site: Site,
    pub enabled: bool,
    pub retired: bool,
    /// Webinar -> the slot it holds here.
    #[serde(default)]
    pub reservations: BTreeMap<WebinarId, TimeSlot>,
}

impl Gateway {
    /// The lifecycle state, as named in errors.
    pub fn state_name(&self) -> &'static str {
        match (self.registered, self.retired, self.enabled) {
            (false, _, _) => "UNREGISTERED",
            (true, true, _) => "RETIRED",
            (true, false, true) => "ENABLED",
            (true, false, false) => "DISABLED",
        }
    }

    /// Whether `slot` overlaps no reservation but `except`'s.
    pub fn is_free(&self, slot: &TimeSlot, except: Option<WebinarId>) -> bool {
        self.reservations
            .iter()
            .all(|(webinar, held)| Some(*webinar) == except || !held.overlaps(slot))
    }

    /// Whether new webinars may be placed here at `slot`.
    pub fn accepts(&self, slot: &TimeSlot, webinar: WebinarId) -> bool {
        self.registered && self.enabled && !self.retired && self.is_free(slot, Some(webinar))
    }

    fn require_live(&self, action: &'static str) -> Result<(), GatewayError> {
        if !self.registered {
            return Err(GatewayError::NotFound);
        }
        if self.retired {
            return Err(GatewayError::InvalidState {
                state: self.state_name(),
                action,
            });
        }
        Ok(())
    }

    /// The part of `changes` that differs from the current state; `None` when nothing does.
    fn effective_changes(&self, changes: GatewayChanges) -> Option<GatewayEvent> {
        fn differs<T: PartialEq>(new: Option<T>, old: &Option<T>) -> Option<T> {
            new.filter(|n| Some(n) != old.as_ref())
        }
        let name = differs(changes.name, &self.name);
        let rtmp_url = differs(changes.rtmp_url, &self.rtmp_url);
        let hls_url = differs(changes.hls_url, &self.hls_url);
        let broadcaster = differs(changes.broadcaster, &self.broadcaster);
        let sipmediagw_url = differs(changes.sipmediagw_url, &self.sipmediagw_url);
        let api = differs(changes.api, &self.api);
        let gw_ids = changes.gw_ids.filter(|ids| *ids != self.gw_ids);
        let browsing_name = changes.browsing_name.filter(|b| *b != self.browsing_name);
        let nothing = name.is_none()
            && gw_ids.is_none()
            && browsing_name.is_none()
            && rtmp_url.is_none()
            && hls_url.is_none()
            && broadcaster.is_none()
            && sipmediagw_url.is_none()
            && api.is_none();
        (!nothing).then_some(GatewayEvent::GatewayUpdated {
            name,
            rtmp_url,
            hls_url,
            broadcaster,
            sipmediagw_url,
            api,
            gw_ids,
            browsing_name,
        })
    }

    /// Decide which events a command produces. Pure: no I/O, so a retry after a conflict is safe.
    pub fn decide(&self, command: GatewayCommand) -> Result<Vec<GatewayEvent>, GatewayError> {
        use GatewayEvent::*;
        Ok(match command {
            GatewayCommand::Register { spec, token, site } => {
                if self.registered {
                    return Err(GatewayError::AlreadyRegistered);
                }
                if spec.api == GatewayApi::Gateway && spec.gw_ids.is_empty() {
                    return Err(GatewayError::GwIdsRequired);
                }
                vec![GatewayRegistered {
                    name: spec.name,
                    rtmp_url: spec.rtmp_url,
                    hls_url: spec.hls_url,
                    broadcaster: spec.broadcaster,
                    sipmediagw_url: spec.sipmediagw_url,
                    api: spec.api,
                    token_fingerprint: token,
                    gw_ids: spec.gw_ids,
                    browsing_name: spec.browsing_name,
                    site,
                }]
            }
            GatewayCommand::Update { changes, token } => {
                self.require_live("updating")?;
                let moves = changes
                    .sipmediagw_url
                    .as_ref()
                    .is_some_and(|url| Some(url) != self.sipmediagw_url.as_ref());
                if moves && token == TokenChange::Keep && self.token_fingerprint.is_some() {
                    return Err(GatewayError::TokenNotReentered);
                }
                let api = changes.api.or(self.api);
                let gw_ids = changes.gw_ids.as_ref().unwrap_or(&self.gw_ids);
                if api == Some(GatewayApi::Gateway) && gw_ids.is_empty() {
                    return Err(GatewayError::GwIdsRequired);
                }
                let mut events: Vec<_> = self.effective_changes(changes).into_iter().collect();
                let token = match token {
                    TokenChange::Keep | TokenChange::KeepAcrossMove => {
                        self.token_fingerprint.clone()
                    }
                    TokenChange::Set(fingerprint) => Some(fingerprint),
                    TokenChange::Clear => None,
                };
                if token != self.token_fingerprint {
                    events.push(GatewayTokenRotated {
                        token_fingerprint: token,
                    });
                }
                events
            }
            GatewayCommand::Disable { reason } => {
                self.require_live("disabling")?;
                if self.enabled {
                    vec![GatewayDisabled { reason }]
                } else {
                    vec![]
                }
            }
            GatewayCommand::Enable => {
                self.require_live("enabling")?;
                if self.enabled {
                    vec![]
                } else {
                    vec![GatewayEnabled]
                }
            }
            GatewayCommand::Retire => {
                if !self.registered {
                    return Err(GatewayError::NotFound);
                }
                if self.retired {
                    vec![]
                } else if !self.reservations.is_empty() {
                    return Err(GatewayError::HasReservations(self.reservations.len()));
                } else {
                    vec![GatewayRetired]
                }
            }
            GatewayCommand::Reserve {
                webinar,
                slot,
                site,
            } => {
                self.require_live("reserving a slot")?;
                // Another site's gateway does not exist for this webinar.
                if site != self.site {
                    return Err(GatewayError::NotFound);
                }
                if self.reservations.get(&webinar) == Some(&slot) {
                    return Ok(vec![]);
                }
                if !self.enabled {
                    return Err(GatewayError::InvalidState {
                        state: self.state_name(),
                        action: "reserving a slot",
                    });
                }
                if !self.is_free(&slot, Some(webinar)) {
                    return Err(GatewayError::SlotTaken);
                }
                vec![SlotReserved {
                    webinar_id: webinar,
                    slot,
                }]
            }
            GatewayCommand::Release { webinar } => {
                if !self.registered {
                    return Err(GatewayError::NotFound);
                }
                if self.reservations.contains_key(&webinar) {
                    vec![SlotReleased {
                        webinar_id: webinar,
                    }]
                } else {
                    vec![]
                }
            }
        })
    }
}

impl Identified for Gateway {
    type Id = GatewayId;
}

impl Aggregate for Gateway {
    const TYPE: &'static str = "Gateway";
    type Command = GatewayCommand;
    type Event = GatewayEvent;
    type Error = GatewayError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            GatewayEvent::GatewayRegistered {
                name,
                rtmp_url,
                hls_url,
                broadcaster,
                sipmediagw_url,
                api,
                token_fingerprint,
                gw_ids,
                browsing_name,
                site,
            } => {
                self.registered = true;
                self.site = site;
                self.gw_ids = gw_ids;
                self.browsing_name = browsing_name;
                self.enabled = true;
                self.name = Some(name);
                self.rtmp_url = Some(rtmp_url);
                self.hls_url = Some(hls_url);
                self.broadcaster = Some(broadcaster);
                self.sipmediagw_url = Some(sipmediagw_url);
                self.api = Some(api);
                self.token_fingerprint = token_fingerprint;
            }
            GatewayEvent::GatewayUpdated {
                name,
                rtmp_url,
                hls_url,
                broadcaster,
                sipmediagw_url,
                api,
                gw_ids,
                browsing_name,
            } => {
                if let Some(gw_ids) = gw_ids {
                    self.gw_ids = gw_ids;
                }
                if let Some(browsing_name) = browsing_name {
                    self.browsing_name = browsing_name;
                }
                if name.is_some() {
                    self.name = name;
                }
                if rtmp_url.is_some() {
                    self.rtmp_url = rtmp_url;
                }
                if hls_url.is_some() {
                    self.hls_url = hls_url;
                }
                if broadcaster.is_some() {
                    self.broadcaster = broadcaster;
                }
                if sipmediagw_url.is_some() {
                    self.sipmediagw_url = sipmediagw_url;
                }
                if api.is_some() {
                    self.api = api;
                }
            }
            GatewayEvent::GatewayTokenRotated { token_fingerprint } => {
                self.token_fingerprint = token_fingerprint;
            }
            GatewayEvent::GatewayDisabled { .. } => self.enabled = false,
            GatewayEvent::GatewayEnabled => self.enabled = true,
            GatewayEvent::GatewayRetired => {
                self.retired = true;
                self.enabled = false;
            }
            GatewayEvent::SlotReserved { webinar_id, slot } => {
                self.reservations.insert(webinar_id, slot);
            }
            GatewayEvent::SlotReleased { webinar_id } => {
                self.reservations.remove(&webinar_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::gateway::GatewaySpec;

    type Framework = TestFramework<Gateway>;

    fn spec() -> GatewaySpec {
        GatewaySpec {
            name: Label::parse("Amphi A").expect("valid"),
            rtmp_url: RtmpUrl::parse("rtmp://live.univ.fr/live/a").expect("valid"),
            hls_url: HttpUrl::parse("https://live.univ.fr/hls/a.m3u8").expect("valid"),
            broadcaster: Label::parse("Amphi A").expect("valid"),
            sipmediagw_url: HttpUrl::parse("https://gw-a.univ.fr").expect("valid"),
            api: GatewayApi::Legacy,
            gw_ids: vec![],
            browsing_name: BrowsingName::default(),
        }
    }

    fn registered() -> GatewayEvent {
        let spec = spec();
        GatewayEvent::GatewayRegistered {
            name: spec.name,
            rtmp_url: spec.rtmp_url,
            hls_url: spec.hls_url,
            broadcaster: spec.broadcaster,
            sipmediagw_url: spec.sipmediagw_url,
            api: spec.api,
            token_fingerprint: Some(TokenFingerprint::from_hex("abcd".into())),
            gw_ids: vec![],
            browsing_name: BrowsingName::default(),
            site: Site::default(),
        }
    }

    #[tokio::test]
    async fn a_v1_8_gateway_needs_the_ids_of_its_containers() {
        let v18 = GatewaySpec {
            api: GatewayApi::Gateway,
            ..spec()
        };
        Framework::with(())
            .given_no_previous_events()
            .when_async(GatewayCommand::Register {
                site: Site::default(),
                spec: v18.clone(),
                token: None,
            })
            .await
            .then_expect_error(GatewayError::GwIdsRequired);
        // Switching a registered gateway to the v1.8 API needs them too.
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Update {
                changes: GatewayChanges {
                    api: Some(GatewayApi::Gateway),
                    ..GatewayChanges::default()
                },
                token: TokenChange::Keep,
            })
            .await
            .then_expect_error(GatewayError::GwIdsRequired);
        let ids = crate::gateway::parse_gw_ids(&["gw0"]).expect("valid");
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Update {
                changes: GatewayChanges {
                    api: Some(GatewayApi::Gateway),
                    gw_ids: Some(ids.clone()),
                    ..GatewayChanges::default()
                },
                token: TokenChange::Keep,
            })
            .await
            .then_expect_events(vec![GatewayEvent::GatewayUpdated {
                name: None,
                rtmp_url: None,
                hls_url: None,
                broadcaster: None,
                sipmediagw_url: None,
                api: Some(GatewayApi::Gateway),
                gw_ids: Some(ids),
                browsing_name: None,
            }]);
    }

    #[test]
    fn older_registrations_read_with_no_ids_and_the_bigbluebutton_browsing() {
        let old = serde_json::json!({"GatewayRegistered": {
            "name": "A", "rtmp_url": "rtmp://h/l", "hls_url": "https://h/x.m3u8", "broadcaster": "A",
            "sipmediagw_url": "https://gw", "api": "LEGACY", "token_fingerprint": null}});
        let event: GatewayEvent = serde_json::from_value(old).expect("an older event reads");
        assert!(matches!(
            event,
            GatewayEvent::GatewayRegistered { ref gw_ids, ref browsing_name, .. }
                if gw_ids.is_empty() && browsing_name.as_str() == "bigbluebutton"
        ));
    }

    #[tokio::test]
    async fn it_registers_a_new_gateway() {
        Framework::with(())
            .given_no_previous_events()
            .when_async(GatewayCommand::Register {
                site: Site::default(),
                spec: spec(),
                token: Some(TokenFingerprint::from_hex("abcd".into())),
            })
            .await
            .then_expect_events(vec![registered()]);
    }

    #[tokio::test]
    async fn it_refuses_to_register_twice() {
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Register {
                site: Site::default(),
                spec: spec(),
                token: None,
            })
            .await
            .then_expect_error(GatewayError::AlreadyRegistered);
    }

    #[tokio::test]
    async fn an_update_records_only_what_changed() {
        let changes = GatewayChanges {
            name: Some(Label::parse("Amphi A").expect("valid")),
            broadcaster: Some(Label::parse("Amphi B").expect("valid")),
            ..Default::default()
        };
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Update {
                changes,
                token: TokenChange::Keep,
            })
            .await
            .then_expect_events(vec![GatewayEvent::GatewayUpdated {
                name: None,
                rtmp_url: None,
                hls_url: None,
                broadcaster: Some(Label::parse("Amphi B").expect("valid")),
                sipmediagw_url: None,
                api: None,
                gw_ids: None,
                browsing_name: None,
            }]);
    }

    #[tokio::test]
    async fn an_update_that_changes_nothing_records_nothing() {
        let changes = GatewayChanges {
            api: Some(GatewayApi::Legacy),
            ..Default::default()
        };
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Update {
                changes,
                token: TokenChange::Keep,
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn an_unknown_gateway_cannot_be_updated() {
        Framework::with(())
            .given_no_previous_events()
            .when_async(GatewayCommand::Update {
                changes: GatewayChanges::default(),
                token: TokenChange::Keep,
            })
            .await
            .then_expect_error(GatewayError::NotFound);
    }

    #[tokio::test]
    async fn enable_and_disable_are_idempotent() {
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Enable)
            .await
            .then_expect_events(vec![]);
        Framework::with(())
            .given(vec![
                registered(),
                GatewayEvent::GatewayDisabled { reason: None },
            ])
            .when_async(GatewayCommand::Disable {
                reason: Some("again".into()),
            })
            .await
            .then_expect_events(vec![]);
        Framework::with(())
            .given(vec![
                registered(),
                GatewayEvent::GatewayDisabled { reason: None },
            ])
            .when_async(GatewayCommand::Enable)
            .await
            .then_expect_events(vec![GatewayEvent::GatewayEnabled]);
    }

    #[tokio::test]
    async fn a_retired_gateway_refuses_changes_but_retiring_again_is_fine() {
        let retired = vec![registered(), GatewayEvent::GatewayRetired];
        Framework::with(())
            .given(retired.clone())
            .when_async(GatewayCommand::Enable)
            .await
            .then_expect_error(GatewayError::InvalidState {
                state: "RETIRED",
                action: "enabling",
            });
        Framework::with(())
            .given(retired)
            .when_async(GatewayCommand::Retire)
            .await
            .then_expect_events(vec![]);
    }

    fn slot(hour: u32, minutes: i64) -> TimeSlot {
        use chrono::TimeZone;
        let start = chrono::Utc
            .with_ymd_and_hms(2030, 1, 7, hour, 0, 0)
            .single()
            .expect("valid");
        TimeSlot::new_unchecked(start, minutes)
    }

    #[tokio::test]
    async fn reservations_never_overlap_and_back_to_back_ones_are_fine() {
        let (a, b) = (WebinarId::new(), WebinarId::new());
        let held = vec![
            registered(),
            GatewayEvent::SlotReserved {
                webinar_id: a,
                slot: slot(10, 60),
            },
        ];
        Framework::with(())
            .given(held.clone())
            .when_async(GatewayCommand::Reserve {
                webinar: b,
                slot: slot(10, 30),
                site: Site::default(),
            })
            .await
            .then_expect_error(GatewayError::SlotTaken);
        Framework::with(())
            .given(held.clone())
            .when_async(GatewayCommand::Reserve {
                webinar: b,
                slot: slot(11, 60),
                site: Site::default(),
            })
            .await
            .then_expect_events(vec![GatewayEvent::SlotReserved {
                webinar_id: b,
                slot: slot(11, 60),
            }]);
        // A webinar moving within its own reservation does not collide with itself.
        Framework::with(())
            .given(held.clone())
            .when_async(GatewayCommand::Reserve {
                webinar: a,
                slot: slot(10, 90),
                site: Site::default(),
            })
            .await
            .then_expect_events(vec![GatewayEvent::SlotReserved {
                webinar_id: a,
                slot: slot(10, 90),
            }]);
        Framework::with(())
            .given(held.clone())
            .when_async(GatewayCommand::Reserve {
                webinar: a,
                slot: slot(10, 60),
                site: Site::default(),
            })
            .await
            .then_expect_events(vec![]);
        Framework::with(())
            .given(held.clone())
            .when_async(GatewayCommand::Release { webinar: b })
            .await
            .then_expect_events(vec![]);
        Framework::with(())
            .given(held.clone())
            .when_async(GatewayCommand::Retire)
            .await
            .then_expect_error(GatewayError::HasReservations(1));
        Framework::with(())
            .given(held)
            .when_async(GatewayCommand::Release { webinar: a })
            .await
            .then_expect_events(vec![GatewayEvent::SlotReleased { webinar_id: a }]);
    }

    #[tokio::test]
    async fn another_sites_webinar_cannot_book_it() {
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Reserve {
                webinar: WebinarId::new(),
                slot: slot(10, 60),
                site: Site::parse("other").expect("valid"),
            })
            .await
            .then_expect_error(GatewayError::NotFound);
    }

    #[tokio::test]
    async fn a_disabled_gateway_takes_no_new_reservation() {
        Framework::with(())
            .given(vec![
                registered(),
                GatewayEvent::GatewayDisabled { reason: None },
            ])
            .when_async(GatewayCommand::Reserve {
                webinar: WebinarId::new(),
                slot: slot(10, 60),
                site: Site::default(),
            })
            .await
            .then_expect_error(GatewayError::InvalidState {
                state: "DISABLED",
                action: "reserving a slot",
            });
    }

    #[tokio::test]
    async fn moving_to_another_server_needs_the_token_again_or_an_explicit_keep() {
        let moved = || GatewayChanges {
            sipmediagw_url: Some(HttpUrl::parse("https://gw-b.univ.fr").expect("valid")),
            ..Default::default()
        };
        let moved_event = || GatewayEvent::GatewayUpdated {
            name: None,
            rtmp_url: None,
            hls_url: None,
            broadcaster: None,
            sipmediagw_url: Some(HttpUrl::parse("https://gw-b.univ.fr").expect("valid")),
            api: None,
            gw_ids: None,
            browsing_name: None,
        };
        let refused = GatewayError::TokenNotReentered;
        assert_eq!(
            (refused.code(), refused.field()),
            ("BAD_USER_INPUT", Some("sipmediagwToken"))
        );
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Update {
                changes: moved(),
                token: TokenChange::Keep,
            })
            .await
            .then_expect_error(GatewayError::TokenNotReentered);
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Update {
                changes: moved(),
                token: TokenChange::Set(TokenFingerprint::from_hex("beef".into())),
            })
            .await
            .then_expect_events(vec![
                moved_event(),
                GatewayEvent::GatewayTokenRotated {
                    token_fingerprint: Some(TokenFingerprint::from_hex("beef".into())),
                },
            ]);
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Update {
                changes: moved(),
                token: TokenChange::Clear,
            })
            .await
            .then_expect_events(vec![
                moved_event(),
                GatewayEvent::GatewayTokenRotated {
                    token_fingerprint: None,
                },
            ]);
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Update {
                changes: moved(),
                token: TokenChange::KeepAcrossMove,
            })
            .await
            .then_expect_events(vec![moved_event()]);
        // Naming the same server (any spelling of it) is no move; without a token nothing leaks.
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Update {
                changes: GatewayChanges {
                    sipmediagw_url: Some(HttpUrl::parse("https://gw-a.univ.fr/").expect("valid")),
                    ..Default::default()
                },
                token: TokenChange::Keep,
            })
            .await
            .then_expect_events(vec![]);
        Framework::with(())
            .given(vec![
                registered(),
                GatewayEvent::GatewayTokenRotated {
                    token_fingerprint: None,
                },
            ])
            .when_async(GatewayCommand::Update {
                changes: moved(),
                token: TokenChange::Keep,
            })
            .await
            .then_expect_events(vec![moved_event()]);
    }

    #[tokio::test]
    async fn rotating_to_the_same_token_records_nothing() {
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Update {
                changes: GatewayChanges::default(),
                token: TokenChange::Set(TokenFingerprint::from_hex("abcd".into())),
            })
            .await
            .then_expect_events(vec![]);
        Framework::with(())
            .given(vec![registered()])
            .when_async(GatewayCommand::Update {
                changes: GatewayChanges::default(),
                token: TokenChange::Clear,
            })
            .await
            .then_expect_events(vec![GatewayEvent::GatewayTokenRotated {
                token_fingerprint: None,
            }]);
    }
}
