//! Idle sockets cost no CPU. In a test binary of its own, so that the process's CPU time is the
//! server's alone (the end-to-end suite runs many servers in one process).

use std::time::Duration;

use serde_json::json;
use webinar_tests::harness::{subscribe, TestApp};

/// User plus system CPU time of this process, in seconds (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the command name (which may hold spaces), from field 3: utime is 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialised_sockets_wait_without_spinning() {
    // The consumers' fallback poll at its production pace (tests poll every 50 ms, which alone
    // costs a debug build a fifth of a core): what is measured is the sockets.
    let app = TestApp::spawn_with(|s| s.projection_poll_ms = 500).await;
    let token = app.token("stu", &["student"], &[], &[]);
    let query = "subscription { liveEventChanged { id } }";
    let mut sockets = Vec::new();
    for authenticated in [true, false] {
        let token = authenticated.then_some(token.as_str());
        sockets.push(subscribe(&app, token, query, json!({})).await);
    }
    // Past start-up work (projectors' first batches, the listener).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_seconds() - before;
    println!("two idle sockets: {used:.2} s of CPU in 2 s");
    assert!(
        used < 0.5,
        "two idle sockets used {used:.2} s of CPU in 2 s: something polls in a loop"
    );
    drop(sockets);
}
