//! The BBB and SIPMediaGW clients against the simulators over real HTTP: every answer shape of
//! PROTOCOLS.md becomes the right typed outcome.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use webinar_domain::gateway::GatewayApi;
use webinar_domain::ports::{
    MeetingError, MeetingService, NewMeeting, Stopped, StreamGatewayError, StreamRef,
};
use webinar_infra::bbb::{BbbApi, BbbClient, Checksum};
use webinar_infra::sim::bbb::BbbSim;
use webinar_infra::sim::sipmediagw::{Api, Fault, SipMediaGwSim};
use webinar_infra::sipmediagw::{SipMediaGwClient, SipTarget};

async fn serve(router: axum::Router, cancel: &CancellationToken) -> SocketAddr {
    webinar_infra::sim::spawn(
        router,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        cancel.clone(),
    )
    .await
    .expect("bind a simulator")
}

fn target(address: SocketAddr, api: GatewayApi, token: Option<&str>) -> SipTarget {
    SipTarget {
        base_url: format!("http://{address}"),
        api,
        token: token.map(|t| SecretString::from(t.to_owned())),
        browsing_name: "bigbluebutton".to_owned(),
    }
}

/// A stream the web.py launchers know by its room alone.
fn room(name: &str) -> StreamRef<'_> {
    StreamRef::new(name, None)
}

#[tokio::test]
async fn the_legacy_client_reads_every_answer_of_the_web_py_launcher() {
    let cancel = CancellationToken::new();
    let sim = SipMediaGwSim::new(Api::Legacy, Some("1234"));
    let address = serve(sim.router(), &cancel).await;
    let client = SipMediaGwClient::new(Duration::from_secs(2), crate::harness::loopback_gateways())
        .expect("client");
    let good = target(address, GatewayApi::Legacy, Some("1234"));

    let wrong = target(address, GatewayApi::Legacy, Some("nope"));
    assert_eq!(
        client
            .start(&wrong, room("r1"), "pod/live/join", "rtmp://l/x")
            .await,
        Err(StreamGatewayError::Unauthorized)
    );
    assert_eq!(
        client
            .start(&good, room("r1"), "pod/live/join", "rtmp://l/x")
            .await,
        Ok(None)
    );
    assert_eq!(client.is_streaming(&good, room("r1")).await, Ok(true));
    // One stream per server: "No free resources found" under HTTP 200 is a failure.
    assert_eq!(
        client.start(&good, room("r2"), "d", "rtmp://l/y").await,
        Err(StreamGatewayError::Busy)
    );
    assert_eq!(client.toggle_chat(&good, room("r1")).await, Ok(()));
    assert_eq!(client.post_chat(&good, room("r1"), "hello").await, Ok(()));
    assert_eq!(client.stop(&good, room("r1")).await, Ok(Stopped::Stopped));
    assert_eq!(
        client.stop(&good, room("r1")).await,
        Ok(Stopped::NotRunning),
        "400 no running container"
    );
    assert_eq!(client.is_streaming(&good, room("r1")).await, Ok(false));

    sim.set_faults(&[Fault::LaunchFailed]);
    assert_eq!(
        client.start(&good, room("r1"), "d", "rtmp://l/x").await,
        Err(StreamGatewayError::LaunchFailed)
    );
    sim.set_faults(&[Fault::Html500]);
    let html = client.start(&good, room("r1"), "d", "rtmp://l/x").await;
    assert_eq!(
        html,
        Err(StreamGatewayError::Http {
            status: 500,
            detail: None
        })
    );
    assert!(
        !format!("{html:?}").contains("1234"),
        "the debug page's echo of the token is dropped"
    );
    sim.set_faults(&[Fault::Latency(Duration::from_secs(5))]);
    assert_eq!(
        client.start(&good, room("r1"), "d", "rtmp://l/x").await,
        Err(StreamGatewayError::Timeout)
    );
    sim.set_faults(&[]);

    let counters = sim.counters();
    assert_eq!(counters.successful_starts, 1);
    assert_eq!(counters.chats, vec![("r1".to_owned(), "hello".to_owned())]);
    assert_eq!(counters.toggles, 1);
    assert_eq!(counters.started_with[0].1, "pod/live/join");

    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        client.start(&good, room("r1"), "d", "rtmp://l/x").await,
        Err(StreamGatewayError::Unreachable)
    );
}

#[tokio::test]
async fn the_gateway_client_runs_streams_on_the_containers_the_launcher_has() {
    let cancel = CancellationToken::new();
    // The production backend: two initialised containers, no others.
    let sim =
        SipMediaGwSim::new(Api::Gateway, None).with_gw_ids(&["3pi8m7isj175s0mtrnd7dyj6", "gw1"]);
    let address = serve(sim.router(), &cancel).await;
    let client = SipMediaGwClient::new(Duration::from_secs(2), crate::harness::loopback_gateways())
        .expect("client");
    let gw = target(address, GatewayApi::Gateway, None);
    let on = |room, id| StreamRef::new(room, Some(id));
    let first = "3pi8m7isj175s0mtrnd7dyj6";

    // An id the launcher never initialised: the status says so, clearly, and a start fails.
    assert_eq!(
        client.is_streaming(&gw, on("room1", "room1")).await,
        Err(StreamGatewayError::UnknownGwId("room1".into()))
    );
    assert!(StreamGatewayError::UnknownGwId("x".into())
        .to_string()
        .contains("gwIds"));
    assert_eq!(
        client
            .start(&gw, on("room1", "room1"), "d", "rtmp://l/x")
            .await,
        Err(StreamGatewayError::LaunchFailed),
        "404 Failed to start gateway container"
    );
    // Without an id, the v1.8 client refuses to guess.
    assert!(matches!(
        client.start(&gw, room("room1"), "d", "rtmp://l/x").await,
        Err(StreamGatewayError::NotUsable(_))
    ));

    // An initialised container that streams nothing yet is up, but not streaming our room.
    assert_eq!(
        client.is_streaming(&gw, on("room1", first)).await,
        Ok(false)
    );
    assert_eq!(
        client
            .start(&gw, on("room1", first), "d", "rtmp://l/x")
            .await,
        Ok(Some(first.to_owned()))
    );
    assert_eq!(client.is_streaming(&gw, on("room1", first)).await, Ok(true));
    assert_eq!(
        client.is_streaming(&gw, on("room2", first)).await,
        Ok(false)
    );
    // The browsing name is the gateway's (`bigbluebutton`), not our join domain.
    assert_eq!(
        sim.counters().started_with,
        vec![(
            "room1".to_owned(),
            "bigbluebutton".to_owned(),
            "rtmp://l/x".to_owned()
        )]
    );
    assert_eq!(
        client.post_chat(&gw, on("room1", first), "hi").await,
        Ok(())
    );
    assert_eq!(client.toggle_chat(&gw, on("room1", first)).await, Ok(()));
    assert_eq!(
        sim.counters().chats,
        vec![("room1".to_owned(), "hi".to_owned())]
    );
    assert_eq!(
        client.stop(&gw, on("room1", first)).await,
        Ok(Stopped::Stopped)
    );
    assert_eq!(
        client.stop(&gw, on("room1", first)).await,
        Ok(Stopped::NotRunning),
        "404 no running container"
    );
    assert_eq!(
        client.is_streaming(&gw, on("room1", first)).await,
        Ok(false),
        "down, exited"
    );
    assert!(
        matches!(
            client.post_chat(&gw, on("room1", first), "late").await,
            Err(StreamGatewayError::Http { status: 404, .. })
        ),
        "a stopped container takes no command"
    );
    // A stopped container starts again (compose recreates it).
    assert_eq!(
        client
            .start(&gw, on("room3", first), "d", "rtmp://l/x")
            .await,
        Ok(Some(first.to_owned()))
    );
    assert_eq!(sim.replaced_streams(), 0);
    cancel.cancel();
}

#[tokio::test]
async fn the_proxy_client_lets_the_v1_8_proxy_pick_the_container() {
    let cancel = CancellationToken::new();
    let sim = SipMediaGwSim::new(Api::Proxy, Some("1234")).with_gw_ids(&["a1", "b2"]);
    let address = serve(sim.router(), &cancel).await;
    let client = SipMediaGwClient::new(Duration::from_secs(2), crate::harness::loopback_gateways())
        .expect("client");
    let proxy = target(address, GatewayApi::Proxy, Some("1234"));
    let wrong = target(address, GatewayApi::Proxy, Some("nope"));
    assert_eq!(
        client.start(&wrong, room("r1"), "d", "rtmp://l/x").await,
        Err(StreamGatewayError::Unauthorized)
    );
    // The proxy picks a container and says which.
    let picked = client
        .start(&proxy, room("r1"), "d", "rtmp://l/x")
        .await
        .expect("started");
    assert_eq!(picked.as_deref(), Some("a1"));
    // Before its id is recorded, a stream is found by its room.
    assert_eq!(client.is_streaming(&proxy, room("r1")).await, Ok(true));
    assert_eq!(client.is_streaming(&proxy, room("r9")).await, Ok(false));
    assert_eq!(
        client
            .is_streaming(&proxy, StreamRef::new("r1", Some("a1")))
            .await,
        Ok(true)
    );
    assert_eq!(client.post_chat(&proxy, room("r1"), "hi").await, Ok(()));
    assert_eq!(
        client.start(&proxy, room("r2"), "d", "rtmp://l/y").await,
        Ok(Some("b2".to_owned()))
    );
    // Every container taken: 503 "No available gateways".
    assert_eq!(
        client.start(&proxy, room("r3"), "d", "rtmp://l/z").await,
        Err(StreamGatewayError::Busy)
    );
    assert_eq!(
        client.stop(&proxy, StreamRef::new("r1", Some("a1"))).await,
        Ok(Stopped::Stopped)
    );
    assert_eq!(
        client.stop(&proxy, room("r1")).await,
        Ok(Stopped::NotRunning),
        "no gateway for this room any more"
    );
    assert_eq!(
        client.stop(&proxy, StreamRef::new("r1", Some("zz"))).await,
        Ok(Stopped::NotRunning),
        "404 No mapping found"
    );
    assert_eq!(
        sim.counters().chats,
        vec![("r1".to_owned(), "hi".to_owned())]
    );
    assert_eq!(sim.counters().started_with[0].1, "bigbluebutton");
    cancel.cancel();
}

#[tokio::test]
async fn the_gateway_client_understands_v1_8_4s_500_for_an_unknown_id() {
    let cancel = CancellationToken::new();
    let sim = SipMediaGwSim::new(Api::Gateway, None)
        .with_gw_ids(&["gw0"])
        .with_release(webinar_infra::sim::sipmediagw::Release::V1_8_4);
    let address = serve(sim.router(), &cancel).await;
    let client = SipMediaGwClient::new(Duration::from_secs(2), crate::harness::loopback_gateways())
        .expect("client");
    let gw = target(address, GatewayApi::Gateway, None);
    assert_eq!(
        client
            .is_streaming(&gw, StreamRef::new("room1", Some("nope")))
            .await,
        Err(StreamGatewayError::UnknownGwId("nope".into()))
    );
    // v1.8.4's status never names the room: a running container cannot be told apart, so it
    // reads as not streaming (a start again only restarts that one container).
    let on = StreamRef::new("room1", Some("gw0"));
    assert_eq!(
        client.start(&gw, on, "d", "rtmp://l/x").await,
        Ok(Some("gw0".to_owned()))
    );
    assert_eq!(client.is_streaming(&gw, on).await, Ok(false));
    assert_eq!(
        client.start(&gw, on, "d", "rtmp://l/x").await,
        Ok(Some("gw0".to_owned()))
    );
    assert_eq!(sim.replaced_streams(), 0, "the same room, restarted");
    cancel.cancel();
}

#[tokio::test]
async fn the_bbb_client_signs_parses_and_types_failures() {
    let cancel = CancellationToken::new();
    let sim = BbbSim::new("bbb-secret");
    let address = serve(sim.router(), &cancel).await;
    let base = format!("http://{address}/bigbluebutton/api");
    for checksum in [
        Checksum::Sha1,
        Checksum::Sha256,
        Checksum::Sha384,
        Checksum::Sha512,
    ] {
        let client = BbbClient::new(
            BbbApi::new(&base, SecretString::from("bbb-secret".to_owned()), checksum),
            Duration::from_secs(2),
        )
        .expect("client");
        assert_eq!(
            client.is_meeting_running("none").await,
            Ok(false),
            "{checksum:?} verifies"
        );
    }
    let client = BbbClient::new(
        BbbApi::new(
            &base,
            SecretString::from("bbb-secret".to_owned()),
            Checksum::Sha256,
        ),
        Duration::from_secs(2),
    )
    .expect("client");
    let wrong = BbbClient::new(
        BbbApi::new(
            &base,
            SecretString::from("wrong".to_owned()),
            Checksum::Sha256,
        ),
        Duration::from_secs(2),
    )
    .expect("client");
    assert_eq!(
        wrong.is_meeting_running("m").await,
        Err(MeetingError::Checksum)
    );

    let meeting = NewMeeting {
        meeting_id: "webinar-1",
        name: "Lecture & more",
        logout_url: "https://pod.example.org/",
        end_callback_url: "http://127.0.0.1:9/callbacks/bbb/end/1?sig=x",
        record: false,
    };
    assert_eq!(client.create(&meeting).await, Ok(()));
    assert_eq!(
        client.create(&meeting).await,
        Ok(()),
        "duplicateWarning is a success"
    );
    assert_eq!(
        client.is_meeting_running("webinar-1").await,
        Ok(false),
        "nobody joined yet"
    );
    assert!(sim.add_user("webinar-1", "streaming").is_some());
    assert_eq!(client.is_meeting_running("webinar-1").await, Ok(true));
    let info = client.get_meeting_info("webinar-1").await.expect("info");
    assert_eq!(
        (
            info.participant_count,
            info.attendees
                .iter()
                .map(|a| a.name.clone())
                .collect::<Vec<_>>()
        ),
        (1, vec!["streaming".to_owned()])
    );
    assert_eq!(client.get_meetings().await.map(|m| m.len()), Ok(1));
    assert_eq!(
        client
            .send_chat_message("webinar-1", "Hello", "Alice")
            .await,
        Ok(())
    );
    assert!(matches!(
        client
            .send_chat_message("webinar-1", &"x".repeat(501), "A")
            .await,
        Err(MeetingError::Failed { .. })
    ));
    assert_eq!(client.end("webinar-1").await, Ok(()));
    assert_eq!(client.end("webinar-1").await, Err(MeetingError::NotFound));
    assert_eq!(
        client.get_meeting_info("webinar-1").await,
        Err(MeetingError::NotFound)
    );
    assert_eq!(sim.counters().callbacks.len(), 1, "end fired the callback");
    cancel.cancel();
}
