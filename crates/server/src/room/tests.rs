//! The room's owner on virtual time: no sockets, no clock. Each test drives a [`Room`] with
//! [`Outbound`] queues as members and reads what each member was sent.

use super::*;
use crate::clock::Now;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use zrooms_proto::UserName;

struct Peer {
    out: Outbound,
    rx: Receiver<Utf8Bytes>,
    user: User,
}

impl Peer {
    fn new(conn: ConnId, user: &str) -> Peer {
        let (out, rx, _) = Outbound::new(conn, 64);
        let user = User {
            user_id: UserId::new(user).unwrap(),
            user_name: UserName::new(user).unwrap(),
        };
        Peer { out, rx, user }
    }

    /// Every frame sent to this peer so far, as JSON values.
    fn frames(&mut self) -> Vec<serde_json::Value> {
        crate::testing::frames(&mut self.rx)
    }

    fn kinds(&mut self) -> Vec<String> {
        crate::testing::kinds(&mut self.rx)
    }
}

fn room_id() -> RoomId {
    RoomId::new("r1").unwrap()
}

fn stream(id: &str) -> StreamId {
    StreamId::new(id).unwrap()
}

/// Joins (asking for user updates); the login must succeed. Returns the changes outside.
fn join(room: &Room, p: &Peer, policy: &AppConfig, now: Now) -> Vec<Fx> {
    let (joined, after) = join_with(room, p, policy, now, true, 0);
    assert_eq!(joined, Ok(()));
    after
}

fn join_with(
    room: &Room,
    p: &Peer,
    policy: &AppConfig,
    now: Now,
    notify: bool,
    max_member_count: u32,
) -> (Result<(), ErrorCode>, Vec<Fx>) {
    let j = Join {
        id: 1,
        user: p.user.clone(),
        out: &p.out,
        notify,
        max_member_count,
    };
    room.run(&p.out, |core, fx| core.join(j, policy, now.at, fx))
}

/// Publishes; it must succeed. Returns the changes outside.
fn publish(room: &Room, p: &Peer, id: &str) -> Vec<Fx> {
    let (published, after) = try_publish(room, p, id);
    assert_eq!(published, Ok(()));
    after
}

fn try_publish(room: &Room, p: &Peer, id: &str) -> (Result<(), ErrorCode>, Vec<Fx>) {
    let info = StreamInfo {
        stream_id: stream(id),
        user: p.user.clone(),
        extra_info: String::new(),
    };
    let conn = p.out.conn;
    room.run(&p.out, |core, fx| {
        core.publish(2, conn, info, 10, || Ok(()), fx)
    })
}

fn sender(p: &Peer, id: u64) -> Sender {
    Sender {
        id,
        conn: p.out.conn,
        user: p.user.clone(),
    }
}

/// A room with members `a` (conn 1) and `b` (conn 2), their logins' frames read.
fn two_members(policy: &AppConfig) -> (Room, Peer, Peer) {
    let room = Room::new(room_id(), 1);
    let (mut a, mut b) = (Peer::new(1, "a"), Peer::new(2, "b"));
    join(&room, &a, policy, t0());
    join(&room, &b, policy, t0());
    a.frames();
    b.frames();
    (room, a, b)
}

fn t0() -> Now {
    Now {
        at: std::time::Instant::now(),
        unix_ms: 1_700_000_000_000,
    }
}

#[test]
fn a_login_is_answered_with_the_room_and_told_to_those_who_asked() {
    let policy = AppConfig::dev(1);
    let room = Room::new(room_id(), 7);
    let (mut a, mut b, mut c) = (Peer::new(1, "a"), Peer::new(2, "b"), Peer::new(3, "c"));
    join(&room, &a, &policy, t0());
    assert_eq!(join_with(&room, &b, &policy, t0(), false, 0).0, Ok(()));
    a.frames();
    b.frames();
    assert_eq!(join(&room, &c, &policy, t0()), vec![]);
    // The caller's reply carries the others and the exact count; no update of its own login.
    let reply = c.frames();
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["body"]["online_count"], 3);
    assert_eq!(reply[0]["body"]["room_session_id"], "7");
    assert_eq!(reply[0]["body"]["users"].as_array().unwrap().len(), 2);
    // `a` asked for user updates, `b` did not.
    assert_eq!(a.kinds(), vec!["user_update"]);
    assert!(b.kinds().is_empty());
}

#[test]
fn the_same_user_again_replaces_the_earlier_connection_and_its_streams() {
    let policy = AppConfig::dev(1);
    let room = Room::new(room_id(), 1);
    let (mut old, mut other) = (Peer::new(1, "u"), Peer::new(2, "w"));
    join(&room, &old, &policy, t0());
    join(&room, &other, &policy, t0());
    assert_eq!(publish(&room, &old, "s1"), vec![Fx::Started(stream("s1"))]);
    old.frames();
    other.frames();
    let mut new = Peer::new(3, "u");
    let after = join(&room, &new, &policy, t0());
    let stopped = Fx::Stopped {
        stream: stream("s1"),
        conn: 1,
        reason: DeleteReason::REPEATED_LOGIN,
    };
    assert_eq!(after, vec![stopped, Fx::Revoked { conn: 1 }]);
    assert_eq!(old.kinds(), vec!["kicked"]);
    // The others see the stream go, and no user update: the user never left.
    assert_eq!(other.kinds(), vec!["stream_update"]);
    let reply = new.frames();
    assert_eq!(reply[0]["body"]["streams"].as_array().unwrap().len(), 0);
    assert!(room.read(|r| r.is_member(&new.user.user_id, 3) && !r.is_member(&old.user.user_id, 1)));
}

#[test]
fn the_first_members_limit_is_the_rooms() {
    let policy = AppConfig::dev(1);
    let room = Room::new(room_id(), 1);
    let (a, b, c) = (Peer::new(1, "a"), Peer::new(2, "b"), Peer::new(3, "c"));
    assert_eq!(join_with(&room, &a, &policy, t0(), true, 2).0, Ok(()));
    // A later login's larger limit does not raise the room's.
    assert_eq!(join_with(&room, &b, &policy, t0(), true, 10).0, Ok(()));
    let full = join_with(&room, &c, &policy, t0(), true, 10).0;
    assert_eq!(full, Err(ErrorCode::ROOM_ERROR_EXCEED_MAXIMUM_MEMBER));
    assert_eq!(room.read(|r| r.online()), 2);
}

#[test]
fn broadcasts_are_paced_on_the_time_passed_in() {
    let mut policy = AppConfig::dev(1);
    policy.limits.broadcast_per_user = 2.0;
    let (room, mut a, mut b) = two_members(&policy);
    let send = |now: Now| {
        let (by, msg) = (sender(&a, 9), "hi".to_string());
        room.run(&a.out, |core, fx| core.broadcast(by, msg, &policy, now, fx))
            .0
    };
    let now = t0();
    assert_eq!(send(now), Ok(()));
    assert_eq!(send(now), Ok(()));
    assert_eq!(send(now), Err(ErrorCode::IM_BROADCAST_MESSAGE_QPS_OVERRATE));
    // Half a second of virtual time refills one.
    let later = now.after(Duration::from_millis(500));
    assert_eq!(send(later), Ok(()));
    assert_eq!(
        send(later),
        Err(ErrorCode::IM_BROADCAST_MESSAGE_QPS_OVERRATE)
    );
    let got = b.frames();
    assert_eq!(got.len(), 3);
    // Message times and ids come from the room and the time passed in.
    let last = &got[2]["messages"][0];
    assert_eq!(last["send_time_ms"], later.unix_ms);
    assert_eq!(last["message_id"], 3);
    // The sender gets its replies only, each after the room saw the message.
    assert_eq!(a.kinds(), vec!["reply:0", "reply:0", "reply:0"]);
}

#[test]
fn leaving_stops_the_members_streams_with_the_reason() {
    let policy = AppConfig::dev(1);
    let (room, mut a, mut b) = two_members(&policy);
    publish(&room, &a, "s1");
    publish(&room, &a, "s2");
    b.frames();
    let user = a.user.clone();
    let reason = DeleteReason::DISCONNECTED;
    let (left, after) = room.run(&a.out, |core, fx| core.leave(&user, 1, reason, fx));
    assert!(left);
    let streams: Vec<StreamId> = after
        .iter()
        .map(|fx| match fx {
            Fx::Stopped {
                stream,
                reason: r,
                conn: 1,
            } if *r == reason => stream.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(streams, vec![stream("s1"), stream("s2")]);
    let got = b.frames();
    assert_eq!(got[0]["type"], "stream_update");
    assert_eq!(got[0]["deleted"].as_array().unwrap().len(), 2);
    assert_eq!(got[1]["type"], "user_update");
    // A second leave finds no member.
    let again = room.run(&a.out, |core, fx| core.leave(&user, 1, reason, fx));
    assert_eq!(again, (false, vec![]));
    assert!(room.close_if_empty() || room.read(|r| r.online()) == 1);
    a.frames();
}

#[test]
fn a_refused_claim_changes_nothing_and_a_repeated_publish_is_answered_alone() {
    let policy = AppConfig::dev(1);
    let (room, mut a, mut b) = two_members(&policy);
    let info = StreamInfo {
        stream_id: stream("s1"),
        user: a.user.clone(),
        extra_info: String::new(),
    };
    let taken = || Err(ErrorCode::PUBLISHER_ERROR_REPETITIVE_PUBLISH_STREAM);
    let (r, after) = room.run(&a.out, |core, fx| core.publish(2, 1, info, 10, taken, fx));
    assert_eq!(r, Err(ErrorCode::PUBLISHER_ERROR_REPETITIVE_PUBLISH_STREAM));
    assert!(after.is_empty() && a.frames().is_empty() && b.frames().is_empty());
    publish(&room, &a, "s1");
    assert_eq!(b.kinds(), vec!["stream_update"]);
    assert_eq!(publish(&room, &a, "s1"), vec![]);
    assert_eq!(a.kinds(), vec!["reply:0", "reply:0"]);
    assert!(
        b.frames().is_empty(),
        "a repeated publish is not announced again"
    );
}

#[test]
fn a_custom_command_reaches_each_named_member_once_and_never_the_sender() {
    let policy = AppConfig::dev(1);
    let room = Room::new(room_id(), 1);
    let (mut a, mut b, mut c) = (Peer::new(1, "a"), Peer::new(2, "b"), Peer::new(3, "c"));
    for p in [&a, &b, &c] {
        join(&room, p, &policy, t0());
    }
    for p in [&mut a, &mut b, &mut c] {
        p.frames();
    }
    let ghost = UserId::new("nobody").unwrap();
    let to = [
        b.user.user_id.clone(),
        b.user.user_id.clone(),
        a.user.user_id.clone(),
        ghost,
    ];
    let (by, cmd) = (sender(&a, 5), "x".to_string());
    let (r, _) = room.run(&a.out, |core, fx| {
        core.custom_command(by, cmd, &to, &policy, t0(), fx)
    });
    assert_eq!(r, Ok(()));
    assert_eq!(b.kinds(), vec!["custom_command"]);
    assert!(c.frames().is_empty());
    assert_eq!(a.kinds(), vec!["reply:0"]);
}

#[test]
fn the_room_keeps_one_extra_info_key() {
    let policy = AppConfig::dev(1);
    let room = Room::new(room_id(), 1);
    let mut a = Peer::new(1, "a");
    join(&room, &a, &policy, t0());
    let set = |key: &str, now: Now| {
        let (by, key, v) = (sender(&a, 3), key.to_string(), "v".to_string());
        room.run(&a.out, |core, fx| {
            core.set_extra_info(by, key, v, &policy, now, fx)
        })
        .0
    };
    assert_eq!(set("k", t0()), Ok(()));
    let later = t0().after(Duration::from_secs(5));
    assert_eq!(
        set("other", later),
        Err(ErrorCode::ROOM_ROOM_EXTRA_INFO_EXCEED_KEYS)
    );
    assert_eq!(set("k", later), Ok(()));
    a.frames();
    let mut b = Peer::new(2, "b");
    join(&room, &b, &policy, t0());
    let snapshot = b.frames();
    let info = &snapshot[0]["body"]["extra_info"][0];
    assert_eq!(info["key"], "k");
    assert_eq!(info["update_time_ms"], later.unix_ms);
}
