//! Projector runtime: a runner stopped between batches and restarted ends where a rebuild does.

use std::sync::Arc;
use std::time::Duration;

use webinar_domain::gateway::{Gateway, GatewayApi, GatewayChanges, GatewaySpec};
use webinar_domain::{Caller, GatewayId, HttpUrl, Label, PermissionPolicy, RtmpUrl};
use webinar_infra::consumer::{self, ProjectionProgress, ProjectorRunner, RunnerOptions};
use webinar_infra::event_log;
use webinar_infra::event_store::{CommandBus, CommandMetadata};
use webinar_infra::gateways::{GatewayService, TokenInput};
use webinar_infra::secrets::GatewayToken;
use webinar_projections::gateways::GatewaysProjector;

use crate::harness::TestDb;

fn spec(n: usize) -> GatewaySpec {
    GatewaySpec {
        name: Label::parse(&format!("Gateway {n}")).expect("valid"),
        rtmp_url: RtmpUrl::parse(&format!("rtmp://live.example.org/live/{n}")).expect("valid"),
        hls_url: HttpUrl::parse(&format!("https://live.example.org/{n}.m3u8")).expect("valid"),
        broadcaster: Label::parse("Amphi").expect("valid"),
        sipmediagw_url: HttpUrl::parse(&format!("https://gw{n}.example.org")).expect("valid"),
        api: if n.is_multiple_of(2) {
            GatewayApi::Legacy
        } else {
            GatewayApi::Gateway
        },
    }
}

/// A history with every kind of gateway event, through the real command path.
async fn write_history(db: &TestDb, gateways: usize) -> Vec<GatewayId> {
    let service = GatewayService::new(
        CommandBus::<Gateway>::new(db.pool.clone(), (), 3, 10),
        db.pool.clone(),
        PermissionPolicy::default(),
    );
    let caller = Caller::System("test");
    let meta = CommandMetadata::originating(&caller, None);
    let mut ids = Vec::new();
    for n in 0..gateways {
        let token = GatewayToken::parse(&format!("token-{n}")).ok();
        let id = service
            .register(&caller, &meta, spec(n), token)
            .await
            .expect("register")
            .id;
        for round in 0..n % 4 {
            let changes = GatewayChanges {
                name: Some(Label::parse(&format!("Gateway {n} r{round}")).expect("valid")),
                ..Default::default()
            };
            service
                .update(&caller, &meta, id, changes, TokenInput::Keep)
                .await
                .expect("update");
        }
        if n.is_multiple_of(3) {
            service
                .set_enabled(&caller, &meta, id, false, Some("maintenance".into()))
                .await
                .expect("disable");
        }
        if n.is_multiple_of(6) {
            service
                .set_enabled(&caller, &meta, id, true, None)
                .await
                .expect("enable");
        }
        if n.is_multiple_of(5) {
            service
                .update(
                    &caller,
                    &meta,
                    id,
                    GatewayChanges::default(),
                    TokenInput::Clear,
                )
                .await
                .expect("clear token");
        }
        if n.is_multiple_of(7) {
            service.retire(&caller, &meta, id).await.expect("retire");
        }
        ids.push(id);
    }
    ids
}

async fn table(db: &TestDb) -> String {
    sqlx::query_scalar::<_, Option<String>>(
        "select json_agg(g order by gateway_id)::text from gateways g",
    )
    .fetch_one(&db.pool)
    .await
    .expect("read gateways")
    .unwrap_or_default()
}

fn runner(db: &TestDb, batch_size: i64) -> ProjectorRunner {
    ProjectorRunner::new(
        db.pool.clone(),
        Arc::new(GatewaysProjector),
        RunnerOptions {
            batch_size,
            poll: Duration::from_millis(20),
        },
        ProjectionProgress::new(["gateways"]),
    )
}

#[tokio::test]
async fn a_runner_stopped_between_batches_and_restarted_ends_equal_to_a_full_rebuild() {
    let db = TestDb::create().await;
    let ids = write_history(&db, 24).await;
    let head = event_log::head(&db.pool).await.expect("head");

    // A first runner applies three small batches, then "dies".
    let first = runner(&db, 7);
    for _ in 0..3 {
        assert_eq!(first.run_batch().await.expect("batch"), 7);
    }
    drop(first);
    let midway = consumer::checkpoint(&db.pool, "gateways")
        .await
        .expect("checkpoint");
    assert!(
        midway.global_position > 0 && midway < head,
        "stopped midway"
    );

    // A new runner resumes from the checkpoint.
    let second = runner(&db, 7);
    while consumer::checkpoint(&db.pool, "gateways")
        .await
        .expect("checkpoint")
        < head
    {
        second.catch_up().await.expect("catch up");
    }
    let resumed = table(&db).await;

    let mut calls = 0;
    let replayed = consumer::rebuild(&db.pool, &GatewaysProjector, 1000, &mut |_, _| calls += 1)
        .await
        .expect("rebuild");
    let total: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(replayed, total as u64, "rebuild read the whole log");
    assert!(calls > 0, "rebuild reported progress");
    let rebuilt = table(&db).await;

    assert_eq!(
        resumed, rebuilt,
        "resumed read model equals the rebuilt one"
    );
    let rows: i64 = sqlx::query_scalar("select count(*) from gateways")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(rows, ids.len() as i64);

    // Every row says what its aggregate says.
    let bus = CommandBus::<Gateway>::new(db.pool.clone(), (), 3, 0);
    for id in ids {
        let aggregate = bus.load(&id.to_string()).await.expect("load");
        let row = webinar_projections::gateways::get(&db.pool, id.as_uuid())
            .await
            .expect("read")
            .expect("row");
        assert!(row.matches(&aggregate), "{row:?} vs {aggregate:?}");
    }
}

#[tokio::test]
async fn snapshots_are_taken_and_loading_from_them_gives_the_replayed_state() {
    let db = TestDb::create().await;
    let ids = write_history(&db, 8).await;
    let snapshots: i64 = sqlx::query_scalar("select count(*) from snapshots")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert!(
        snapshots > 0,
        "aggregates with 3 or more events have a snapshot"
    );
    // Snapshot every 3 events vs. no snapshot (every 1_000_000): same state.
    let with = CommandBus::<Gateway>::new(db.pool.clone(), (), 3, 0);
    for id in ids {
        let from_snapshot = with.load(&id.to_string()).await.expect("load");
        sqlx::query("delete from snapshots where aggregate_id = $1")
            .bind(id.to_string())
            .execute(&db.pool)
            .await
            .expect("delete snapshot");
        let replayed = with.load(&id.to_string()).await.expect("load");
        assert_eq!(from_snapshot, replayed);
    }
}
