//! `webinars`: the presenters' and administrators' view of each webinar, its projector, and
//! its queries. [`WebinarView`] is what is shown of a webinar, whether it comes from this table or
//! from the aggregate replayed for auditors.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;
use webinar_domain::ports::{LiveWebinar, LiveWebinars, LookupError, OwnerWebinars};
use webinar_domain::webinar::{StreamHealth, StreamState, Webinar, WebinarStatus};
use webinar_domain::{GatewayId, Person, Site, TimeSlot, WebinarAccess, WebinarId};

mod projector;

pub use projector::{WebinarsProjector, WEBINAR_CHANGED};

/// One row of `webinars`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WebinarRow {
    #[sqlx(try_from = "Uuid")]
    pub webinar_id: WebinarId,
    pub title: String,
    pub description: Option<String>,
    pub owner_id: String,
    pub owner_name: String,
    pub presenters: Json<Vec<Person>>,
    pub starts_at: DateTime<Utc>,
    pub duration_minutes: i32,
    pub enable_chat: bool,
    pub restricted: bool,
    pub groups: Vec<String>,
    #[sqlx(try_from = "Uuid")]
    pub gateway_id: GatewayId,
    #[sqlx(try_from = "String")]
    pub status: WebinarStatus,
    #[sqlx(try_from = "String")]
    pub stream_state: StreamState,
    pub stream_error: Option<String>,
    #[sqlx(try_from = "String")]
    pub stream_health: StreamHealth,
    pub stream_health_detail: Option<String>,
    #[sqlx(try_from = "String")]
    pub site: Site,
    pub version: i64,
}

const COLUMNS: &str = "webinar_id, title, description, owner_id, owner_name, presenters,
    starts_at, duration_minutes, enable_chat, restricted, groups, gateway_id, status,
    stream_state, stream_error, stream_health, stream_health_detail, site, version";

/// A webinar as its owner, presenters, administrators (and, replayed, auditors) see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebinarView {
    pub id: WebinarId,
    pub title: String,
    pub description: Option<String>,
    pub owner: Person,
    pub presenters: Vec<Person>,
    pub slot: TimeSlot,
    pub enable_chat: bool,
    pub restricted: bool,
    pub groups: Vec<String>,
    pub gateway_id: Option<GatewayId>,
    pub status: WebinarStatus,
    pub stream_state: StreamState,
    pub stream_error: Option<String>,
    pub stream_health: StreamHealth,
    pub stream_health_detail: Option<String>,
    pub site: Site,
    /// How many events the webinar has had.
    pub version: i64,
}

impl From<WebinarRow> for WebinarView {
    fn from(row: WebinarRow) -> Self {
        WebinarView {
            id: row.webinar_id,
            title: row.title,
            description: row.description,
            owner: Person {
                id: row.owner_id,
                name: row.owner_name,
            },
            presenters: row.presenters.0,
            slot: TimeSlot::new_unchecked(row.starts_at, i64::from(row.duration_minutes)),
            enable_chat: row.enable_chat,
            restricted: row.restricted,
            groups: row.groups,
            gateway_id: Some(row.gateway_id),
            status: row.status,
            stream_state: row.stream_state,
            stream_error: row.stream_error,
            stream_health: row.stream_health,
            stream_health_detail: row.stream_health_detail,
            site: row.site,
            version: row.version,
        }
    }
}

impl WebinarView {
    /// The view of the aggregate's state after `version` events (`None` before it was scheduled).
    pub fn from_state(id: WebinarId, webinar: &Webinar, version: i64) -> Option<Self> {
        let (Some(title), Some(owner), Some(slot)) = (&webinar.title, &webinar.owner, webinar.slot)
        else {
            return None;
        };
        Some(WebinarView {
            id,
            title: title.as_str().to_owned(),
            description: webinar.description.as_ref().map(|d| d.as_str().to_owned()),
            owner: owner.clone(),
            presenters: webinar.presenters.clone(),
            slot,
            enable_chat: webinar.enable_chat,
            restricted: webinar.restricted,
            groups: webinar.groups.clone(),
            gateway_id: webinar.gateway_id,
            status: webinar.status,
            stream_state: webinar.stream,
            stream_error: webinar.stream_error.clone(),
            stream_health: webinar.stream_health,
            stream_health_detail: webinar.stream_health_detail.clone(),
            site: webinar.site.clone(),
            version,
        })
    }
}

impl WebinarAccess for WebinarView {
    fn owner_id(&self) -> Option<&str> {
        Some(&self.owner.id)
    }
    fn presenters(&self) -> &[Person] {
        &self.presenters
    }
    fn restricted(&self) -> bool {
        self.restricted
    }
    fn groups(&self) -> &[String] {
        &self.groups
    }
    fn site(&self) -> &Site {
        &self.site
    }
}

pub async fn get(pool: &PgPool, id: WebinarId) -> Result<Option<WebinarView>, sqlx::Error> {
    let row: Option<WebinarRow> = sqlx::query_as(&format!(
        "select {COLUMNS} from webinars where webinar_id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(WebinarView::from))
}

/// The webinars `person` owns or presents in `site`, by start then id, after the cursor
/// `(start, id)`.
pub async fn hosted_by(
    pool: &PgPool,
    person: &str,
    site: &Site,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<WebinarView>, sqlx::Error> {
    let rows: Vec<WebinarRow> = sqlx::query_as(&format!(
        "select {COLUMNS} from webinars
          where host_ids @> array[$1]
            and ($2::timestamptz is null or (starts_at, webinar_id) > ($2, $3))
            and site = $5
          order by starts_at, webinar_id limit $4"
    ))
    .bind(person)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .bind(site.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(WebinarView::from).collect())
}

/// The webinar whose SIPMediaGW room is `room`, while it can be joined: its title, and its
/// meeting id once it is live.
pub async fn joinable_room(
    pool: &PgPool,
    room: &str,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    let row: Option<(String, Option<String>, String)> = sqlx::query_as(
        "select title, meeting_id, status from webinars
          where room = $1 and status in ('SCHEDULED', 'LIVE')",
    )
    .bind(room)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(title, meeting, status)| (title, meeting.filter(|_| status == "LIVE"))))
}

/// The live webinars, for the meeting watcher.
pub struct PgOwnerWebinars {
    pub pool: PgPool,
}

#[async_trait]
impl OwnerWebinars for PgOwnerWebinars {
    async fn upcoming(&self, owner_id: &str) -> Result<u64, LookupError> {
        let (count,): (i64,) = sqlx::query_as(
            "select count(*) from webinars where owner_id = $1 and status in ('SCHEDULED', 'LIVE')",
        )
        .bind(owner_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

pub struct PgLiveWebinars {
    pub pool: PgPool,
}

#[async_trait]
impl LiveWebinars for PgLiveWebinars {
    async fn live(&self) -> Result<Vec<LiveWebinar>, LookupError> {
        let rows: Vec<(Uuid, Option<String>, DateTime<Utc>)> = sqlx::query_as(
            "select webinar_id, meeting_id, ends_at from webinars where status = 'LIVE'",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, meeting_id, ends_at)| LiveWebinar {
                webinar: WebinarId::from_uuid(id),
                meeting_id,
                ends_at,
            })
            .collect())
    }
}
