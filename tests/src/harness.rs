//! Test harness: a database per test, the server spawned on a random port, a GraphQL client, and
//! captured logs.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use webinar_api::{AppState, Application};
use webinar_infra::auth::{claims, JwtKeys};
use webinar_infra::config::{LogFormat, Settings};
use webinar_infra::sim::bbb::BbbSim;
use webinar_infra::sim::sipmediagw::{Api, SipMediaGwSim};

/// The server that holds the test databases; `TEST_DATABASE_URL` overrides it.
fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn url_for(database: &str) -> String {
    let mut url = reqwest::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// A fresh, migrated database, dropped when this value is.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("webinar_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("connect to the test PostgreSQL server (TEST_DATABASE_URL)");
        sqlx::query(&format!("create database {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let url = url_for(&name);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .expect("connect to the test database");
        webinar_infra::db::MIGRATOR
            .run(&pool)
            .await
            .expect("migrate the test database");
        TestDb { name, url, pool }
    }
}

impl TestDb {
    /// Another handle on this database for a second instance; dropping it drops nothing (the
    /// original does).
    pub fn shared(&self) -> TestDb {
        TestDb {
            name: String::new(),
            url: self.url.clone(),
            pool: self.pool.clone(),
        }
    }

    /// Stands in for a database handed on to another owner; dropping it drops nothing.
    fn placeholder() -> TestDb {
        TestDb {
            name: String::new(),
            url: String::new(),
            pool: PgPoolOptions::new()
                .connect_lazy("postgres://placeholder/none")
                .expect("lazy pool"),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.name.is_empty() {
            return;
        }
        let name = self.name.clone();
        // Drop cannot be async: finish on a runtime of our own, on a thread of our own. The pool
        // is not closed first (its tasks live on the test's runtime, which this blocks); `force`
        // ends its connections instead.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(&admin_url()).await.ok()?;
                sqlx::query(&format!("drop database if exists {name} with (force)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// Everything the server logged in this process, as JSON lines.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

#[derive(Clone)]
struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the JSON log subscriber once per test process, at debug level for our crates so that
/// leak checks see as much as possible.
pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("RUST_LOG").is_none() {
            std::env::set_var(
                "RUST_LOG",
                "debug,sqlx=info,hyper=info,h2=info,reqwest=info",
            );
        }
        let buffer = log_buffer().clone();
        webinar_api::telemetry::init(LogFormat::Json, move || BufferWriter(buffer.clone()));
    });
}

/// The server on a random port over its own database.
pub struct TestApp {
    pub address: SocketAddr,
    pub state: AppState,
    pub http: reqwest::Client,
    pub keys: JwtKeys,
    pub db: TestDb,
    /// The simulated BigBlueButton the server talks to (unless a test configured another).
    pub bbb: BbbSim,
    /// Its shared secret.
    pub bbb_secret: String,
    sims: CancellationToken,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn test_settings(db: &TestDb) -> Settings {
    Settings {
        database_url: db.url.clone(),
        database_max_connections: 10,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        projection_poll_ms: 50,
        stream_retry_ms: 20,
        meeting_poll_ms: 200,
        sipmediagw_timeout_seconds: 2,
        bbb_timeout_seconds: 2,
        // The simulators listen on loopback, which the gateway address policy refuses by default.
        gateway_allowed_networks: vec![LOOPBACK.into()],
        // Most tests' gateways say their stream is at live.example.org, which nobody can reach
        // here: the health watcher is on only in the tests about it.
        stream_health_interval_ms: 0,
        ..Settings::default()
    }
}

/// Where the tests' simulators listen.
pub const LOOPBACK: &str = "127.0.0.0/8";

/// A gateway address policy that lets clients reach the simulators.
pub fn loopback_gateways() -> webinar_domain::gateway::GatewayAddressPolicy {
    webinar_domain::gateway::GatewayAddressPolicy::parse(&[LOOPBACK]).expect("a valid network")
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
        capture_logs();
        Self::spawn_over(TestDb::create().await, configure).await
    }

    /// The server over an existing database (another instance may already serve it).
    pub async fn spawn_over(db: TestDb, configure: impl FnOnce(&mut Settings)) -> TestApp {
        capture_logs();
        let mut settings = test_settings(&db);
        let shutdown = CancellationToken::new();
        let bbb_secret = format!("bbb-{}", uuid::Uuid::new_v4().simple());
        let bbb = BbbSim::new(&bbb_secret);
        let bbb_address = webinar_infra::sim::spawn(
            bbb.router(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            shutdown.clone(),
        )
        .await
        .expect("start the BBB simulator");
        settings.bbb_url = Some(format!("http://{bbb_address}/bigbluebutton/api"));
        settings.bbb_secret = Some(SecretString::from(bbb_secret.clone()));
        configure(&mut settings);
        let pool = db.pool.clone();
        Self::launch(db, pool, settings, bbb, bbb_secret, shutdown).await
    }

    /// The server over `db`, reaching it through `url` (a proxy the test controls) with a pool
    /// sized and timed as `configure` sets it.
    pub async fn spawn_through(
        db: TestDb,
        url: &str,
        configure: impl FnOnce(&mut Settings),
    ) -> TestApp {
        capture_logs();
        let mut settings = test_settings(&db);
        settings.database_url = url.to_owned();
        configure(&mut settings);
        let pool = webinar_infra::db::connect(
            url,
            settings.database_max_connections,
            settings.database_acquire_timeout(),
        )
        .await
        .expect("connect through the proxy");
        let shutdown = CancellationToken::new();
        let bbb_secret = format!("bbb-{}", uuid::Uuid::new_v4().simple());
        let bbb = BbbSim::new(&bbb_secret);
        Self::launch(db, pool, settings, bbb, bbb_secret, shutdown).await
    }

    /// Builds and starts the server over `pool` (normally `db.pool`).
    async fn launch(
        db: TestDb,
        pool: PgPool,
        settings: Settings,
        bbb: BbbSim,
        bbb_secret: String,
        sims: CancellationToken,
    ) -> TestApp {
        let secret = SecretString::from(format!("test-secret-{}", uuid::Uuid::new_v4()));
        let app = Application::build_with_pool(settings, pool, secret.clone())
            .await
            .expect("build the application");
        let address = app.local_addr();
        let state = app.state().clone();
        let shutdown = app.shutdown_token();
        let server = tokio::spawn(app.run_until(std::future::pending()));
        TestApp {
            address,
            state,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            keys: JwtKeys::new(&secret),
            db,
            bbb,
            bbb_secret,
            sims,
            shutdown,
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A token for someone with these roles and affiliations.
    pub fn token(
        &self,
        sub: &str,
        affiliations: &[&str],
        groups: &[&str],
        roles: &[&str],
    ) -> String {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        self.keys
            .issue(&claims(
                sub,
                &format!("User {sub}"),
                &own(affiliations),
                &own(groups),
                &own(roles),
                600,
            ))
            .expect("sign a token")
    }

    pub fn admin(&self) -> String {
        self.token("admin-1", &[], &[], &["admin"])
    }

    /// POSTs a GraphQL request; returns the status and the JSON body.
    pub async fn gql_raw(&self, authorization: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.http.post(self.url("/graphql")).json(&body);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("POST /graphql");
        let status = response.status().as_u16();
        let text = response.text().await.expect("read the body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("response is not JSON (status {status}): {text}"));
        (status, json)
    }

    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let (status, body) = self
            .gql_raw(
                authorization.as_deref(),
                json!({ "query": query, "variables": variables }),
            )
            .await;
        assert!(status < 500, "status {status}: {body}");
        body
    }

    /// Stops this server and starts another on the same database (a restart, or a second
    /// instance's takeover), with `configure` applied to fresh test settings.
    pub async fn restart(mut self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let db = std::mem::replace(&mut self.db, TestDb::placeholder());
        // The simulators outlive the restart: they belong to the test, not to one server.
        let sims = std::mem::replace(&mut self.sims, CancellationToken::new());
        let (bbb, bbb_secret) = (self.bbb.clone(), self.bbb_secret.clone());
        let bbb_url = self.state.settings().bbb_url.clone();
        drop(self);
        let mut settings = test_settings(&db);
        settings.bbb_url = bbb_url;
        settings.bbb_secret = Some(SecretString::from(bbb_secret.clone()));
        configure(&mut settings);
        let pool = db.pool.clone();
        Self::launch(db, pool, settings, bbb, bbb_secret, sims).await
    }

    /// Runs the reservation saga's reactor here until it has nothing due (for tests whose server
    /// runs no reactors): the gateways of ended, cancelled and moved webinars are freed.
    pub async fn run_reservations_until_idle(&self) {
        run_reservations_until_idle(&self.db.pool, self.state.outside()).await;
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task did not panic")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.sims.cancel();
    }
}

/// The `extensions.code` of the first error, if any.
pub fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// Registers a gateway through the API as an admin; returns its id.
pub async fn register_gateway(app: &TestApp, suffix: &str, token: Option<&str>) -> String {
    let body = app
        .gql(
            Some(&app.admin()),
            "mutation($input: RegisterGatewayInput!) { registerGateway(input: $input) { id } }",
            json!({ "input": {
                "name": format!("Gateway {suffix}"),
                "rtmpUrl": format!("rtmp://live.example.org/live/{suffix}"),
                "hlsUrl": format!("https://live.example.org/hls/{suffix}.m3u8"),
                "broadcaster": format!("Broadcaster {suffix}"),
                "sipmediagwUrl": format!("https://gw-{suffix}.example.org"),
                "sipmediagwToken": token,
                "api": "LEGACY",
            }}),
        )
        .await;
    body["data"]["registerGateway"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("registerGateway failed: {body}"))
        .to_owned()
}

/// Waits until every event of `pool`'s database lies below the cluster's xmin, i.e. until a log
/// reader can see them all. A long transaction elsewhere in the cluster (another test's rebuild)
/// holds readers back for as long as it runs: tests that count on a reader seeing everything wait
/// here first.
pub async fn wait_for_final_log(pool: &sqlx::PgPool) {
    let last: Option<(i64, i64)> = sqlx::query_as(
        "select tx_id::text::bigint, global_position from events
          order by tx_id desc, global_position desc limit 1",
    )
    .fetch_optional(pool)
    .await
    .expect("read the log's end");
    let Some((tx_id, global_position)) = last else {
        return;
    };
    let target = webinar_infra::event_log::Position {
        tx_id,
        global_position,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while webinar_infra::event_log::head(pool).await.expect("head") < target {
        assert!(
            std::time::Instant::now() < deadline,
            "the log stayed held back for 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drives the reservation saga's reactor over `pool` until nothing is due.
pub async fn run_reservations_until_idle(
    pool: &sqlx::PgPool,
    outside: &webinar_infra::reactors::Outside,
) {
    use webinar_infra::consumer::{ReactorOptions, ReactorRunner};
    use webinar_infra::reactors::reservations::ReservationReactor;
    wait_for_final_log(pool).await;
    let runner = ReactorRunner::new(
        pool.clone(),
        std::sync::Arc::new(ReservationReactor::new(outside.clone())),
        ReactorOptions::default(),
    );
    runner
        .run_until_idle(Duration::ZERO)
        .await
        .expect("the reservation reactor runs");
}

/// A server on a runtime of its own, in a thread of its own, that a test can kill the hard way:
/// its runtime is dropped at once, calls in flight and connections cut as a SIGKILL would.
pub struct KillableServer {
    pub address: SocketAddr,
    /// Signs tokens its server accepts.
    pub keys: JwtKeys,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KillableServer {
    /// Builds and serves with `settings` (its database must exist and be migrated).
    pub fn start(settings: Settings) -> KillableServer {
        capture_logs();
        let secret = SecretString::from(format!("killable-{}", uuid::Uuid::new_v4()));
        let keys = JwtKeys::new(&secret);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the killable server");
            let app = runtime
                .block_on(Application::build(settings, secret))
                .expect("build the killable server");
            let address = app.local_addr();
            runtime.spawn(app.run_until(std::future::pending()));
            let _ = ready_tx.send(address);
            let _ = kill_rx.recv();
            runtime.shutdown_background();
        });
        let address = ready_rx.recv().expect("the killable server starts");
        KillableServer {
            address,
            keys,
            kill: Some(kill_tx),
            thread: Some(thread),
        }
    }

    /// A token for `sub` with these roles and affiliations, for this server.
    pub fn token(&self, sub: &str, affiliations: &[&str], roles: &[&str]) -> String {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        self.keys
            .issue(&claims(
                sub,
                &format!("User {sub}"),
                &own(affiliations),
                &[],
                &own(roles),
                600,
            ))
            .expect("sign a token")
    }

    /// Drops its runtime at once.
    pub fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for KillableServer {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

/// A SIPMediaGW simulator on its own port.
pub async fn sipmediagw(
    api: Api,
    token: Option<&str>,
) -> (SipMediaGwSim, String, CancellationToken) {
    let sim = SipMediaGwSim::new(api, token);
    let cancel = CancellationToken::new();
    let address = webinar_infra::sim::spawn(
        sim.router(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        cancel.clone(),
    )
    .await
    .expect("start SIPMediaGW");
    (sim, format!("http://{address}"), cancel)
}

pub async fn register_live_gateway(
    app: &TestApp,
    name: &str,
    url: &str,
    token: Option<&str>,
    api: &str,
) -> String {
    let body = app
        .gql(
            Some(&app.admin()),
            "mutation($input: RegisterGatewayInput!) { registerGateway(input: $input) { id } }",
            json!({ "input": { "name": name, "rtmpUrl": format!("rtmp://live.example.org/live/{name}"),
                "hlsUrl": format!("https://live.example.org/{name}.m3u8"), "broadcaster": name,
                "sipmediagwUrl": url, "sipmediagwToken": token, "api": api,
                // The simulator's v1.8 launcher has one container, `gw0`, unless told otherwise.
                "gwIds": if api == "GATEWAY" { json!(["gw0"]) } else { json!([]) } } }),
        )
        .await;
    body["data"]["registerGateway"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

pub const WEBINAR: &str =
    "query($id: ID!) { webinar(id: $id) { status streamState streamError streamHealth
        streamHealthDetail gateway { id } } }";

pub async fn webinar(app: &TestApp, id: &str) -> Value {
    app.gql(Some(&app.admin()), WEBINAR, json!({ "id": id }))
        .await["data"]["webinar"]
        .clone()
}

/// Schedules a webinar as `token`'s holder (`input`: a `ScheduleWebinarInput`) and starts it;
/// returns its id and the moderator join URL. Both must succeed.
pub async fn schedule_and_start(app: &TestApp, token: &str, input: Value) -> (String, String) {
    let body = app
        .gql(
            Some(token),
            "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }",
            json!({ "input": input }),
        )
        .await;
    let id = body["data"]["scheduleWebinar"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    let body = app
        .gql(
            Some(token),
            "mutation($id: ID!) { startWebinar(id: $id) { joinUrl } }",
            json!({ "id": id }),
        )
        .await;
    let join = body["data"]["startWebinar"]["joinUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned();
    (id, join)
}

/// Whether a webinar (as [`webinar`] reads it) has this stream state.
pub fn stream(state: &str) -> impl Fn(&Value) -> bool + '_ {
    move |w: &Value| w["streamState"] == json!(state)
}

/// An aggregate's events, in order: (type, payload).
pub async fn events_of(app: &TestApp, id: &str) -> Vec<(String, Value)> {
    sqlx::query_as::<_, (String, Value)>(
        "select event_type, payload::jsonb from events where aggregate_id = $1 order by sequence",
    )
    .bind(id)
    .fetch_all(&app.db.pool)
    .await
    .expect("events")
}

/// Polls until `done` holds (or fails after `within`); returns the state and the time it took.
pub async fn wait_until(
    app: &TestApp,
    id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let state = webinar(app, id).await;
        if done(&state) {
            return (state, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "not reached within {within:?}: {state}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// Subscriptions over graphql-transport-ws.

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws` with `origin` (if any); the handshake's outcome.
pub async fn open_ws(
    app: &TestApp,
    origin: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{}/ws", app.address)
        .into_client_request()
        .expect("request");
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    if let Some(origin) = origin {
        headers.insert("origin", origin.parse().expect("header"));
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// Opens `/ws`, authenticates with `token`, and subscribes to `query`.
pub async fn subscribe(
    app: &TestApp,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Socket {
    let mut socket = open_ws(app, None).await.expect("connect /ws");
    let payload = token.map_or(
        json!({}),
        |t| json!({ "Authorization": format!("Bearer {t}") }),
    );
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": payload }),
    )
    .await;
    assert_eq!(receive(&mut socket).await["type"], json!("connection_ack"));
    send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } }),
    )
    .await;
    socket
}

pub async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send");
}

pub async fn receive(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).expect("JSON");
            if value["type"] != json!("ping") {
                return value;
            }
        }
    }
}

/// Nothing arrives within `wait`.
pub async fn silent(socket: &mut Socket, wait: Duration) -> bool {
    tokio::time::timeout(wait, socket.next()).await.is_err()
}

/// A TCP proxy in front of the test PostgreSQL server that a test can cut (every connection
/// closed, new ones closed on arrival, as when a proxy loses its backend), freeze (connections
/// stay open but nothing answers, as when the host hangs or the network drops packets) and
/// restore.
pub struct DbProxy {
    pub address: SocketAddr,
    state: Arc<ProxyState>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct ProxyState {
    cut: std::sync::atomic::AtomicBool,
    frozen: std::sync::atomic::AtomicBool,
    freeze: tokio::sync::Notify,
    links: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl ProxyState {
    fn hold(&self, link: tokio::task::AbortHandle) {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(link);
    }

    fn close_all(&self) {
        for link in self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            link.abort();
        }
    }
}

impl DbProxy {
    pub async fn start() -> DbProxy {
        let upstream = reqwest::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
        let upstream = format!(
            "{}:{}",
            upstream.host_str().unwrap_or("127.0.0.1"),
            upstream.port().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let state = Arc::new(ProxyState::default());
        let cancel = CancellationToken::new();
        let (shared, stop) = (state.clone(), cancel.clone());
        tokio::spawn(async move {
            use std::sync::atomic::Ordering::SeqCst;
            loop {
                let (mut client, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                };
                if shared.cut.load(SeqCst) {
                    drop(client);
                    continue;
                }
                let (upstream, link_state) = (upstream.clone(), shared.clone());
                let link = tokio::spawn(async move {
                    if link_state.frozen.load(SeqCst) {
                        // Accepted, never answered.
                        let _held = client;
                        return std::future::pending::<()>().await;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        // Both sockets stay open, and silent, until the link is closed.
                        _ = link_state.freeze.notified() => std::future::pending::<()>().await,
                    }
                });
                shared.hold(link.abort_handle());
            }
        });
        DbProxy {
            address,
            state,
            cancel,
        }
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let mut url = reqwest::Url::parse(url).expect("a database URL");
        url.set_ip_host(self.address.ip()).expect("an IP host");
        url.set_port(Some(self.address.port())).expect("a port");
        url.to_string()
    }

    /// Closes every connection through the proxy and every new one on arrival.
    pub fn cut(&self) {
        self.state
            .cut
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.close_all();
    }

    /// Keeps every connection open but lets nothing through, either way.
    pub fn freeze(&self) {
        self.state
            .frozen
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.freeze.notify_waiters();
    }

    /// Lets connections through again (those cut or frozen meanwhile are closed).
    pub fn restore(&self) {
        self.state.close_all();
        self.state
            .frozen
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.state
            .cut
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.state.close_all();
    }
}
