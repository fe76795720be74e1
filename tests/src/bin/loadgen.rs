//! The load generator of `bench/perf.sh` (not a test): it drives a running `webinar serve` over
//! loopback HTTP and WebSocket, as frontends do, and prints one line per figure with its ratio to
//! the pgbench figures the script measured in the same run.
//!
//! `loadgen seed URL SECRET FILE SIPMEDIAGW_URL,…` schedules the webinars the run needs (and
//! starts two) and writes their ids to FILE; `loadgen run URL SECRET FILE PID INSERT_TPS
//! INSERT_MS SELECT_MS [SUBSCRIBERS…]` measures P1, P3, P6 and P8 (P2 and P7 are
//! wrk's and the script's: this client would spend more CPU than the server it measures).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use futures::{SinkExt, StreamExt};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use webinar_infra::auth::{claims, JwtKeys};

const SCHEDULE: &str =
    "mutation($input: ScheduleWebinarInput!) { scheduleWebinar(input: $input) { id } }";
const UPDATE: &str = "mutation($id: ID!, $title: String!) {
    updateWebinar(id: $id, input: { title: $title }) { id title } }";
const CHAT: &str = "mutation($id: ID!, $text: String!) {
    postChatMessage(webinarId: $id, text: $text) { id status } }";
const STATE: &str = "query($id: ID!) { webinar(id: $id) { streamState } }";

/// Upcoming webinars updated by P1's workers (each its own), and one more for P3's probe and one
/// for P8's change.
const UPCOMING: usize = 322;
const WORKERS: usize = 32;
const VIEWERS: usize = 4000;
const RUN: Duration = Duration::from_secs(15);

struct Bench {
    http: reqwest::Client,
    url: String,
    keys: JwtKeys,
    /// Also the simulated gateways' token.
    secret: String,
}

impl Bench {
    fn new(url: &str, secret: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(256)
                .build()?,
            url: url.trim_end_matches('/').to_owned(),
            keys: JwtKeys::new(&SecretString::from(secret.to_owned())),
            secret: secret.to_owned(),
        })
    }

    fn token(&self, sub: &str, affiliations: &[&str], roles: &[&str]) -> anyhow::Result<String> {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Ok(self.keys.issue(&claims(
            sub,
            sub,
            &own(affiliations),
            &[],
            &own(roles),
            3600,
        ))?)
    }

    /// One GraphQL request; an answer with `errors` is an error.
    async fn gql(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let body: Value = request.send().await?.json().await?;
        if !body["errors"].is_null() {
            bail!("{}", body["errors"]);
        }
        Ok(body["data"].clone())
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Seeded {
    /// (webinar, owner)
    upcoming: Vec<(String, String)>,
    /// (webinar, owner): live, chat enabled.
    live: Vec<(String, String)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |n: usize| {
        args.get(n)
            .cloned()
            .ok_or_else(|| anyhow!("usage: see the module doc"))
    };
    let bench = Arc::new(Bench::new(&arg(2)?, &arg(3)?)?);
    match arg(1)?.as_str() {
        "seed" => seed(&bench, &arg(4)?, &arg(5)?).await,
        "run" => {
            let seeded: Seeded = serde_json::from_str(&std::fs::read_to_string(arg(4)?)?)?;
            let pid: u32 = arg(5)?.parse()?;
            let yardstick = Yardstick {
                insert_tps: arg(6)?.parse()?,
                insert_ms: arg(7)?.parse()?,
                select_ms: arg(8)?.parse()?,
            };
            let sizes: Vec<usize> = args[9..]
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()?;
            run(bench, &seeded, pid, &yardstick, &sizes).await
        }
        other => bail!("unknown command {other}"),
    }
}

async fn seed(bench: &Arc<Bench>, file: &str, sim_urls: &str) -> anyhow::Result<()> {
    let admin = bench.token("perf-admin", &[], &["admin"])?;
    // One gateway per simulated SIPMediaGW (a URL serves one gateway).
    for (n, sim_url) in sim_urls.split(',').enumerate() {
        bench
            .gql(
                Some(&admin),
                "mutation($input: RegisterGatewayInput!) { registerGateway(input: $input) { id } }",
                json!({ "input": { "name": format!("perf-{n}"),
                    "rtmpUrl": format!("rtmp://127.0.0.1/live/perf-{n}"),
                    // The simulator publishes its stream's playlist there: the health watcher
                    // finds it advancing, as on a real campus.
                    "hlsUrl": format!("{}/hls/perf-{n}.m3u8", sim_url.trim_end_matches('/')),
                    "broadcaster": format!("perf-{n}"), "sipmediagwUrl": sim_url, "sipmediagwToken": bench.secret, "api": "LEGACY" } }),
            )
            .await
            .context("register a gateway")?;
    }
    let tomorrow = chrono::Utc::now() + chrono::Duration::days(1);
    let mut upcoming = Vec::new();
    for chunk in (0..UPCOMING).collect::<Vec<_>>().chunks(16) {
        let made = futures::future::join_all(chunk.iter().map(|&i| {
            let bench = bench.clone();
            async move {
                // An owner may hold 100 upcoming webinars.
                let owner = format!("perf-prof-{}", i / 50);
                let token = bench.token(&owner, &["faculty"], &[])?;
                let start = tomorrow + chrono::Duration::hours(2 * i as i64);
                let data = bench
                    .gql(
                        Some(&token),
                        SCHEDULE,
                        json!({ "input": { "title": format!("Lecture {i}"),
                            "description": "A first-year lecture, streamed to the whole year.",
                            "startAt": start.to_rfc3339(), "durationMinutes": 90 } }),
                    )
                    .await?;
                let id = data["scheduleWebinar"]["id"].as_str().unwrap_or_default();
                Ok::<_, anyhow::Error>((id.to_owned(), owner))
            }
        }))
        .await;
        for one in made {
            upcoming.push(one.context("schedule a webinar")?);
        }
    }
    let mut live = Vec::new();
    for n in 0..2 {
        let owner = format!("perf-live-{n}");
        let token = bench.token(&owner, &["faculty"], &[])?;
        let data = bench
            .gql(
                Some(&token),
                SCHEDULE,
                json!({ "input": { "title": format!("Live lecture {n}"), "enableChat": true,
                    "startAt": chrono::Utc::now().to_rfc3339(), "durationMinutes": 240 } }),
            )
            .await
            .context("schedule a live webinar")?;
        let id = data["scheduleWebinar"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        bench
            .gql(
                Some(&token),
                "mutation($id: ID!) { startWebinar(id: $id) { joinUrl } }",
                json!({ "id": id }),
            )
            .await
            .context("start a webinar")?;
        wait_for_stream(bench, &token, &id, "LIVE").await?;
        live.push((id, owner));
    }
    std::fs::write(file, serde_json::to_string(&Seeded { upcoming, live })?)?;
    Ok(())
}

async fn wait_for_stream(bench: &Bench, token: &str, id: &str, state: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let data = bench.gql(Some(token), STATE, json!({ "id": id })).await?;
        if data["webinar"]["streamState"] == json!(state) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("webinar {id} is not {state}: {data}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Yardstick {
    insert_tps: f64,
    insert_ms: f64,
    select_ms: f64,
}

/// Latencies of one measurement, in milliseconds.
struct Latencies(Vec<f64>);

impl Latencies {
    fn percentile(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

/// Runs `clients` loops of `request` for `RUN`; returns the successful requests' latencies and the
/// number of failures.
async fn closed_loop<F, Fut>(clients: usize, request: F) -> (Latencies, u64, Duration)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let request = Arc::new(request);
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let request = request.clone();
            let failures = failures.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while started.elapsed() < RUN {
                    let at = Instant::now();
                    match request(client, n).await {
                        Ok(()) => latencies.push(at.elapsed().as_secs_f64() * 1000.0),
                        Err(error) => {
                            if failures.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("request failed: {error:#}");
                            }
                        }
                    }
                    n += 1;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap_or_default());
    }
    (
        Latencies(all),
        failures.load(Ordering::Relaxed),
        started.elapsed(),
    )
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

fn throughput_line(
    label: &str,
    (latencies, failures, took): &(Latencies, u64, Duration),
    yardstick: f64,
    what: &str,
    target: &str,
) {
    let rate = latencies.0.len() as f64 / took.as_secs_f64();
    println!(
        "{label}: {rate:.0}/s, p50 {:.1} ms, p99 {:.1} ms, {failures} failed = {:.3}x pgbench {what} ({target})",
        latencies.percentile(50.0),
        latencies.percentile(99.0),
        rate / yardstick,
    );
}

async fn run(
    bench: Arc<Bench>,
    seeded: &Seeded,
    pid: u32,
    yardstick: &Yardstick,
    sizes: &[usize],
) -> anyhow::Result<()> {
    // P1: updateWebinar on distinct webinars, with P3's probe alongside.
    let tokens: Vec<(String, String)> = seeded
        .upcoming
        .iter()
        .map(|(id, owner)| Ok((id.clone(), bench.token(owner, &["faculty"], &[])?)))
        .collect::<anyhow::Result<_>>()?;
    let tokens = Arc::new(tokens);
    let mine = UPCOMING - 2;
    let probe_stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(probe_webinar_changed(
        bench.clone(),
        tokens[mine].clone(),
        probe_stop.clone(),
    ));
    let updates = {
        let (bench, tokens) = (bench.clone(), tokens.clone());
        closed_loop(WORKERS, move |client, n| {
            let (bench, tokens) = (bench.clone(), tokens.clone());
            async move {
                // Worker `client` updates its own webinars in turn.
                let per = mine / WORKERS;
                let (id, token) = &tokens[client * per + (n as usize % per)];
                bench
                    .gql(
                        Some(token),
                        UPDATE,
                        json!({ "id": id, "title": format!("Lecture {client}, take {n}") }),
                    )
                    .await?;
                Ok(())
            }
        })
        .await
    };
    probe_stop.store(true, Ordering::Relaxed);
    let probed = probe.await.map_err(|e| anyhow!("{e}"))??;
    throughput_line(
        "P1 updateWebinar, distinct webinars, 32 connections",
        &updates,
        yardstick.insert_tps,
        "INSERT",
        "target >= 0.25x, p99 < 30 ms",
    );
    println!(
        "P3 commit to webinarChanged under P1 (from the mutation's request): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} changes = {:.1}x pgbench INSERT latency",
        probed.percentile(50.0),
        probed.percentile(99.0),
        probed.percentile(100.0),
        probed.0.len(),
        probed.percentile(50.0) / yardstick.insert_ms,
    );

    // P1: postChatMessage from 4,000 viewers, 32 connections.
    let viewers: Vec<String> = (0..VIEWERS)
        .map(|n| bench.token(&format!("perf-viewer-{n}"), &["student"], &[]))
        .collect::<anyhow::Result<_>>()?;
    let viewers = Arc::new(viewers);
    let chat_room = seeded
        .live
        .first()
        .ok_or_else(|| anyhow!("no live webinar"))?
        .0
        .clone();
    let posted = {
        let (bench, viewers) = (bench.clone(), viewers.clone());
        closed_loop(WORKERS, move |client, n| {
            let (bench, viewers, chat_room) = (bench.clone(), viewers.clone(), chat_room.clone());
            async move {
                let viewer = &viewers[(client + WORKERS * n as usize) % VIEWERS];
                bench
                    .gql(
                        Some(viewer),
                        CHAT,
                        json!({ "id": chat_room, "text": format!("hello from {client}, {n}") }),
                    )
                    .await?;
                Ok(())
            }
        })
        .await
    };
    throughput_line(
        "P1 postChatMessage, 4000 viewers, 32 connections",
        &posted,
        yardstick.insert_tps,
        "INSERT",
        "target >= 0.35x, p99 < 30 ms",
    );

    // P6: stopLive and restartLive answer at once (the gateway works behind).
    let (live_id, live_owner) = seeded
        .live
        .get(1)
        .ok_or_else(|| anyhow!("no live webinar"))?;
    let owner = bench.token(live_owner, &["faculty"], &[])?;
    let (mut stops, mut restarts) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let at = Instant::now();
        bench
            .gql(
                Some(&owner),
                "mutation($id: ID!) { stopLive(id: $id) { streamState } }",
                json!({ "id": live_id }),
            )
            .await
            .context("stopLive")?;
        stops.push(at.elapsed().as_secs_f64() * 1000.0);
        wait_for_stream(&bench, &owner, live_id, "STOPPED").await?;
        let at = Instant::now();
        bench
            .gql(
                Some(&owner),
                "mutation($id: ID!) { restartLive(id: $id) { streamState } }",
                json!({ "id": live_id }),
            )
            .await
            .context("restartLive")?;
        restarts.push(at.elapsed().as_secs_f64() * 1000.0);
        wait_for_stream(&bench, &owner, live_id, "LIVE").await?;
    }
    for (label, answers) in [("stopLive", stops), ("restartLive", restarts)] {
        let answers = Latencies(answers);
        println!(
            "P6 {label} answer: p50 {:.1} ms, max {:.1} ms over {} = {:.1}x pgbench INSERT latency",
            answers.percentile(50.0),
            answers.percentile(100.0),
            answers.0.len(),
            answers.percentile(50.0) / yardstick.insert_ms,
        );
    }

    // P8: N subscribers of liveEventChanged, one change.
    let changed = tokens[mine + 1].clone();
    for &size in sizes {
        subscribers(&bench, pid, size, &changed, yardstick).await?;
    }
    Ok(())
}

/// P3: a subscriber of one webinar's changes, while P1 runs: the time from each probe mutation's
/// request to the message that shows it.
async fn probe_webinar_changed(
    bench: Arc<Bench>,
    (id, token): (String, String),
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Latencies> {
    let mut socket = open_subscription(
        &bench.url,
        Some(&token),
        "subscription($id: ID!) { webinarChanged(id: $id) { title } }",
        json!({ "id": id }),
    )
    .await?;
    // The subscription is in place once the server has read the subscribe message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let title = format!("Probe {n}");
        let at = Instant::now();
        bench
            .gql(Some(&token), UPDATE, json!({ "id": id, "title": title }))
            .await?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), next_payload(&mut socket))
                .await
                .context("no webinarChanged within 10 s")??;
            if message["type"] != json!("next") {
                bail!("webinarChanged: {message}");
            }
            if message["payload"]["data"]["webinarChanged"]["title"] == json!(title) {
                latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Latencies(latencies))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_subscription(
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> anyhow::Result<Socket> {
    let mut request = format!("{}/ws", url.replacen("http", "ws", 1)).into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let payload = token.map_or(
        json!({}),
        |t| json!({ "Authorization": format!("Bearer {t}") }),
    );
    let init = json!({ "type": "connection_init", "payload": payload });
    socket.send(Message::Text(init.to_string().into())).await?;
    let ack = next_payload(&mut socket).await?;
    if ack["type"] != json!("connection_ack") {
        bail!("no connection_ack: {ack}");
    }
    let subscribe = json!({ "id": "1", "type": "subscribe",
        "payload": { "query": query, "variables": variables } });
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await?;
    Ok(socket)
}

/// The next message that is not a ping (answered).
async fn next_payload(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        let frame = socket
            .next()
            .await
            .ok_or_else(|| anyhow!("the socket closed"))??;
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text)?;
            if value["type"] == json!("ping") {
                socket
                    .send(Message::Text(json!({ "type": "pong" }).to_string().into()))
                    .await?;
                continue;
            }
            if value["type"] == json!("pong") {
                continue;
            }
            return Ok(value);
        }
    }
}

/// P8: `size` anonymous subscribers of `liveEventChanged`; one public webinar renamed; how long
/// each took to hear of it, and the server's memory per subscriber.
async fn subscribers(
    bench: &Arc<Bench>,
    pid: u32,
    size: usize,
    (id, token): &(String, String),
    yardstick: &Yardstick,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid)?;
    let query = "subscription { liveEventChanged { id title } }";
    let mut sockets = Vec::with_capacity(size);
    for chunk in (0..size).collect::<Vec<_>>().chunks(250) {
        let opened = futures::future::join_all(
            chunk
                .iter()
                .map(|_| open_subscription(&bench.url, None, query, json!({}))),
        )
        .await;
        for socket in opened {
            sockets.push(socket.context("open a subscriber")?);
        }
    }
    // The last subscribe messages are handled before the change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid)?;
    let title = format!("Changed for {size}");
    let sent = Instant::now();
    let heard: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            // Matched, not parsed: 10,000 clients share the server's two cores.
            let wanted = format!("\"title\":\"{title}\"");
            tokio::spawn(async move {
                loop {
                    let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
                        .await
                        .ok()??
                        .ok()?;
                    if let Message::Text(text) = frame {
                        if text.contains(&wanted) {
                            let at = sent.elapsed();
                            // Closing here would free the server's side while others still wait.
                            return Some((at, socket));
                        }
                    }
                }
            })
        })
        .collect();
    bench
        .gql(Some(token), UPDATE, json!({ "id": id, "title": title }))
        .await
        .context("the change")?;
    let answered = sent.elapsed().as_secs_f64() * 1000.0;
    let mut latencies = Vec::new();
    let mut open = Vec::new();
    for task in heard {
        if let Ok(Some((at, socket))) = task.await {
            latencies.push(at.as_secs_f64() * 1000.0);
            open.push(socket);
        }
    }
    let latencies = Latencies(latencies);
    let per = (after.saturating_sub(before)) as f64 / size as f64;
    println!(
        "P8 {size} liveEventChanged subscribers: {} notified, from the mutation's request p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (the mutation answered in {answered:.0} ms) = {:.1}x pgbench SELECT latency at max (target: all within 300 ms)",
        latencies.0.len(),
        latencies.percentile(50.0),
        latencies.percentile(99.0),
        latencies.percentile(100.0),
        latencies.percentile(100.0) / yardstick.select_ms,
    );
    println!(
        "P8 {size} subscribers, resident memory: {:.1} KiB each ({} -> {} MiB; target <= 20 KB; no pgbench counterpart)",
        per,
        before / 1024,
        after / 1024,
    );
    for mut socket in open {
        let _ = socket.close(None).await;
    }
    Ok(())
}
