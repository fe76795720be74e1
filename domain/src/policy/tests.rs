//! The policy as a table: every action against every kind of caller.

use super::*;
use crate::actor::Actor;

struct Sample {
    owner: Person,
    presenters: Vec<Person>,
    restricted: bool,
    groups: Vec<String>,
    site: Site,
}

impl WebinarAccess for Sample {
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

fn person(id: &str) -> Person {
    Person {
        id: id.into(),
        name: id.to_uppercase(),
    }
}

fn webinar(restricted: bool, groups: &[&str]) -> Sample {
    Sample {
        owner: person("owner"),
        presenters: vec![person("presenter")],
        restricted,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        site: Site::default(),
    }
}

fn user(id: &str, affiliations: &[&str], groups: &[&str], roles: &[&str]) -> Caller {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    Caller::User(Actor {
        id: id.into(),
        name: id.into(),
        affiliations: own(affiliations),
        groups: own(groups),
        roles: own(roles),
        site: Site::default(),
    })
}

/// The kinds of caller, in the columns' order.
fn callers() -> Vec<(&'static str, Caller)> {
    vec![
        ("anonymous", Caller::anonymous()),
        ("viewer", user("viewer", &["student"], &[], &[])),
        (
            "group member",
            user("member", &["student"], &["l3-info"], &[]),
        ),
        ("presenter", user("presenter", &["student"], &[], &[])),
        ("owner", user("owner", &["faculty"], &[], &[])),
        ("admin", user("admin", &[], &[], &["admin"])),
        ("auditor", user("auditor", &[], &[], &["auditor"])),
        ("analyst", user("analyst", &[], &[], &["analyst"])),
        ("system", Caller::System("test")),
    ]
}

/// `y` allowed, `u` unauthenticated, `f` forbidden, `h` hidden (answered as not found).
fn outcome(result: Result<(), Denied>) -> char {
    match result {
        Ok(()) => 'y',
        Err(Denied::Unauthenticated) => 'u',
        Err(Denied::Forbidden(_)) => 'f',
        Err(Denied::Hidden) => 'h',
    }
}

fn check(table: &[(Action<'_>, &str)]) {
    let policy = PermissionPolicy::default();
    let callers = callers();
    let mut wrong = Vec::new();
    for (action, expected) in table {
        let expected: Vec<char> = expected.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(
            expected.len(),
            callers.len(),
            "{}: one cell per caller",
            action.name()
        );
        for ((who, caller), want) in callers.iter().zip(expected) {
            let got = outcome(policy.authorize(caller, *action));
            if got != want {
                wrong.push(format!(
                    "{} as {who}: expected {want}, got {got}",
                    action.name()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_action_against_every_kind_of_caller() {
    // A restricted webinar open to the group `l3-info`, owned by `owner`, presented by `presenter`.
    let w = webinar(true, &["l3-info"]);
    #[rustfmt::skip]
    check(&[
        //                                anon viewer member presenter owner admin auditor analyst system
        (Action::CreateWebinar,           "u    f      f      f         y     y     f       f       y"),
        (Action::ViewWebinar(&w),         "u    f      f      y         y     y     f       f       y"),
        (Action::EditWebinar(&w),         "u    f      f      y         y     y     f       f       y"),
        (Action::StartWebinar(&w),        "u    f      f      y         y     f     f       f       y"),
        (Action::OperateWebinar(&w),      "u    f      f      f         y     y     f       f       y"),
        (Action::PostChat(&w),            "u    h      y      y         y     y     h       h       y"),
        (Action::SeeLiveEvent(&w),        "h    h      y      y         y     y     h       h       y"),
        (Action::ManageGateways,          "u    f      f      f         f     y     f       f       y"),
        (Action::ViewLiveSessions,        "u    f      f      f         f     y     f       f       y"),
        (Action::ReadAudit,               "u    f      f      f         f     y     y       f       y"),
        (Action::ReadStats,               "u    f      f      f         f     y     f       y       y"),
    ]);
}

#[test]
fn visibility_depends_on_restriction_and_groups() {
    let public = webinar(false, &[]);
    let signed_in_only = webinar(true, &[]);
    let grouped = webinar(true, &["l3-info"]);
    #[rustfmt::skip]
    check(&[
        //                                    anon viewer member presenter owner admin auditor analyst system
        (Action::SeeLiveEvent(&public),         "y    y      y      y         y     y     y       y       y"),
        (Action::PostChat(&public),             "u    y      y      y         y     y     y       y       y"),
        (Action::SeeLiveEvent(&signed_in_only), "h    y      y      y         y     y     y       y       y"),
        (Action::PostChat(&signed_in_only),     "u    y      y      y         y     y     y       y       y"),
        (Action::SeeLiveEvent(&grouped),        "h    h      y      y         y     y     h       h       y"),
    ]);
}

#[test]
fn creators_follow_the_configured_affiliations_and_group() {
    let policy = PermissionPolicy {
        webinar_affiliations: vec!["researcher".into()],
        webinar_admin_group: "lecturers".into(),
    };
    let allowed = |caller: &Caller| policy.allows(caller, Action::CreateWebinar);
    assert!(allowed(&user("r", &["researcher"], &[], &[])));
    assert!(allowed(&user("l", &[], &["lecturers"], &[])));
    assert!(!allowed(&user("f", &["faculty"], &["webinar admin"], &[])));
}

#[test]
fn another_sites_webinar_does_not_exist_for_anyone_of_this_site() {
    let site_b = Site::parse("site-b").expect("valid");
    let other = Sample {
        site: site_b.clone(),
        ..webinar(false, &[])
    };
    let policy = PermissionPolicy::default();
    // Its own owner and an administrator, both signed in on the default site.
    for caller in [
        user("owner", &["faculty"], &[], &[]),
        user("root", &[], &[], &["admin"]),
    ] {
        for action in [
            Action::ViewWebinar(&other),
            Action::EditWebinar(&other),
            Action::StartWebinar(&other),
            Action::OperateWebinar(&other),
            Action::PostChat(&other),
            Action::SeeLiveEvent(&other),
        ] {
            assert_eq!(
                policy.authorize(&caller, action),
                Err(Denied::Hidden),
                "{}",
                action.name()
            );
        }
    }
    assert!(!may_see(&Caller::anonymous(), &other));
    assert!(may_see(&Caller::Anonymous(site_b), &other));
    assert!(may_see(&Caller::System("test"), &other));
}
