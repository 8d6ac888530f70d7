//! Reconnection on fake time: a dropped connection puts every room in Reconnecting, retries
//! with growing jittered delays, resumes the server session (Reconnected, nothing lost or
//! repeated) or, when the server lost it, logs in again, reports what changed and republishes;
//! past the horizon the rooms end with ReconnectFailed. Heartbeats detect a silent server.

mod common;
use common::*;
use std::time::Duration;
use zrooms_proto::wire::*;
use zrooms_proto::*;
use zrooms_session::*;

/// Two rooms; a stream published in r1 and one played in r2, both flowing.
fn live() -> Harness {
    let mut h = Harness::new(true);
    h.login_ok("r1", "me", vec![user("x")], vec![stream("sx", "x")]);
    h.login_ok("r2", "me", vec![], vec![stream("sy", "y")]);
    h.call(Command::StartPublishing {
        stream_id: "mine".into(),
        channel: 0,
        room_id: Some("r1".into()),
    });
    h.call(Command::StartPlaying {
        stream_id: "sy".into(),
        room_id: Some("r2".into()),
    });
    for f in h.take_sent() {
        match f.req {
            Request::Publish { .. } => h.reply(f.id, ErrorCode::SUCCESS, None),
            Request::Play { .. } => h.reply(
                f.id,
                ErrorCode::SUCCESS,
                Some(ReplyBody::Play { available: true }),
            ),
            _ => {}
        }
    }
    h.s.handle_media_received(h.now, &StreamId::new("sy").unwrap());
    h.drain();
    h.take_events();
    h
}

fn publisher_states(h: &Harness) -> Vec<PublisherState> {
    h.events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::PublisherState { state, .. } => Some(*state),
            _ => None,
        })
        .collect()
}

fn player_states(h: &Harness) -> Vec<PlayerState> {
    h.events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::PlayerState { state, .. } => Some(*state),
            _ => None,
        })
        .collect()
}

/// Waits until the session asks to connect; the delay it took.
fn until_connect(h: &mut Harness) -> Duration {
    let start = h.now;
    let before = h.connects;
    for _ in 0..10_000 {
        if h.connects > before {
            return h.now - start;
        }
        let next = h.deadline.expect("a deadline while reconnecting");
        let step = next
            .saturating_duration_since(h.now)
            .max(Duration::from_millis(1));
        h.advance(step);
    }
    panic!("never reconnected");
}

#[test]
fn a_resumed_session_reports_reconnected_and_sends_again_what_was_in_flight() {
    let mut h = live();
    let op = h.call(Command::SendBroadcast {
        room_id: "r1".into(),
        message: "in flight".into(),
    });
    let in_flight = h.take_sent().pop().unwrap();
    h.s.handle_disconnected(h.now);
    h.drain();
    assert_eq!(
        h.room_reasons(),
        vec![
            (
                "r1".into(),
                RoomReason::Reconnecting,
                ErrorCode::ROOM_CONNECT_TEMPORARY_BROKEN
            ),
            (
                "r2".into(),
                RoomReason::Reconnecting,
                ErrorCode::ROOM_CONNECT_TEMPORARY_BROKEN
            ),
        ]
    );
    assert_eq!(
        publisher_states(&h),
        vec![PublisherState::PublishRequesting]
    );
    assert_eq!(player_states(&h), vec![PlayerState::PlayRequesting]);
    // Sent while away: queued, not lost.
    let queued = h.call(Command::SendBroadcast {
        room_id: "r2".into(),
        message: "while away".into(),
    });
    assert!(h.sent.is_empty());
    h.take_events();
    let delay = until_connect(&mut h);
    assert!(delay <= Duration::from_millis(400), "{delay:?}");
    let resume = h.connect_as("1", true).expect("the hello asks to resume");
    assert_eq!(
        (resume.session_id.as_str(), resume.key.as_str()),
        ("1", "key-1")
    );
    assert_eq!(
        h.room_reasons(),
        vec![
            ("r1".into(), RoomReason::Reconnected, ErrorCode::SUCCESS),
            ("r2".into(), RoomReason::Reconnected, ErrorCode::SUCCESS),
        ]
    );
    assert_eq!(publisher_states(&h), vec![PublisherState::Publishing]);
    assert_eq!(player_states(&h), vec![PlayerState::Playing]);
    assert_eq!(h.media_resets, 0, "the media peer survives a resume");
    // The in-flight request goes again with its id, then the queued one, in order.
    let sent = h.take_sent();
    assert_eq!(sent[0], in_flight);
    assert!(matches!(&sent[1].req, Request::Broadcast { message, .. } if message == "while away"));
    h.reply(
        in_flight.id,
        ErrorCode::SUCCESS,
        Some(ReplyBody::Broadcast { message_id: 7 }),
    );
    h.reply(
        sent[1].id,
        ErrorCode::SUCCESS,
        Some(ReplyBody::Broadcast { message_id: 1 }),
    );
    assert_eq!(h.completed(op).unwrap().0, ErrorCode::SUCCESS);
    assert_eq!(h.completed(queued).unwrap().0, ErrorCode::SUCCESS);
}

#[test]
fn retries_back_off_with_jitter_and_give_up_at_the_horizon() {
    let mut h = Harness::new(true);
    h.s = Session::new(SessionConfig {
        multi_room: true,
        reconnect_horizon: Duration::from_secs(60),
        ..SessionConfig::default()
    });
    h.login_ok("r1", "me", vec![], vec![]);
    h.s.handle_disconnected(h.now);
    h.drain();
    let mut delays = Vec::new();
    let since = h.now;
    while h.now < since + Duration::from_secs(50) {
        delays.push(until_connect(&mut h));
        // The attempt fails.
        h.s.handle_disconnected(h.now);
        h.drain();
    }
    // 250 ms doubling to 8 s, each within ±25 %.
    for (i, d) in delays.iter().enumerate() {
        let base = Duration::from_millis(250)
            .saturating_mul(1 << i.min(5))
            .min(Duration::from_secs(8));
        assert!(
            *d >= base.mul_f64(0.74) && *d <= base.mul_f64(1.26),
            "attempt {i}: {d:?} vs {base:?}"
        );
    }
    assert!(delays.len() >= 8);
    h.take_events();
    h.advance(Duration::from_secs(11));
    assert_eq!(
        h.room_reasons(),
        vec![(
            "r1".into(),
            RoomReason::ReconnectFailed,
            ErrorCode::ROOM_RETRY_TIMEOUT
        )]
    );
    assert!(!h.s.is_active());
}

/// A live session whose connection dropped and whose first `n` attempts reached the server and
/// failed.
fn live_after_failed_attempts(n: usize) -> Harness {
    let mut h = live();
    h.s.handle_disconnected(h.now);
    h.drain();
    for _ in 0..n {
        until_connect(&mut h);
        h.s.handle_disconnected(h.now);
        h.drain();
    }
    h
}

#[test]
fn an_unreachable_server_is_probed_every_half_second_without_growing_the_backoff() {
    // Attempts that reached the server and failed grow the backoff: 250, 500, 1000, 2000 ms.
    let mut h = live_after_failed_attempts(4);
    // Then the network goes. The attempt already scheduled comes at its backoff (4 s) and does
    // not reach the server; from then on attempts come within 500 ms ±25 % (bounded: at most
    // about two a second), however long the outage lasts.
    let scheduled = until_connect(&mut h);
    assert!(scheduled >= Duration::from_secs(3), "{scheduled:?}");
    h.s.handle_unreachable(h.now);
    h.drain();
    let since = h.now;
    let mut probes = Vec::new();
    while h.now < since + Duration::from_secs(120) {
        probes.push(until_connect(&mut h));
        h.s.handle_unreachable(h.now);
        h.drain();
    }
    assert!(
        probes
            .iter()
            .all(|d| *d >= Duration::from_millis(370) && *d <= Duration::from_millis(630)),
        "{probes:?}"
    );
    assert!(
        (190..=320).contains(&probes.len()),
        "{} probes in 120 s",
        probes.len()
    );
    // A server that is reachable again but fails goes back to the grown backoff (4 s next).
    until_connect(&mut h);
    h.s.handle_disconnected(h.now);
    h.drain();
    let d = until_connect(&mut h);
    assert!(d >= Duration::from_secs(3), "{d:?}");
}

#[test]
fn a_network_change_brings_the_next_attempt_forward() {
    // Three attempts that reached the server and failed: the next one is 2 s ±25 % away.
    let mut h = live_after_failed_attempts(3);
    let before = h.connects;
    h.advance(Duration::from_millis(100));
    assert_eq!(h.connects, before, "still waiting for the slot");
    h.s.handle_network_changed(h.now);
    h.drain();
    assert_eq!(h.connects, before + 1, "the change makes the attempt now");
    // While that attempt is under way, more changes do nothing.
    h.s.handle_network_changed(h.now);
    h.drain();
    assert_eq!(h.connects, before + 1);
}

#[test]
fn a_new_server_session_logs_in_again_reports_changes_and_republishes() {
    let mut h = live();
    let op = h.call(Command::SendBroadcast {
        room_id: "r1".into(),
        message: "lost with the old session".into(),
    });
    h.take_sent();
    h.s.handle_disconnected(h.now);
    h.drain();
    until_connect(&mut h);
    h.take_events();
    h.connect_as("2", false);
    assert_eq!(h.media_resets, 1);
    // What the old session had in flight fails with a code, never silently.
    assert_eq!(h.completed(op).unwrap().0, ErrorCode::IM_SEND_FAILED);
    let logins: Vec<ClientFrame> = h
        .take_sent()
        .into_iter()
        .filter(|f| matches!(f.req, Request::Login { .. }))
        .collect();
    assert_eq!(logins.len(), 2);
    // r1: x left and published nothing; z came with sz.
    for f in logins {
        let Request::Login { room_id, .. } = &f.req else {
            unreachable!()
        };
        let (users, streams) = if room_id.as_str() == "r1" {
            (vec![user("z")], vec![stream("sz", "z")])
        } else {
            (vec![user("y")], vec![stream("sy", "y")])
        };
        h.reply(
            f.id,
            ErrorCode::SUCCESS,
            Some(ReplyBody::Login {
                room_session_id: "99".into(),
                users,
                streams,
                extra_info: vec![],
                online_count: 2,
            }),
        );
    }
    let reasons = h.room_reasons();
    assert!(reasons.contains(&("r1".into(), RoomReason::Reconnected, ErrorCode::SUCCESS)));
    assert!(reasons.contains(&("r2".into(), RoomReason::Reconnected, ErrorCode::SUCCESS)));
    let stream_updates: Vec<(String, UpdateType, Vec<String>)> = h
        .events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::StreamUpdate {
                room_id,
                update,
                streams,
                ..
            } => Some((
                room_id.clone(),
                *update,
                streams.iter().map(|s| s.stream_id.to_string()).collect(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        stream_updates,
        vec![
            ("r1".into(), UpdateType::Delete, vec!["sx".into()]),
            ("r1".into(), UpdateType::Add, vec!["sz".into()]),
        ],
        "r2 had no change"
    );
    // Its stream is published again and the played one requested again.
    let sent = h.take_sent();
    assert!(sent.iter().any(
        |f| matches!(&f.req, Request::Publish { stream_id, .. } if stream_id.as_str() == "mine")
    ));
    assert!(sent
        .iter()
        .any(|f| matches!(&f.req, Request::Play { stream_id, .. } if stream_id.as_str() == "sy")));
}

#[test]
fn heartbeats_go_out_and_a_silent_server_is_dropped() {
    let mut h = Harness::new(true);
    h.login_ok("r1", "me", vec![], vec![]);
    h.take_sent();
    h.advance(Duration::from_secs(5));
    let pings: Vec<u64> = h
        .take_sent()
        .iter()
        .filter_map(|f| match f.req {
            Request::Ping { received } => Some(received),
            _ => None,
        })
        .collect();
    // The hello's reply and the login's reply.
    assert_eq!(pings, vec![2]);
    assert_eq!(h.disconnects, 0);
    h.advance(Duration::from_secs(5));
    h.advance(Duration::from_secs(5));
    assert_eq!(h.disconnects, 1, "15 s without a frame from the server");
}
