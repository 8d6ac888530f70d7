//! The server's room state, observed through real WebSocket clients on 127.0.0.1:0.

mod common;
use common::*;
use std::time::Duration;

#[tokio::test]
async fn login_delivers_members_and_streams_already_there() {
    let s = server(ServerConfig::default()).await;
    let mut a = Client::connect(&s, 1).await;
    a.login("r", "a", true).await;
    let (code, _) = a
        .request(Request::Publish {
            room_id: room("r"),
            stream_id: sid("sa"),
            extra_info: "x".into(),
        })
        .await;
    assert_eq!(code, ErrorCode::SUCCESS);
    let mut b = Client::connect(&s, 1).await;
    let (code, body) = b.login("r", "b", true).await;
    assert_eq!(code, ErrorCode::SUCCESS);
    match body {
        Some(ReplyBody::Login {
            users,
            streams,
            online_count,
            ..
        }) => {
            assert_eq!(users, vec![user("a")]);
            assert_eq!(streams.len(), 1);
            assert_eq!(streams[0].stream_id, sid("sa"));
            assert_eq!(streams[0].extra_info, "x");
            assert_eq!(online_count, 2);
        }
        other => panic!("unexpected {other:?}"),
    }
    let joined = a
        .push_where(|m| match m {
            ServerMsg::UserUpdate { update, users, .. } => Some((*update, users.clone())),
            _ => None,
        })
        .await;
    assert_eq!(joined, (UpdateType::Add, vec![user("b")]));
    s.shutdown().await;
}

#[tokio::test]
async fn broadcast_ids_increase_per_room_and_arrive_in_send_order() {
    let s = server(unlimited()).await;
    let mut a = Client::connect(&s, 1).await;
    let mut b = Client::connect(&s, 1).await;
    for r in ["r1", "r2"] {
        a.login(r, "a", true).await;
        b.login(r, "b", true).await;
    }
    let mut ids = Vec::new();
    for i in 0..50 {
        let r = if i % 5 == 4 { "r2" } else { "r1" };
        let (code, body) = a
            .request(Request::Broadcast {
                room_id: room(r),
                message: format!("{r}-{i}"),
            })
            .await;
        assert_eq!(code, ErrorCode::SUCCESS);
        match body {
            Some(ReplyBody::Broadcast { message_id }) => ids.push((r, message_id)),
            other => panic!("{other:?}"),
        }
    }
    let r1: Vec<u64> = ids
        .iter()
        .filter(|(r, _)| *r == "r1")
        .map(|(_, id)| *id)
        .collect();
    let r2: Vec<u64> = ids
        .iter()
        .filter(|(r, _)| *r == "r2")
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(r1, (1..=40).collect::<Vec<_>>());
    assert_eq!(r2, (1..=10).collect::<Vec<_>>());
    let mut got = Vec::new();
    while got.len() < 50 {
        if let ServerMsg::Broadcast { room_id, messages } = b.push().await {
            for m in messages {
                got.push((room_id.to_string(), m.message_id, m.message));
            }
        }
    }
    let expected: Vec<(String, u64, String)> = (0..50)
        .map(|i| {
            let r = if i % 5 == 4 { "r2" } else { "r1" };
            let id = ids[i].1;
            (r.to_string(), id, format!("{r}-{i}"))
        })
        .collect();
    assert_eq!(got, expected);
    s.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_leaves_with_reason_disconnected() {
    // After the grace period for a resume (see tests/resume.rs), the normal leave.
    let s = server(ServerConfig {
        reconnect_grace: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let mut a = Client::connect(&s, 1).await;
    let mut b = Client::connect(&s, 1).await;
    a.login("r", "a", true).await;
    b.login("r", "b", true).await;
    b.request(Request::Publish {
        room_id: room("r"),
        stream_id: sid("sb"),
        extra_info: String::new(),
    })
    .await;
    drop(b);
    let deleted = a
        .push_where(|m| match m {
            ServerMsg::StreamUpdate {
                update: UpdateType::Delete,
                deleted,
                ..
            } => Some(deleted.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        deleted,
        vec![StreamDelete {
            stream_id: sid("sb"),
            code: DeleteReason::DISCONNECTED
        }]
    );
    let left = a
        .push_where(|m| match m {
            ServerMsg::UserUpdate {
                update: UpdateType::Delete,
                users,
                ..
            } => Some(users.clone()),
            _ => None,
        })
        .await;
    assert_eq!(left, vec![user("b")]);
    // The stream ID is free again.
    let mut c = Client::connect(&s, 1).await;
    c.login("r", "c", true).await;
    let (code, _) = c
        .request(Request::Publish {
            room_id: room("r"),
            stream_id: sid("sb"),
            extra_info: String::new(),
        })
        .await;
    assert_eq!(code, ErrorCode::SUCCESS);
    s.shutdown().await;
}

#[tokio::test]
async fn app_policy_multi_room_and_room_count() {
    let mut config = ServerConfig::default();
    config.apps.insert(
        2,
        AppConfig {
            multi_room: false,
            ..AppConfig::dev(2)
        },
    );
    config.apps.insert(
        3,
        AppConfig {
            max_rooms_per_user: 2,
            ..AppConfig::dev(3)
        },
    );
    let s = server(config).await;
    let mut no_multi = Client::connect(&s, 2).await;
    assert_eq!(
        no_multi.login("r", "u", true).await.0,
        ErrorCode::ROOM_ERROR_MULTI_ROOM_NOT_SUPPORT
    );
    assert_eq!(no_multi.login("r", "u", false).await.0, ErrorCode::SUCCESS);
    assert_eq!(
        no_multi.login("r2", "u", false).await.0,
        ErrorCode::ROOM_COUNT_EXCEED
    );
    let mut two = Client::connect(&s, 3).await;
    assert_eq!(two.login("a", "u", true).await.0, ErrorCode::SUCCESS);
    assert_eq!(two.login("b", "u", true).await.0, ErrorCode::SUCCESS);
    assert_eq!(
        two.login("c", "u", true).await.0,
        ErrorCode::ROOM_ERROR_EXCEED_MAXIMUM_ROOM_COUNT
    );
    assert_eq!(
        two.login("c", "v", true).await.0,
        ErrorCode::ROOM_ERROR_EXCEED_MAXIMUM_ROOM_COUNT
    );
    two.request(Request::Logout { room_id: room("b") }).await;
    assert_eq!(
        two.login("c", "v", true).await.0,
        ErrorCode::ROOM_MULTI_ROOM_USER_INFO_DIFFERENT
    );
    assert_eq!(two.login("c", "u", true).await.0, ErrorCode::SUCCESS);
    s.shutdown().await;
}

#[tokio::test]
async fn a_second_connection_of_the_same_user_kicks_the_first() {
    let s = server(ServerConfig::default()).await;
    let mut first = Client::connect(&s, 1).await;
    first.login("r", "twin", true).await;
    first
        .request(Request::Publish {
            room_id: room("r"),
            stream_id: sid("t"),
            extra_info: String::new(),
        })
        .await;
    let mut second = Client::connect(&s, 1).await;
    assert_eq!(second.login("r", "twin", true).await.0, ErrorCode::SUCCESS);
    let kicked = first
        .push_where(|m| match m {
            ServerMsg::Kicked { room_id, code } => Some((room_id.clone(), *code)),
            _ => None,
        })
        .await;
    assert_eq!(kicked, (room("r"), ErrorCode::ROOM_KICKED_OUT));
    // The kicked connection's requests about the room are refused; its departure does not
    // remove the new session.
    let (code, _) = first
        .request(Request::Broadcast {
            room_id: room("r"),
            message: "ghost".into(),
        })
        .await;
    assert_eq!(code, ErrorCode::IM_INCONSISTENT_ROOM_ID);
    drop(first);
    let mut third = Client::connect(&s, 1).await;
    let (_, body) = third.login("r", "other", true).await;
    match body {
        Some(ReplyBody::Login { users, streams, .. }) => {
            assert_eq!(users, vec![user("twin")]);
            assert!(streams.is_empty(), "the kicked session's stream is gone");
        }
        other => panic!("{other:?}"),
    }
    s.shutdown().await;
}
