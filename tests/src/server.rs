//! The HTTP surface around GraphQL: health, readiness, metrics, GraphiQL, `me`, and shutdown.

use serde_json::json;

use crate::harness::{error_code, register_gateway, TestApp};

#[tokio::test]
async fn health_readiness_metrics_and_graphiql_answer() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "m", None).await;
    let get = |path: &'static str| {
        let app = &app;
        async move {
            let response = app.http.get(app.url(path)).send().await.expect("GET");
            let status = response.status().as_u16();
            let request_id = response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (status, request_id, response.text().await.expect("body"))
        }
    };
    let (status, request_id, body) = get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(
        request_id.is_some_and(|id| !id.is_empty()),
        "every response carries a request id"
    );
    assert_eq!(get("/readyz").await.0, 200);
    let (status, _, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "webinar_commands_total{aggregate=\"Gateway\",outcome=\"ok\"}",
        "webinar_consumer_lag_events{consumer=\"gateways\"}",
        "# TYPE webinar_graphql_requests_total counter",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
    let (status, _, page) = get("/graphql").await;
    assert_eq!(status, 200);
    assert!(page.contains("graphiql"), "GET /graphql serves GraphiQL");
}

#[tokio::test]
async fn me_describes_the_caller_and_is_null_for_anonymous() {
    let app = TestApp::spawn().await;
    let query = "{ me { id name affiliations groups roles canCreateWebinar } }";
    let body = app.gql(None, query, json!({})).await;
    assert_eq!(body, json!({ "data": { "me": null } }));
    let token = app.token("prof", &["faculty"], &["l1"], &[]);
    let body = app.gql(Some(&token), query, json!({})).await;
    assert_eq!(
        body["data"]["me"],
        json!({ "id": "prof", "name": "User prof", "affiliations": ["faculty"], "groups": ["l1"],
                "roles": [], "canCreateWebinar": true })
    );
    let student = app.token("stu", &["student"], &[], &[]);
    let body = app.gql(Some(&student), query, json!({})).await;
    assert_eq!(body["data"]["me"]["canCreateWebinar"], json!(false));
    assert!(error_code(&body).is_none());
}

#[tokio::test]
async fn events_carry_the_contract_metadata() {
    let app = TestApp::spawn().await;
    let id = register_gateway(&app, "meta", None).await;
    let metadata: serde_json::Value = sqlx::query_scalar(
        "select metadata::jsonb from events where aggregate_id = $1 and sequence = 1",
    )
    .bind(&id)
    .fetch_one(&app.db.pool)
    .await
    .expect("read the event");
    assert_eq!(metadata["actor_id"], json!("admin-1"));
    assert_eq!(metadata["actor_name"], json!("User admin-1"));
    for key in ["correlation_id", "causation_id", "request_id"] {
        assert!(
            metadata[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key}: {metadata}"
        );
    }
}

#[tokio::test]
async fn shutdown_is_graceful() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "bye", None).await;
    let address = app.address;
    tokio::time::timeout(std::time::Duration::from_secs(20), app.stop())
        .await
        .expect("the server stops within 20 s");
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "the port is closed after shutdown"
    );
}

#[tokio::test]
async fn an_instance_holds_its_pool_plus_three_connections() {
    let app = TestApp::spawn().await;
    register_gateway(&app, "conn", None).await;
    // Busy enough that the pool opens every connection it may.
    let admin = app.admin();
    let queries = (0..40).map(|_| {
        app.gql(
            Some(&admin),
            "{ gateways { id } liveEvents { edges { node { id } } } }",
            json!({}),
        )
    });
    futures::future::join_all(queries).await;
    // Every consumer led: the leadership connection holds all their locks.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pool_size = app.db.pool.options().get_max_connections() as i64;
    let (connections, locks): (i64, i64) = sqlx::query_as(
        "select (select count(*) from pg_stat_activity where datname = current_database()),
                (select count(*) from pg_locks where locktype = 'advisory'
                    and database = (select oid from pg_database where datname = current_database()))",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("count connections");
    assert!(locks >= 10, "every consumer's lock is held ({locks})");
    assert!(
        connections <= pool_size + 3,
        "{connections} connections for a pool of {pool_size}"
    );
}
