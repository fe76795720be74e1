//! Read models under pressure: other people's transactions do not hold them back, a rebuild runs
//! beside the live model while writes go on, and a database that goes away gives a retryable
//! error, then the same instance serves again.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use webinar_infra::{consumer, event_log};

use crate::harness::{
    error_code, receive, register_gateway, silent, subscribe, DbProxy, TestApp, TestDb,
};
use crate::projectors::read_models;

const SCHEDULE: &str =
    "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }";
const RENAME: &str =
    "mutation($id: ID!, $title: String!) { updateWebinar(id: $id, input: { title: $title }) { id title } }";

async fn schedule(app: &TestApp, token: &str, title: &str) -> String {
    let start = chrono::Utc::now() + chrono::Duration::days(3);
    let body = app
        .gql(
            Some(token),
            SCHEDULE,
            json!({ "input": { "title": title, "startAt": start.to_rfc3339(),
                               "durationMinutes": 60 } }),
        )
        .await;
    body["data"]["scheduleWebinar"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// Renames the webinar; returns the answer and how long it took.
async fn rename(app: &TestApp, token: &str, id: &str, title: &str) -> (Value, Duration) {
    let started = Instant::now();
    let body = app
        .gql(Some(token), RENAME, json!({ "id": id, "title": title }))
        .await;
    (body, started.elapsed())
}

/// A rename that succeeded from the read models themselves (not from the aggregate).
fn assert_renamed(body: &Value, title: &str) {
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(
        body["data"]["updateWebinar"]["title"],
        json!(title),
        "{body}"
    );
    assert!(
        body["extensions"]["readModelsCatchingUp"].is_null(),
        "the read models were late: {body}"
    );
}

/// Every projector has applied the whole log.
async fn wait_for_projectors(app: &TestApp) {
    crate::harness::wait_for_final_log(&app.db.pool).await;
    let head = event_log::head(&app.db.pool).await.expect("head");
    for projector in webinar_projections::all() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while consumer::checkpoint(&app.db.pool, projector.name())
            .await
            .expect("checkpoint")
            < head
        {
            assert!(
                Instant::now() < deadline,
                "{} did not catch up",
                projector.name()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::test]
async fn a_writing_transaction_elsewhere_holds_back_neither_mutations_nor_subscribers() {
    let app = TestApp::spawn_with(|settings| settings.run_reactors = false).await;
    register_gateway(&app, "held", None).await;
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let id = schedule(&app, &owner, "Held back?").await;
    let mut watcher = subscribe(
        &app,
        Some(&owner),
        "subscription($id: ID!) { webinarChanged(id: $id) { title } }",
        json!({ "id": id }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Another database of the cluster: a transaction that wrote and stays open.
    let other = TestDb::create().await;
    let mut foreign = other.pool.begin().await.expect("begin elsewhere");
    sqlx::query("create table held (n int)")
        .execute(&mut *foreign)
        .await
        .expect("write elsewhere");
    sqlx::query("insert into held values (1)")
        .execute(&mut *foreign)
        .await
        .expect("write elsewhere");
    // In our own database: an analyst's session with a transaction id that appends no event.
    let mut analyst = app.db.pool.begin().await.expect("begin here");
    let analyst_xid: i64 = sqlx::query_scalar("select txid_current()")
        .fetch_one(&mut *analyst)
        .await
        .expect("take a transaction id");
    assert!(analyst_xid > 0);

    let mut took = Vec::new();
    for n in 0..7 {
        let title = format!("Not held back {n}");
        let (body, elapsed) = rename(&app, &owner, &id, &title).await;
        assert_renamed(&body, &title);
        took.push(elapsed);
        let next = receive(&mut watcher).await;
        assert_eq!(
            next["payload"]["data"]["webinarChanged"]["title"],
            json!(title),
            "the subscriber hears of the change while the transactions stay open: {next}"
        );
    }
    took.sort();
    eprintln!(
        "read-your-writes with foreign transactions open: median {:?}, max {:?}",
        percentile(&took, 0.5),
        took[took.len() - 1]
    );
    assert!(
        percentile(&took, 0.5) < Duration::from_millis(200),
        "a mutation waits for others' transactions: {took:?}"
    );
    assert!(took[took.len() - 1] < Duration::from_secs(2), "{took:?}");
    foreign.rollback().await.expect("rollback elsewhere");
    analyst.rollback().await.expect("rollback here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_model_rebuilds_beside_the_live_one_while_mutations_keep_their_pace() {
    let app = TestApp::spawn_with(|settings| settings.run_reactors = false).await;
    // A history long enough for each rebuild to take many committed batches.
    webinar_api::history::generate(&app.db.pool, 200)
        .await
        .expect("generate a history");
    register_gateway(&app, "rebuilt", None).await;
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let id = schedule(&app, &owner, "Written during rebuilds").await;
    wait_for_projectors(&app).await;
    let admin = app.admin();
    let mut feed = subscribe(
        &app,
        Some(&admin),
        "subscription { liveEventChanged { id title } }",
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let pool = app.db.pool.clone();
    let rebuilds = tokio::spawn(async move {
        let mut read = 0;
        for projector in webinar_projections::all() {
            read += consumer::rebuild(&pool, projector.as_ref(), 100, &mut |_, _| {})
                .await
                .unwrap_or_else(|e| panic!("rebuild {}: {e}", projector.name()));
        }
        read
    });
    let mut took = Vec::new();
    while !rebuilds.is_finished() {
        let title = format!("During rebuild {}", took.len());
        let (body, elapsed) = rename(&app, &owner, &id, &title).await;
        assert_renamed(&body, &title);
        took.push(elapsed);
    }
    let read = rebuilds.await.expect("the rebuilds ran");
    assert!(
        read > 7 * 3000,
        "every projector replayed the log ({read} events)"
    );
    assert!(
        took.len() >= 5,
        "the writer kept writing while the read models were rebuilt ({} writes)",
        took.len()
    );
    took.sort();
    eprintln!(
        "{} mutations during the rebuilds: median {:?}, p95 {:?}, max {:?}",
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.95),
        took[took.len() - 1]
    );
    assert!(
        percentile(&took, 0.95) < Duration::from_millis(200),
        "a rebuild slows mutations down: {took:?}"
    );
    assert!(took[took.len() - 1] < Duration::from_secs(2), "{took:?}");

    // Subscribers heard of the writer's changes, not of the thousands of rebuilt rows.
    let mut heard = 0;
    while !silent(&mut feed, Duration::from_millis(1500)).await {
        heard += 1;
    }
    assert!(
        heard <= took.len() + 5,
        "{heard} notifications for {} changes: the rebuild reached subscribers",
        took.len()
    );

    // No shadow or retired schema is left behind.
    let leftovers: i64 = sqlx::query_scalar(
        "select count(*) from pg_namespace where nspname like 'rebuild\\_%' or nspname like 'retired\\_%'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("count schemas");
    assert_eq!(leftovers, 0);

    // The models rebuilt under writes (and kept up to date since) equal a rebuild from a quiet
    // log, row by row; a quiet rebuild equals the live-built models (see `projectors`).
    wait_for_projectors(&app).await;
    let rebuilt = read_models(&app.db.pool).await;
    for projector in webinar_projections::all() {
        consumer::rebuild(&app.db.pool, projector.as_ref(), 1000, &mut |_, _| {})
            .await
            .expect("rebuild again");
    }
    let quiet = read_models(&app.db.pool).await;
    for ((table, under_writes), (_, reference)) in rebuilt.iter().zip(&quiet) {
        assert_eq!(under_writes, reference, "{table} differs");
    }
    // The audit log (written with COPY's binary format) says what the log says, event by event.
    let (rows, events, differ): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from audit_log), (select count(*) from events),
                (select count(*) from audit_log a join events e using (global_position)
                  where a.tx_id <> e.tx_id::text::bigint or a.recorded_at <> e.recorded_at
                     or a.aggregate_type <> e.aggregate_type or a.aggregate_id <> e.aggregate_id
                     or a.sequence <> e.sequence or a.event_type <> e.event_type
                     or a.event_version <> e.event_version or a.payload <> e.payload::jsonb
                     or a.actor_id <> coalesce(e.metadata->>'actor_id', 'unknown')
                     or a.correlation_id is distinct from e.metadata->>'correlation_id')",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("compare the audit log with the log");
    assert_eq!((rows, differ), (events, 0));
    let webinar: Value = app
        .gql(
            Some(&owner),
            "query($id: ID!) { webinar(id: $id) { title } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        webinar["data"]["webinar"]["title"],
        json!(format!("During rebuild {}", took.len() - 1)),
        "the last write survived the swap"
    );
}

/// While the database is out: the mutation says `UNAVAILABLE` (within `within`), so does a query,
/// and `/readyz` says 503 within a second.
async fn assert_unavailable(app: &TestApp, owner: &str, id: &str, within: Duration, outage: &str) {
    let (body, elapsed) = rename(app, owner, id, "During the outage").await;
    assert_eq!(error_code(&body), Some("UNAVAILABLE"), "{outage}: {body}");
    eprintln!("{outage}: mutation answered UNAVAILABLE after {elapsed:?}");
    assert!(
        elapsed < within,
        "{outage}: the mutation waited {elapsed:?}"
    );
    let body = app
        .gql(
            Some(owner),
            "query($id: ID!) { webinar(id: $id) { title } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(error_code(&body), Some("UNAVAILABLE"), "{outage}: {body}");
    let started = Instant::now();
    let ready = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status().as_u16(), 503, "{outage}");
    eprintln!(
        "{outage}: /readyz answered 503 after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{outage}: /readyz took {:?}",
        started.elapsed()
    );
}

/// Once the database is back, the same instance serves again: the mutation succeeds and reads
/// its own write, and `/readyz` says 200.
async fn assert_serving_again(app: &TestApp, owner: &str, id: &str, outage: &str) {
    let restored = Instant::now();
    let title = format!("After the outage ({outage})");
    let body = loop {
        let (body, _) = rename(app, owner, id, &title).await;
        if body["errors"].is_null() {
            break body;
        }
        assert_eq!(error_code(&body), Some("UNAVAILABLE"), "{outage}: {body}");
        assert!(
            restored.elapsed() < Duration::from_secs(20),
            "{outage}: still unavailable: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "{outage}: serving again {:?} after the database came back",
        restored.elapsed()
    );
    assert_eq!(body["data"]["updateWebinar"]["title"], json!(title));
    let ready = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status().as_u16(), 200, "{outage}");
}

#[tokio::test]
async fn a_database_that_goes_away_gives_unavailable_and_the_same_instance_serves_again() {
    let db = TestDb::create().await;
    let proxy = DbProxy::start().await;
    let url = proxy.url_for(&db.url);
    let app = TestApp::spawn_through(db, &url, |settings| {
        settings.run_reactors = false;
        settings.database_max_connections = 4;
        settings.database_acquire_timeout_ms = 1_000;
    })
    .await;
    register_gateway(&app, "proxied", None).await;
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let id = schedule(&app, &owner, "Before the outage").await;

    // Connections refused and closed: an answer at once.
    proxy.cut();
    assert_unavailable(&app, &owner, &id, Duration::from_secs(3), "cut").await;
    proxy.restore();
    assert_serving_again(&app, &owner, &id, "cut").await;

    // Nothing answers at all: an answer once the acquire timeout (1 s) runs out, never a hang.
    proxy.freeze();
    assert_unavailable(&app, &owner, &id, Duration::from_secs(4), "frozen").await;
    proxy.restore();
    assert_serving_again(&app, &owner, &id, "frozen").await;
}

#[tokio::test]
async fn a_write_whose_read_model_is_late_is_answered_from_the_aggregate_and_says_so() {
    let app = TestApp::spawn_with(|settings| {
        settings.run_reactors = false;
        settings.read_your_writes_timeout_ms = 300;
    })
    .await;
    let gateway = register_gateway(&app, "late", None).await;
    let owner = app.token("prof", &["faculty"], &[], &[]);
    let id = schedule(&app, &owner, "On time").await;

    // Hold the checkpoint rows of two projectors: their next batches cannot commit.
    let mut holder = app.db.pool.begin().await.expect("begin");
    sqlx::query(
        "select 1 from projection_checkpoints where name in ('webinars', 'gateways') for update",
    )
    .execute(&mut *holder)
    .await
    .expect("lock the checkpoints");

    let (body, elapsed) = rename(&app, &owner, &id, "Answered from the aggregate").await;
    assert!(
        body["errors"].is_null(),
        "a committed write is not an error: {body}"
    );
    assert_eq!(
        body["data"]["updateWebinar"]["title"],
        json!("Answered from the aggregate")
    );
    assert_eq!(
        body["extensions"]["readModelsCatchingUp"],
        json!(true),
        "{body}"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    let body = app
        .gql(
            Some(&app.admin()),
            "mutation($id: ID!) { setGatewayEnabled(id: $id, enabled: false, reason: \"maintenance\") { name enabled disabledReason } }",
            json!({ "id": gateway }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(
        body["data"]["setGatewayEnabled"],
        json!({ "name": "Gateway late", "enabled": false, "disabledReason": "maintenance" })
    );
    assert_eq!(
        body["extensions"]["readModelsCatchingUp"],
        json!(true),
        "{body}"
    );

    // Once the read models move again, they say the same, and answers no longer carry the flag.
    holder.rollback().await.expect("release");
    let (body, _) = rename(&app, &owner, &id, "From the read model").await;
    assert_renamed(&body, "From the read model");
}
