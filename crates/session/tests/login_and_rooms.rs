//! Room login, logout and failures on fake time.

mod common;
use common::*;
use std::time::Duration;
use zrooms_proto::wire::*;
use zrooms_proto::*;
use zrooms_session::*;

#[test]
fn first_login_connects_then_sends_hello_then_login() {
    let mut h = Harness::new(true);
    let op = h.call(Harness::login_cmd("room1", "u1"));
    assert_eq!(h.connects, 1);
    assert!(h.sent.is_empty(), "nothing is sent before the socket opens");
    assert_eq!(
        h.room_reasons(),
        vec![("room1".into(), RoomReason::Logining, ErrorCode::SUCCESS)]
    );
    h.connect();
    let login = h.take_sent();
    assert_eq!(login.len(), 1);
    assert!(
        matches!(&login[0].req, Request::Login { room_id, config, .. } if room_id.as_str() == "room1" && config.multi_room)
    );
    assert!(
        h.completed(op).is_none(),
        "the promise waits for the server"
    );
}

#[test]
fn login_delivers_existing_users_and_streams_without_self() {
    let mut h = Harness::new(true);
    let op = h.login_ok(
        "room1",
        "u1",
        vec![user("u2"), user("u1")],
        vec![stream("s2", "u2"), stream("mine", "u1")],
    );
    let (code, value) = h.completed(op).unwrap();
    assert_eq!(code, ErrorCode::SUCCESS);
    assert_eq!(
        value,
        OpValue::Extended("{\"room_session_id\":\"42\"}".into())
    );
    let users: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::UserUpdate { users, update, .. } => Some((*update, users.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(users, vec![(UpdateType::Add, vec![user("u2")])]);
    let streams: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::StreamUpdate { streams, .. } => Some(streams.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(streams, vec![vec![stream("s2", "u2")]]);
    // The promise resolves after the room's events.
    assert!(matches!(
        h.events.last(),
        Some(SessionEvent::Completed { .. })
    ));
}

#[test]
fn login_timeout_fails_with_1002031_and_tells_the_server_to_forget() {
    let mut h = Harness::new(true);
    let op = h.call(Harness::login_cmd("slow", "u1"));
    h.connect();
    let login = h.take_sent().remove(0);
    assert!(h.deadline.is_some());
    h.advance(Duration::from_secs(29));
    assert!(h.completed(op).is_none());
    h.advance(Duration::from_secs(2));
    assert_eq!(
        h.completed(op).unwrap().0,
        ErrorCode::ROOM_ERROR_LOGIN_TIMEOUT
    );
    assert_eq!(
        h.room_reasons().last().unwrap(),
        &(
            "slow".into(),
            RoomReason::LoginFailed,
            ErrorCode::ROOM_ERROR_LOGIN_TIMEOUT
        )
    );
    assert!(h
        .take_sent()
        .iter()
        .any(|f| matches!(&f.req, Request::Logout { room_id } if room_id.as_str() == "slow")));
    // A late reply changes nothing.
    let before = h.events.len();
    h.reply(login.id, ErrorCode::SUCCESS, None);
    assert_eq!(h.events.len(), before);
    assert_eq!(
        h.s.room_ids().count(),
        0,
        "no room, so no login deadline either"
    );
}

#[test]
fn a_late_reply_to_an_abandoned_login_does_not_complete_the_next_one() {
    let mut h = Harness::new(true);
    h.call(Harness::login_cmd("r", "u1"));
    h.connect();
    let first = h.take_sent().remove(0);
    h.call(Command::LogoutRoom {
        room_id: Some("r".into()),
    });
    let op2 = h.call(Harness::login_cmd("r", "u1"));
    h.take_sent();
    h.take_events();
    h.reply(
        first.id,
        ErrorCode::SUCCESS,
        Some(ReplyBody::Login {
            room_session_id: "old".into(),
            users: vec![],
            streams: vec![],
            extra_info: vec![],
            online_count: 1,
        }),
    );
    assert!(h.completed(op2).is_none());
    assert!(h.room_reasons().is_empty());
}

#[test]
fn server_refusal_fails_the_login_and_frees_the_slot() {
    let mut h = Harness::new(true);
    let op = h.call(Harness::login_cmd("r6", "u1"));
    h.connect();
    let login = h.take_sent().remove(0);
    h.reply(
        login.id,
        ErrorCode::ROOM_ERROR_EXCEED_MAXIMUM_ROOM_COUNT,
        None,
    );
    assert_eq!(
        h.completed(op).unwrap().0,
        ErrorCode::ROOM_ERROR_EXCEED_MAXIMUM_ROOM_COUNT
    );
    assert_eq!(h.s.room_ids().count(), 0);
    assert!(!h.s.is_active());
}

#[test]
fn hello_refused_fails_every_login() {
    let mut h = Harness::new(true);
    let a = h.call(Harness::login_cmd("a", "u1"));
    let b = h.call(Harness::login_cmd("b", "u1"));
    h.s.handle_connected(h.now);
    h.drain();
    let hello = h.take_sent().remove(0);
    h.reply(hello.id, ErrorCode::ENGINE_APP_SIGN_INCORRECT, None);
    assert_eq!(
        h.completed(a).unwrap().0,
        ErrorCode::ENGINE_APP_SIGN_INCORRECT
    );
    assert_eq!(
        h.completed(b).unwrap().0,
        ErrorCode::ENGINE_APP_SIGN_INCORRECT
    );
    assert!(
        h.sent.is_empty(),
        "queued logins are not sent on a refused connection"
    );
}

#[test]
fn connection_failure_fails_logins_with_1002030() {
    let mut h = Harness::new(true);
    let op = h.call(Harness::login_cmd("a", "u1"));
    h.s.handle_disconnected(h.now);
    h.drain();
    assert_eq!(
        h.completed(op).unwrap().0,
        ErrorCode::ROOM_ERROR_CONNECT_FAILED
    );
    // The next login tries to connect again.
    h.call(Harness::login_cmd("a", "u1"));
    assert_eq!(h.connects, 2);
}

#[test]
fn kick_out_ends_only_that_room_and_its_streams() {
    let mut h = Harness::new(true);
    h.connects = 1;
    h.login_ok("k1", "u1", vec![], vec![]);
    h.login_ok("k2", "u1", vec![], vec![]);
    h.call(Command::StartPublishing {
        stream_id: "s1".into(),
        channel: 0,
        room_id: Some("k1".into()),
    });
    h.call(Command::StartPublishing {
        stream_id: "s2".into(),
        channel: 1,
        room_id: Some("k2".into()),
    });
    h.take_events();
    h.server(ServerMsg::Kicked {
        room_id: RoomId::new("k1").unwrap(),
        code: ErrorCode::ROOM_KICKED_OUT,
    });
    assert_eq!(
        h.events,
        vec![
            SessionEvent::PublisherState {
                stream_id: StreamId::new("s1").unwrap(),
                state: PublisherState::NoPublish,
                code: ErrorCode::SUCCESS,
                extended: String::new()
            },
            SessionEvent::RoomState {
                room_id: "k1".into(),
                reason: RoomReason::KickOut,
                code: ErrorCode::ROOM_KICKED_OUT,
                extended: String::new()
            },
        ]
    );
    assert_eq!(h.s.room_ids().collect::<Vec<_>>(), vec!["k2"]);
}
