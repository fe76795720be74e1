//! Who is acting, and the permission policy that decides what they may do (Pod's rules).

use serde::{Deserialize, Serialize};

/// A signed-in person, as the identity provider describes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: String,
    pub name: String,
    pub affiliations: Vec<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
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
    Anonymous,
    User(Actor),
    /// A background component; recorded as actor `system:<component>`.
    System(&'static str),
}

impl Caller {
    pub fn actor(&self) -> Option<&Actor> {
        match self {
            Caller::User(actor) => Some(actor),
            _ => None,
        }
    }
    /// The id recorded in event metadata.
    pub fn actor_id(&self) -> String {
        match self {
            Caller::Anonymous => "anonymous".to_owned(),
            Caller::User(actor) => actor.id.clone(),
            Caller::System(component) => format!("system:{component}"),
        }
    }
    /// The display name recorded in event metadata.
    pub fn actor_name(&self) -> String {
        match self {
            Caller::Anonymous => "anonymous".to_owned(),
            Caller::User(actor) => actor.name.clone(),
            Caller::System(component) => format!("system:{component}"),
        }
    }
}

/// Why a caller may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("you must be signed in to do this")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
}

/// Who may do what. The defaults are Pod's (`MEETING_WEBINAR_AFFILIATION`,
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

impl PermissionPolicy {
    fn signed_in(caller: &Caller) -> Result<&Actor, Denied> {
        caller.actor().ok_or(Denied::Unauthenticated)
    }

    /// Gateways (and later live sessions) are for administrators only.
    pub fn manage_gateways(&self, caller: &Caller) -> Result<(), Denied> {
        match caller {
            Caller::System(_) => Ok(()),
            _ if Self::signed_in(caller)?.is_admin() => Ok(()),
            _ => Err(Denied::Forbidden(
                "only an administrator may manage gateways",
            )),
        }
    }

    /// An `admin`, an affiliation in `webinar_affiliations`, or membership of the admin group.
    pub fn can_create_webinar(&self, actor: &Actor) -> bool {
        actor.is_admin()
            || actor.in_group(&self.webinar_admin_group)
            || actor
                .affiliations
                .iter()
                .any(|a| self.webinar_affiliations.contains(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(affiliations: &[&str], groups: &[&str], roles: &[&str]) -> Actor {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Actor {
            id: "u1".into(),
            name: "U One".into(),
            affiliations: own(affiliations),
            groups: own(groups),
            roles: own(roles),
        }
    }

    #[test]
    fn only_admins_and_the_system_manage_gateways() {
        let policy = PermissionPolicy::default();
        assert_eq!(
            policy.manage_gateways(&Caller::Anonymous),
            Err(Denied::Unauthenticated)
        );
        assert!(matches!(
            policy.manage_gateways(&Caller::User(actor(&["faculty"], &[], &["auditor"]))),
            Err(Denied::Forbidden(_))
        ));
        assert!(policy
            .manage_gateways(&Caller::User(actor(&[], &[], &["admin"])))
            .is_ok());
        assert!(policy.manage_gateways(&Caller::System("demo")).is_ok());
    }

    #[test]
    fn webinar_creators_follow_pods_rules() {
        let policy = PermissionPolicy::default();
        assert!(policy.can_create_webinar(&actor(&["staff"], &[], &[])));
        assert!(policy.can_create_webinar(&actor(&[], &["webinar admin"], &[])));
        assert!(policy.can_create_webinar(&actor(&[], &[], &["admin"])));
        assert!(!policy.can_create_webinar(&actor(&["student"], &["l1"], &["analyst"])));
    }
}
