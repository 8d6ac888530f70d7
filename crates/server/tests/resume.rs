//! Sessions survive a dropped connection: within the grace period an engine resumes with no
//! leave/join or stream churn seen by others, missed frames replayed, and requests it sends
//! again processed once. After the grace period, the normal leave. A close frame is a goodbye:
//! answered at once, and the user leaves at once.

mod common;
use common::*;
use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn config(grace_ms: u64) -> ServerConfig {
    let mut c = unlimited();
    c.reconnect_grace = Duration::from_millis(grace_ms);
    c
}

/// Users a and b, each on its own connection, in room "r".
async fn members_a_and_b(s: &Server) -> (Client, Client) {
    let mut a = Client::connect(s, 1).await;
    let mut b = Client::connect(s, 1).await;
    a.login("r", "a", true).await;
    b.login("r", "b", true).await;
    (a, b)
}

fn broadcasts(pushes: &[ServerMsg]) -> Vec<String> {
    pushes
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Broadcast { messages, .. } => {
                Some(messages.iter().map(|m| m.message.clone()))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

fn churn(pushes: &[ServerMsg]) -> Vec<&ServerMsg> {
    pushes
        .iter()
        .filter(|m| {
            matches!(
                m,
                ServerMsg::UserUpdate { .. } | ServerMsg::StreamUpdate { .. }
            )
        })
        .collect()
}

#[tokio::test]
async fn a_quick_reconnect_resumes_with_no_churn_and_exactly_once_delivery() {
    let s = server(config(5_000)).await;
    let (mut a, mut b) = members_a_and_b(&s).await;
    assert_eq!(b.publish("r", "sb").await, ErrorCode::SUCCESS);
    a.drain(Duration::from_millis(100)).await;
    b.drain(Duration::from_millis(100)).await;

    // b sends a broadcast and its connection drops before the reply arrives.
    let in_flight = ClientFrame {
        id: b.next,
        req: Request::Broadcast {
            room_id: room("r"),
            message: "from b, in flight".into(),
        },
    };
    b.next += 1;
    let text = serde_json::to_string(&in_flight).unwrap();
    b.send_raw(&text).await;
    let received_before_drop = b.received;
    // Drop without reading: what the server sent since is lost with the socket.
    b.drop_link().await;
    b.received = received_before_drop;
    // a speaks while b is away.
    for m in ["while away 1", "while away 2"] {
        let (code, _) = a
            .request(Request::Broadcast {
                room_id: room("r"),
                message: m.into(),
            })
            .await;
        assert_eq!(code, ErrorCode::SUCCESS);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.reconnect(&s, 1).await, "resumed");
    // The request is sent again, as an engine does with what it had in flight.
    b.send_raw(&text).await;
    let got = b.drain(Duration::from_millis(300)).await;
    // Replayed: a's messages, and the in-flight broadcast's reply, once (the resend was skipped).
    assert_eq!(
        broadcasts(&got),
        vec!["while away 1".to_string(), "while away 2".to_string()]
    );
    let replies = got
        .iter()
        .filter(|m| matches!(m, ServerMsg::Reply { id, .. } if *id == in_flight.id))
        .count();
    assert_eq!(replies, 1);
    let a_got = a.drain(Duration::from_millis(300)).await;
    assert_eq!(
        broadcasts(&a_got),
        vec!["from b, in flight".to_string()],
        "a got b's broadcast exactly once"
    );
    assert!(
        churn(&a_got).is_empty(),
        "no leave/join or stream churn: {a_got:?}"
    );
    // b is still a member and its stream still published.
    let mut c = Client::connect(&s, 1).await;
    let (_, body) = c.login("r", "c", true).await;
    match body {
        Some(ReplyBody::Login { users, streams, .. }) => {
            assert!(users.iter().any(|u| u.user_id.as_str() == "b"));
            assert_eq!(streams.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    s.shutdown().await;
}

#[tokio::test]
async fn missed_frames_are_replayed_in_order() {
    let s = server(config(5_000)).await;
    let (mut a, mut b) = members_a_and_b(&s).await;
    b.drain(Duration::from_millis(100)).await;
    let kept = b.received;
    b.drop_link().await;
    for i in 0..20 {
        a.request(Request::Broadcast {
            room_id: room("r"),
            message: format!("m{i}"),
        })
        .await;
    }
    b.received = kept;
    assert!(b.reconnect(&s, 1).await);
    let got = b.drain(Duration::from_millis(300)).await;
    let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    assert_eq!(broadcasts(&got), want);
    s.shutdown().await;
}

#[tokio::test]
async fn a_wrong_key_or_an_expired_grace_gets_a_new_session() {
    let s = server(config(300)).await;
    let (mut a, mut b) = members_a_and_b(&s).await;
    assert_eq!(b.publish("r", "sb").await, ErrorCode::SUCCESS);
    a.drain(Duration::from_millis(100)).await;
    b.drop_link().await;
    let real_key = b.session.1.clone();
    b.session.1 = "0".repeat(32);
    assert!(
        !b.reconnect(&s, 1).await,
        "a wrong key starts a new session"
    );
    b.session.1 = real_key;
    // The parked session ends after its grace: a sees b's stream and b leave, reason 5.
    let pushes = a.drain(Duration::from_millis(800)).await;
    let deleted: Vec<DeleteReason> = pushes
        .iter()
        .filter_map(|m| match m {
            ServerMsg::StreamUpdate { deleted, .. } => deleted.first().map(|d| d.code),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, vec![DeleteReason::DISCONNECTED]);
    assert!(pushes.iter().any(|m| matches!(
        m,
        ServerMsg::UserUpdate {
            update: UpdateType::Delete,
            ..
        }
    )));
    s.shutdown().await;
}

#[tokio::test]
async fn a_close_frame_is_answered_and_the_user_leaves_at_once() {
    // A grace period far longer than the client's 5 s wait for each frame: a parked session
    // would fail this test.
    let s = server(config(60_000)).await;
    let (mut a, mut b) = members_a_and_b(&s).await;
    assert_eq!(b.publish("r", "sb").await, ErrorCode::SUCCESS);
    a.push_where(|m| matches!(m, ServerMsg::StreamUpdate { .. }).then_some(()))
        .await;
    b.ws.close(None).await.expect("close sent");
    // The server answers with its own close frame and ends the stream.
    let answered = loop {
        match tokio::time::timeout(Duration::from_secs(5), b.ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) => break true,
            Ok(Some(Ok(_))) => continue,
            Ok(_) | Err(_) => break false,
        }
    };
    assert!(answered, "the close frame is answered");
    // a sees b's stream go and b leave now, not after the grace period.
    let code = a
        .push_where(|m| match m {
            ServerMsg::StreamUpdate { deleted, .. } => deleted.first().map(|d| d.code),
            _ => None,
        })
        .await;
    assert_eq!(code, DeleteReason::DISCONNECTED);
    a.push_where(|m| match m {
        ServerMsg::UserUpdate {
            update: UpdateType::Delete,
            users,
            ..
        } => users
            .iter()
            .any(|u| u.user_id.as_str() == "b")
            .then_some(()),
        _ => None,
    })
    .await;
    s.shutdown().await;
}
