//! Property: whatever sequence of schedule, reschedule and cancel runs over whatever gateways, no
//! gateway ever holds two overlapping reservations, and every scheduled webinar holds exactly one
//! reservation — on its own gateway, for its own slot. The directory here offers every gateway,
//! busy or not, in the same order: only the Gateway aggregate stands between a slot and a double
//! booking.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use secrecy::SecretString;
use webinar_domain::gateway::{GatewayApi, GatewaySpec};
use webinar_domain::ports::{GatewayDirectory, LookupError};
use webinar_domain::webinar::{DetailsChange, WebinarDetails, WebinarStatus};
use webinar_domain::{
    Actor, Caller, GatewayId, HttpUrl, Label, RtmpUrl, TimeSlot, Title, WebinarId,
};
use webinar_infra::config::Settings;
use webinar_infra::error::CommandError;
use webinar_infra::event_store::CommandMetadata;
use webinar_infra::webinars::{WebinarService, WebinarUpdate};
use webinar_infra::wiring::{ReadPorts, Services};

use crate::harness::TestDb;

#[derive(Debug, Clone)]
enum Op {
    Schedule {
        start: i64,
        minutes: i64,
    },
    Reschedule {
        which: usize,
        start: i64,
        minutes: i64,
    },
    Cancel {
        which: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let start = 0i64..8;
    let minutes = prop_oneof![Just(30i64), Just(60), Just(90)];
    prop_oneof![
        3 => (start.clone(), minutes.clone()).prop_map(|(start, minutes)| Op::Schedule { start, minutes }),
        2 => (any::<usize>(), start, minutes).prop_map(|(which, start, minutes)| Op::Reschedule { which, start, minutes }),
        1 => any::<usize>().prop_map(|which| Op::Cancel { which }),
    ]
}

fn base() -> DateTime<Utc> {
    let day = (Utc::now() + Duration::days(2)).date_naive();
    day.and_hms_opt(8, 0, 0).expect("valid").and_utc()
}

fn slot(start: i64, minutes: i64) -> TimeSlot {
    TimeSlot::new_unchecked(base() + Duration::minutes(30 * start), minutes)
}

/// Every registered gateway, always in registration order.
#[derive(Default)]
struct EveryGateway(Mutex<Vec<GatewayId>>);

#[async_trait]
impl GatewayDirectory for EveryGateway {
    async fn candidates(
        &self,
        _: &TimeSlot,
        _: WebinarId,
        _: &webinar_domain::Site,
    ) -> Result<Vec<GatewayId>, LookupError> {
        Ok(self.0.lock().map(|ids| ids.clone()).unwrap_or_default())
    }
}

async fn run(gateway_count: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let db = TestDb::create().await;
    let directory = Arc::new(EveryGateway::default());
    let settings = Settings {
        snapshot_every: 5,
        command_retries: 10,
        // The janitor may reconcile every reservation as soon as the operations are over.
        reservation_grace_seconds: 0,
        ..Settings::default()
    };
    let services = Services::build(
        &settings,
        db.pool.clone(),
        &SecretString::from("test".to_owned()),
        ReadPorts {
            gateway_directory: directory.clone(),
            ..webinar_projections::read_ports(&db.pool)
        },
    )
    .expect("services");
    let (gateways, webinars) = (services.gateways.clone(), services.webinars.clone());
    let schedules = ops
        .iter()
        .filter(|op| matches!(op, Op::Schedule { .. }))
        .count();
    let caller = Caller::User(Actor {
        id: "prof".into(),
        name: "Prof".into(),
        affiliations: vec!["faculty".into()],
        groups: vec![],
        roles: vec![],
        site: Default::default(),
    });
    let meta = CommandMetadata::originating(&caller, None);
    let mut gateway_ids = Vec::new();
    for n in 0..gateway_count {
        let spec = GatewaySpec {
            name: Label::parse(&format!("g{n}")).expect("valid"),
            rtmp_url: RtmpUrl::parse("rtmp://h/x").expect("valid"),
            hls_url: HttpUrl::parse("https://h/x").expect("valid"),
            broadcaster: Label::parse("b").expect("valid"),
            sipmediagw_url: HttpUrl::parse(&format!("https://g{n}.example.org")).expect("valid"),
            api: GatewayApi::Legacy,
            gw_ids: Vec::new(),
            browsing_name: Default::default(),
        };
        let system = Caller::System("test");
        let written = gateways
            .register(
                &system,
                &CommandMetadata::originating(&system, None),
                spec,
                None,
            )
            .await
            .expect("register");
        gateway_ids.push(written.id);
    }
    if let Ok(mut ids) = directory.0.lock() {
        ids.clone_from(&gateway_ids);
    }
    let mut ids: Vec<WebinarId> = Vec::new();
    for op in ops {
        let outcome = match op {
            Op::Schedule { start, minutes } => {
                let details = WebinarDetails {
                    title: Title::parse("P").expect("valid"),
                    description: None,
                    presenters: vec![],
                    enable_chat: false,
                    restricted: false,
                    groups: vec![],
                    record: false,
                };
                let slot = slot(start, minutes);
                webinars
                    .schedule(&caller, &meta, details, slot.start(), minutes)
                    .await
                    .map(|w| ids.push(w.id))
            }
            Op::Reschedule {
                which,
                start,
                minutes,
            } if !ids.is_empty() => {
                let id = ids[which % ids.len()];
                let update = WebinarUpdate {
                    change: DetailsChange::default(),
                    chat: None,
                    start_at: Some(slot(start, minutes).start()),
                    duration_minutes: Some(minutes),
                };
                webinars
                    .update(&caller, &meta, id, update)
                    .await
                    .map(|_| ())
            }
            Op::Cancel { which } if !ids.is_empty() => {
                let id = ids[which % ids.len()];
                webinars.cancel(&caller, &meta, id).await.map(|_| ())
            }
            _ => Ok(()),
        };
        match outcome {
            Ok(()) | Err(CommandError::Gateway(_)) | Err(CommandError::Webinar(_)) => {}
            Err(other) => return Err(TestCaseError::fail(format!("unexpected error: {other}"))),
        }
    }

    // What requests leave to the saga's reactions (freeing the gateways of cancelled and moved
    // webinars, and any reservation left behind) happens now.
    crate::harness::run_reservations_until_idle(&db.pool, &services.outside).await;
    // The first schedule always finds a free gateway: the property is not vacuous.
    prop_assert!(
        schedules == 0 || !ids.is_empty(),
        "nothing was ever scheduled"
    );
    let mut held: Vec<(GatewayId, WebinarId, TimeSlot)> = Vec::new();
    for gateway_id in &gateway_ids {
        let gateway = gateways.load(*gateway_id).await.expect("load");
        let slots: Vec<_> = gateway.reservations.iter().collect();
        for (i, (_, a)) in slots.iter().enumerate() {
            for (_, b) in &slots[i + 1..] {
                prop_assert!(
                    !a.overlaps(b),
                    "gateway {gateway_id} double-booked: {a:?} {b:?}"
                );
            }
        }
        held.extend(
            gateway
                .reservations
                .iter()
                .map(|(w, s)| (*gateway_id, *w, *s)),
        );
    }
    for id in &ids {
        let webinar = webinars.load(*id).await.expect("load");
        let mine: Vec<_> = held.iter().filter(|(_, w, _)| w == id).collect();
        match webinar.status {
            WebinarStatus::Scheduled => {
                prop_assert_eq!(
                    mine.len(),
                    1,
                    "webinar {} holds {} reservations",
                    id,
                    mine.len()
                );
                prop_assert_eq!(Some(mine[0].0), webinar.gateway_id);
                prop_assert_eq!(Some(mine[0].2), webinar.slot);
            }
            _ => prop_assert!(mine.is_empty(), "a cancelled webinar still holds a slot"),
        }
    }
    prop_assert_eq!(
        held.len(),
        ids.iter().len() - count_cancelled(&webinars, &ids).await
    );
    Ok(())
}

async fn count_cancelled(webinars: &WebinarService, ids: &[WebinarId]) -> usize {
    let mut n = 0;
    for id in ids {
        if webinars
            .load(*id)
            .await
            .map(|w| w.status == WebinarStatus::Cancelled)
            .unwrap_or(false)
        {
            n += 1;
        }
    }
    n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    #[test]
    fn no_gateway_is_ever_double_booked_and_every_webinar_holds_one_slot(
        gateway_count in 1usize..4,
        ops in proptest::collection::vec(op(), 1..25),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run(gateway_count, ops))?;
    }
}
