//! Who is acting: a signed-in person, nobody, or one of our own components. What each may do is
//! decided in [`crate::policy`].

use serde::{Deserialize, Serialize};

use crate::values::Site;

/// A signed-in person, as the identity provider describes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: String,
    pub name: String,
    pub affiliations: Vec<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    /// The site they act in (the token's `site` claim, or the host's site).
    #[serde(default)]
    pub site: Site,
}

impl Actor {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
    pub fn is_admin(&self) -> bool {
        self.has_role(roles::ADMIN)
    }
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Role names carried in tokens.
pub mod roles {
    pub const ADMIN: &str = "admin";
    pub const AUDITOR: &str = "auditor";
    pub const ANALYST: &str = "analyst";
}

/// Whoever issues a command: a person, nobody, or a component of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nobody signed in, on a site (the host's).
    Anonymous(Site),
    User(Actor),
    /// A background component; recorded as actor `system:<component>`.
    System(&'static str),
}

impl Caller {
    /// Nobody, on the default site.
    pub fn anonymous() -> Self {
        Caller::Anonymous(Site::default())
    }

    /// The site the caller acts in; `None` for our own components, which act in every site.
    pub fn site(&self) -> Option<&Site> {
        match self {
            Caller::Anonymous(site) => Some(site),
            Caller::User(actor) => Some(&actor.site),
            Caller::System(_) => None,
        }
    }

    /// Whether the caller may know of anything of `site` at all.
    pub fn in_site(&self, site: &Site) -> bool {
        self.site().is_none_or(|own| own == site)
    }

    pub fn actor(&self) -> Option<&Actor> {
        match self {
            Caller::User(actor) => Some(actor),
            _ => None,
        }
    }
    /// The id recorded in event metadata.
    pub fn actor_id(&self) -> String {
        match self {
            Caller::Anonymous(_) => "anonymous".to_owned(),
            Caller::User(actor) => actor.id.clone(),
            Caller::System(component) => format!("system:{component}"),
        }
    }
    /// The display name recorded in event metadata.
    pub fn actor_name(&self) -> String {
        match self {
            Caller::Anonymous(_) => "anonymous".to_owned(),
            Caller::User(actor) => actor.name.clone(),
            Caller::System(component) => format!("system:{component}"),
        }
    }
}
