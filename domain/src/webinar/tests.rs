//! Every command in every lifecycle and stream state, through cqrs-es's `TestFramework`.

use chrono::{TimeZone, Utc};
use cqrs_es::test::TestFramework;

use super::*;
use crate::ids::GatewayId;
use crate::schedule::TimeSlot;
use crate::values::{Description, Person, Site, Title};

fn gateway(n: u128) -> GatewayId {
    GatewayId::from_uuid(uuid::Uuid::from_u128(n))
}

fn slot(hour: u32) -> TimeSlot {
    let start = Utc
        .with_ymd_and_hms(2030, 1, 7, hour, 0, 0)
        .single()
        .expect("valid");
    TimeSlot::new_unchecked(start, 60)
}

fn owner() -> Person {
    Person::parse("owner", "Olivia Owner").expect("valid")
}

fn scheduled() -> WebinarEvent {
    WebinarEvent::Scheduled {
        title: Title::parse("Intro").expect("valid"),
        description: None,
        owner: owner(),
        presenters: vec![],
        start_at: slot(10).start(),
        duration_minutes: 60,
        enable_chat: false,
        restricted: false,
        groups: vec![],
        gateway_id: gateway(1),
        room: "room1".into(),
        record: false,
        site: Site::default(),
    }
}

/// The states, each as the history that leads to it.
fn states() -> Vec<(&'static str, Vec<WebinarEvent>)> {
    use WebinarEvent::*;
    let started = Started {
        meeting_id: "m".into(),
        server: None,
    };
    let live = |more: Vec<WebinarEvent>| {
        let mut events = vec![scheduled(), started.clone()];
        events.extend(more);
        events
    };
    vec![
        ("UNSCHEDULED", vec![]),
        ("SCHEDULED", vec![scheduled()]),
        ("LIVE/IDLE", live(vec![])),
        ("LIVE/STARTING", live(vec![StreamStartRequested])),
        (
            "LIVE/LIVE",
            live(vec![StreamStartRequested, StreamStarted { gw_id: None }]),
        ),
        (
            "LIVE/STOPPING",
            live(vec![
                StreamStartRequested,
                StreamStarted { gw_id: None },
                StreamStopRequested,
            ]),
        ),
        (
            "LIVE/STOPPED",
            live(vec![
                StreamStartRequested,
                StreamStarted { gw_id: None },
                StreamStopRequested,
                StreamStopped,
            ]),
        ),
        (
            "LIVE/FAILED",
            live(vec![
                StreamStartRequested,
                StreamFailed {
                    reason: "down".into(),
                    attempt: 3,
                    final_attempt: true,
                },
            ]),
        ),
        (
            "ENDED",
            live(vec![
                StreamStartRequested,
                StreamStarted { gw_id: None },
                MeetingEnded {
                    reason: EndReason::Presenter,
                },
                StreamStopRequested,
                Ended,
            ]),
        ),
        (
            "ENDED/LIVE",
            live(vec![
                StreamStartRequested,
                StreamStarted { gw_id: None },
                MeetingEnded {
                    reason: EndReason::Presenter,
                },
                StreamStopRequested,
                Ended,
                StreamStopFailed {
                    reason: "SIPMediaGW error 500".into(),
                    attempts: 5,
                },
            ]),
        ),
        ("CANCELLED", vec![scheduled(), Cancelled]),
    ]
}

fn commands() -> Vec<(&'static str, WebinarCommand)> {
    vec![
        (
            "Schedule",
            WebinarCommand::Schedule {
                owner: owner(),
                details: WebinarDetails {
                    title: Title::parse("Intro").expect("valid"),
                    description: Description::parse("About").expect("valid"),
                    presenters: vec![],
                    enable_chat: true,
                    restricted: false,
                    groups: vec!["l1".into()],
                    record: false,
                },
                slot: slot(10),
                gateway: gateway(1),
                room: "room1".into(),
                site: Site::default(),
            },
        ),
        (
            "Reschedule",
            WebinarCommand::Reschedule {
                slot: slot(12),
                gateway: gateway(1),
            },
        ),
        (
            "Move",
            WebinarCommand::Reschedule {
                slot: slot(12),
                gateway: gateway(2),
            },
        ),
        (
            "UpdateDetails",
            WebinarCommand::UpdateDetails(DetailsChange {
                title: Some(Title::parse("New").expect("valid")),
                ..Default::default()
            }),
        ),
        ("EnableChat", WebinarCommand::SetChat { enabled: true }),
        (
            "StartByOwner",
            WebinarCommand::Start {
                meeting_id: "m".into(),
                by_owner: true,
                server: None,
            },
        ),
        (
            "StartByPresenter",
            WebinarCommand::Start {
                meeting_id: "m".into(),
                by_owner: false,
                server: None,
            },
        ),
        ("StopLive", WebinarCommand::StopLive),
        ("RestartLive", WebinarCommand::RestartLive),
        (
            "End",
            WebinarCommand::End {
                reason: EndReason::BbbCallback,
            },
        ),
        ("Cancel", WebinarCommand::Cancel),
        (
            "RecordStreamStarted",
            WebinarCommand::RecordStreamStarted { gw_id: None },
        ),
        (
            "RecordStreamFailed",
            WebinarCommand::RecordStreamFailed {
                reason: "busy".into(),
                attempt: 1,
                final_attempt: false,
            },
        ),
        ("RecordStreamStopped", WebinarCommand::RecordStreamStopped),
        (
            "RecordStreamStopFailed",
            WebinarCommand::RecordStreamStopFailed {
                reason: "SIPMediaGW error 500".into(),
                attempts: 5,
            },
        ),
        ("FailOver", WebinarCommand::FailOver { to: gateway(2) }),
        (
            "RecordStreamHealth",
            WebinarCommand::RecordStreamHealth {
                health: StreamHealth::Stalled,
                detail: Some("frozen".into()),
            },
        ),
        (
            "RecoverUnwatchableStream",
            WebinarCommand::RecoverUnwatchableStream {
                reason: "frozen".into(),
                spare_gateway: true,
            },
        ),
    ]
}

/// Expected outcome: the event types, or the error code.
fn expected(state: &str, command: &str) -> Result<Vec<&'static str>, &'static str> {
    const NF: Result<Vec<&str>, &str> = Err("NOT_FOUND");
    const IS: Result<Vec<&str>, &str> = Err("INVALID_STATE");
    let live = state.starts_with("LIVE");
    let stream = state.split('/').nth(1).unwrap_or("");
    match (command, state) {
        ("Schedule", "UNSCHEDULED") => Ok(vec!["Scheduled"]),
        ("Schedule", _) => Err("CONFLICT"),
        (_, "UNSCHEDULED") => NF,
        ("Reschedule", "SCHEDULED") => Ok(vec!["Rescheduled"]),
        ("Reschedule", _) if live => Ok(vec!["Rescheduled"]),
        ("Move", "SCHEDULED") => Ok(vec!["Rescheduled", "GatewayReassigned"]),
        ("UpdateDetails", "SCHEDULED") => Ok(vec!["DetailsUpdated"]),
        ("UpdateDetails", _) if live => Ok(vec!["DetailsUpdated"]),
        ("EnableChat", "SCHEDULED") => Ok(vec!["ChatEnabled"]),
        ("EnableChat", _) if live => Ok(vec!["ChatEnabled"]),
        ("StartByOwner", "SCHEDULED") => Ok(vec!["Started", "StreamStartRequested"]),
        ("StartByOwner", _) if live && stream == "IDLE" => Ok(vec!["StreamStartRequested"]),
        ("StartByOwner", _) if live => Ok(vec![]),
        ("StartByPresenter", "SCHEDULED") => Ok(vec!["Started"]),
        ("StartByPresenter", _) if live => Ok(vec![]),
        ("StopLive", _) if live && matches!(stream, "STARTING" | "LIVE") => {
            Ok(vec!["StreamStopRequested"])
        }
        ("StopLive", _) if live => Ok(vec![]),
        ("RestartLive", _) if live => Ok(vec!["StreamRestartRequested"]),
        ("End", _) if live && matches!(stream, "STARTING" | "LIVE") => {
            Ok(vec!["MeetingEnded", "StreamStopRequested", "Ended"])
        }
        ("End", _) if live => Ok(vec!["MeetingEnded", "Ended"]),
        ("End", "ENDED") => Ok(vec![]),
        // Ending again retries a stop that failed.
        ("End", "ENDED/LIVE") => Ok(vec!["StreamStopRequested"]),
        ("Cancel", "SCHEDULED") => Ok(vec!["Cancelled"]),
        ("Cancel", "CANCELLED") => Ok(vec![]),
        ("RecordStreamStarted", _) if stream == "STARTING" => Ok(vec!["StreamStarted"]),
        ("RecordStreamStarted", _) if stream == "LIVE" => Ok(vec![]),
        ("RecordStreamFailed", _) if stream == "STARTING" => Ok(vec!["StreamFailed"]),
        ("RecordStreamFailed", _) if stream == "FAILED" => Ok(vec![]),
        ("RecordStreamStopped", _) if stream == "STOPPING" => Ok(vec!["StreamStopped"]),
        ("RecordStreamStopped", _) if stream == "STOPPED" => Ok(vec![]),
        ("FailOver", "LIVE/FAILED") => Ok(vec!["GatewayReassigned", "StreamStartRequested"]),
        ("RecordStreamHealth", "LIVE/STARTING" | "LIVE/LIVE") => Ok(vec!["StreamHealthChanged"]),
        ("RecordStreamHealth", _) => Ok(vec![]),
        // None of these states has an unwatchable stream.
        ("RecoverUnwatchableStream", _) => Ok(vec![]),
        // An ended webinar's stream is stopping: its reactor may still report.
        ("RecordStreamStopped", "ENDED") => Ok(vec!["StreamStopped"]),
        ("RecordStreamStopFailed", "LIVE/STOPPING" | "ENDED") => Ok(vec!["StreamStopFailed"]),
        ("RecordStreamStopFailed", "LIVE/LIVE" | "ENDED/LIVE") => Ok(vec![]),
        _ => IS,
    }
}

#[tokio::test]
async fn every_command_in_every_state() {
    use cqrs_es::DomainEvent;
    let mut cells = 0;
    for (state, history) in states() {
        for (name, command) in commands() {
            let result = TestFramework::<Webinar>::with(())
                .given(history.clone())
                .when_async(command)
                .await
                .inspect_result();
            let actual = result
                .map(|events| events.iter().map(|e| e.event_type()).collect::<Vec<_>>())
                .map_err(|e| e.code());
            let wanted = expected(state, name)
                .map(|types| types.into_iter().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(actual, wanted, "{name} in {state}");
            cells += 1;
        }
    }
    assert_eq!(cells, 11 * 18);
}

#[tokio::test]
async fn invalid_state_errors_name_the_state() {
    let result = TestFramework::<Webinar>::with(())
        .given(vec![scheduled(), WebinarEvent::Cancelled])
        .when_async(WebinarCommand::StopLive)
        .await
        .inspect_result();
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("CANCELLED"), "{message}");
}

#[tokio::test]
async fn groups_make_a_webinar_restricted() {
    TestFramework::<Webinar>::with(())
        .given(vec![scheduled()])
        .when_async(WebinarCommand::UpdateDetails(DetailsChange {
            groups: Some(vec!["l1".into()]),
            ..Default::default()
        }))
        .await
        .then_expect_events(vec![WebinarEvent::DetailsUpdated {
            title: None,
            description: None,
            presenters: None,
            restricted: Some(true),
            groups: Some(vec!["l1".into()]),
        }]);
}

#[tokio::test]
async fn a_live_webinar_cannot_move_to_another_gateway() {
    TestFramework::<Webinar>::with(())
        .given(vec![
            scheduled(),
            WebinarEvent::Started {
                meeting_id: "m".into(),
                server: None,
            },
        ])
        .when_async(WebinarCommand::Reschedule {
            slot: slot(10),
            gateway: gateway(2),
        })
        .await
        .then_expect_error(WebinarError::InvalidState {
            state: "LIVE",
            action: "moving it to another gateway",
        });
}

#[test]
fn a_webinar_holds_its_slot_only_on_its_gateway_while_it_is_scheduled_or_live() {
    use cqrs_es::Aggregate;
    let replay = |events: Vec<WebinarEvent>| {
        let mut webinar = Webinar::default();
        events.into_iter().for_each(|e| webinar.apply(e));
        webinar
    };
    assert_eq!(Webinar::default().reservation_on(gateway(1)), None);
    let planned = replay(vec![scheduled()]);
    assert_eq!(planned.reservation_on(gateway(1)), Some(slot(10)));
    assert_eq!(planned.reservation_on(gateway(2)), None);
    let moved = replay(vec![
        scheduled(),
        WebinarEvent::GatewayReassigned {
            from: gateway(1),
            to: gateway(2),
        },
    ]);
    assert_eq!(moved.reservation_on(gateway(1)), None);
    assert_eq!(moved.reservation_on(gateway(2)), Some(slot(10)));
    let cancelled = replay(vec![scheduled(), WebinarEvent::Cancelled]);
    assert_eq!(cancelled.reservation_on(gateway(1)), None);
}

fn participant(id: &str, name: &str) -> Participant {
    Participant::from_bbb(id, id, name, "VIEWER").expect("an id")
}

/// A live webinar whose stream is live with the streaming bot and one person in the meeting.
fn live_with_bot() -> Vec<WebinarEvent> {
    vec![
        scheduled(),
        WebinarEvent::Started {
            meeting_id: "m".into(),
            server: None,
        },
        WebinarEvent::StreamStartRequested,
        WebinarEvent::StreamStarted { gw_id: None },
        WebinarEvent::ParticipantJoined(participant("w_bot", "streaming")),
        WebinarEvent::ParticipantJoined(participant("w_ada", "Ada")),
    ]
}

#[tokio::test]
async fn a_stream_whose_bot_left_the_meeting_is_restarted() {
    TestFramework::<Webinar>::with(())
        .given(live_with_bot())
        .when_async(WebinarCommand::RecordParticipantLeft {
            user_id: "w_bot".into(),
        })
        .await
        .then_expect_events(vec![
            WebinarEvent::ParticipantLeft {
                user_id: "w_bot".into(),
            },
            WebinarEvent::StreamRestartRequested,
        ]);
    // Someone else leaving changes only the list; a leave heard twice changes nothing.
    TestFramework::<Webinar>::with(())
        .given(live_with_bot())
        .when_async(WebinarCommand::RecordParticipantLeft {
            user_id: "w_ada".into(),
        })
        .await
        .then_expect_events(vec![WebinarEvent::ParticipantLeft {
            user_id: "w_ada".into(),
        }]);
    TestFramework::<Webinar>::with(())
        .given(live_with_bot())
        .when_async(WebinarCommand::RecordParticipantLeft {
            user_id: "w_nobody".into(),
        })
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn the_sweep_brings_the_participant_list_in_line() {
    TestFramework::<Webinar>::with(())
        .given(live_with_bot())
        .when_async(WebinarCommand::SyncParticipants {
            present: vec![participant("w_ada", "Ada"), participant("w_bob", "Bob")],
        })
        .await
        .then_expect_events(vec![
            WebinarEvent::ParticipantJoined(participant("w_bob", "Bob")),
            WebinarEvent::ParticipantLeft {
                user_id: "w_bot".into(),
            },
            WebinarEvent::StreamRestartRequested,
        ]);
    // After the webinar, news of its meeting changes nothing.
    let mut ended = live_with_bot();
    ended.push(WebinarEvent::Ended);
    TestFramework::<Webinar>::with(())
        .given(ended)
        .when_async(WebinarCommand::RecordParticipantJoined(participant(
            "w_late", "Late",
        )))
        .await
        .then_expect_events(vec![]);
}

fn health(health: StreamHealth) -> WebinarEvent {
    WebinarEvent::StreamHealthChanged {
        health,
        detail: None,
    }
}

fn live_stream() -> Vec<WebinarEvent> {
    vec![
        scheduled(),
        WebinarEvent::Started {
            meeting_id: "m".into(),
            server: None,
        },
        WebinarEvent::StreamStartRequested,
        WebinarEvent::StreamStarted { gw_id: None },
    ]
}

fn decide(history: &[WebinarEvent], command: WebinarCommand) -> Vec<String> {
    use cqrs_es::{Aggregate, DomainEvent};
    let mut webinar = Webinar::default();
    for event in history {
        webinar.apply(event.clone());
    }
    webinar
        .decide(command)
        .expect("accepted")
        .iter()
        .map(|e| e.event_type())
        .collect()
}

#[test]
fn health_is_recorded_on_a_change_only() {
    let record = |h| WebinarCommand::RecordStreamHealth {
        health: h,
        detail: Some("seen".into()),
    };
    let mut history = live_stream();
    assert_eq!(
        decide(&history, record(StreamHealth::Healthy)),
        ["StreamHealthChanged"]
    );
    history.push(health(StreamHealth::Healthy));
    assert!(decide(&history, record(StreamHealth::Healthy)).is_empty());
    // A stopped stream is not watched: a late watcher changes nothing.
    history.extend([
        WebinarEvent::StreamStopRequested,
        WebinarEvent::StreamStopped,
    ]);
    assert!(decide(&history, record(StreamHealth::Stalled)).is_empty());
}

#[test]
fn an_unwatchable_stream_is_restarted_then_failed() {
    let recover = || WebinarCommand::RecoverUnwatchableStream {
        reason: "frozen".into(),
        spare_gateway: true,
    };
    let mut history = live_stream();
    // Healthy: nothing to do.
    history.push(health(StreamHealth::Healthy));
    assert!(decide(&history, recover()).is_empty());
    history.push(health(StreamHealth::Stalled));
    assert_eq!(decide(&history, recover()), ["StreamRestartRequested"]);
    history.push(WebinarEvent::StreamRestartRequested);
    // Restarting: health starts again from UNKNOWN, and nothing is done until it is live.
    assert!(decide(&history, recover()).is_empty());
    history.extend([
        WebinarEvent::StreamStarted { gw_id: None },
        health(StreamHealth::Stalled),
    ]);
    assert_eq!(decide(&history, recover()), ["StreamFailed"]);
    // With no other gateway free, failing would leave it nowhere: it is restarted again.
    let stay = WebinarCommand::RecoverUnwatchableStream {
        reason: "frozen".into(),
        spare_gateway: false,
    };
    assert_eq!(decide(&history, stay), ["StreamRestartRequested"]);
    // Healthy in between: the next remedy is a restart again.
    history.push(health(StreamHealth::Healthy));
    history.push(health(StreamHealth::Missing));
    assert_eq!(decide(&history, recover()), ["StreamRestartRequested"]);
}
