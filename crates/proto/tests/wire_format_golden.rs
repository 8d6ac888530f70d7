//! Golden fixtures pin the JSON wire format: a change to a frame's shape fails here until the
//! fixture is regenerated on purpose (`UPDATE_FIXTURES=1 cargo test -p zrooms-proto`).

use std::path::PathBuf;
use zrooms_proto::wire::*;
use zrooms_proto::*;

fn user(id: &str) -> User {
    User {
        user_id: UserId::new(id).unwrap(),
        user_name: UserName::new(format!("name_{id}")).unwrap(),
    }
}

fn room(id: &str) -> RoomId {
    RoomId::new(id).unwrap()
}

fn stream(id: &str) -> StreamId {
    StreamId::new(id).unwrap()
}

fn check<T>(name: &str, value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    assert_eq!(text, golden, "wire format of {name} changed");
    let back: T = serde_json::from_str(&golden).unwrap();
    assert_eq!(&back, value, "fixture {name} does not parse back");
}

#[test]
fn client_frames() {
    check(
        "client_hello",
        &ClientFrame {
            id: 1,
            req: Request::Hello {
                version: PROTOCOL_VERSION,
                app_id: 1234,
                app_sign: "ab".repeat(32),
                sdk_version: "0.1.0".into(),
                resume: None,
            },
        },
    );
    check(
        "client_login",
        &ClientFrame {
            id: 2,
            req: Request::Login {
                room_id: room("room1"),
                user: user("u1"),
                config: LoginConfig {
                    max_member_count: 0,
                    user_status_notify: true,
                    token: String::new(),
                    multi_room: true,
                },
            },
        },
    );
    check(
        "client_publish",
        &ClientFrame {
            id: 3,
            req: Request::Publish {
                room_id: room("room1"),
                stream_id: stream("stream1"),
                extra_info: String::new(),
            },
        },
    );
    check(
        "client_custom_command",
        &ClientFrame {
            id: 4,
            req: Request::CustomCommand {
                room_id: room("room2"),
                command: "start".into(),
                to: vec![UserId::new("u2").unwrap()],
            },
        },
    );
    check(
        "client_ping",
        &ClientFrame {
            id: 5,
            req: Request::Ping { received: 17 },
        },
    );
    check(
        "client_media_offer_fresh",
        &ClientFrame {
            id: 11,
            req: Request::MediaOffer {
                sdp: "v=0\r\n".into(),
                tracks: vec![TrackSpec {
                    mid: "0".into(),
                    stream_id: stream("s1"),
                    kind: TrackKind::Video,
                    direction: TrackDirection::Send,
                }],
                fresh: true,
            },
        },
    );
    check(
        "client_hello_resume",
        &ClientFrame {
            id: 9,
            req: Request::Hello {
                version: PROTOCOL_VERSION,
                app_id: 1234,
                app_sign: String::new(),
                sdk_version: "0.1.0".into(),
                resume: Some(Resume {
                    session_id: "7".into(),
                    key: "00112233445566778899aabbccddeeff".into(),
                    received: 42,
                }),
            },
        },
    );
}

#[test]
fn server_frames() {
    check(
        "server_reply_hello",
        &ServerMsg::Reply {
            id: 9,
            code: ErrorCode::SUCCESS,
            message: String::new(),
            body: Some(ReplyBody::Hello {
                session_id: "7".into(),
                server_version: "0.1.0".into(),
                resume_key: "00112233445566778899aabbccddeeff".into(),
                resumed: true,
            }),
        },
    );
    check(
        "server_token_will_expire",
        &ServerMsg::TokenWillExpire {
            room_id: room("room1"),
            remain_s: 30,
        },
    );
    check(
        "server_reply_login",
        &ServerMsg::Reply {
            id: 2,
            code: ErrorCode::SUCCESS,
            message: String::new(),
            body: Some(ReplyBody::Login {
                room_session_id: "7".into(),
                users: vec![user("u2")],
                streams: vec![StreamInfo {
                    stream_id: stream("s2"),
                    user: user("u2"),
                    extra_info: "{}".into(),
                }],
                extra_info: vec![],
                online_count: 2,
            }),
        },
    );
    check(
        "server_reply_error",
        &ServerMsg::Reply {
            id: 11,
            code: ErrorCode::COMMON_ILLEGAL_PARAM,
            message: "offer refused: no BUNDLE group".into(),
            body: None,
        },
    );
    check(
        "server_stream_delete",
        &ServerMsg::StreamUpdate {
            room_id: room("room1"),
            update: UpdateType::Delete,
            streams: vec![StreamInfo {
                stream_id: stream("s1"),
                user: user("u1"),
                extra_info: String::new(),
            }],
            deleted: vec![StreamDelete {
                stream_id: stream("s1"),
                code: DeleteReason::DISCONNECTED,
            }],
        },
    );
    check(
        "server_broadcast",
        &ServerMsg::Broadcast {
            room_id: room("room1"),
            messages: vec![BroadcastMessage {
                message: "hi".into(),
                message_id: 1,
                send_time_ms: 1_700_000_000_000,
                from: user("u1"),
            }],
        },
    );
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    let cases = [
        "",
        "{}",
        "[]",
        "{\"id\":1}",
        "{\"id\":1,\"type\":\"nope\"}",
        "{\"id\":-1,\"type\":\"ping\"}",
        "{\"id\":1,\"type\":\"login\",\"room_id\":\"bad room\",\"user\":{\"user_id\":\"u\",\"user_name\":\"u\"}}",
        "{\"id\":1,\"type\":\"publish\",\"room_id\":\"r\",\"stream_id\":\"a.b\"}",
        "{\"id\":1,\"type\":\"broadcast\",\"room_id\":5,\"message\":\"x\"}",
    ];
    for case in cases {
        assert!(
            serde_json::from_str::<ClientFrame>(case).is_err(),
            "{case} should not parse"
        );
    }
}

/// The fixture that pins each kind of request. The match has no wildcard: a new request kind
/// does not compile until it is given a fixture here and in [`every_request_kind`].
fn request_fixture(req: &Request) -> &'static str {
    match req {
        Request::Hello { resume: None, .. } => "client_hello",
        Request::Hello {
            resume: Some(_), ..
        } => "client_hello_resume",
        Request::Login { .. } => "client_login",
        Request::Logout { .. } => "client_logout",
        Request::RenewToken { .. } => "client_renew_token",
        Request::SetRoomExtraInfo { .. } => "client_set_room_extra_info",
        Request::Publish { .. } => "client_publish",
        Request::Unpublish { .. } => "client_unpublish",
        Request::SetStreamExtraInfo { .. } => "client_set_stream_extra_info",
        Request::Play { .. } => "client_play",
        Request::Unplay { .. } => "client_unplay",
        Request::Broadcast { .. } => "client_broadcast",
        Request::Barrage { .. } => "client_barrage",
        Request::CustomCommand { .. } => "client_custom_command",
        Request::SetStreamState { .. } => "client_set_stream_state",
        Request::MediaOffer { fresh: true, .. } => "client_media_offer_fresh",
        Request::MediaOffer { fresh: false, .. } => "client_media_offer",
        Request::Ping { .. } => "client_ping",
    }
}

/// The fixture that pins each kind of server frame (replies by their body).
fn server_fixture(msg: &ServerMsg) -> &'static str {
    match msg {
        ServerMsg::Reply { body: None, .. } => "server_reply_error",
        ServerMsg::Reply { body: Some(b), .. } => match b {
            ReplyBody::Hello { .. } => "server_reply_hello",
            ReplyBody::Login { .. } => "server_reply_login",
            ReplyBody::Broadcast { .. } => "server_reply_broadcast",
            ReplyBody::Barrage { .. } => "server_reply_barrage",
            ReplyBody::Play { .. } => "server_reply_play",
            ReplyBody::MediaAnswer { .. } => "server_reply_media_answer",
        },
        ServerMsg::UserUpdate { .. } => "server_user_update",
        ServerMsg::StreamUpdate { deleted, .. } if deleted.is_empty() => "server_stream_add",
        ServerMsg::StreamUpdate { .. } => "server_stream_delete",
        ServerMsg::StreamExtraInfo { .. } => "server_stream_extra_info",
        ServerMsg::RoomExtraInfo { .. } => "server_room_extra_info",
        ServerMsg::Broadcast { .. } => "server_broadcast",
        ServerMsg::Barrage { .. } => "server_barrage",
        ServerMsg::CustomCommand { .. } => "server_custom_command",
        ServerMsg::OnlineCount { .. } => "server_online_count",
        ServerMsg::TokenWillExpire { .. } => "server_token_will_expire",
        ServerMsg::Kicked { .. } => "server_kicked",
        ServerMsg::StreamAvailable { .. } => "server_stream_available",
        ServerMsg::StreamState { .. } => "server_stream_state",
        ServerMsg::StreamUnavailable { .. } => "server_stream_unavailable",
        ServerMsg::PlayFailed { .. } => "server_play_failed",
    }
}

fn frame(id: u64, req: Request) -> ClientFrame {
    ClientFrame { id, req }
}

#[test]
fn every_request_kind() {
    let r = || room("room1");
    let s = || stream("s1");
    let requests = vec![
        Request::Logout { room_id: r() },
        Request::RenewToken {
            room_id: r(),
            token: "04AAAA".into(),
        },
        Request::SetRoomExtraInfo {
            room_id: r(),
            key: "topic".into(),
            value: "maths".into(),
        },
        Request::Unpublish {
            room_id: r(),
            stream_id: s(),
        },
        Request::SetStreamExtraInfo {
            room_id: r(),
            stream_id: s(),
            extra_info: "{\"layer\":1}".into(),
        },
        Request::Play {
            room_id: r(),
            stream_id: s(),
        },
        Request::Unplay {
            room_id: r(),
            stream_id: s(),
        },
        Request::Broadcast {
            room_id: r(),
            message: "hello room".into(),
        },
        Request::Barrage {
            room_id: r(),
            message: "+1".into(),
        },
        Request::SetStreamState {
            room_id: r(),
            stream_id: s(),
            audio: 10,
            video: 0,
        },
        Request::MediaOffer {
            sdp: "v=0\r\n".into(),
            tracks: vec![
                TrackSpec {
                    mid: "0".into(),
                    stream_id: s(),
                    kind: TrackKind::Audio,
                    direction: TrackDirection::Recv,
                },
                TrackSpec {
                    mid: "1".into(),
                    stream_id: s(),
                    kind: TrackKind::Video,
                    direction: TrackDirection::Recv,
                },
            ],
            fresh: false,
        },
    ];
    for (i, req) in requests.into_iter().enumerate() {
        let name = request_fixture(&req);
        check(name, &frame(20 + i as u64, req));
    }
}

#[test]
fn every_server_frame_kind() {
    let r = || room("room1");
    let s = || stream("s1");
    let info = || StreamInfo {
        stream_id: s(),
        user: user("u1"),
        extra_info: String::new(),
    };
    let reply = |id, body| ServerMsg::Reply {
        id,
        code: ErrorCode::SUCCESS,
        message: String::new(),
        body: Some(body),
    };
    let frames = vec![
        reply(30, ReplyBody::Broadcast { message_id: 12 }),
        reply(
            31,
            ReplyBody::Barrage {
                message_id: "b-7".into(),
            },
        ),
        reply(32, ReplyBody::Play { available: true }),
        reply(
            33,
            ReplyBody::MediaAnswer {
                sdp: "v=0\r\n".into(),
            },
        ),
        ServerMsg::UserUpdate {
            room_id: r(),
            update: UpdateType::Add,
            users: vec![user("u2")],
        },
        ServerMsg::StreamUpdate {
            room_id: r(),
            update: UpdateType::Add,
            streams: vec![info()],
            deleted: vec![],
        },
        ServerMsg::StreamExtraInfo {
            room_id: r(),
            streams: vec![info()],
        },
        ServerMsg::RoomExtraInfo {
            room_id: r(),
            infos: vec![RoomExtraInfo {
                key: "topic".into(),
                value: "maths".into(),
                update_user: user("u1"),
                update_time_ms: 1_700_000_000_000,
            }],
        },
        ServerMsg::Barrage {
            room_id: r(),
            messages: vec![BarrageMessage {
                message: "+1".into(),
                message_id: "b-7".into(),
                send_time_ms: 1_700_000_000_000,
                from: user("u1"),
            }],
        },
        ServerMsg::CustomCommand {
            room_id: r(),
            from: user("u1"),
            command: "start".into(),
        },
        ServerMsg::OnlineCount {
            room_id: r(),
            count: 3,
        },
        ServerMsg::Kicked {
            room_id: r(),
            code: ErrorCode::ROOM_KICKED_OUT,
        },
        ServerMsg::StreamAvailable {
            room_id: r(),
            stream_id: s(),
        },
        ServerMsg::StreamState {
            room_id: r(),
            stream_id: s(),
            audio: 10,
            video: 0,
        },
        ServerMsg::StreamUnavailable {
            room_id: r(),
            stream_id: s(),
            reason: DeleteReason::STOPPED,
        },
        ServerMsg::PlayFailed {
            stream_id: s(),
            kind: TrackKind::Video,
            code: ErrorCode::PLAYER_VIDEO_DECODER_NOT_SUPPORTED,
        },
    ];
    for msg in &frames {
        check(server_fixture(msg), msg);
    }
}

#[test]
fn one_fixture_per_frame_kind() {
    let fixtures =
        std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .count();
    // 18 request shapes and 22 server frame shapes, one file each.
    assert_eq!(
        fixtures,
        18 + 22,
        "a fixture without a frame kind, or one missing"
    );
}

/// `Request::kind` (the server's metrics and logs name requests by it) is the `type` each
/// request carries on the wire, for every client frame of the fixtures.
#[test]
fn request_kinds_are_the_wire_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut kinds = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("client_") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let frame: ClientFrame = serde_json::from_str(&text).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["type"], frame.req.kind(), "{name}");
        kinds.insert(frame.req.kind());
    }
    assert_eq!(kinds.len(), 16, "one fixture per request type: {kinds:?}");
}
