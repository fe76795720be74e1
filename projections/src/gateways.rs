//! `gateways`: every gateway as administrators see it, without its token. The projector is
//! set-based: a batch's rows are loaded once, folded in memory, and written back in one upsert.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;
use webinar_domain::gateway::{Gateway, GatewayApi, GatewayEvent};
use webinar_domain::{GatewayId, Site};
use webinar_infra::consumer::{ProjectionError, Projector};
use webinar_infra::event_log::{self, StoredEvent};

use crate::events::decoded;

pub struct GatewaysProjector;

/// A row of `gateways`, as folded in memory.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Record {
    gateway_id: Uuid,
    name: String,
    rtmp_url: String,
    hls_url: String,
    broadcaster: String,
    sipmediagw_url: String,
    api: String,
    has_token: bool,
    enabled: bool,
    retired: bool,
    disabled_reason: Option<String>,
    version: i64,
    registered_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    gw_ids: Vec<String>,
    browsing_name: String,
    site: String,
}

impl Record {
    /// Applies one event; `false` when it does not concern this model.
    fn apply(&mut self, event: GatewayEvent) -> bool {
        match event {
            GatewayEvent::GatewayRegistered { .. } => return false,
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
                    self.gw_ids = gw_ids.iter().map(|id| id.as_str().to_owned()).collect();
                }
                let set = |field: &mut String, value: Option<String>| {
                    if let Some(value) = value {
                        *field = value;
                    }
                };
                set(&mut self.name, name.map(|v| v.as_str().to_owned()));
                set(&mut self.rtmp_url, rtmp_url.map(|v| v.as_str().to_owned()));
                set(&mut self.hls_url, hls_url.map(|v| v.as_str().to_owned()));
                set(
                    &mut self.broadcaster,
                    broadcaster.map(|v| v.as_str().to_owned()),
                );
                set(
                    &mut self.sipmediagw_url,
                    sipmediagw_url.map(|v| v.as_str().to_owned()),
                );
                set(&mut self.api, api.map(|v| v.as_str().to_owned()));
                set(
                    &mut self.browsing_name,
                    browsing_name.map(|v| v.as_str().to_owned()),
                );
            }
            GatewayEvent::GatewayTokenRotated { token_fingerprint } => {
                self.has_token = token_fingerprint.is_some();
            }
            GatewayEvent::GatewayDisabled { reason } => {
                self.enabled = false;
                self.disabled_reason = reason;
            }
            GatewayEvent::GatewayEnabled => {
                self.enabled = true;
                self.disabled_reason = None;
            }
            GatewayEvent::GatewayRetired => {
                self.retired = true;
                self.enabled = false;
            }
            // Reservations have their own read model (`gateway_reservations`): not even the
            // version moves here.
            GatewayEvent::SlotReserved { .. } | GatewayEvent::SlotReleased { .. } => return false,
        }
        true
    }
}

const COLUMNS: &str = "gateway_id, name, rtmp_url, hls_url, broadcaster, sipmediagw_url, api,
    has_token, enabled, retired, disabled_reason, version, registered_at, updated_at, gw_ids,
    browsing_name, site";

async fn upsert(conn: &mut PgConnection, rows: &[&Record]) -> Result<(), sqlx::Error> {
    let text = |f: fn(&Record) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    sqlx::query(&format!(
        "insert into gateways ({COLUMNS})
         select g.id, g.name, g.rtmp, g.hls, g.broadcaster, g.url, g.api, g.has_token, g.enabled,
                g.retired, g.reason, g.version, g.registered_at, g.updated_at,
                array(select jsonb_array_elements_text(g.gw_ids)), g.browsing_name, g.site
           from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::bool[], $9::bool[], $10::bool[],
                       $11::text[], $12::bigint[], $13::timestamptz[], $14::timestamptz[],
                       $15::jsonb[], $16::text[], $17::text[])
                as g(id, name, rtmp, hls, broadcaster, url, api, has_token, enabled, retired,
                     reason, version, registered_at, updated_at, gw_ids, browsing_name, site)
         on conflict (gateway_id) do update set
            gw_ids = excluded.gw_ids, browsing_name = excluded.browsing_name,
            name = excluded.name, rtmp_url = excluded.rtmp_url, hls_url = excluded.hls_url,
            broadcaster = excluded.broadcaster, sipmediagw_url = excluded.sipmediagw_url,
            api = excluded.api, has_token = excluded.has_token, enabled = excluded.enabled,
            retired = excluded.retired, disabled_reason = excluded.disabled_reason,
            version = excluded.version, updated_at = excluded.updated_at"
    ))
    .bind(rows.iter().map(|r| r.gateway_id).collect::<Vec<_>>())
    .bind(text(|r| &r.name))
    .bind(text(|r| &r.rtmp_url))
    .bind(text(|r| &r.hls_url))
    .bind(text(|r| &r.broadcaster))
    .bind(text(|r| &r.sipmediagw_url))
    .bind(text(|r| &r.api))
    .bind(rows.iter().map(|r| r.has_token).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.enabled).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.retired).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.disabled_reason.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.registered_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| sqlx::types::Json(&r.gw_ids))
            .collect::<Vec<_>>(),
    )
    .bind(text(|r| &r.browsing_name))
    .bind(text(|r| &r.site))
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl Projector for GatewaysProjector {
    fn name(&self) -> &'static str {
        "gateways"
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["Gateway"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gateways"]
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
        _announce: bool,
    ) -> Result<(), ProjectionError> {
        let mut batch = Vec::new();
        for event in events {
            let (id, payload): (Uuid, GatewayEvent) = decoded(event)?;
            // Reservations outnumber everything else: leave them out at once.
            if !matches!(
                payload,
                GatewayEvent::SlotReserved { .. } | GatewayEvent::SlotReleased { .. }
            ) {
                batch.push((id, payload, event));
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = batch.iter().map(|(id, _, _)| *id).collect();
        let mut rows: HashMap<Uuid, Record> = sqlx::query_as::<_, Record>(&format!(
            "select {COLUMNS} from gateways where gateway_id = any($1)"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|row| (row.gateway_id, row))
        .collect();
        let changed = fold(&mut rows, batch);
        let dirty: Vec<&Record> = changed.iter().filter_map(|id| rows.get(id)).collect();
        if !dirty.is_empty() {
            upsert(conn, &dirty).await?;
        }
        Ok(())
    }
}

/// Folds a batch of (gateway, event) into `rows`; returns the gateways whose row changed.
fn fold<'e>(
    rows: &mut HashMap<Uuid, Record>,
    batch: impl IntoIterator<Item = (Uuid, GatewayEvent, &'e StoredEvent)>,
) -> Vec<Uuid> {
    let mut changed = Vec::new();
    for (id, payload, event) in batch {
        match (rows.get_mut(&id), payload) {
            (Some(row), _) if row.version >= event.sequence => continue,
            (Some(row), payload) => {
                if !row.apply(payload) {
                    continue;
                }
                row.version = event.sequence;
                row.updated_at = event.recorded_at;
            }
            (
                None,
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
                },
            ) => {
                rows.insert(
                    id,
                    Record {
                        gateway_id: id,
                        name: name.as_str().to_owned(),
                        rtmp_url: rtmp_url.as_str().to_owned(),
                        hls_url: hls_url.as_str().to_owned(),
                        broadcaster: broadcaster.as_str().to_owned(),
                        sipmediagw_url: sipmediagw_url.as_str().to_owned(),
                        api: api.as_str().to_owned(),
                        has_token: token_fingerprint.is_some(),
                        enabled: true,
                        retired: false,
                        disabled_reason: None,
                        version: event.sequence,
                        registered_at: event.recorded_at,
                        updated_at: event.recorded_at,
                        gw_ids: gw_ids.iter().map(|id| id.as_str().to_owned()).collect(),
                        browsing_name: browsing_name.as_str().to_owned(),
                        site: site.as_str().to_owned(),
                    },
                );
            }
            (None, _) => continue,
        }
        changed.push(id);
    }
    changed.sort();
    changed.dedup();
    changed
}

/// The events this model ignores: reservations have their own (`gateway_reservations`).
const RESERVATION_EVENTS: &[&str] = &["SlotReserved", "SlotReleased"];

/// One gateway's row as its own events make it, without the table: the answer to a write while
/// the read model is still behind it.
pub async fn from_log(pool: &PgPool, id: GatewayId) -> Result<Option<GatewayRow>, ProjectionError> {
    let events =
        event_log::aggregate_events(pool, "Gateway", &id.to_string(), RESERVATION_EVENTS).await?;
    let batch = events
        .iter()
        .map(|event| decoded(event).map(|(id, payload)| (id, payload, event)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = HashMap::new();
    fold(&mut rows, batch);
    rows.remove(&id.as_uuid())
        .map(GatewayRow::try_from)
        .transpose()
}

impl TryFrom<Record> for GatewayRow {
    type Error = ProjectionError;

    fn try_from(record: Record) -> Result<Self, Self::Error> {
        Ok(GatewayRow {
            gateway_id: GatewayId::from_uuid(record.gateway_id),
            api: record
                .api
                .parse()
                .map_err(|e| ProjectionError::InvalidRow(format!("gateway api: {e}")))?,
            name: record.name,
            rtmp_url: record.rtmp_url,
            hls_url: record.hls_url,
            broadcaster: record.broadcaster,
            sipmediagw_url: record.sipmediagw_url,
            has_token: record.has_token,
            enabled: record.enabled,
            retired: record.retired,
            disabled_reason: record.disabled_reason,
            version: record.version,
            registered_at: record.registered_at,
            updated_at: record.updated_at,
            gw_ids: record.gw_ids,
            browsing_name: record.browsing_name,
            site: record.site,
        })
    }
}

/// One row of `gateways`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GatewayRow {
    #[sqlx(try_from = "Uuid")]
    pub gateway_id: GatewayId,
    pub name: String,
    pub rtmp_url: String,
    pub hls_url: String,
    pub broadcaster: String,
    pub sipmediagw_url: String,
    #[sqlx(try_from = "String")]
    pub api: GatewayApi,
    pub has_token: bool,
    pub enabled: bool,
    pub retired: bool,
    pub disabled_reason: Option<String>,
    pub version: i64,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The SIPMediaGW v1.8+ launcher's gateway containers.
    pub gw_ids: Vec<String>,
    pub browsing_name: String,
    pub site: String,
}

impl GatewayRow {
    /// Whether this row says what the aggregate says (used by consistency tests).
    pub fn matches(&self, gateway: &Gateway) -> bool {
        gateway.registered
            && gateway.name.as_ref().map(|v| v.as_str()) == Some(self.name.as_str())
            && gateway.rtmp_url.as_ref().map(|v| v.as_str()) == Some(self.rtmp_url.as_str())
            && gateway.hls_url.as_ref().map(|v| v.as_str()) == Some(self.hls_url.as_str())
            && gateway.broadcaster.as_ref().map(|v| v.as_str()) == Some(self.broadcaster.as_str())
            && gateway.sipmediagw_url.as_ref().map(|v| v.as_str())
                == Some(self.sipmediagw_url.as_str())
            && gateway.api == Some(self.api)
            && gateway.token_fingerprint.is_some() == self.has_token
            && gateway.enabled == self.enabled
            && gateway.retired == self.retired
            && gateway.browsing_name.as_str() == self.browsing_name
            && gateway.site.as_str() == self.site
            && gateway
                .gw_ids
                .iter()
                .map(|id| id.as_str())
                .eq(self.gw_ids.iter().map(String::as_str))
    }
}

/// The gateways of `site`.
pub async fn list(pool: &PgPool, site: &Site) -> Result<Vec<GatewayRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from gateways where site = $1 order by retired, name, gateway_id"
    ))
    .bind(site.as_str())
    .fetch_all(pool)
    .await
}

pub async fn get(pool: &PgPool, id: GatewayId) -> Result<Option<GatewayRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from gateways where gateway_id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await
}
