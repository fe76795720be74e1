//! `me`: who the caller is and what they may do.

use async_graphql::{Context, Object, ResultExt, SimpleObject};

use super::context::parts;

/// The signed-in caller.
#[derive(SimpleObject)]
pub struct Viewer {
    pub id: String,
    pub name: String,
    pub affiliations: Vec<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    /// Whether this person may schedule webinars.
    pub can_create_webinar: bool,
    /// The site they act in: their token's `site` claim, or the site of the host asked.
    pub site: String,
}

#[derive(Default)]
pub struct ViewerQuery;

#[Object]
impl ViewerQuery {
    /// The caller; null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Viewer>> {
        let (state, request) = parts(ctx).extend()?;
        Ok(request.caller.actor().map(|actor| Viewer {
            id: actor.id.clone(),
            name: actor.name.clone(),
            affiliations: actor.affiliations.clone(),
            groups: actor.groups.clone(),
            roles: actor.roles.clone(),
            can_create_webinar: state.reads().may_create_webinars(&request.caller),
            site: actor.site.to_string(),
        }))
    }
}
