//! ZEGO's rate and size limits, each hit and answered with its code, with other users and rooms
//! unaffected. Defaults are ZEGO's figures; an app can set its own (`[app.limits]`).

mod common;
use common::*;
use std::time::Duration;

async fn member(s: &Server, app_id: u32, rooms: &[&str], uid: &str) -> Client {
    let mut c = Client::connect(s, app_id).await;
    for r in rooms {
        assert_eq!(
            c.login(r, uid, true).await.0,
            ErrorCode::SUCCESS,
            "{uid} into {r}"
        );
    }
    c
}

async fn broadcast(c: &mut Client, room_id: &str, message: &str) -> ErrorCode {
    c.request(Request::Broadcast {
        room_id: room(room_id),
        message: message.into(),
    })
    .await
    .0
}

fn received_broadcasts(pushes: &[ServerMsg], room_id: &str) -> Vec<String> {
    pushes
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Broadcast {
                room_id: r,
                messages,
            } if r.as_str() == room_id => Some(messages.iter().map(|m| m.message.clone())),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test]
async fn broadcast_10_per_room_and_2_per_user() {
    let s = server(ServerConfig::default()).await;
    let mut listener = member(&s, 1, &["r", "calm"], "listener").await;
    let mut senders = Vec::new();
    for i in 0..6 {
        senders.push(member(&s, 1, &["r"], &format!("s{i}")).await);
    }
    // Per user: two at once, the third is refused.
    assert_eq!(
        broadcast(&mut senders[0], "r", "0a").await,
        ErrorCode::SUCCESS
    );
    assert_eq!(
        broadcast(&mut senders[0], "r", "0b").await,
        ErrorCode::SUCCESS
    );
    assert_eq!(
        broadcast(&mut senders[0], "r", "0c").await,
        ErrorCode::IM_BROADCAST_MESSAGE_QPS_OVERRATE
    );
    // Per room: ten in the burst, whoever sends them.
    let started = std::time::Instant::now();
    let mut accepted = vec!["0a".to_string(), "0b".to_string()];
    let mut refused = 0;
    for (i, c) in senders.iter_mut().enumerate().skip(1) {
        for k in ["a", "b"] {
            let m = format!("{i}{k}");
            match broadcast(c, "r", &m).await {
                ErrorCode::SUCCESS => accepted.push(m),
                ErrorCode::IM_BROADCAST_MESSAGE_QPS_OVERRATE => refused += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    // Ten pass at once; a slow machine may let one more refill in (one per 100 ms).
    let t = started.elapsed().as_secs_f64();
    assert!(accepted.len() >= 10 && accepted.len() <= 10 + (10.0 * t).ceil() as usize);
    assert_eq!(accepted.len() + refused, 12);
    assert!(refused > 0 || t > 0.1, "{t}");
    // Another room is not limited by this one.
    let mut calm = member(&s, 1, &["calm"], "calm").await;
    assert_eq!(
        broadcast(&mut calm, "calm", "hello").await,
        ErrorCode::SUCCESS
    );
    // Exactly the accepted messages arrived, in order; none refused leaked.
    let pushes = listener.drain(Duration::from_millis(300)).await;
    assert_eq!(received_broadcasts(&pushes, "r"), accepted);
    assert_eq!(
        received_broadcasts(&pushes, "calm"),
        vec!["hello".to_string()]
    );
    // A second later the room may speak again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        broadcast(&mut senders[5], "r", "again").await,
        ErrorCode::SUCCESS
    );
    s.shutdown().await;
}

#[tokio::test]
async fn barrage_commands_and_room_extra_info_rates() {
    let s = server(ServerConfig::default()).await;
    let mut a = member(&s, 1, &["r", "r2"], "a").await;
    let _b = member(&s, 1, &["r"], "b").await;
    let _c = member(&s, 1, &["r"], "c").await;
    let barrage = |r: &str| Request::Barrage {
        room_id: room(r),
        message: "x".into(),
    };
    let (codes, t) = a.burst((0..40).map(|_| barrage("r")).collect()).await;
    assert_rate(&codes, t, 20.0, ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);
    assert_eq!(a.request(barrage("r2")).await.0, ErrorCode::SUCCESS);

    let command = |to: &[&str]| Request::CustomCommand {
        room_id: room("r"),
        command: "c".into(),
        to: to.iter().map(|u| UserId::new(*u).unwrap()).collect(),
    };
    // To several users (or everyone): 10 per second.
    let reqs = (0..20)
        .map(|i| command(if i % 2 == 0 { &["b", "c"] } else { &[] }))
        .collect();
    let (codes, t) = a.burst(reqs).await;
    assert_rate(&codes, t, 10.0, ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);
    // To a single user: 200 per second, counted apart from the multi-user ones.
    let (codes, t) = a.burst((0..400).map(|_| command(&["b"])).collect()).await;
    assert_rate(&codes, t, 200.0, ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);

    let extra = |v: usize| Request::SetRoomExtraInfo {
        room_id: room("r"),
        key: "k".into(),
        value: v.to_string(),
    };
    let (codes, t) = a.burst((0..20).map(extra).collect()).await;
    assert_rate(&codes, t, 10.0, ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT);
    s.shutdown().await;
}

#[tokio::test]
async fn configured_limits_logins_members_sizes_and_request_flood() {
    // A dropped connection leaves at once (no grace), for the member count below.
    let mut config = ServerConfig {
        reconnect_grace: Duration::ZERO,
        ..ServerConfig::default()
    };
    let mut app = AppConfig::dev(5);
    app.max_members = 3;
    app.limits.message_bytes = 16;
    app.limits.stream_extra_info_bytes = 8;
    app.limits.room_extra_info_bytes = 8;
    app.limits.requests_per_connection = 30.0;
    config.apps.insert(5, app);
    let mut app = AppConfig::dev(6);
    app.limits.logins_per_room = 4.0;
    config.apps.insert(6, app);
    let s = server(config).await;

    // Members per room (max_members = 3): the fourth is refused, another room is not full.
    let mut a = member(&s, 5, &["big"], "a").await;
    let mut others = Vec::new();
    for uid in ["b", "c"] {
        others.push(member(&s, 5, &["full"], uid).await);
    }
    a.login("full", "a", true).await;
    let mut d = Client::connect(&s, 5).await;
    assert_eq!(
        d.login("full", "d", true).await.0,
        ErrorCode::ROOM_ERROR_EXCEED_MAXIMUM_MEMBER
    );
    let mut e = Client::connect(&s, 5).await;
    assert_eq!(e.login("other", "e", true).await.0, ErrorCode::SUCCESS);
    drop(others.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(d.login("full", "d", true).await.0, ErrorCode::SUCCESS);

    // Logins per room (4 per second here): connections open first, then the logins.
    let mut crowd = Vec::new();
    for _ in 0..12 {
        crowd.push(Client::connect(&s, 6).await);
    }
    let started = std::time::Instant::now();
    let mut codes = Vec::new();
    for (i, c) in crowd.iter_mut().enumerate() {
        codes.push(c.login("popular", &format!("u{i}"), true).await.0);
    }
    assert_rate(
        &codes,
        started.elapsed().as_secs_f64(),
        4.0,
        ErrorCode::ROOM_ROOM_CALL_API_TOO_FREQUENT,
    );
    // Another room of the same app is not limited by it.
    assert_eq!(
        crowd[11].login("quiet", "u11", true).await.0,
        ErrorCode::SUCCESS
    );

    // Sizes.
    let too_long = "x".repeat(17);
    assert_eq!(
        broadcast(&mut a, "big", &too_long).await,
        ErrorCode::IM_CONTENT_TOO_LONG
    );
    assert_eq!(
        broadcast(&mut a, "big", &too_long[..16]).await,
        ErrorCode::SUCCESS
    );
    let (code, _) = a
        .request(Request::Publish {
            room_id: room("big"),
            stream_id: sid("s"),
            extra_info: "12345678".into(),
        })
        .await;
    assert_eq!(code, ErrorCode::PUBLISHER_EXTRA_INFO_TOO_LONG);
    let (code, _) = a
        .request(Request::SetRoomExtraInfo {
            room_id: room("big"),
            key: "k".into(),
            value: "12345678".into(),
        })
        .await;
    assert_eq!(code, ErrorCode::ROOM_ROOM_EXTRA_INFO_VALUE_TOO_LONG);

    // A connection that floods requests gets 1002073; others are served.
    let (codes, t) = e
        .burst((0..60).map(|_| Request::Ping { received: 0 }).collect())
        .await;
    assert_rate(
        &codes,
        t,
        30.0,
        ErrorCode::ROOM_ERROR_SIGNALLING_FREQUENCY_LIMIT,
    );
    assert_eq!(
        a.request(Request::Ping { received: 0 }).await.0,
        ErrorCode::SUCCESS
    );
    s.shutdown().await;
}

#[tokio::test]
async fn connections_per_ip() {
    let config = ServerConfig {
        max_connections_per_ip: 3,
        ..ServerConfig::default()
    };
    let s = server(config).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Client::connect(&s, 1).await);
    }
    assert!(
        tokio_tungstenite::connect_async(s.url()).await.is_err(),
        "a fourth connection from 127.0.0.1 is refused"
    );
    drop(open.pop());
    // The server notices the close, then admits a new one.
    let mut admitted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if tokio_tungstenite::connect_async(s.url()).await.is_ok() {
            admitted = true;
            break;
        }
    }
    assert!(admitted);
    assert_eq!(
        open[0].request(Request::Ping { received: 0 }).await.0,
        ErrorCode::SUCCESS
    );
    s.shutdown().await;
}
