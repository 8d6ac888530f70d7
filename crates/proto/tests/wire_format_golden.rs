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
            id: 9,
            code: ErrorCode::ROOM_ERROR_EXCEED_MAXIMUM_ROOM_COUNT,
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
