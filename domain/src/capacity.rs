//! Capacity: are there enough gateways for the webinars booked?
//!
//! Scheduling holds one gateway per webinar and refuses a slot when no gateway is free, so at the
//! moment of booking there are always enough. Capacity falls short later: an administrator
//! disables a gateway that still holds webinars (they stay booked on it, and will need another at
//! start), or the operators want a spare gateway for fail-over (the **margin**). This module
//! finds the stretches of time where booked webinars plus the margin exceed the enabled gateways
//! ([`shortfalls`], a pure sweep over the bookings), tells which gateways are out of service
//! ([`CapacityReport::unavailable`]), and keeps, in the `CapacityWatch` aggregate, which
//! shortfalls were already announced, so that the event log records only when one appears,
//! changes or clears. A warning never refuses anything: scheduling does not look here.
//!
//! Pure: the read models answer [`CapacityReads`], the infrastructure brings the clock.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{GatewayId, Identified, WebinarId};
use crate::ports::LookupError;
use crate::schedule::TimeSlot;
use crate::values::Site;

/// The longest window one capacity report covers: a year (and a leap day), which is more than
/// anyone may schedule ahead, while a report over decades would read every webinar ever booked.
pub const MAX_WINDOW_DAYS: i64 = 366;

/// A half-open stretch of time, `[from, to)`, never empty. Unlike a webinar's [`TimeSlot`] it
/// may start or end at any instant (a report's window is whatever the administrator asks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Period {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Period {
    /// `[from, to)`, or `None` when it would be empty.
    pub fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Self> {
        (from < to).then_some(Self { from, to })
    }

    /// A report's window, as an administrator asks for it.
    pub fn window(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, CapacityError> {
        let period = Self::between(from, to).ok_or(CapacityError::EmptyWindow)?;
        if to - from > Duration::days(MAX_WINDOW_DAYS) {
            return Err(CapacityError::WindowTooLong {
                max_days: MAX_WINDOW_DAYS,
            });
        }
        Ok(period)
    }

    /// The stretch a webinar's slot covers (`None` for a zero-length slot, which holds nothing).
    pub fn of(slot: &TimeSlot) -> Option<Self> {
        Self::between(slot.start(), slot.end())
    }

    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }
    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }

    /// Half-open: touching periods do not overlap.
    pub fn overlaps(&self, other: &Period) -> bool {
        self.from < other.to && other.from < self.to
    }

    /// The part of `self` inside `other`.
    pub fn within(&self, other: &Period) -> Option<Period> {
        Self::between(self.from.max(other.from), self.to.min(other.to))
    }
}

/// A webinar that holds a gateway (scheduled or live) for a stretch of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Booking {
    pub webinar: WebinarId,
    /// The gateway its slot is reserved on.
    pub gateway: GatewayId,
    pub period: Period,
}

/// A gateway that is registered and not retired, as the read models see it now. (Retired gateways
/// hold no reservation and never come back: they are no part of capacity.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayCondition {
    pub gateway: GatewayId,
    pub enabled: bool,
    /// Why an administrator disabled it.
    pub disabled_reason: Option<String>,
    /// The error of a live webinar whose stream failed for good on this gateway (every attempt,
    /// and no other gateway was free to fail over to).
    pub failed_stream: Option<String>,
    /// What the audience sees of a live stream on this gateway that cannot be watched (its HLS
    /// playlist stalled, missing or not a playlist), in a few words.
    pub unwatchable_stream: Option<String>,
}

crate::named_enum! {
    /// Why a gateway cannot be counted on.
    pub enum Unavailability {
        /// An administrator disabled it: it takes no new webinar, and those booked on it need
        /// another gateway at start.
        Disabled = "DISABLED",
        /// It is enabled, but a live webinar's stream failed on it after every attempt.
        StreamFailed = "STREAM_FAILED",
        /// It is enabled and streams, but the audience cannot watch: the stream's playlist
        /// stalled, vanished or is not a playlist.
        StreamUnhealthy = "STREAM_UNHEALTHY",
    }
}

impl GatewayCondition {
    /// Why this gateway cannot be counted on, with the administrator's or the stream's words;
    /// `None` when it is in service. The gravest reason wins: disabled, then a stream that
    /// failed, then one nobody can watch.
    pub fn unavailability(&self) -> Option<(Unavailability, Option<String>)> {
        if !self.enabled {
            return Some((Unavailability::Disabled, self.disabled_reason.clone()));
        }
        if let Some(error) = &self.failed_stream {
            return Some((Unavailability::StreamFailed, Some(error.clone())));
        }
        self.unwatchable_stream
            .clone()
            .map(|detail| (Unavailability::StreamUnhealthy, Some(detail)))
    }
}

/// The numbers of one shortfall, as the event log records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortfallFigures {
    pub period: Period,
    /// The most webinars booked at once during the period.
    pub booked: u32,
    /// Enabled gateways.
    pub available: u32,
    /// Spare gateways wanted on top of the booked webinars.
    pub margin: u32,
}

impl ShortfallFigures {
    /// How many more gateways the period needs: booked plus margin, less available.
    pub fn missing(&self) -> u32 {
        (u64::from(self.booked) + u64::from(self.margin))
            .saturating_sub(u64::from(self.available))
            .try_into()
            .unwrap_or(u32::MAX)
    }
}

/// A maximal stretch of time during which booked webinars plus the margin exceed the enabled
/// gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub figures: ShortfallFigures,
    /// Every webinar booked during the period, in id order.
    pub webinars: Vec<WebinarId>,
}

/// The maximal periods where the number of overlapping `bookings` plus `margin` exceeds
/// `available` gateways, in time order. Only periods with at least one booking count: with no
/// webinar there is nothing to warn about, whatever the margin. Within a period the count may
/// vary; `booked` is its peak, so `missing` is what covers the whole period.
pub fn shortfalls(bookings: &[Booking], available: u32, margin: u32) -> Vec<Shortfall> {
    let short = |count: u64| count > 0 && count + u64::from(margin) > u64::from(available);
    // Every start and end; at one instant ends come first (half-open: a webinar ending at 11:00
    // and one starting at 11:00 never overlap).
    let mut edges: Vec<(DateTime<Utc>, i8)> = bookings
        .iter()
        .flat_map(|b| [(b.period.from, 1), (b.period.to, -1)])
        .collect();
    edges.sort_unstable();
    let mut periods: Vec<(Period, u64)> = Vec::new();
    let mut open: Option<(DateTime<Utc>, u64)> = None;
    let mut count: u64 = 0;
    let mut i = 0;
    while i < edges.len() {
        let at = edges[i].0;
        while i < edges.len() && edges[i].0 == at {
            count = if edges[i].1 > 0 {
                count + 1
            } else {
                count.saturating_sub(1)
            };
            i += 1;
        }
        match (&mut open, short(count)) {
            (None, true) => open = Some((at, count)),
            (Some((_, peak)), true) => *peak = (*peak).max(count),
            (Some((from, peak)), false) => {
                if let Some(period) = Period::between(*from, at) {
                    periods.push((period, *peak));
                }
                open = None;
            }
            (None, false) => {}
        }
    }
    periods
        .into_iter()
        .map(|(period, peak)| {
            let mut webinars: Vec<WebinarId> = bookings
                .iter()
                .filter(|b| b.period.overlaps(&period))
                .map(|b| b.webinar)
                .collect();
            webinars.sort_unstable();
            webinars.dedup();
            Shortfall {
                figures: ShortfallFigures {
                    period,
                    booked: peak.try_into().unwrap_or(u32::MAX),
                    available,
                    margin,
                },
                webinars,
            }
        })
        .collect()
}

/// A gateway that cannot be counted on, and the webinars booked on it in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailableGateway {
    pub gateway: GatewayId,
    pub reason: Unavailability,
    pub detail: Option<String>,
    pub booked: Vec<WebinarId>,
}

/// How a report treats bookings that reach beyond its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounds {
    /// Only what lies inside the window counts, and shortfalls are cut at its edges: the answer
    /// to "what about this week?".
    Clip,
    /// Bookings count whole, and a shortfall that overlaps the window is reported whole: what the
    /// monitor records, so that a shortfall keeps its bounds while time moves through it.
    Whole,
}

/// Capacity over a window: what an administrator reads, and what the monitor records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityReport {
    pub window: Period,
    /// Enabled gateways (a gateway whose stream failed still counts: it may stream the next
    /// webinar; it is listed in `unavailable` for the administrator to look at).
    pub available: u32,
    pub margin: u32,
    pub shortfalls: Vec<Shortfall>,
    /// Disabled gateways and unhealthy ones, by gateway id.
    pub unavailable: Vec<UnavailableGateway>,
}

impl CapacityReport {
    /// Assesses `bookings` against `gateways` (every gateway not retired) over `window`. With
    /// [`Bounds::Clip`], bookings outside the window are ignored; with [`Bounds::Whole`], every
    /// booking given counts (pass those shortly before the window too, so that a shortfall that
    /// began earlier keeps its start) and the shortfalls overlapping the window are kept.
    pub fn assess(
        window: Period,
        bookings: &[Booking],
        gateways: &[GatewayCondition],
        margin: u32,
        bounds: Bounds,
    ) -> Self {
        let counted: Vec<Booking> = match bounds {
            Bounds::Whole => bookings.to_vec(),
            Bounds::Clip => bookings
                .iter()
                .filter_map(|b| {
                    b.period
                        .within(&window)
                        .map(|period| Booking { period, ..*b })
                })
                .collect(),
        };
        let available = gateways
            .iter()
            .filter(|g| g.enabled)
            .count()
            .try_into()
            .unwrap_or(u32::MAX);
        let mut unavailable: Vec<UnavailableGateway> = gateways
            .iter()
            .filter_map(|g| {
                let (reason, detail) = g.unavailability()?;
                let mut booked: Vec<WebinarId> = counted
                    .iter()
                    .filter(|b| b.gateway == g.gateway && b.period.overlaps(&window))
                    .map(|b| b.webinar)
                    .collect();
                booked.sort_unstable();
                booked.dedup();
                Some(UnavailableGateway {
                    gateway: g.gateway,
                    reason,
                    detail,
                    booked,
                })
            })
            .collect();
        unavailable.sort_by_key(|u| u.gateway);
        Self {
            window,
            available,
            margin,
            shortfalls: shortfalls(&counted, available, margin)
                .into_iter()
                .filter(|s| s.figures.period.overlaps(&window))
                .collect(),
            unavailable,
        }
    }

    /// The most gateways missing at any moment of the report (0: every slot is covered).
    pub fn worst_missing(&self) -> u32 {
        self.shortfalls
            .iter()
            .map(|s| s.figures.missing())
            .max()
            .unwrap_or(0)
    }
}

/// What the read models answer about capacity.
#[async_trait]
pub trait CapacityReads: Send + Sync {
    /// `site`'s webinars scheduled or live whose slot overlaps `window`, each with its gateway.
    async fn bookings(&self, window: Period, site: &Site) -> Result<Vec<Booking>, LookupError>;
    /// Every gateway of `site` that is registered and not retired.
    async fn gateways(&self, site: &Site) -> Result<Vec<GatewayCondition>, LookupError>;
    /// The sites that have a gateway or a booked webinar.
    async fn sites(&self) -> Result<Vec<Site>, LookupError>;
}

/// Why a capacity question or observation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    #[error("must be after `from`")]
    EmptyWindow,
    #[error("the window may span at most {max_days} days")]
    WindowTooLong { max_days: i64 },
    /// The monitor reported shortfalls that are not a set of disjoint periods within its window
    /// (a bug of ours, never the user's).
    #[error("the observed shortfalls must be disjoint and overlap the window")]
    MalformedObservation,
}

impl CapacityError {
    /// The stable code clients see (`extensions.code`).
    pub fn code(&self) -> &'static str {
        match self {
            CapacityError::EmptyWindow | CapacityError::WindowTooLong { .. } => "BAD_USER_INPUT",
            CapacityError::MalformedObservation => "INTERNAL",
        }
    }

    /// The input field a `BAD_USER_INPUT` refusal is about.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            CapacityError::EmptyWindow | CapacityError::WindowTooLong { .. } => Some("to"),
            CapacityError::MalformedObservation => None,
        }
    }
}

/// Names the one capacity watch (the whole installation's gateways). An id type of its own, so
/// that it can never be confused with a webinar's or a gateway's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CapacityWatchId(Uuid);

impl CapacityWatchId {
    /// The installation's watch: a fixed id, so that every instance and every restart appends to
    /// the same history.
    pub const ALL_GATEWAYS: Self = Self(Uuid::from_u128(0x0000_0000_0000_4000_8000_c0ff_ee00_0001));

    /// A site's watch: the default site's is [`Self::ALL_GATEWAYS`] (its history began before
    /// sites), another's a fixed id derived from its name (a version 8 UUID of its FNV-1a hash).
    pub fn for_site(site: &Site) -> Self {
        if site.as_str() == Site::DEFAULT {
            return Self::ALL_GATEWAYS;
        }
        let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
        for byte in site.as_str().bytes() {
            hash ^= u128::from(byte);
            hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
        let versioned = (hash & !(0xF << 76)) | (0x8 << 76);
        Self(Uuid::from_u128((versioned & !(0x3 << 62)) | (0x2 << 62)))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for CapacityWatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for CapacityWatchId {
    type Err = crate::ids::IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| crate::ids::IdError)
    }
}

crate::named_enum! {
    /// Why a shortfall is no more.
    pub enum ClearReason {
        /// Enough gateways again: one came back or was added, webinars were cancelled, moved or
        /// ended, or the margin was lowered.
        Resolved = "RESOLVED",
        /// Its period is over.
        Elapsed = "ELAPSED",
    }
}

/// What happened to capacity. Names and shapes are part of the event log's contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapacityEvent {
    /// From `from` to `to`, up to `booked` webinars at once plus `margin` exceed the `available`
    /// enabled gateways.
    CapacityShortfallAppeared {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        booked: u32,
        available: u32,
        margin: u32,
        /// The site whose gateways fall short (a watch's first event says it, for the audit
        /// trail; absent from events before sites: `default`).
        #[serde(default)]
        site: Site,
    },
    /// The same period, with other figures (more webinars, fewer gateways, another margin).
    CapacityShortfallChanged {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        booked: u32,
        available: u32,
        margin: u32,
    },
    CapacityShortfallCleared {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        reason: ClearReason,
    },
}

impl DomainEvent for CapacityEvent {
    fn event_type(&self) -> String {
        match self {
            CapacityEvent::CapacityShortfallAppeared { .. } => "CapacityShortfallAppeared",
            CapacityEvent::CapacityShortfallChanged { .. } => "CapacityShortfallChanged",
            CapacityEvent::CapacityShortfallCleared { .. } => "CapacityShortfallCleared",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// What the monitor tells the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapacityCommand {
    /// The shortfalls found overlapping `window` (reported whole, see [`Bounds::Whole`]); the
    /// window's start is "now" for the watch.
    Observe {
        window: Period,
        shortfalls: Vec<ShortfallFigures>,
        /// The site watched (its gateways, its bookings).
        site: Site,
    },
}

/// The shortfalls announced and not yet cleared: what the log has said so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityWatch {
    /// In time order, disjoint.
    pub open: Vec<ShortfallFigures>,
}

impl CapacityWatch {
    /// The events an observation brings: only differences from what was announced, so that the
    /// same observation twice records nothing. A shortfall is known by its period; one whose
    /// period changed clears and another appears. Announced shortfalls beyond the window's end
    /// are left alone (out of view, not resolved); those that ended before its start elapsed.
    pub fn decide(&self, command: CapacityCommand) -> Result<Vec<CapacityEvent>, CapacityError> {
        let CapacityCommand::Observe {
            window,
            mut shortfalls,
            site,
        } = command;
        shortfalls.sort_by_key(|s| s.period);
        let disjoint = shortfalls
            .windows(2)
            .all(|pair| pair[0].period.to <= pair[1].period.from);
        if !disjoint || shortfalls.iter().any(|s| !s.period.overlaps(&window)) {
            return Err(CapacityError::MalformedObservation);
        }
        let mut events = Vec::new();
        for open in &self.open {
            let (from, to) = (open.period.from, open.period.to);
            if to <= window.from {
                events.push(CapacityEvent::CapacityShortfallCleared {
                    from,
                    to,
                    reason: ClearReason::Elapsed,
                });
            } else if from < window.to && !shortfalls.iter().any(|s| s.period == open.period) {
                events.push(CapacityEvent::CapacityShortfallCleared {
                    from,
                    to,
                    reason: ClearReason::Resolved,
                });
            }
        }
        for seen in shortfalls {
            let ShortfallFigures {
                period,
                booked,
                available,
                margin,
            } = seen;
            let (from, to) = (period.from, period.to);
            match self.open.iter().find(|o| o.period == period) {
                None => events.push(CapacityEvent::CapacityShortfallAppeared {
                    from,
                    to,
                    booked,
                    available,
                    margin,
                    site: site.clone(),
                }),
                Some(open) if *open != seen => {
                    events.push(CapacityEvent::CapacityShortfallChanged {
                        from,
                        to,
                        booked,
                        available,
                        margin,
                    })
                }
                Some(_) => {}
            }
        }
        Ok(events)
    }
}

impl Identified for CapacityWatch {
    type Id = CapacityWatchId;
}

impl Aggregate for CapacityWatch {
    const TYPE: &'static str = "CapacityWatch";
    type Command = CapacityCommand;
    type Event = CapacityEvent;
    type Error = CapacityError;
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
        let figures = |from, to, booked, available, margin| {
            Period::between(from, to).map(|period| ShortfallFigures {
                period,
                booked,
                available,
                margin,
            })
        };
        match event {
            CapacityEvent::CapacityShortfallAppeared {
                from,
                to,
                booked,
                available,
                margin,
                ..
            }
            | CapacityEvent::CapacityShortfallChanged {
                from,
                to,
                booked,
                available,
                margin,
            } => {
                // Recorded events are never empty periods; one would hold nothing to clear.
                if let Some(seen) = figures(from, to, booked, available, margin) {
                    self.open.retain(|o| o.period != seen.period);
                    self.open.push(seen);
                    self.open.sort_by_key(|o| o.period);
                }
            }
            CapacityEvent::CapacityShortfallCleared { from, to, .. } => {
                self.open
                    .retain(|o| (o.period.from, o.period.to) != (from, to));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 7, hour, minute, 0)
            .single()
            .expect("valid time")
    }

    fn period(from: (u32, u32), to: (u32, u32)) -> Period {
        Period::between(at(from.0, from.1), at(to.0, to.1)).expect("not empty")
    }

    fn booking(gateway: GatewayId, from: (u32, u32), to: (u32, u32)) -> Booking {
        Booking {
            webinar: WebinarId::new(),
            gateway,
            period: period(from, to),
        }
    }

    fn gateway(enabled: bool) -> GatewayCondition {
        GatewayCondition {
            gateway: GatewayId::new(),
            enabled,
            disabled_reason: (!enabled).then(|| "maintenance".to_owned()),
            failed_stream: None,
            unwatchable_stream: None,
        }
    }

    #[test]
    fn a_window_must_move_forward_and_span_at_most_a_year() {
        assert_eq!(
            Period::window(at(10, 0), at(10, 0)),
            Err(CapacityError::EmptyWindow)
        );
        assert_eq!(
            Period::window(at(11, 0), at(10, 0)),
            Err(CapacityError::EmptyWindow)
        );
        assert!(Period::window(at(0, 0), at(0, 0) + Duration::days(366)).is_ok());
        let too_long = Period::window(
            at(0, 0),
            at(0, 0) + Duration::days(366) + Duration::minutes(1),
        );
        assert_eq!(
            too_long,
            Err(CapacityError::WindowTooLong { max_days: 366 })
        );
        assert_eq!(
            too_long.map_err(|e| (e.code(), e.field())),
            Err(("BAD_USER_INPUT", Some("to")))
        );
    }

    #[test]
    fn three_webinars_on_two_gateways_fall_short_where_all_three_overlap() {
        let g = GatewayId::new();
        let a = booking(g, (10, 0), (12, 0));
        let b = booking(g, (10, 30), (11, 30));
        let c = booking(g, (11, 0), (13, 0));
        let found = shortfalls(&[a, b, c], 2, 0);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].figures.period, period((11, 0), (11, 30)));
        assert_eq!(
            (found[0].figures.booked, found[0].figures.missing()),
            (3, 1)
        );
        let mut all = vec![a.webinar, b.webinar, c.webinar];
        all.sort_unstable();
        assert_eq!(found[0].webinars, all);
    }

    #[test]
    fn a_margin_widens_a_shortfall_to_the_maximal_period_and_reports_its_peak() {
        let g = GatewayId::new();
        let bookings = [
            booking(g, (10, 0), (12, 0)),
            booking(g, (10, 30), (11, 30)),
            booking(g, (11, 0), (13, 0)),
            // Back to back with the last one: never overlaps it.
            booking(g, (13, 0), (14, 0)),
            // Alone, later: two gateways and a margin of one cover it.
            booking(g, (16, 0), (17, 0)),
        ];
        let found = shortfalls(&bookings, 2, 1);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].figures.period, period((10, 30), (12, 0)));
        assert_eq!(
            (found[0].figures.booked, found[0].figures.missing()),
            (3, 2)
        );
        assert_eq!(found[0].webinars.len(), 3);
        // No gateway at all: every booked minute falls short, and only those.
        let found = shortfalls(&bookings, 0, 0);
        let periods: Vec<Period> = found.iter().map(|s| s.figures.period).collect();
        assert_eq!(
            periods,
            [period((10, 0), (14, 0)), period((16, 0), (17, 0))]
        );
    }

    #[test]
    fn no_booking_means_no_shortfall_whatever_the_margin() {
        assert!(shortfalls(&[], 0, 3).is_empty());
    }

    #[test]
    fn back_to_back_webinars_do_not_overlap() {
        let g = GatewayId::new();
        let bookings = [booking(g, (10, 0), (11, 0)), booking(g, (11, 0), (12, 0))];
        assert!(shortfalls(&bookings, 1, 0).is_empty());
    }

    proptest::proptest! {
        /// Every instant is in a shortfall exactly when the bookings over it plus the margin
        /// exceed the gateways (and it has a booking); shortfalls are maximal and disjoint.
        #[test]
        fn shortfalls_are_exactly_the_instants_that_fall_short(
            slots in proptest::collection::vec((0i64..48, 1i64..12), 0..12),
            available in 0u32..4,
            margin in 0u32..3,
        ) {
            let base = at(0, 0);
            let g = GatewayId::new();
            let bookings: Vec<Booking> = slots.iter().map(|(start, len)| Booking {
                webinar: WebinarId::new(),
                gateway: g,
                period: Period::between(
                    base + Duration::minutes(start * 15),
                    base + Duration::minutes((start + len) * 15),
                ).expect("not empty"),
            }).collect();
            let found = shortfalls(&bookings, available, margin);
            for pair in found.windows(2) {
                // Disjoint and not touching (touching ones would be one maximal period).
                proptest::prop_assert!(pair[0].figures.period.to < pair[1].figures.period.from);
            }
            for quarter in 0..64i64 {
                let instant = base + Duration::minutes(quarter * 15);
                let count = bookings
                    .iter()
                    .filter(|b| b.period.from <= instant && instant < b.period.to)
                    .count() as u32;
                let expected = count > 0 && count + margin > available;
                let inside = found.iter().find(|s| {
                    s.figures.period.from <= instant && instant < s.figures.period.to
                });
                proptest::prop_assert_eq!(inside.is_some(), expected, "at quarter {}", quarter);
                if let Some(shortfall) = inside {
                    proptest::prop_assert!(shortfall.figures.booked >= count);
                }
            }
        }
    }

    #[test]
    fn a_report_clips_to_its_window_or_keeps_bookings_whole() {
        let (on, off) = (gateway(true), gateway(false));
        let bookings = [
            booking(on.gateway, (9, 0), (12, 0)),
            booking(off.gateway, (10, 0), (11, 0)),
            booking(off.gateway, (15, 0), (16, 0)),
            // Short with the first one from 9:00 to 9:30, before the window: never reported.
            booking(on.gateway, (8, 0), (9, 30)),
        ];
        let gateways = [on.clone(), off.clone()];
        let window = period((10, 30), (14, 0));
        let clipped = CapacityReport::assess(window, &bookings, &gateways, 0, Bounds::Clip);
        assert_eq!(clipped.available, 1);
        assert_eq!(clipped.shortfalls.len(), 1);
        assert_eq!(
            clipped.shortfalls[0].figures.period,
            period((10, 30), (11, 0))
        );
        assert_eq!(clipped.worst_missing(), 1);
        assert_eq!(
            clipped.unavailable,
            [UnavailableGateway {
                gateway: off.gateway,
                reason: Unavailability::Disabled,
                detail: Some("maintenance".into()),
                booked: vec![bookings[1].webinar],
            }]
        );
        let whole = CapacityReport::assess(window, &bookings, &gateways, 0, Bounds::Whole);
        let periods: Vec<Period> = whole.shortfalls.iter().map(|s| s.figures.period).collect();
        assert_eq!(periods, [period((10, 0), (11, 0))]);
        assert_eq!(whole.unavailable[0].booked, [bookings[1].webinar]);
    }

    #[test]
    fn the_gravest_reason_names_an_unavailable_gateway() {
        let mut g = gateway(true);
        assert_eq!(g.unavailability(), None);
        g.unwatchable_stream = Some("STALLED: the playlist stopped at 41".into());
        assert_eq!(
            g.unavailability().map(|(reason, _)| reason),
            Some(Unavailability::StreamUnhealthy)
        );
        g.failed_stream = Some("SIPMediaGW answered 500".into());
        assert_eq!(
            g.unavailability().map(|(reason, _)| reason),
            Some(Unavailability::StreamFailed)
        );
        g.enabled = false;
        assert_eq!(
            g.unavailability().map(|(reason, _)| reason),
            Some(Unavailability::Disabled)
        );
    }

    #[test]
    fn a_failed_stream_makes_an_enabled_gateway_unhealthy_but_it_still_counts() {
        let mut sick = gateway(true);
        sick.failed_stream = Some("SIPMediaGW answered 500".into());
        let report = CapacityReport::assess(
            period((0, 0), (23, 0)),
            &[],
            std::slice::from_ref(&sick),
            0,
            Bounds::Clip,
        );
        assert_eq!(report.available, 1);
        assert_eq!(report.unavailable[0].reason, Unavailability::StreamFailed);
        assert_eq!(
            report.unavailable[0].detail.as_deref(),
            Some("SIPMediaGW answered 500")
        );
    }

    fn figures(from: (u32, u32), to: (u32, u32), booked: u32) -> ShortfallFigures {
        ShortfallFigures {
            period: period(from, to),
            booked,
            available: 2,
            margin: 0,
        }
    }

    fn appeared(f: ShortfallFigures) -> CapacityEvent {
        CapacityEvent::CapacityShortfallAppeared {
            from: f.period.from,
            to: f.period.to,
            booked: f.booked,
            available: f.available,
            margin: f.margin,
            site: Site::default(),
        }
    }

    fn observe(from: (u32, u32), to: (u32, u32), seen: Vec<ShortfallFigures>) -> CapacityCommand {
        CapacityCommand::Observe {
            window: period(from, to),
            shortfalls: seen,
            site: Site::default(),
        }
    }

    type Framework = TestFramework<CapacityWatch>;

    #[tokio::test]
    async fn a_new_shortfall_is_announced_once() {
        let short = figures((11, 0), (11, 30), 3);
        Framework::with(())
            .given_no_previous_events()
            .when_async(observe((9, 0), (20, 0), vec![short]))
            .await
            .then_expect_events(vec![appeared(short)]);
        Framework::with(())
            .given(vec![appeared(short)])
            .when_async(observe((9, 5), (20, 5), vec![short]))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn a_shortfall_clears_when_resolved_or_over_and_changes_in_place() {
        let (early, late) = (figures((9, 0), (10, 0), 3), figures((15, 0), (16, 0), 3));
        let given = vec![appeared(early), appeared(late)];
        // Time moved past the early one; the late one is no longer seen.
        Framework::with(())
            .given(given.clone())
            .when_async(observe((10, 0), (20, 0), vec![]))
            .await
            .then_expect_events(vec![
                CapacityEvent::CapacityShortfallCleared {
                    from: at(9, 0),
                    to: at(10, 0),
                    reason: ClearReason::Elapsed,
                },
                CapacityEvent::CapacityShortfallCleared {
                    from: at(15, 0),
                    to: at(16, 0),
                    reason: ClearReason::Resolved,
                },
            ]);
        // One more webinar in the same period: the figures change.
        let worse = figures((15, 0), (16, 0), 4);
        Framework::with(())
            .given(given.clone())
            .when_async(observe((9, 30), (20, 0), vec![early, worse]))
            .await
            .then_expect_events(vec![CapacityEvent::CapacityShortfallChanged {
                from: at(15, 0),
                to: at(16, 0),
                booked: 4,
                available: 2,
                margin: 0,
            }]);
        // A window that ends before the late one leaves it alone: out of view is not resolved.
        Framework::with(())
            .given(given)
            .when_async(observe((9, 30), (12, 0), vec![early]))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn an_observation_must_be_disjoint_shortfalls_in_its_window() {
        let (a, b) = (figures((10, 0), (11, 0), 3), figures((10, 30), (12, 0), 3));
        Framework::with(())
            .given_no_previous_events()
            .when_async(observe((9, 0), (20, 0), vec![a, b]))
            .await
            .then_expect_error(CapacityError::MalformedObservation);
        Framework::with(())
            .given_no_previous_events()
            .when_async(observe((12, 0), (20, 0), vec![a]))
            .await
            .then_expect_error(CapacityError::MalformedObservation);
    }

    #[test]
    fn the_watch_replays_to_what_it_announced() {
        let (a, b) = (figures((10, 0), (11, 0), 3), figures((12, 0), (13, 0), 3));
        let mut watch = CapacityWatch::default();
        for event in [
            appeared(b),
            appeared(a),
            CapacityEvent::CapacityShortfallChanged {
                from: at(12, 0),
                to: at(13, 0),
                booked: 5,
                available: 2,
                margin: 0,
            },
            CapacityEvent::CapacityShortfallCleared {
                from: at(10, 0),
                to: at(11, 0),
                reason: ClearReason::Resolved,
            },
        ] {
            watch.apply(event);
        }
        assert_eq!(watch.open, [ShortfallFigures { booked: 5, ..b }]);
        let json = serde_json::to_value(&watch).expect("a snapshot serialises");
        assert_eq!(
            serde_json::from_value::<CapacityWatch>(json).expect("and reads back"),
            watch
        );
    }

    #[test]
    fn events_read_as_the_log_keeps_them() {
        let cleared = CapacityEvent::CapacityShortfallCleared {
            from: at(9, 0),
            to: at(10, 0),
            reason: ClearReason::Elapsed,
        };
        let json = serde_json::to_value(&cleared).expect("serialises");
        assert_eq!(
            json["CapacityShortfallCleared"]["reason"],
            serde_json::json!("ELAPSED")
        );
        assert_eq!(cleared.event_type(), "CapacityShortfallCleared");
        assert_eq!(
            CapacityWatchId::ALL_GATEWAYS
                .to_string()
                .parse::<CapacityWatchId>(),
            Ok(CapacityWatchId::ALL_GATEWAYS)
        );
    }
}
