//! The `webinar` binary's commands, run as a user would.

use std::process::Command;

fn webinar() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webinar"));
    command
        .env_remove("WEBINAR_JWT_SECRET")
        .env_remove("DATABASE_URL")
        .env("WEBINAR_LOG_FORMAT", "json");
    command
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

#[test]
fn token_prints_a_jwt_that_the_configured_secret_verifies() {
    let output = webinar()
        .args([
            "token",
            "--sub",
            "u1",
            "--name",
            "Ada",
            "--role",
            "admin",
            "--affiliation",
            "faculty",
            "--site",
            "univ-b",
        ])
        .env("WEBINAR_JWT_SECRET", "cli-secret")
        .output()
        .expect("run webinar token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let keys =
        webinar_infra::auth::JwtKeys::new(&secrecy::SecretString::from("cli-secret".to_owned()));
    let actor = keys.verify(&token).expect("the token verifies");
    assert_eq!((actor.id.as_str(), actor.name.as_str()), ("u1", "Ada"));
    assert_eq!(actor.roles, vec!["admin".to_owned()]);
    assert_eq!(actor.affiliations, vec!["faculty".to_owned()]);
    assert_eq!(actor.site.as_str(), "univ-b");
}

#[test]
fn serve_and_token_refuse_to_run_without_a_jwt_secret_and_say_why() {
    for args in [vec!["serve"], vec!["token", "--sub", "u", "--name", "U"]] {
        let output = webinar().args(&args).output().expect("run webinar");
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("WEBINAR_JWT_SECRET is not set"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn migrate_creates_the_database_and_rebuild_reports_its_speed() {
    let name = format!("webinar_cli_{}", uuid::Uuid::new_v4().simple());
    let mut url = url::Url::parse(&admin_url()).expect("a URL");
    url.set_path(&format!("/{name}"));
    let run = |args: &[&str]| {
        let output = webinar()
            .args(args)
            .env("DATABASE_URL", url.as_str())
            .output()
            .expect("run");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(run(&["migrate"]).contains("migrations applied"));
    let rebuilt = run(&["projections", "rebuild", "gateways"]);
    assert!(
        rebuilt.contains("gateways: rebuilt from 0 events"),
        "{rebuilt}"
    );
    let listed = run(&["projections", "list"]);
    assert!(listed.contains("live_events"), "{listed}");
    let output = webinar()
        .args(["projections", "rebuild", "nope"])
        .env("DATABASE_URL", url.as_str())
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no read model named \"nope\""));

    let dropped = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(&admin_url()).await?;
            sqlx::query(&format!("drop database if exists {name} with (force)"))
                .execute(&mut admin)
                .await
        });
    if let Err(error) = dropped {
        eprintln!("warning: could not drop {name}: {error}");
    }
}

#[test]
fn audit_export_streams_one_line_per_event_without_secrets() {
    let name = format!("webinar_cli_{}", uuid::Uuid::new_v4().simple());
    let mut url = url::Url::parse(&admin_url()).expect("a URL");
    url.set_path(&format!("/{name}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let run = |args: &[&str]| {
        let output = webinar()
            .args(args)
            .env("DATABASE_URL", url.as_str())
            .output()
            .expect("run");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    run(&["migrate"]);
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url.as_str()).await.expect("connect");
        for n in 1..=5i64 {
            sqlx::query(
                "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 values ('Gateway', 'g1', $1, 'GatewayUpdated', '1.0',
                         json_build_object('GatewayUpdated', json_build_object('name', 'N, \"quoted\"', 'secret', 'hunter2')),
                         json_build_object('actor_id', 'admin', 'correlation_id', 'c' || $1))",
            )
            .bind(n)
            .execute(&mut conn)
            .await
            .expect("insert");
        }
    });
    let (jsonl, stderr) = run(&["audit", "export", "--format", "jsonl"]);
    assert!(
        stderr.is_empty() || !stderr.contains("exporting"),
        "silent when piped: {stderr}"
    );
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 5, "one line per event");
    assert_eq!(lines[4]["sequence"], serde_json::json!(5));
    assert_eq!(lines[0]["actor_id"], serde_json::json!("admin"));
    assert_eq!(
        lines[0]["payload"]["GatewayUpdated"]["name"],
        serde_json::json!("N, \"quoted\"")
    );
    assert!(!jsonl.contains("hunter2"), "the secret is redacted");
    let (csv, _) = run(&["audit", "export", "--format", "csv", "--aggregate", "g1"]);
    assert_eq!(csv.lines().count(), 6, "a header and one line per event");
    assert!(csv
        .lines()
        .next()
        .is_some_and(|h| h.starts_with("position,recorded_at")));
    assert!(!csv.contains("hunter2"));
    let (none, _) = run(&["audit", "export", "--aggregate", "nope"]);
    assert!(none.is_empty());
    let bad = webinar()
        .args([
            "audit",
            "export",
            "--from",
            "2030-01-02T00:00:00Z",
            "--to",
            "2030-01-01T00:00:00Z",
        ])
        .env("DATABASE_URL", url.as_str())
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--from must not be after --to"));
    runtime.block_on(async {
        use sqlx::Connection;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url()).await {
            let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                .execute(&mut admin)
                .await;
        }
    });
}

/// One HTTP/1.1 exchange over a fresh connection; returns the whole response.
fn http(address: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the simulator");
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
}

#[test]
fn the_sipmediagw_simulator_takes_faults_from_the_command_line_and_its_control_endpoint() {
    use std::io::BufRead;
    let mut child = webinar()
        .args([
            "sim",
            "sipmediagw",
            "--listen",
            "127.0.0.1:0",
            "--slots",
            "2",
            "--fault",
            "busy",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run webinar sim sipmediagw");
    // Killed however the test ends.
    struct Reaper(std::process::Child);
    impl Drop for Reaper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().expect("stdout");
    let _child = Reaper(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the simulator says where it listens");
    let address = line
        .trim()
        .rsplit("http://")
        .next()
        .unwrap_or_default()
        .to_owned();
    let start = format!(
        "GET /start?room=r1&rtmpDst=rtmp://h/x HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer 1234\r\nConnection: close\r\n\r\n"
    );
    let busy = http(&address, &start);
    assert!(busy.contains("No free resources found"), "{busy}");
    let heal = r#"{"faults": []}"#;
    let healed = http(
        &address,
        &format!(
            "POST /_sim/faults HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{heal}",
            heal.len()
        ),
    );
    assert!(healed.starts_with("HTTP/1.1 200"), "{healed}");
    let started = http(&address, &start);
    assert!(started.contains(r#""res":"ok""#), "{started}");
    let counters = http(
        &address,
        &format!("GET /_sim/counters HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"),
    );
    let body: serde_json::Value = counters
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or_else(|| panic!("counters are JSON: {counters}"));
    assert_eq!(
        body["rooms"]["r1"]["starts"],
        serde_json::json!(2),
        "{body}"
    );
    assert_eq!(
        body["rooms"]["r1"]["successful_starts"],
        serde_json::json!(1),
        "{body}"
    );
}
