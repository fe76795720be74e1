//! The live page decides visibility in SQL (so that pagination stays exact); the domain decides it
//! in `policy::may_see`. This holds the one against the other on the same cases: every kind of
//! caller, every kind of webinar, presenters named at scheduling and added later.

use std::sync::Arc;

use chrono::{Duration, Utc};
use webinar_domain::webinar::{DetailsChange, Webinar, WebinarCommand, WebinarDetails};
use webinar_domain::{Actor, Caller, GatewayId, Person, TimeSlot, Title, WebinarId};
use webinar_infra::consumer::{ProjectionProgress, ProjectorRunner, RunnerOptions};
use webinar_infra::event_store::{CommandBus, CommandMetadata};
use webinar_projections::live_events::{self, Audience, LiveEventFilter, LiveEventsProjector};

use crate::harness::{wait_for_final_log, TestDb};

fn person(id: &str) -> Person {
    Person::parse(id, id).expect("valid")
}

fn user(id: &str, affiliations: &[&str], groups: &[&str], roles: &[&str]) -> Caller {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    Caller::User(Actor {
        id: id.into(),
        name: id.into(),
        affiliations: own(affiliations),
        groups: own(groups),
        roles: own(roles),
        site: Default::default(),
    })
}

/// The same kinds of caller as the policy's table test.
fn callers() -> Vec<(&'static str, Caller)> {
    vec![
        ("anonymous", Caller::anonymous()),
        ("viewer", user("viewer", &["student"], &[], &[])),
        (
            "group member",
            user("member", &["student"], &["l3-info"], &[]),
        ),
        ("presenter", user("presenter", &["student"], &[], &[])),
        ("late presenter", user("late", &["student"], &[], &[])),
        ("owner", user("owner", &["faculty"], &[], &[])),
        ("admin", user("admin", &[], &[], &["admin"])),
        ("auditor", user("auditor", &[], &[], &["auditor"])),
        ("analyst", user("analyst", &[], &[], &["analyst"])),
        ("system", Caller::System("test")),
    ]
}

#[tokio::test]
async fn the_live_page_sql_filter_agrees_with_the_policy_on_every_case() {
    let db = TestDb::create().await;
    let bus = CommandBus::<Webinar>::new(db.pool.clone(), (), 50, 10);
    let system = Caller::System("test");
    let meta = CommandMetadata::originating(&system, None);
    // (kind, restricted, groups, presenter added after scheduling)
    let kinds = [
        ("public", false, vec![], false),
        ("signed in only", true, vec![], false),
        ("grouped", true, vec!["l3-info".to_owned()], false),
        (
            "grouped, presenter added later",
            true,
            vec!["l3-info".to_owned()],
            true,
        ),
        ("other group", true, vec!["m2-bio".to_owned()], true),
    ];
    let mut webinars = Vec::new();
    for (n, (kind, restricted, groups, late)) in kinds.into_iter().enumerate() {
        let id = WebinarId::new();
        let slot = TimeSlot::new_unchecked(Utc::now() + Duration::days(1 + n as i64), 60);
        let details = WebinarDetails {
            title: Title::parse(kind).expect("valid"),
            description: None,
            presenters: vec![person("presenter")],
            enable_chat: true,
            restricted,
            groups,
            record: false,
        };
        let command = WebinarCommand::Schedule {
            owner: person("owner"),
            details,
            slot,
            gateway: GatewayId::new(),
            room: format!("room{n}"),
            site: Default::default(),
        };
        bus.execute(id, command, &meta).await.expect("schedule");
        if late {
            let change = DetailsChange {
                presenters: Some(vec![person("presenter"), person("late")]),
                ..DetailsChange::default()
            };
            bus.execute(id, WebinarCommand::UpdateDetails(change), &meta)
                .await
                .expect("add a presenter");
        }
        webinars.push((kind, id));
    }
    wait_for_final_log(&db.pool).await;
    ProjectorRunner::new(
        db.pool.clone(),
        Arc::new(LiveEventsProjector),
        RunnerOptions::default(),
        ProjectionProgress::new(["live_events"]),
    )
    .catch_up()
    .await
    .expect("project the live events");

    let mut disagreements = Vec::new();
    let mut visible_somewhere = 0;
    for (who, caller) in callers() {
        let audience = Audience::of(&caller);
        let filter = LiveEventFilter {
            statuses: None,
            from: None,
            to: None,
            after: None,
            limit: 100,
        };
        let page: Vec<WebinarId> = live_events::list(&db.pool, &audience, &filter)
            .await
            .expect("list")
            .into_iter()
            .map(|row| row.live_event_id)
            .collect();
        for (kind, id) in &webinars {
            let webinar = bus.load(*id).await.expect("load");
            let policy = webinar.visible_to(&caller);
            let one = live_events::get_visible(&db.pool, &audience, *id)
                .await
                .expect("get")
                .is_some();
            let listed = page.contains(id);
            visible_somewhere += usize::from(policy);
            if policy != one || policy != listed {
                disagreements.push(format!(
                    "{kind} as {who}: policy {policy}, liveEvent {one}, liveEvents {listed}"
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // Both answers are exercised: some cases are visible, some are not.
    assert!(visible_somewhere > 0 && visible_somewhere < callers().len() * webinars.len());
}
