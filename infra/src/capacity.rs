//! Capacity warnings: the administrators' report ([`CapacityService::report`]) and the monitor
//! that keeps the `webinar_gateway_capacity_shortfall` gauge and the `CapacityWatch` history
//! current ([`CapacityMonitor`]).
//!
//! Both ask the domain ([`CapacityReport::assess`]) over what the read models answer
//! ([`CapacityReads`], implemented by the `projections` crate). Nothing here is on the scheduling
//! path: a shortfall warns, it never refuses a booking.
//!
//! The monitor runs on the shared leadership loop, so one instance of the cluster records events.
//! It looks every `capacity_check_ms`, and shortly after any commit to the log (once the read
//! models have had time to apply it), at most once per [`SETTLE`]: a change of gateways or
//! bookings shows within a fraction of a second, and a burst of unrelated commits (a chat storm)
//! costs one look, not one per commit.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use webinar_domain::capacity::{
    Bounds, CapacityCommand, CapacityError, CapacityReads, CapacityReport, CapacityWatch,
    CapacityWatchId, Period, ShortfallFigures,
};
use webinar_domain::ports::LookupError;
use webinar_domain::{Action, Caller, PermissionPolicy, Site};

use crate::config::Settings;
use crate::consumer::leader::{run_led, Cause, Led, Step};
use crate::consumer::{ConsumerError, ReactorError};
use crate::error::{from_aggregate, unreachable_within, CommandError};
use crate::event_store::{CommandBus, CommandMetadata};
use crate::metrics;

const COMPONENT: &str = "capacity-monitor";

/// How long after a commit the monitor looks: the projectors apply a commit within milliseconds,
/// so by then the read models show it; commits within this delay share one look.
pub const SETTLE: Duration = Duration::from_millis(250);

/// How far before "now" the monitor reads bookings: a shortfall that began earlier keeps its
/// start (and so its identity in the log) while time moves through it, unless it began longer
/// ago than this.
const LOOKBACK: chrono::Duration = chrono::Duration::days(1);

impl From<CapacityError> for CommandError {
    fn from(error: CapacityError) -> Self {
        match error.field() {
            Some(field) => CommandError::invalid(field, error),
            None => CommandError::Internal(anyhow::Error::new(error).context("capacity watch")),
        }
    }
}

fn lookup_error(error: LookupError) -> CommandError {
    if unreachable_within(&*error) {
        CommandError::Unavailable
    } else {
        CommandError::Internal(anyhow::anyhow!("capacity read models: {error}"))
    }
}

/// Assesses capacity over a window, from the read models.
#[derive(Clone)]
pub struct CapacityService {
    reads: Arc<dyn CapacityReads>,
    policy: PermissionPolicy,
    margin: u32,
}

impl CapacityService {
    pub fn new(reads: Arc<dyn CapacityReads>, policy: PermissionPolicy, margin: u32) -> Self {
        Self {
            reads,
            policy,
            margin,
        }
    }

    /// The one configured for these settings.
    pub fn from_settings(settings: &Settings, reads: Arc<dyn CapacityReads>) -> Self {
        Self::new(
            reads,
            settings.permission_policy(),
            settings.capacity_margin,
        )
    }

    /// `[from, to)` as an administrator asks about it: bookings cut at the window's edges.
    #[tracing::instrument(name = "capacity_report", skip_all)]
    pub async fn report(
        &self,
        caller: &Caller,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<CapacityReport, CommandError> {
        self.policy.authorize(caller, Action::ManageGateways)?;
        let window = Period::window(from, to)?;
        // An administrator sees their own site's gateways and bookings only.
        let site = caller.site().cloned().unwrap_or_default();
        self.assess(window, &site, Bounds::Clip).await
    }

    /// `window`, bounded as `bounds` says (with [`Bounds::Whole`], bookings from [`LOOKBACK`]
    /// before it count too).
    pub async fn assess(
        &self,
        window: Period,
        site: &Site,
        bounds: Bounds,
    ) -> Result<CapacityReport, CommandError> {
        let read = match bounds {
            Bounds::Clip => window,
            Bounds::Whole => {
                Period::between(window.from() - LOOKBACK, window.to()).unwrap_or(window)
            }
        };
        let (bookings, gateways) =
            futures::try_join!(self.reads.bookings(read, site), self.reads.gateways(site))
                .map_err(lookup_error)?;
        Ok(CapacityReport::assess(
            window,
            &bookings,
            &gateways,
            self.margin,
            bounds,
        ))
    }
}

/// What the monitor remembers between looks, while it leads.
#[derive(Debug, Default)]
struct Looks {
    /// When the next scheduled look is due (`None`: at once).
    due: Option<Instant>,
    /// A commit was noticed: look at this instant.
    news: Option<Instant>,
    /// What this leader last told each site's watch; the same again needs no command.
    told: HashMap<Site, Vec<ShortfallFigures>>,
    /// Each site's gauge as this instance last set it.
    gauge: HashMap<Site, u32>,
}

/// Looks for shortfalls over the coming horizon, records their changes as `CapacityWatch` events
/// and sets the gauge.
pub struct CapacityMonitor {
    service: CapacityService,
    bus: CommandBus<CapacityWatch>,
    interval: Duration,
    horizon: chrono::Duration,
    looks: Mutex<Looks>,
}

impl CapacityMonitor {
    pub fn new(
        service: CapacityService,
        bus: CommandBus<CapacityWatch>,
        interval: Duration,
        horizon: chrono::Duration,
    ) -> Self {
        Self {
            service,
            bus,
            interval: interval.max(Duration::from_millis(10)),
            // A horizon of zero or less would look at nothing: a day at least.
            horizon: horizon.max(chrono::Duration::days(1)),
            looks: Mutex::new(Looks::default()),
        }
    }

    /// The monitor these settings describe, over `pool` and the read models' `reads`.
    pub fn from_settings(settings: &Settings, pool: PgPool, reads: Arc<dyn CapacityReads>) -> Self {
        Self::new(
            CapacityService::from_settings(settings, reads),
            CommandBus::new(pool, (), settings.snapshot_every, settings.command_retries),
            Duration::from_millis(settings.capacity_check_ms),
            chrono::Duration::days(settings.capacity_horizon_days),
        )
    }

    /// Looks, on schedule, while this instance leads the monitor, until `cancel`.
    pub async fn run(
        self: Arc<Self>,
        leads: watch::Receiver<bool>,
        wake: watch::Receiver<u64>,
        cancel: CancellationToken,
    ) {
        run_led(self.as_ref(), leads, wake, cancel).await;
    }

    fn looks(&self) -> MutexGuard<'_, Looks> {
        // A poisoned lock only means a panic elsewhere mid-update; the state is still usable.
        self.looks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One look: for each site, assesses `[now, now + horizon)`, tells the site's watch when
    /// its shortfalls differ from what it was last told, and sets the site's gauge.
    #[tracing::instrument(name = "capacity_check", skip_all)]
    pub async fn check(&self) -> Result<(), CommandError> {
        let now = Utc::now();
        let window = Period::between(now, now + self.horizon)
            .ok_or_else(|| CommandError::Internal(anyhow::anyhow!("empty capacity horizon")))?;
        let mut sites: BTreeSet<Site> = self
            .service
            .reads
            .sites()
            .await
            .map_err(lookup_error)?
            .into_iter()
            .collect();
        // A site that had a shortfall and has nothing left must still hear it cleared.
        sites.extend(self.looks().told.keys().cloned());
        for site in sites {
            self.check_site(window, &site).await?;
        }
        Ok(())
    }

    async fn check_site(&self, window: Period, site: &Site) -> Result<(), CommandError> {
        let report = self.service.assess(window, site, Bounds::Whole).await?;
        let seen: Vec<ShortfallFigures> = report.shortfalls.iter().map(|s| s.figures).collect();
        if self.looks().told.get(site) != Some(&seen) {
            let metadata = CommandMetadata::originating(&Caller::System(COMPONENT), None);
            let command = CapacityCommand::Observe {
                window,
                shortfalls: seen.clone(),
                site: site.clone(),
            };
            self.bus
                .execute(CapacityWatchId::for_site(site), command, &metadata)
                .await
                .map_err(from_aggregate)?;
            if !seen.is_empty() {
                tracing::warn!(
                    %site,
                    shortfalls = seen.len(),
                    missing = report.worst_missing(),
                    "gateway capacity falls short"
                );
            }
            self.looks().told.insert(site.clone(), seen);
        }
        self.set_gauge(site, report.worst_missing());
        Ok(())
    }

    /// Several servers in one process (the tests) share one metrics recorder: a server with
    /// nothing to report writes only a change, so that it does not keep overwriting one that has
    /// a shortfall; a shortfall is written at every look.
    fn set_gauge(&self, site: &Site, missing: u32) {
        let mut looks = self.looks();
        if missing != 0 || looks.gauge.get(site) != Some(&missing) {
            ::metrics::gauge!(metrics::CAPACITY_SHORTFALL, "site" => site.to_string())
                .set(f64::from(missing));
            looks.gauge.insert(site.clone(), missing);
        }
    }
}

#[async_trait]
impl Led for CapacityMonitor {
    fn name(&self) -> &'static str {
        "capacity_monitor"
    }
    fn poll(&self) -> Duration {
        self.interval
    }
    /// A commit may have moved a booking or a gateway: look soon after it.
    fn wakes_on_log(&self) -> bool {
        true
    }
    async fn step(&self, cause: Cause) -> Result<Step, ConsumerError> {
        let now = Instant::now();
        let look_at = {
            let mut looks = self.looks();
            match looks.due {
                // The first step of a leader looks at once.
                None => now,
                Some(due) => {
                    if cause == Cause::News {
                        looks.news.get_or_insert(now + SETTLE);
                    }
                    looks.news.map_or(due, |news| news.min(due))
                }
            }
        };
        if now < look_at {
            return Ok(Step::WaitUntil(look_at));
        }
        self.check()
            .await
            .map_err(|e| ConsumerError::Reactor(ReactorError::Command(e)))?;
        let mut looks = self.looks();
        looks.news = None;
        let due = Instant::now() + self.interval;
        looks.due = Some(due);
        Ok(Step::WaitUntil(due))
    }
    /// Another instance leads now: its gauge counts, this one's says nothing is missing (so that
    /// the highest value across instances is the leader's), and what this one told the watch may
    /// be out of date by the time it leads again.
    fn stepped_down(&self) {
        let sites: Vec<Site> = self.looks().gauge.keys().cloned().collect();
        for site in &sites {
            self.set_gauge(site, 0);
        }
        *self.looks() = Looks::default();
    }
}
