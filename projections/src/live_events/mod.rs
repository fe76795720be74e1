//! `live_events`: the live page. One event per webinar, with the HLS URL the audience plays.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;
use webinar_domain::webinar::{LiveEventStatus, StreamHealth, StreamState};
use webinar_domain::{Caller, Person, Site, WebinarAccess, WebinarId};

mod cache;
mod projector;

pub use cache::{LivePageCache, Stamp};

pub use projector::{LiveEventsProjector, LIVE_EVENT_CHANGED};

/// One row of `live_events`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LiveEventRow {
    #[sqlx(try_from = "Uuid")]
    pub live_event_id: WebinarId,
    pub title: String,
    pub description: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub hls_url: String,
    pub broadcaster: String,
    #[sqlx(try_from = "String")]
    pub status: LiveEventStatus,
    #[sqlx(try_from = "String")]
    pub stream_state: StreamState,
    #[sqlx(try_from = "String")]
    pub stream_health: StreamHealth,
    pub stream_health_detail: Option<String>,
    pub chat_enabled: bool,
    pub restricted: bool,
    pub groups: Vec<String>,
    /// The owner first, then the presenters.
    pub presenters: Json<Vec<Person>>,
    #[sqlx(try_from = "String")]
    pub site: Site,
}

/// What the permission policy needs to decide who sees a live event, from the row itself (so a
/// change read once can be judged for every subscriber in memory).
impl WebinarAccess for LiveEventRow {
    fn owner_id(&self) -> Option<&str> {
        self.presenters.0.first().map(|p| p.id.as_str())
    }
    fn presenters(&self) -> &[Person] {
        &self.presenters.0
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

const COLUMNS: &str = "live_event_id, title, description, starts_at, ends_at, hls_url, broadcaster,
    status, stream_state, stream_health, stream_health_detail, chat_enabled, restricted, groups,
    presenters, site";

/// Who is looking: visibility is decided in SQL so that pagination stays exact. The condition is
/// the policy's `may_see`, held against it by a test.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    pub person: Option<String>,
    pub groups: Vec<String>,
    pub admin: bool,
    /// One of our own components: sees everything, of every site.
    pub system: bool,
    /// The caller's site: nothing of another is visible.
    pub site: Site,
}

impl Audience {
    /// Every row, whoever may see it (what the cache keeps; callers are filtered in memory).
    pub fn everyone() -> Self {
        Audience {
            system: true,
            ..Audience::default()
        }
    }

    /// The site rows must be of (`None`: any, for our own components).
    fn site_filter(&self) -> Option<&str> {
        (!self.system).then(|| self.site.as_str())
    }

    pub fn of(caller: &Caller) -> Self {
        match caller {
            Caller::Anonymous(site) => Audience {
                site: site.clone(),
                ..Audience::default()
            },
            Caller::System(_) => Audience {
                system: true,
                ..Audience::default()
            },
            Caller::User(actor) => Audience {
                person: Some(actor.id.clone()),
                groups: actor.groups.clone(),
                admin: actor.is_admin(),
                system: false,
                site: actor.site.clone(),
            },
        }
    }
}

/// The SQL condition under which `Audience` ($1 person, $2 groups, $3 admin or system, `site`
/// the placeholder of its site, null for our components) sees a row.
fn visible(site: &str) -> String {
    format!("({site}::text is null or site = {site}) and {VISIBLE}")
}

const VISIBLE: &str = "($3 or not restricted
      or ($1::text is not null and (cardinality(groups) = 0 or groups && $2::text[]))
      or ($1::text is not null and host_ids @> array[$1::text]))";

pub struct LiveEventFilter {
    pub statuses: Option<Vec<LiveEventStatus>>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

pub async fn list(
    pool: &PgPool,
    audience: &Audience,
    filter: &LiveEventFilter,
) -> Result<Vec<LiveEventRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from live_events
          where {}
            and ($4::text[] is null or status = any($4))
            and ($5::timestamptz is null or ends_at > $5)
            and ($6::timestamptz is null or starts_at < $6)
            and ($7::timestamptz is null or (starts_at, live_event_id) > ($7, $8))
          order by starts_at, live_event_id limit $9",
        visible("$10")
    ))
    .bind(&audience.person)
    .bind(&audience.groups)
    .bind(audience.admin || audience.system)
    .bind(
        filter
            .statuses
            .as_ref()
            .map(|s| s.iter().map(LiveEventStatus::as_str).collect::<Vec<_>>()),
    )
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.after.map(|a| a.0))
    .bind(filter.after.map(|a| a.1))
    .bind(filter.limit)
    .bind(audience.site_filter())
    .fetch_all(pool)
    .await
}

/// The live events `ids`, whoever may see them (the change feed reads each change once, for every
/// subscriber; each is judged by the policy in memory).
pub async fn get_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<LiveEventRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from live_events where live_event_id = any($1)"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// One live event, when `audience` may see it.
pub async fn get_visible(
    pool: &PgPool,
    audience: &Audience,
    id: WebinarId,
) -> Result<Option<LiveEventRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from live_events where {} and live_event_id = $4",
        visible("$5")
    ))
    .bind(&audience.person)
    .bind(&audience.groups)
    .bind(audience.admin || audience.system)
    .bind(id.as_uuid())
    .bind(audience.site_filter())
    .fetch_optional(pool)
    .await
}
