//! Capacity warnings, for administrators: where booked webinars outnumber the gateways that can
//! stream them, and which gateways are out of service.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{Context, Enum, Object, ResultExt, SimpleObject, ID};
use chrono::{DateTime, Utc};
use webinar_domain::capacity::{Shortfall, Unavailability};
use webinar_domain::GatewayId;
use webinar_infra::capacity::CapacityService;
use webinar_projections::capacity::PgCapacityReads;

use super::context::parts;
use super::error::{from_command, ApiError};
use super::gateways::Gateway;

/// Why a gateway cannot be counted on.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "Unavailability")]
pub enum GatewayUnavailability {
    /// An administrator disabled it: it takes no new webinar, and the webinars still booked on
    /// it need another gateway when they start.
    Disabled,
    /// It is enabled, but the stream of a live webinar failed on it after every attempt and no
    /// other gateway was free to take over.
    StreamFailed,
    /// It is enabled and streams, but the audience cannot watch (the stream's health is
    /// `STALLED`, `MISSING` or `NOT_HLS`).
    StreamUnhealthy,
}

/// A stretch of time where the webinars booked at once, plus the margin, exceed the enabled
/// gateways. Scheduling is never refused because of it: it is a warning to add or enable
/// gateways, or to move webinars.
#[derive(SimpleObject)]
pub struct CapacityShortfall {
    pub from: DateTime<Utc>,
    /// The end of the stretch (exclusive).
    pub to: DateTime<Utc>,
    /// The most webinars booked at once during the stretch.
    pub booked: i64,
    /// Enabled gateways.
    pub available: i64,
    /// Spare gateways wanted on top of the booked webinars.
    pub margin: i64,
    /// How many more gateways would cover the whole stretch: `booked + margin - available`.
    pub missing: i64,
    /// Every webinar booked during the stretch (scheduled or live).
    pub webinars: Vec<ID>,
}

impl From<Shortfall> for CapacityShortfall {
    fn from(shortfall: Shortfall) -> Self {
        let figures = shortfall.figures;
        CapacityShortfall {
            from: figures.period.from(),
            to: figures.period.to(),
            booked: figures.booked.into(),
            available: figures.available.into(),
            margin: figures.margin.into(),
            missing: figures.missing().into(),
            webinars: shortfall
                .webinars
                .iter()
                .map(|id| ID(id.to_string()))
                .collect(),
        }
    }
}

/// A gateway that is not retired but cannot be counted on.
#[derive(SimpleObject)]
pub struct UnavailableGateway {
    pub gateway: Gateway,
    pub reason: GatewayUnavailability,
    /// The reason given when it was disabled, the failed stream's error, or the unwatchable
    /// stream's health and what was seen.
    pub detail: Option<String>,
    /// The webinars booked on it during the window: they will need another gateway.
    pub booked_webinars: Vec<ID>,
}

/// Gateway capacity over a window.
#[derive(SimpleObject)]
pub struct CapacityReport {
    pub from: DateTime<Utc>,
    /// The end of the window (exclusive).
    pub to: DateTime<Utc>,
    /// Gateways that are enabled (retired ones never count; an unhealthy one still does, and is
    /// listed in `unavailableGateways`).
    pub enabled_gateways: i64,
    /// Spare gateways wanted on top of the booked webinars (the server's
    /// `WEBINAR_CAPACITY_MARGIN`).
    pub margin: i64,
    /// The stretches of the window that fall short, in time order, cut at the window's edges.
    pub shortfalls: Vec<CapacityShortfall>,
    /// Disabled and unhealthy gateways, retired ones aside.
    pub unavailable_gateways: Vec<UnavailableGateway>,
}

#[derive(Default)]
pub struct CapacityQuery;

#[Object]
impl CapacityQuery {
    /// Where, in `[from, to)` (at most 366 days), the webinars booked at once plus the margin
    /// exceed the enabled gateways, and which gateways are disabled or unhealthy. Administrators.
    async fn capacity(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> async_graphql::Result<CapacityReport> {
        async {
            let (state, request) = parts(ctx)?;
            let reads = Arc::new(PgCapacityReads {
                pool: state.pool().clone(),
            });
            let report = CapacityService::from_settings(state.settings(), reads)
                .report(&request.caller, from, to)
                .await
                .map_err(|e| from_command(e, ""))?;
            let mut rows: HashMap<GatewayId, _> = state
                .reads()
                .gateways(&request.caller)
                .await?
                .into_iter()
                .map(|row| (row.gateway_id, row))
                .collect();
            let unavailable_gateways = report
                .unavailable
                .into_iter()
                // A gateway the read model no longer has (retired meanwhile) is left out.
                .filter_map(|u| {
                    Some(UnavailableGateway {
                        gateway: Gateway::from(rows.remove(&u.gateway)?),
                        reason: u.reason.into(),
                        detail: u.detail,
                        booked_webinars: u.booked.iter().map(|id| ID(id.to_string())).collect(),
                    })
                })
                .collect();
            Ok::<_, ApiError>(CapacityReport {
                from: report.window.from(),
                to: report.window.to(),
                enabled_gateways: report.available.into(),
                margin: report.margin.into(),
                shortfalls: report.shortfalls.into_iter().map(Into::into).collect(),
                unavailable_gateways,
            })
        }
        .await
        .extend()
    }
}
