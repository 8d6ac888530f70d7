//! The multi-room rules the session answers by itself, before anything reaches the network.

mod common;
use common::*;
use zrooms_proto::wire::*;
use zrooms_proto::*;
use zrooms_session::*;

fn refused(h: &mut Harness, cmd: Command, code: ErrorCode) {
    h.take_events();
    h.take_sent();
    let op = h.call(cmd);
    assert_eq!(h.completed(op).map(|c| c.0), Some(code));
    // Only the call's own report: nothing else happened.
    assert_eq!(h.events.len(), 2, "{:?}", h.events);
    assert!(matches!(&h.events[0], SessionEvent::ApiCalled { code: c, .. } if *c == code));
    assert!(h.sent.is_empty(), "a refused call sends nothing");
}

fn logged_in(multi: bool) -> Harness {
    let mut h = Harness::new(multi);
    h.connects = 1;
    h.login_ok("room1", "u1", vec![], vec![]);
    h
}

#[test]
fn multi_room_requires_the_same_user() {
    let mut h = logged_in(true);
    refused(
        &mut h,
        Harness::login_cmd("room2", "u2"),
        ErrorCode::ROOM_MULTI_ROOM_USER_INFO_DIFFERENT,
    );
    refused(
        &mut h,
        Harness::login_cmd("room1", "u1"),
        ErrorCode::ROOM_COUNT_EXCEED,
    );
    h.login_ok("room2", "u1", vec![], vec![]);
    assert_eq!(h.s.room_ids().collect::<Vec<_>>(), vec!["room1", "room2"]);
}

#[test]
fn single_room_refuses_a_second_login_and_multi_room_refuses_switch() {
    let mut single = logged_in(false);
    refused(
        &mut single,
        Harness::login_cmd("room2", "u1"),
        ErrorCode::ROOM_COUNT_EXCEED,
    );
    let mut multi = logged_in(true);
    refused(
        &mut multi,
        Command::SwitchRoom {
            from: "room1".into(),
            to: "room2".into(),
            config: None,
        },
        ErrorCode::ROOM_MULTI_ROOM_SWITCH_ROOM_INVALID,
    );
}

#[test]
fn streams_must_name_their_room_in_multi_room_mode() {
    let mut h = logged_in(true);
    let publish = |room: Option<&str>| Command::StartPublishing {
        stream_id: "s".into(),
        channel: 0,
        room_id: room.map(Into::into),
    };
    let play = |room: Option<&str>| Command::StartPlaying {
        stream_id: "s".into(),
        room_id: room.map(Into::into),
    };
    refused(&mut h, publish(None), ErrorCode::PUBLISHER_ROOM_ID_REQUIRED);
    refused(
        &mut h,
        publish(Some("")),
        ErrorCode::PUBLISHER_ROOM_ID_EMPTY,
    );
    refused(
        &mut h,
        publish(Some("room9")),
        ErrorCode::COMMON_NOT_LOGIN_ROOM,
    );
    refused(&mut h, play(None), ErrorCode::PLAYER_ROOM_ID_REQUIRED);
    refused(&mut h, play(Some("")), ErrorCode::PLAYER_ROOM_ID_EMPTY);
    // Single-room mode ignores the config.
    let mut s = logged_in(false);
    s.take_events();
    s.call(publish(None));
    assert!(s.sent.iter().any(
        |f| matches!(&f.req, Request::Publish { room_id, .. } if room_id.as_str() == "room1")
    ));
}

#[test]
fn channels_hold_one_stream_and_stream_ids_are_unique() {
    let mut h = logged_in(true);
    h.call(Command::StartPublishing {
        stream_id: "a".into(),
        channel: 0,
        room_id: Some("room1".into()),
    });
    refused(
        &mut h,
        Command::StartPublishing {
            stream_id: "b".into(),
            channel: 0,
            room_id: Some("room1".into()),
        },
        ErrorCode::PUBLISHER_BUSY_CHANNEL,
    );
    refused(
        &mut h,
        Command::StartPublishing {
            stream_id: "a".into(),
            channel: 1,
            room_id: Some("room1".into()),
        },
        ErrorCode::PUBLISHER_ERROR_REPETITIVE_PUBLISH_STREAM,
    );
    refused(
        &mut h,
        Command::StartPublishing {
            stream_id: "c".into(),
            channel: 4,
            room_id: Some("room1".into()),
        },
        ErrorCode::COMMON_ILLEGAL_PARAM,
    );
}

#[test]
fn messages_are_checked_before_sending() {
    let mut h = logged_in(true);
    let bc = |room: &str, msg: &str| Command::SendBroadcast {
        room_id: room.into(),
        message: msg.into(),
    };
    refused(&mut h, bc("nope", "x"), ErrorCode::IM_INCONSISTENT_ROOM_ID);
    refused(&mut h, bc("room1", ""), ErrorCode::IM_CONTENT_NULL);
    refused(
        &mut h,
        bc("room1", &"x".repeat(1025)),
        ErrorCode::IM_CONTENT_TOO_LONG,
    );
    refused(
        &mut h,
        Command::SendCustomCommand {
            room_id: "room1".into(),
            command: "c".into(),
            to: vec![String::new()],
        },
        ErrorCode::IM_USER_ID_EMPTY,
    );
    refused(
        &mut h,
        Command::SendCustomCommand {
            room_id: "room1".into(),
            command: "c".into(),
            to: vec!["u".repeat(64)],
        },
        ErrorCode::IM_USER_ID_TOO_LONG,
    );
    let op = h.call(bc("room1", "hello"));
    let frame = h.take_sent().remove(0);
    h.reply(
        frame.id,
        ErrorCode::SUCCESS,
        Some(ReplyBody::Broadcast { message_id: 7 }),
    );
    assert_eq!(
        h.completed(op),
        Some((ErrorCode::SUCCESS, OpValue::MessageId(7)))
    );
}

#[test]
fn logout_of_one_room_stops_only_its_streams() {
    let mut h = logged_in(true);
    h.login_ok("room2", "u1", vec![], vec![]);
    h.call(Command::StartPublishing {
        stream_id: "p1".into(),
        channel: 0,
        room_id: Some("room1".into()),
    });
    h.call(Command::StartPublishing {
        stream_id: "p2".into(),
        channel: 1,
        room_id: Some("room2".into()),
    });
    h.call(Command::StartPlaying {
        stream_id: "x1".into(),
        room_id: Some("room1".into()),
    });
    h.call(Command::StartPlaying {
        stream_id: "x2".into(),
        room_id: Some("room2".into()),
    });
    h.take_events();
    h.call(Command::LogoutRoom {
        room_id: Some("room1".into()),
    });
    let stopped: Vec<String> = h
        .events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::PublisherState {
                stream_id,
                state: PublisherState::NoPublish,
                ..
            } => Some(stream_id.to_string()),
            SessionEvent::PlayerState {
                stream_id,
                state: PlayerState::NoPlay,
                ..
            } => Some(stream_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(stopped, vec!["p1", "x1"]);
    assert_eq!(h.s.room_ids().collect::<Vec<_>>(), vec!["room2"]);
    h.take_events();
    h.call(Command::LogoutRoom { room_id: None });
    assert_eq!(
        h.room_reasons(),
        vec![("room2".into(), RoomReason::Logout, ErrorCode::SUCCESS)]
    );
    assert!(!h.s.is_active());
}

#[test]
fn events_of_rooms_not_logged_in_are_dropped() {
    let mut h = logged_in(true);
    h.take_events();
    let other = RoomId::new("other").unwrap();
    h.server(ServerMsg::Broadcast {
        room_id: other.clone(),
        messages: vec![BroadcastMessage {
            message: "leak".into(),
            message_id: 1,
            send_time_ms: 0,
            from: user("u2"),
        }],
    });
    h.server(ServerMsg::StreamUpdate {
        room_id: other.clone(),
        update: UpdateType::Add,
        streams: vec![stream("s", "u2")],
        deleted: vec![],
    });
    h.server(ServerMsg::UserUpdate {
        room_id: other,
        update: UpdateType::Add,
        users: vec![user("u2")],
    });
    assert!(h.events.is_empty());
    // Our own messages are not echoed either.
    h.server(ServerMsg::Broadcast {
        room_id: RoomId::new("room1").unwrap(),
        messages: vec![BroadcastMessage {
            message: "mine".into(),
            message_id: 1,
            send_time_ms: 0,
            from: user("u1"),
        }],
    });
    assert!(h.events.is_empty());
}

/// The player states reported so far, with their codes.
fn player_states(h: &Harness) -> Vec<(PlayerState, ErrorCode)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::PlayerState { state, code, .. } => Some((*state, *code)),
            _ => None,
        })
        .collect()
}

/// Plays stream "s" of room1; the server's reply says whether it is published now.
fn play_s(h: &mut Harness, available: bool) {
    h.take_events();
    h.call(Command::StartPlaying {
        stream_id: "s".into(),
        room_id: Some("room1".into()),
    });
    let play = h.take_sent().remove(0);
    h.reply(
        play.id,
        ErrorCode::SUCCESS,
        Some(ReplyBody::Play { available }),
    );
}

#[test]
fn player_follows_the_stream() {
    let mut h = logged_in(true);
    play_s(&mut h, false);
    let room1 = RoomId::new("room1").unwrap();
    let sid = StreamId::new("s").unwrap();
    h.server(ServerMsg::StreamAvailable {
        room_id: room1.clone(),
        stream_id: sid.clone(),
    });
    // The media side is told to receive; Playing waits for media to arrive.
    assert_eq!(
        h.media,
        vec![MediaCmd::StartPlay {
            stream_id: sid.clone()
        }]
    );
    assert_eq!(
        h.events
            .iter()
            .filter(|e| matches!(e, SessionEvent::PlayerState { .. }))
            .count(),
        1
    );
    h.s.handle_media_received(h.now, &sid);
    h.drain();
    h.server(ServerMsg::StreamUnavailable {
        room_id: room1,
        stream_id: sid.clone(),
        reason: DeleteReason::STOPPED,
    });
    let states = player_states(&h);
    assert_eq!(
        states,
        vec![
            (PlayerState::PlayRequesting, ErrorCode::SUCCESS),
            (PlayerState::Playing, ErrorCode::SUCCESS),
            (
                PlayerState::PlayRequesting,
                ErrorCode::PLAYER_ERROR_STREAM_NOT_EXIST
            ),
        ]
    );
    assert_eq!(h.media.last(), Some(&MediaCmd::StopPlay { stream_id: sid }));
}

#[test]
fn a_codec_the_player_cannot_take_ends_the_player_with_1004080() {
    let mut h = logged_in(true);
    play_s(&mut h, true);
    let sid = StreamId::new("s").unwrap();
    h.server(ServerMsg::PlayFailed {
        stream_id: sid.clone(),
        kind: TrackKind::Video,
        code: ErrorCode::PLAYER_VIDEO_DECODER_NOT_SUPPORTED,
    });
    let states = player_states(&h);
    assert_eq!(
        states.last(),
        Some(&(
            PlayerState::NoPlay,
            ErrorCode::PLAYER_VIDEO_DECODER_NOT_SUPPORTED
        ))
    );
    assert_eq!(h.media.last(), Some(&MediaCmd::StopPlay { stream_id: sid }));
    // The server is told to forget the play.
    let sent = h.take_sent();
    assert!(
        matches!(sent.last().map(|f| &f.req), Some(Request::Unplay { .. })),
        "{sent:?}"
    );
    // A second notice for a player that is gone changes nothing.
    let before = h.events.len();
    h.server(ServerMsg::PlayFailed {
        stream_id: StreamId::new("s").unwrap(),
        kind: TrackKind::Audio,
        code: ErrorCode::PLAYER_VIDEO_DECODER_NOT_SUPPORTED,
    });
    assert_eq!(h.events.len(), before);
}

#[test]
fn publisher_media_starts_on_acceptance_and_stops_with_the_room() {
    let mut h = logged_in(true);
    h.call(Command::StartPublishing {
        stream_id: "pub".into(),
        channel: 1,
        room_id: Some("room1".into()),
    });
    assert!(
        h.media.is_empty(),
        "no media before the server accepts the publish"
    );
    let frame = h.take_sent().remove(0);
    h.reply(frame.id, ErrorCode::SUCCESS, None);
    let sid = StreamId::new("pub").unwrap();
    assert_eq!(
        h.media,
        vec![MediaCmd::StartPublish {
            channel: 1,
            stream_id: sid.clone()
        }]
    );
    h.call(Command::LogoutRoom { room_id: None });
    assert_eq!(
        h.media.last(),
        Some(&MediaCmd::StopPublish {
            channel: 1,
            stream_id: sid
        })
    );
}
