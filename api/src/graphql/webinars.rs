//! Webinars and the live page: scheduling, editing, the presenters' controls, and what the
//! audience sees.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{
    Context, Enum, InputObject, Object, ResultExt, SimpleObject, Subscription, ID,
};
use chrono::{DateTime, Utc};
use futures::Stream;
use uuid::Uuid;
use webinar_domain::chat::ChatText;
use webinar_domain::values::parse_groups;
use webinar_domain::webinar::WebinarStatus as DomainStatus;
use webinar_domain::webinar::{DetailsChange, WebinarDetails};
use webinar_domain::{
    Actor, Caller, Description, Person as DomainPerson, TimeSlot, Title, WebinarId,
};
use webinar_infra::bbb::{NewMeeting, Role};
use webinar_infra::gateways::Written;
use webinar_infra::webinars::{LiveControl, WebinarUpdate};
use webinar_projections::chat_messages::{self, ChatMessageRow};
use webinar_projections::live_events::{self, Audience, LiveEventFilter, LiveEventRow};
use webinar_projections::webinars::{self as read_model, WebinarRow};

use super::context::{parts, RequestContext};
use super::error::{from_command, ApiError};
use super::gateways::Gateway;
use crate::feed::{Change, ChangeFeed};
use crate::state::AppState;

/// The read models a webinar mutation touches; it answers once all have caught up.
const PROJECTORS: &[&str] = &[
    "gateways",
    "gateway_reservations",
    "webinars",
    "live_events",
];

pub const DEFAULT_PAGE: usize = 20;
pub const MAX_PAGE: usize = 100;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum WebinarStatus {
    Scheduled,
    Live,
    Ended,
    Cancelled,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum StreamState {
    Idle,
    Starting,
    Live,
    Stopping,
    Stopped,
    Failed,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum LiveEventStatus {
    Upcoming,
    Live,
    Ended,
    Cancelled,
}

fn webinar_status(s: &str) -> WebinarStatus {
    match s {
        "LIVE" => WebinarStatus::Live,
        "ENDED" => WebinarStatus::Ended,
        "CANCELLED" => WebinarStatus::Cancelled,
        _ => WebinarStatus::Scheduled,
    }
}

fn stream_state(s: &str) -> StreamState {
    match s {
        "STARTING" => StreamState::Starting,
        "LIVE" => StreamState::Live,
        "STOPPING" => StreamState::Stopping,
        "STOPPED" => StreamState::Stopped,
        "FAILED" => StreamState::Failed,
        _ => StreamState::Idle,
    }
}

fn live_status(s: &str) -> LiveEventStatus {
    match s {
        "LIVE" => LiveEventStatus::Live,
        "ENDED" => LiveEventStatus::Ended,
        "CANCELLED" => LiveEventStatus::Cancelled,
        _ => LiveEventStatus::Upcoming,
    }
}

fn live_status_name(s: LiveEventStatus) -> &'static str {
    match s {
        LiveEventStatus::Upcoming => "UPCOMING",
        LiveEventStatus::Live => "LIVE",
        LiveEventStatus::Ended => "ENDED",
        LiveEventStatus::Cancelled => "CANCELLED",
    }
}

#[derive(SimpleObject, Clone)]
pub struct Person {
    pub id: String,
    pub name: String,
}

fn persons(json: &serde_json::Value) -> Vec<Person> {
    json.as_array()
        .map(|people| {
            people
                .iter()
                .map(|p| Person {
                    id: p["id"].as_str().unwrap_or_default().to_owned(),
                    name: p["name"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What the audience sees of a webinar. `id` is the webinar's id.
#[derive(SimpleObject, Clone)]
pub struct LiveEvent {
    pub id: ID,
    pub webinar_id: ID,
    pub title: String,
    pub description: Option<String>,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub hls_url: String,
    pub broadcaster: String,
    pub status: LiveEventStatus,
    pub stream_state: StreamState,
    pub chat_enabled: bool,
    pub restricted: bool,
    pub groups: Vec<String>,
    /// The owner first, then the presenters.
    pub presenters: Vec<Person>,
}

impl From<LiveEventRow> for LiveEvent {
    fn from(row: LiveEventRow) -> Self {
        LiveEvent {
            id: ID(row.live_event_id.to_string()),
            webinar_id: ID(row.live_event_id.to_string()),
            title: row.title,
            description: row.description,
            start_at: row.starts_at,
            end_at: row.ends_at,
            hls_url: row.hls_url,
            broadcaster: row.broadcaster,
            status: live_status(&row.status),
            stream_state: stream_state(&row.stream_state),
            chat_enabled: row.chat_enabled,
            restricted: row.restricted,
            groups: row.groups,
            presenters: persons(&row.presenters),
        }
    }
}

/// A webinar as its owner, presenters and administrators see it.
pub struct Webinar {
    row: WebinarRow,
}

#[Object]
impl Webinar {
    async fn id(&self) -> ID {
        ID(self.row.webinar_id.to_string())
    }
    async fn title(&self) -> &str {
        &self.row.title
    }
    async fn description(&self) -> Option<&str> {
        self.row.description.as_deref()
    }
    async fn owner(&self) -> Person {
        Person {
            id: self.row.owner_id.clone(),
            name: self.row.owner_name.clone(),
        }
    }
    async fn presenters(&self) -> Vec<Person> {
        persons(&self.row.presenters)
    }
    async fn start_at(&self) -> DateTime<Utc> {
        self.row.starts_at
    }
    async fn duration_minutes(&self) -> i32 {
        self.row.duration_minutes
    }
    async fn end_at(&self) -> DateTime<Utc> {
        self.row.ends_at
    }
    async fn enable_chat(&self) -> bool {
        self.row.enable_chat
    }
    async fn restricted(&self) -> bool {
        self.row.restricted
    }
    async fn groups(&self) -> &[String] {
        &self.row.groups
    }
    async fn status(&self) -> WebinarStatus {
        webinar_status(&self.row.status)
    }
    async fn stream_state(&self) -> StreamState {
        stream_state(&self.row.stream_state)
    }
    /// Why the stream last failed.
    async fn stream_error(&self) -> Option<&str> {
        self.row.stream_error.as_deref()
    }
    /// The gateway; administrators only (null for others).
    async fn gateway(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Gateway>> {
        async {
            let (state, request) = parts(ctx)?;
            if !request.caller.actor().is_some_and(Actor::is_admin) {
                return Ok(None);
            }
            Ok::<_, ApiError>(
                webinar_projections::gateways::get(state.pool(), self.row.gateway_id)
                    .await?
                    .map(Gateway::from),
            )
        }
        .await
        .extend()
    }
    /// The gateway's name, for the owner, presenters and administrators.
    async fn gateway_name(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        async {
            let (state, _) = parts(ctx)?;
            Ok::<_, ApiError>(
                webinar_projections::gateways::get(state.pool(), self.row.gateway_id)
                    .await?
                    .map(|g| g.name),
            )
        }
        .await
        .extend()
    }
    async fn live_event(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<LiveEvent>> {
        async {
            let (state, request) = parts(ctx)?;
            let row = live_events::get_visible(
                state.pool(),
                &audience(&request.caller),
                self.row.webinar_id,
            )
            .await?;
            Ok::<_, ApiError>(row.map(LiveEvent::from))
        }
        .await
        .extend()
    }
    /// How many events the webinar has had.
    async fn version(&self) -> i64 {
        self.row.version
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ChatMessageStatus {
    Posted,
    Relayed,
    Failed,
}

/// A message from the audience, relayed into the meeting's public chat.
#[derive(SimpleObject)]
pub struct ChatMessage {
    pub id: ID,
    pub webinar_id: ID,
    pub author: Person,
    pub text: String,
    pub posted_at: DateTime<Utc>,
    pub status: ChatMessageStatus,
}

impl From<ChatMessageRow> for ChatMessage {
    fn from(row: ChatMessageRow) -> Self {
        ChatMessage {
            id: ID(row.message_id.to_string()),
            webinar_id: ID(row.webinar_id.to_string()),
            author: Person {
                id: row.author_id,
                name: row.author_name,
            },
            text: row.text,
            posted_at: row.posted_at,
            status: match row.status.as_str() {
                "RELAYED" => ChatMessageStatus::Relayed,
                "FAILED" => ChatMessageStatus::Failed,
                _ => ChatMessageStatus::Posted,
            },
        }
    }
}

/// The aggregate's state in the read model's shape, so one GraphQL type serves both.
fn row_of(id: WebinarId, webinar: &webinar_domain::webinar::Webinar, version: i64) -> WebinarRow {
    let owner = webinar.owner.clone().unwrap_or(DomainPerson {
        id: String::new(),
        name: String::new(),
    });
    let slot = webinar
        .slot
        .unwrap_or_else(|| TimeSlot::new_unchecked(DateTime::<Utc>::UNIX_EPOCH, 0));
    let mut host_ids = vec![owner.id.clone()];
    host_ids.extend(webinar.presenters.iter().map(|p| p.id.clone()));
    WebinarRow {
        webinar_id: id.as_uuid(),
        title: webinar
            .title
            .as_ref()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        description: webinar.description.as_ref().map(|d| d.as_str().to_owned()),
        owner_id: owner.id,
        owner_name: owner.name,
        presenters: serde_json::json!(webinar
            .presenters
            .iter()
            .map(|p| serde_json::json!({"id": p.id, "name": p.name}))
            .collect::<Vec<_>>()),
        host_ids,
        starts_at: slot.start(),
        ends_at: slot.end(),
        duration_minutes: slot.duration_minutes() as i32,
        enable_chat: webinar.enable_chat,
        restricted: webinar.restricted,
        groups: webinar.groups.clone(),
        gateway_id: webinar.gateway_id.map(|g| g.as_uuid()).unwrap_or_default(),
        room: webinar.room.clone().unwrap_or_default(),
        meeting_id: webinar.meeting_id.clone(),
        status: webinar.status.as_str().to_owned(),
        stream_state: webinar.stream.as_str().to_owned(),
        stream_error: webinar.stream_error.clone(),
        end_reason: webinar
            .end_reason
            .and_then(|r| serde_json::to_value(r).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        version,
    }
}

#[derive(SimpleObject)]
pub struct StartWebinarPayload {
    pub webinar: Webinar,
    /// Where the caller joins the BBB meeting as a moderator.
    pub join_url: String,
}

#[derive(InputObject)]
pub struct PersonInput {
    pub id: String,
    pub name: String,
}

#[derive(InputObject)]
pub struct ScheduleWebinarInput {
    pub title: String,
    pub description: Option<String>,
    /// With a time zone (RFC 3339).
    pub start_at: DateTime<Utc>,
    pub duration_minutes: i32,
    #[graphql(default)]
    pub enable_chat: bool,
    #[graphql(default)]
    pub restricted: bool,
    /// Access groups; any group makes the live event restricted.
    #[graphql(default)]
    pub groups: Vec<String>,
    /// Additional owners: they may edit and start the webinar.
    #[graphql(default)]
    pub presenters: Vec<PersonInput>,
    /// Record the BBB meeting.
    #[graphql(default)]
    pub record: bool,
}

#[derive(InputObject, Default)]
pub struct UpdateWebinarInput {
    pub title: Option<String>,
    /// An empty string removes the description.
    pub description: Option<String>,
    pub start_at: Option<DateTime<Utc>>,
    pub duration_minutes: Option<i32>,
    pub enable_chat: Option<bool>,
    pub restricted: Option<bool>,
    pub groups: Option<Vec<String>>,
    pub presenters: Option<Vec<PersonInput>>,
}

fn bad(field: &str) -> impl FnOnce(webinar_domain::InvalidValue) -> ApiError + '_ {
    move |e| ApiError::bad_input(field, e)
}

fn parse_presenters(input: &[PersonInput]) -> Result<Vec<DomainPerson>, ApiError> {
    if input.len() > 50 {
        return Err(ApiError::bad_input(
            "input.presenters",
            "at most 50 presenters",
        ));
    }
    let mut presenters: Vec<DomainPerson> = Vec::new();
    for (i, p) in input.iter().enumerate() {
        let person = DomainPerson::parse(&p.id, &p.name)
            .map_err(|e| ApiError::bad_input(format!("input.presenters[{i}]"), e))?;
        if !presenters.iter().any(|known| known.id == person.id) {
            presenters.push(person);
        }
    }
    Ok(presenters)
}

fn parse_slot(state: &AppState, start: DateTime<Utc>, minutes: i32) -> Result<TimeSlot, ApiError> {
    use webinar_domain::schedule::SlotError;
    TimeSlot::parse(
        start,
        i64::from(minutes),
        &state.settings().slot_rules(),
        Utc::now(),
    )
    .map_err(|e| match e {
        SlotError::Duration(e) => ApiError::bad_input("input.durationMinutes", e),
        SlotError::Start(e) => ApiError::bad_input("input.startAt", e),
    })
}

pub fn parse_webinar_id(path: &str, id: &ID) -> Result<WebinarId, ApiError> {
    id.parse::<WebinarId>()
        .map_err(|e| ApiError::bad_input(path, e))
}

/// Who is asking, for visibility rules.
pub fn audience(caller: &Caller) -> Audience {
    match caller.actor() {
        Some(actor) => Audience {
            person: Some(actor.id.clone()),
            groups: actor.groups.clone(),
            admin: actor.is_admin(),
        },
        None => Audience::default(),
    }
}

/// A cursor over `(start, id)`: opaque to clients.
fn encode_cursor(start: DateTime<Utc>, id: Uuid) -> String {
    hex::encode(format!("{}|{id}", start.to_rfc3339()))
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let malformed = || ApiError::bad_input("after", "not a cursor this API returned");
    let text = String::from_utf8(hex::decode(cursor).map_err(|_| malformed())?)
        .map_err(|_| malformed())?;
    let (start, id) = text.split_once('|').ok_or_else(malformed)?;
    let start = DateTime::parse_from_rfc3339(start)
        .map_err(|_| malformed())?
        .with_timezone(&Utc);
    let id = id.parse().map_err(|_| malformed())?;
    Ok((start, id))
}

fn page_size(first: Option<i32>) -> Result<usize, ApiError> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if n >= 0 && n as usize <= MAX_PAGE => Ok(n as usize),
        Some(n) => Err(ApiError::bad_input(
            "first",
            format!("must be between 0 and {MAX_PAGE} (got {n})"),
        )),
    }
}

/// Waits for the read models, then reads the webinar back.
async fn read_back(state: &AppState, written: Written<WebinarId>) -> Result<Webinar, ApiError> {
    state.settle(PROJECTORS, written.position).await?;
    read_model::get(state.pool(), written.id.as_uuid())
        .await?
        .map(|row| Webinar { row })
        .ok_or_else(|| ApiError::not_found("webinar"))
}

/// A webinar the caller may see as a host or administrator.
async fn hosted(
    state: &AppState,
    request: &RequestContext,
    id: WebinarId,
) -> Result<Option<Webinar>, ApiError> {
    let actor = request.actor()?;
    let row = read_model::get(state.pool(), id.as_uuid()).await?;
    Ok(row
        .filter(|row| actor.is_admin() || row.host_ids.contains(&actor.id))
        .map(|row| Webinar { row }))
}

#[derive(Default)]
pub struct WebinarQuery;

#[Object]
impl WebinarQuery {
    /// The live page, in start order. Restricted events need a login, and membership of one of
    /// their groups when they have any; hosts and administrators always see theirs.
    async fn live_events(
        &self,
        ctx: &Context<'_>,
        status: Option<Vec<LiveEventStatus>>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, LiveEvent>> {
        async {
            let (state, request) = parts(ctx)?;
            if let (Some(from), Some(to)) = (from, to) {
                if from > to {
                    return Err(ApiError::bad_input("from", "must not be after `to`"));
                }
            }
            let size = page_size(first)?;
            let after = after.as_deref().map(decode_cursor).transpose()?;
            let filter = LiveEventFilter {
                statuses: status.map(|s| {
                    s.into_iter()
                        .map(|s| live_status_name(s).to_owned())
                        .collect()
                }),
                from,
                to,
                after,
                limit: size as i64 + 1,
            };
            let mut rows =
                live_events::list(state.pool(), &audience(&request.caller), &filter).await?;
            let more = rows.len() > size;
            rows.truncate(size);
            let mut connection = Connection::new(after.is_some(), more);
            connection.edges.extend(rows.into_iter().map(|row| {
                Edge::new(
                    encode_cursor(row.starts_at, row.live_event_id),
                    LiveEvent::from(row),
                )
            }));
            Ok::<_, ApiError>(connection)
        }
        .await
        .extend()
    }

    /// One live event, when the caller may see it.
    async fn live_event(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<LiveEvent>> {
        async {
            let (state, request) = parts(ctx)?;
            let id = parse_webinar_id("id", &id)?;
            let row =
                live_events::get_visible(state.pool(), &audience(&request.caller), id.as_uuid())
                    .await?;
            Ok::<_, ApiError>(row.map(LiveEvent::from))
        }
        .await
        .extend()
    }

    /// A webinar, for its owner, presenters and administrators (null for anyone else).
    async fn webinar(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Webinar>> {
        async {
            let (state, request) = parts(ctx)?;
            let id = parse_webinar_id("id", &id)?;
            hosted(state, request, id).await
        }
        .await
        .extend()
    }

    /// The webinars the caller owns or presents, in start order.
    /// Auditors: the webinar as it was at `at`, replayed from its own events (not a read model).
    async fn webinar_as_of(
        &self,
        ctx: &Context<'_>,
        id: ID,
        at: DateTime<Utc>,
    ) -> async_graphql::Result<Option<Webinar>> {
        async {
            let (state, request) = parts(ctx)?;
            let actor = request.actor()?;
            if !(actor.is_admin() || actor.has_role(webinar_domain::actor::roles::AUDITOR)) {
                return Err(ApiError::Forbidden(
                    "only auditors and administrators may replay history".into(),
                ));
            }
            let id = parse_webinar_id("id", &id)?;
            let replayed = webinar_infra::webinars::webinar_as_of(state.pool(), id, at)
                .await
                .map_err(|e| from_command(e, ""))?;
            Ok::<_, ApiError>(replayed.map(|(webinar, version)| Webinar {
                row: row_of(id, &webinar, version),
            }))
        }
        .await
        .extend()
    }

    async fn my_webinars(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Webinar>> {
        async {
            let (state, request) = parts(ctx)?;
            let actor = request.actor()?;
            let size = page_size(first)?;
            let after = after.as_deref().map(decode_cursor).transpose()?;
            let mut rows =
                read_model::hosted_by(state.pool(), &actor.id, after, size as i64 + 1).await?;
            let more = rows.len() > size;
            rows.truncate(size);
            let mut connection = Connection::new(after.is_some(), more);
            connection.edges.extend(rows.into_iter().map(|row| {
                Edge::new(
                    encode_cursor(row.starts_at, row.webinar_id),
                    Webinar { row },
                )
            }));
            Ok::<_, ApiError>(connection)
        }
        .await
        .extend()
    }
}

#[derive(Default)]
pub struct WebinarMutation;

impl ScheduleWebinarInput {
    fn parse(&self, state: &AppState) -> Result<(WebinarDetails, TimeSlot), ApiError> {
        let details = WebinarDetails {
            title: Title::parse(&self.title).map_err(bad("input.title"))?,
            description: match &self.description {
                Some(d) => Description::parse(d).map_err(bad("input.description"))?,
                None => None,
            },
            presenters: parse_presenters(&self.presenters)?,
            enable_chat: self.enable_chat,
            restricted: self.restricted,
            groups: parse_groups(&self.groups).map_err(bad("input.groups"))?,
            record: self.record,
        };
        let slot = parse_slot(state, self.start_at, self.duration_minutes)?;
        Ok((details, slot))
    }
}

impl UpdateWebinarInput {
    fn parse(&self, state: &AppState, current: &WebinarRow) -> Result<WebinarUpdate, ApiError> {
        let change = DetailsChange {
            title: self
                .title
                .as_deref()
                .map(Title::parse)
                .transpose()
                .map_err(bad("input.title"))?,
            description: self
                .description
                .as_deref()
                .map(Description::parse)
                .transpose()
                .map_err(bad("input.description"))?,
            presenters: self
                .presenters
                .as_deref()
                .map(parse_presenters)
                .transpose()?,
            restricted: self.restricted,
            groups: self
                .groups
                .as_deref()
                .map(parse_groups)
                .transpose()
                .map_err(bad("input.groups"))?,
        };
        let slot = if self.start_at.is_some() || self.duration_minutes.is_some() {
            let start = self.start_at.unwrap_or(current.starts_at);
            let minutes = self.duration_minutes.unwrap_or(current.duration_minutes);
            if start == current.starts_at {
                // An unchanged start may lie in the past; only the duration is checked.
                let rules = state.settings().slot_rules();
                Some(
                    TimeSlot::parse(start, i64::from(minutes), &rules, start)
                        .map_err(|e| ApiError::bad_input("input.durationMinutes", e))?,
                )
            } else {
                Some(parse_slot(state, start, minutes)?)
            }
        } else {
            None
        };
        Ok(WebinarUpdate {
            change,
            chat: self.enable_chat,
            slot,
        })
    }
}

/// Runs a live control (stop, restart, end) and reads the webinar back.
async fn live_control(
    ctx: &Context<'_>,
    id: &ID,
    control: LiveControl,
) -> Result<Webinar, ApiError> {
    let (state, request) = parts(ctx)?;
    request.actor()?;
    let id = parse_webinar_id("id", id)?;
    let written = state
        .webinars()
        .operate(
            &request.caller,
            &request.metadata(),
            state.gateways(),
            id,
            control,
        )
        .await
        .map_err(|e| from_command(e, ""))?;
    read_back(state, written).await
}

#[Object]
impl WebinarMutation {
    /// Schedules a webinar on a gateway that is free for its slot, and publishes its live event.
    async fn schedule_webinar(
        &self,
        ctx: &Context<'_>,
        input: ScheduleWebinarInput,
    ) -> async_graphql::Result<Webinar> {
        async {
            let (state, request) = parts(ctx)?;
            let actor = request.actor()?;
            if !state.policy().can_create_webinar(actor) {
                return Err(ApiError::Forbidden(
                    "you may not create webinars (ask for the webinar admin group)".into(),
                ));
            }
            let (details, slot) = input.parse(state)?;
            let written = state
                .webinars()
                .schedule(
                    &request.caller,
                    &request.metadata(),
                    state.gateways(),
                    details,
                    slot,
                )
                .await
                .map_err(|e| from_command(e, "input"))?;
            read_back(state, written).await
        }
        .await
        .extend()
    }

    /// Changes any detail; a new slot may move the webinar to another gateway.
    async fn update_webinar(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateWebinarInput,
    ) -> async_graphql::Result<Webinar> {
        async {
            let (state, request) = parts(ctx)?;
            request.actor()?;
            let id = parse_webinar_id("id", &id)?;
            let current = hosted(state, request, id).await?;
            let current = match current {
                Some(webinar) => webinar.row,
                None => {
                    // Exists but not theirs: forbidden; does not exist: not found.
                    return Err(match read_model::get(state.pool(), id.as_uuid()).await? {
                        Some(_) => ApiError::Forbidden(
                            "only the webinar's owner, its presenters or an administrator may change it".into(),
                        ),
                        None => ApiError::not_found("webinar"),
                    });
                }
            };
            let update = input.parse(state, &current)?;
            let written = state
                .webinars()
                .update(&request.caller, &request.metadata(), state.gateways(), id, update)
                .await
                .map_err(|e| from_command(e, "input"))?;
            read_back(state, written).await
        }
        .await
        .extend()
    }

    /// Cancels a webinar that has not started; its gateway is freed and its live event marked.
    async fn cancel_webinar(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Webinar> {
        async {
            let (state, request) = parts(ctx)?;
            request.actor()?;
            let id = parse_webinar_id("id", &id)?;
            let written = state
                .webinars()
                .cancel(&request.caller, &request.metadata(), state.gateways(), id)
                .await
                .map_err(|e| from_command(e, ""))?;
            read_back(state, written).await
        }
        .await
        .extend()
    }

    /// Starts (or rejoins) the webinar. Only the owner's start asks for the stream.
    async fn start_webinar(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<StartWebinarPayload> {
        async {
            let (state, request) = parts(ctx)?;
            let actor = request.actor()?;
            let id = parse_webinar_id("id", &id)?;
            // Refuse before recording anything when there is no BBB to join.
            let bbb = state.outside().bbb.clone().ok_or_else(|| {
                ApiError::UpstreamUnavailable(
                    "BigBlueButton is not configured (WEBINAR_BBB_URL and WEBINAR_BBB_SECRET)"
                        .into(),
                )
            })?;
            let current = state
                .webinars()
                .load(id)
                .await
                .map_err(|e| from_command(e, ""))?;
            if !current.scheduled {
                return Err(ApiError::not_found("webinar"));
            }
            let meeting_id = current
                .meeting_id
                .clone()
                .unwrap_or_else(|| format!("webinar-{id}"));
            // Only hosts reach BBB: the permission check must come before the call.
            if !current.is_host(&actor.id) {
                return Err(ApiError::Forbidden(
                    "only the webinar's owner or presenters may start it".into(),
                ));
            }
            if matches!(current.status, DomainStatus::Scheduled | DomainStatus::Live) {
                let public = state.settings().public_url();
                let callback = state.signer().callback_url(&public, id);
                let title = current
                    .title
                    .as_ref()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default();
                // Idempotent on BBB's side: a second start finds the meeting and joins it.
                bbb.create(&NewMeeting {
                    meeting_id: &meeting_id,
                    name: &title,
                    logout_url: &public,
                    end_callback_url: &callback,
                    record: current.record,
                })
                .await
                .map_err(|e| ApiError::UpstreamUnavailable(e.to_string()))?;
            }
            let (written, webinar) = state
                .webinars()
                .start(&request.caller, &request.metadata(), id)
                .await
                .map_err(|e| from_command(e, ""))?;
            let meeting = webinar.meeting_id.unwrap_or(meeting_id);
            let join_url = bbb
                .api()
                .join_url(&meeting, &actor.name, &actor.id, Role::Moderator);
            let webinar = read_back(state, written).await?;
            Ok::<_, ApiError>(StartWebinarPayload { webinar, join_url })
        }
        .await
        .extend()
    }

    /// Stops the live stream (the meeting goes on). Answers at once with `STOPPING`.
    async fn stop_live(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Webinar> {
        live_control(ctx, &id, LiveControl::Stop).await.extend()
    }

    /// Stops and starts the live stream again.
    async fn restart_live(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Webinar> {
        live_control(ctx, &id, LiveControl::Restart).await.extend()
    }

    /// Posts a message to a live webinar's chat (signed-in people who may see the event).
    async fn post_chat_message(
        &self,
        ctx: &Context<'_>,
        webinar_id: ID,
        text: String,
    ) -> async_graphql::Result<ChatMessage> {
        async {
            let (state, request) = parts(ctx)?;
            request.actor()?;
            let webinar_id = parse_webinar_id("webinarId", &webinar_id)?;
            let text = ChatText::parse(&text).map_err(bad("text"))?;
            let webinar = state
                .webinars()
                .load(webinar_id)
                .await
                .map_err(|e| from_command(e, ""))?;
            let written = state
                .chat()
                .post(
                    &request.caller,
                    &request.metadata(),
                    webinar_id,
                    &webinar,
                    text,
                )
                .await
                .map_err(|e| from_command(e, ""))?;
            state.settle(&["chat_messages"], written.position).await?;
            chat_messages::get(state.pool(), written.id.as_uuid())
                .await?
                .map(ChatMessage::from)
                .ok_or_else(|| ApiError::not_found("chat message"))
        }
        .await
        .extend()
    }

    /// Ends the meeting and the live stream.
    async fn end_webinar(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Webinar> {
        live_control(ctx, &id, LiveControl::End).await.extend()
    }
}

pub struct WebinarSubscription;

/// The next change of kind `pick` that the stream should look at; `None` when the feed closed.
async fn next_change(
    rx: &mut tokio::sync::broadcast::Receiver<Change>,
    pick: impl Fn(Change) -> Option<Uuid>,
) -> Option<Uuid> {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match rx.recv().await {
            Ok(change) => {
                if let Some(id) = pick(change) {
                    return Some(id);
                }
            }
            // A slow subscriber skips what it missed; the next change brings it up to date.
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return None,
        }
    }
}

#[Subscription(name = "Subscription")]
impl WebinarSubscription {
    /// Every change to a live event the caller may see (visibility is checked on each change).
    async fn live_event_changed(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = LiveEvent>> {
        let (state, request) = parts(ctx).extend()?;
        let feed = ctx
            .data::<ChangeFeed>()
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("schema built without a change feed")))
            .extend()?;
        let pool = state.pool().clone();
        let audience = audience(&request.caller);
        let rx = feed.subscribe();
        Ok(futures::stream::unfold(
            (rx, pool, audience),
            |(mut rx, pool, audience)| async move {
                loop {
                    let id = next_change(&mut rx, |c| match c {
                        Change::LiveEvent(id) => Some(id),
                        Change::Webinar(_) => None,
                    })
                    .await?;
                    match live_events::get_visible(&pool, &audience, id).await {
                        Ok(Some(row)) => return Some((LiveEvent::from(row), (rx, pool, audience))),
                        Ok(None) => continue,
                        Err(error) => {
                            tracing::warn!(%error, "liveEventChanged: cannot read the live event");
                            continue;
                        }
                    }
                }
            },
        ))
    }

    /// Every change to one webinar, for its owner, presenters and administrators.
    async fn webinar_changed(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = Webinar>> {
        let (state, request) = parts(ctx).extend()?;
        let feed = ctx
            .data::<ChangeFeed>()
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("schema built without a change feed")))
            .extend()?;
        let id = parse_webinar_id("id", &id).extend()?;
        // Subscribe first, then check: no change can slip between the two.
        let rx = feed.subscribe();
        if hosted(state, request, id).await.extend()?.is_none() {
            return Err(ApiError::not_found("webinar")).extend();
        }
        let pool = state.pool().clone();
        let wanted = id.as_uuid();
        Ok(futures::stream::unfold(
            (rx, pool),
            move |(mut rx, pool)| async move {
                loop {
                    next_change(&mut rx, |c| match c {
                        Change::Webinar(id) if id == wanted => Some(id),
                        _ => None,
                    })
                    .await?;
                    match read_model::get(&pool, wanted).await {
                        Ok(Some(row)) => return Some((Webinar { row }, (rx, pool))),
                        Ok(None) => continue,
                        Err(error) => {
                            tracing::warn!(%error, "webinarChanged: cannot read the webinar");
                            continue;
                        }
                    }
                }
            },
        ))
    }
}
