//! Who may do what: the one permission policy (Pod's rules). Every use case asks
//! [`PermissionPolicy::authorize`] once; nothing else in the code base decides a right.

use serde::{Deserialize, Serialize};

use crate::actor::{roles, Actor, Caller};
use crate::values::{Person, Site};

/// Why a caller may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("you must be signed in to do this")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
    /// The caller may not even know the webinar exists: answer as if it did not.
    #[error("no such webinar")]
    Hidden,
}

/// The facts about one webinar that rights depend on. The aggregate and the read models both
/// provide them, so a rule reads the same whichever the caller holds.
pub trait WebinarAccess {
    fn owner_id(&self) -> Option<&str>;
    fn presenters(&self) -> &[Person];
    fn restricted(&self) -> bool;
    fn groups(&self) -> &[String];
    /// The site it belongs to: nobody of another site may know of it.
    fn site(&self) -> &Site;

    fn is_owner(&self, person: &str) -> bool {
        self.owner_id() == Some(person)
    }
    /// Owner or presenter.
    fn is_host(&self, person: &str) -> bool {
        self.is_owner(person) || self.presenters().iter().any(|p| p.id == person)
    }
}

/// Everything a caller may ask to do.
#[derive(Clone, Copy)]
pub enum Action<'a> {
    CreateWebinar,
    /// The presenters' view of a webinar (its settings, gateway name, changes).
    ViewWebinar(&'a dyn WebinarAccess),
    /// Change details and slot.
    EditWebinar(&'a dyn WebinarAccess),
    /// Join as moderator (and, for the owner, start the stream).
    StartWebinar(&'a dyn WebinarAccess),
    /// Stop, restart, end, cancel.
    OperateWebinar(&'a dyn WebinarAccess),
    PostChat(&'a dyn WebinarAccess),
    /// See the webinar's live event on the live page.
    SeeLiveEvent(&'a dyn WebinarAccess),
    ManageGateways,
    /// The BigBlueButton sessions of live webinars (`liveSessions`).
    ViewLiveSessions,
    /// The audit log and the replay of a webinar's history.
    ReadAudit,
    ReadStats,
}

impl<'a> Action<'a> {
    /// The webinar the action is about, if any.
    pub fn webinar(&self) -> Option<&'a dyn WebinarAccess> {
        match *self {
            Action::ViewWebinar(w)
            | Action::EditWebinar(w)
            | Action::StartWebinar(w)
            | Action::OperateWebinar(w)
            | Action::PostChat(w)
            | Action::SeeLiveEvent(w) => Some(w),
            _ => None,
        }
    }

    /// A short name, for tables and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreateWebinar => "create webinar",
            Action::ViewWebinar(_) => "view webinar",
            Action::EditWebinar(_) => "edit webinar",
            Action::StartWebinar(_) => "start webinar",
            Action::OperateWebinar(_) => "operate webinar",
            Action::PostChat(_) => "post chat",
            Action::SeeLiveEvent(_) => "see live event",
            Action::ManageGateways => "manage gateways",
            Action::ViewLiveSessions => "view live sessions",
            Action::ReadAudit => "read audit",
            Action::ReadStats => "read stats",
        }
    }
}

/// The configurable part of the rules. The defaults are Pod's (`MEETING_WEBINAR_AFFILIATION`,
/// `MEETING_WEBINAR_GROUP_ADMIN` as its documentation spells it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionPolicy {
    pub webinar_affiliations: Vec<String>,
    pub webinar_admin_group: String,
}

impl Default for PermissionPolicy {
    fn default() -> Self {
        Self {
            webinar_affiliations: vec!["faculty".into(), "employee".into(), "staff".into()],
            webinar_admin_group: "webinar admin".into(),
        }
    }
}

/// `Ok` when `allowed`, the given refusal otherwise.
fn allow(allowed: bool, refusal: Denied) -> Result<(), Denied> {
    if allowed {
        Ok(())
    } else {
        Err(refusal)
    }
}

/// Whether `caller` may see `webinar`'s live event: anyone for an unrestricted one; a restricted
/// one needs a login and, with groups, membership; hosts and administrators always see theirs.
pub fn may_see(caller: &Caller, webinar: &dyn WebinarAccess) -> bool {
    if !caller.in_site(webinar.site()) {
        return false;
    }
    match caller {
        Caller::System(_) => true,
        Caller::Anonymous(_) => !webinar.restricted(),
        Caller::User(actor) => {
            !webinar.restricted()
                || webinar.groups().is_empty()
                || webinar.groups().iter().any(|g| actor.in_group(g))
                || webinar.is_host(&actor.id)
                || actor.is_admin()
        }
    }
}

impl PermissionPolicy {
    /// An `admin`, an affiliation in `webinar_affiliations`, or membership of the admin group.
    fn may_create(&self, actor: &Actor) -> bool {
        actor.is_admin()
            || actor.in_group(&self.webinar_admin_group)
            || actor
                .affiliations
                .iter()
                .any(|a| self.webinar_affiliations.contains(a))
    }

    /// Whether `caller` may do `action`; when not, why.
    pub fn authorize(&self, caller: &Caller, action: Action<'_>) -> Result<(), Denied> {
        use Denied::Forbidden;
        let actor = match caller {
            // Our own components issue only the commands that are theirs to issue.
            Caller::System(_) => return Ok(()),
            Caller::Anonymous(_) => {
                return match action {
                    Action::SeeLiveEvent(webinar) => {
                        allow(may_see(caller, webinar), Denied::Hidden)
                    }
                    _ => Err(Denied::Unauthenticated),
                }
            }
            Caller::User(actor) => actor,
        };
        let me = actor.id.as_str();
        // Another site's webinar does not exist for this caller.
        if let Some(webinar) = action.webinar() {
            if !caller.in_site(webinar.site()) {
                return Err(Denied::Hidden);
            }
        }
        match action {
            Action::CreateWebinar => allow(
                self.may_create(actor),
                Forbidden("you may not create webinars (ask for the webinar admin group)"),
            ),
            Action::ViewWebinar(w) => allow(
                w.is_host(me) || actor.is_admin(),
                Forbidden(
                    "only the webinar's owner, its presenters or an administrator may see it",
                ),
            ),
            Action::EditWebinar(w) => allow(
                w.is_host(me) || actor.is_admin(),
                Forbidden(
                    "only the webinar's owner, its presenters or an administrator may change it",
                ),
            ),
            Action::StartWebinar(w) => allow(
                w.is_host(me),
                Forbidden("only the webinar's owner or presenters may start it"),
            ),
            Action::OperateWebinar(w) => allow(
                w.is_owner(me) || actor.is_admin(),
                Forbidden("only the webinar's owner or an administrator may do this"),
            ),
            Action::PostChat(w) | Action::SeeLiveEvent(w) => {
                allow(may_see(caller, w), Denied::Hidden)
            }
            Action::ManageGateways => allow(
                actor.is_admin(),
                Forbidden("only an administrator may manage gateways"),
            ),
            Action::ViewLiveSessions => allow(
                actor.is_admin(),
                Forbidden("only an administrator may see live sessions"),
            ),
            Action::ReadAudit => allow(
                actor.is_admin() || actor.has_role(roles::AUDITOR),
                Forbidden("only auditors and administrators may read the audit trail"),
            ),
            Action::ReadStats => allow(
                actor.is_admin() || actor.has_role(roles::ANALYST),
                Forbidden("only analysts and administrators may read statistics"),
            ),
        }
    }

    /// Every action but seeing a live event needs a signed-in person (or one of our components):
    /// asked first, so that nobody learns whether a webinar exists before signing in.
    pub fn require_sign_in(&self, caller: &Caller) -> Result<(), Denied> {
        allow(
            !matches!(caller, Caller::Anonymous(_)),
            Denied::Unauthenticated,
        )
    }

    /// Whether `authorize` would allow it (for fields that show or hide, like `canCreateWebinar`).
    pub fn allows(&self, caller: &Caller, action: Action<'_>) -> bool {
        self.authorize(caller, action).is_ok()
    }
}

#[cfg(test)]
mod tests;
