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
        gw_ids: webinar_domain::gateway::parse_gw_ids(&[format!("gw{n}"), "spare".into()])
            .expect("valid"),
        browsing_name: Default::default(),
    }
}

/// A history with every kind of gateway event, through the real command path.
async fn write_history(db: &TestDb, gateways: usize) -> Vec<GatewayId> {
    let service = GatewayService::new(
        CommandBus::<Gateway>::new(db.pool.clone(), (), 3, 10),
        db.pool.clone(),
        PermissionPolicy::default(),
        Default::default(),
        webinar_projections::read_ports(&db.pool).gateway_directory,
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
    crate::harness::wait_for_final_log(&db.pool).await;
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
        let aggregate = bus.load(id).await.expect("load");
        let row = webinar_projections::gateways::get(&db.pool, id)
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
        let from_snapshot = with.load(id).await.expect("load");
        sqlx::query("delete from snapshots where aggregate_id = $1")
            .bind(id.to_string())
            .execute(&db.pool)
            .await
            .expect("delete snapshot");
        let replayed = with.load(id).await.expect("load");
        assert_eq!(from_snapshot, replayed);
    }
}

/// Every read model's rows, as JSON text in a stable order.
pub(crate) async fn read_models(pool: &sqlx::PgPool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for projector in webinar_projections::all() {
        for table in projector.tables() {
            // A change counter, not a model of the log: a rebuild counts its own changes.
            if *table == "live_events_version" {
                continue;
            }
            let rows: Option<String> = sqlx::query_scalar(&format!(
                "select json_agg(t order by t::text)::text from {table} t"
            ))
            .fetch_one(pool)
            .await
            .expect("read a table");
            out.push((table.to_string(), rows.unwrap_or_default()));
        }
    }
    out
}

#[tokio::test]
async fn rebuilding_every_projection_gives_the_tables_built_live() {
    use serde_json::json;
    // No reactor: its events would land between the two snapshots.
    let app = crate::harness::TestApp::spawn_with(|settings| settings.run_reactors = false).await;
    let g1 = crate::harness::register_gateway(&app, "r1", Some("t1")).await;
    crate::harness::register_gateway(&app, "r2", None).await;
    let owner = app.token("owner", &["faculty"], &["l1"], &[]);
    let start = |h: i64| {
        json!(
            (chrono::Utc::now() + chrono::Duration::days(2) + chrono::Duration::hours(h))
                .to_rfc3339()
        )
    };
    let schedule =
        "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }";
    let mut ids = Vec::new();
    for (n, groups) in [(0, json!([])), (0, json!(["l1"])), (3, json!([]))] {
        let body = app
            .gql(
                Some(&owner),
                schedule,
                json!({ "input": { "title": format!("R{n}"), "startAt": start(n), "durationMinutes": 60,
                    "enableChat": true, "groups": groups,
                    "presenters": [{ "id": "p", "name": "P" }] } }),
            )
            .await;
        ids.push(
            body["data"]["scheduleWebinar"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_owned(),
        );
    }
    let run = |q: &'static str, id: &str| {
        let (app, owner, id) = (&app, owner.clone(), id.to_owned());
        async move { app.gql(Some(&owner), q, json!({ "id": id })).await }
    };
    run("mutation($id: ID!) { updateWebinar(id: $id, input: { title: \"Renamed\", description: \"D\", groups: [] }) { id } }", &ids[0]).await;
    run(
        "mutation($id: ID!) { startWebinar(id: $id) { joinUrl } }",
        &ids[0],
    )
    .await;
    run(
        "mutation($id: ID!) { postChatMessage(webinarId: $id, text: \"Hello\") { id } }",
        &ids[0],
    )
    .await;
    run("mutation($id: ID!) { stopLive(id: $id) { id } }", &ids[0]).await;
    run("mutation($id: ID!) { endWebinar(id: $id) { id } }", &ids[0]).await;
    run(
        "mutation($id: ID!) { cancelWebinar(id: $id) { id } }",
        &ids[1],
    )
    .await;
    app.gql(
        Some(&app.admin()),
        "mutation($id: ID!) { updateGateway(id: $id, input: { hlsUrl: \"https://cdn.example.org/new.m3u8\", broadcaster: \"New\" }) { id } }",
        json!({ "id": g1 }),
    )
    .await;
    // No reactor runs here: free the gateways of the ended and the cancelled webinar ourselves.
    app.run_reservations_until_idle().await;
    let body = app
        .gql(
            Some(&app.admin()),
            "mutation($id: ID!, $at: DateTime!) { updateWebinar(id: $id, input: { startAt: $at }) { id } }",
            json!({ "id": ids[2], "at": start(0) }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");

    crate::harness::wait_for_final_log(&app.db.pool).await;
    // Every live runner has applied everything.
    let head = event_log::head(&app.db.pool).await.expect("head");
    for projector in webinar_projections::all() {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while consumer::checkpoint(&app.db.pool, projector.name())
            .await
            .expect("checkpoint")
            < head
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not catch up",
                projector.name()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let live = read_models(&app.db.pool).await;
    for projector in webinar_projections::all() {
        consumer::rebuild(&app.db.pool, projector.as_ref(), 1000, &mut |_, _| {})
            .await
            .expect("rebuild");
    }
    let rebuilt = read_models(&app.db.pool).await;
    for ((table, before), (_, after)) in live.iter().zip(&rebuilt) {
        assert_eq!(before, after, "{table} differs after a rebuild");
    }
    let non_empty = live.iter().filter(|(_, rows)| !rows.is_empty()).count();
    assert!(
        non_empty >= 6,
        "the scenario filled the read models: {live:?}"
    );
}

#[tokio::test]
async fn a_generated_history_is_read_by_every_projector() {
    let db = TestDb::create().await;
    let events = webinar_api::history::generate(&db.pool, 120)
        .await
        .expect("generate");
    assert_eq!(events, 20 + 120 * webinar_api::history::EVENTS_PER_WEBINAR);
    crate::harness::wait_for_final_log(&db.pool).await;
    for projector in webinar_projections::all() {
        let read = consumer::rebuild(&db.pool, projector.as_ref(), 500, &mut |_, _| {})
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{} cannot read the generated history: {e}",
                    projector.name()
                )
            });
        assert_eq!(read, events as u64);
    }
    let count = |sql: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .expect(sql)
        }
    };
    assert_eq!(
        count("select count(*) from webinars where status = 'ENDED'").await,
        120
    );
    assert_eq!(
        count("select count(*) from chat_messages where status = 'RELAYED'").await,
        240
    );
    assert_eq!(count("select count(*) from gateway_reservations").await, 0);
    assert_eq!(count("select count(*) from audit_log").await, events);
    assert_eq!(
        count("select count(*) from webinar_stats where chat_relayed = 2").await,
        120
    );
    assert_eq!(count("select count(*) from gateways").await, 20);
}
