//! What clients send to schedule and change webinars, parsed into the domain's values at the edge
//! (each error names the input field it came from).

use async_graphql::{InputObject, ID};
use chrono::{DateTime, Utc};
use webinar_domain::values::parse_groups;
use webinar_domain::webinar::{DetailsChange, WebinarDetails};
use webinar_domain::{Description, InvalidValue, Person, Title, WebinarId};
use webinar_infra::webinars::WebinarUpdate;

use crate::graphql::error::ApiError;

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

fn bad(field: &str) -> impl FnOnce(InvalidValue) -> ApiError + '_ {
    move |e| ApiError::bad_input(field, e)
}

const MAX_PRESENTERS: usize = 50;

fn parse_presenters(input: &[PersonInput]) -> Result<Vec<Person>, ApiError> {
    if input.len() > MAX_PRESENTERS {
        return Err(ApiError::bad_input(
            "input.presenters",
            format!("at most {MAX_PRESENTERS} presenters"),
        ));
    }
    let mut presenters: Vec<Person> = Vec::new();
    for (i, p) in input.iter().enumerate() {
        let person = Person::parse(&p.id, &p.name)
            .map_err(|e| ApiError::bad_input(format!("input.presenters[{i}]"), e))?;
        if !presenters.iter().any(|known| known.id == person.id) {
            presenters.push(person);
        }
    }
    Ok(presenters)
}

pub fn parse_webinar_id(path: &str, id: &ID) -> Result<WebinarId, ApiError> {
    id.parse::<WebinarId>()
        .map_err(|e| ApiError::bad_input(path, e))
}

/// What `scheduleWebinar` asks for: the details, and the slot's start and length.
pub struct NewWebinar {
    pub details: WebinarDetails,
    pub start_at: DateTime<Utc>,
    pub duration_minutes: i64,
}

impl ScheduleWebinarInput {
    pub fn parse(&self) -> Result<NewWebinar, ApiError> {
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
        Ok(NewWebinar {
            details,
            start_at: self.start_at,
            duration_minutes: i64::from(self.duration_minutes),
        })
    }
}

impl UpdateWebinarInput {
    pub fn parse(&self) -> Result<WebinarUpdate, ApiError> {
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
        Ok(WebinarUpdate {
            change,
            chat: self.enable_chat,
            start_at: self.start_at,
            duration_minutes: self.duration_minutes.map(i64::from),
        })
    }
}
