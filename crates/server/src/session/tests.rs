//! Sessions on virtual time: frames in, the time passed in, frames and SFU commands out. No
//! sockets and no clock; the SFU is a detached handle whose commands are read back.

use super::*;
use crate::config::{AppConfig, ServerConfig};
use crate::sfu::SfuHandle;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use tokio_tungstenite::tungstenite::Utf8Bytes;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

struct Harness {
    shared: Arc<Shared>,
    sfu: Receiver<SfuCmd>,
}

impl Harness {
    /// App 1 is open; app 2 needs tokens made with [`SECRET`].
    fn new(tune: impl FnOnce(&mut ServerConfig)) -> Harness {
        let (sfu, commands) = SfuHandle::detached(SocketAddr::from(([127, 0, 0, 1], 9)));
        let mut config = ServerConfig::default();
        let tokens = AppConfig {
            server_secret: Some(SECRET.into()),
            ..AppConfig::dev(2)
        };
        config.apps.insert(2, tokens);
        tune(&mut config);
        Harness {
            shared: Shared::new(config, sfu),
            sfu: commands,
        }
    }

    fn session(&self, conn: ConnId, app: u32, now: Now) -> Peer {
        let (out, rx, _) = Outbound::new(conn, 256);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let mut peer = Peer {
            session: Session::new(conn, out, self.shared.clone(), ip),
            rx,
        };
        peer.send(
            &format!(r#"{{"id":0,"type":"hello","version":1,"app_id":{app}}}"#),
            now,
        );
        assert_eq!(peer.kinds(), vec!["reply:0"]);
        peer
    }

    /// The SFU commands queued so far, as `(kind, conn, stream)`.
    fn sfu_commands(&mut self) -> Vec<(&'static str, ConnId, String)> {
        std::iter::from_fn(|| self.sfu.try_recv().ok())
            .map(|c| match c {
                SfuCmd::Unpublish { conn, stream } => ("unpublish", conn, stream.to_string()),
                SfuCmd::Unplay { conn, stream } => ("unplay", conn, stream.to_string()),
                SfuCmd::Close { conn } => ("close", conn, String::new()),
                SfuCmd::Offer { conn, .. } => ("offer", conn, String::new()),
            })
            .collect()
    }
}

struct Peer {
    session: Session,
    rx: Receiver<Utf8Bytes>,
}

impl Peer {
    fn send(&mut self, frame: &str, now: Now) -> bool {
        self.session.on_text(frame, now)
    }

    fn frames(&mut self) -> Vec<serde_json::Value> {
        crate::testing::frames(&mut self.rx)
    }

    fn kinds(&mut self) -> Vec<String> {
        crate::testing::kinds(&mut self.rx)
    }

    fn login(&mut self, id: u64, room: &str, user: &str, token: &str, now: Now) {
        let frame = format!(
            r#"{{"id":{id},"type":"login","room_id":"{room}","user":{{"user_id":"{user}","user_name":"{user}"}},"config":{{"token":"{token}","multi_room":true,"user_status_notify":true}}}}"#
        );
        self.send(&frame, now);
    }
}

/// A virtual moment: 2023-11-14, whatever the machine's clock says.
fn t0() -> Now {
    Now {
        at: std::time::Instant::now(),
        unix_ms: 1_700_000_000_000,
    }
}

fn token(user: &str, now: Now, lifetime_s: i64) -> String {
    let claims = zrooms_token::Claims {
        app_id: 2,
        user_id: user.into(),
        nonce: 1,
        ctime: now.unix_s(),
        expire: now.unix_s() + lifetime_s,
        payload: String::new(),
    };
    let layout = zrooms_token::Layout::Gcm { nonce: [7; 12] };
    zrooms_token::generate(&claims, SECRET.as_bytes(), layout).unwrap()
}

#[test]
fn a_token_warns_thirty_seconds_ahead_and_kicks_at_expiry_on_virtual_time() {
    let h = Harness::new(|_| {});
    let now = t0();
    let mut a = h.session(1, 2, now);
    a.login(1, "r1", "alice", &token("alice", now, 100), now);
    assert_eq!(a.kinds(), vec!["reply:0"]);
    // The first timer is the warning, 70 s out.
    assert_eq!(a.session.token_deadline(now), Some(Duration::from_secs(70)));
    let warn = now.after(Duration::from_secs(70));
    a.session.token_timer(warn);
    let got = a.frames();
    assert_eq!(got[0]["type"], "token_will_expire");
    assert_eq!(got[0]["remain_s"], 30);
    // Then the expiry itself.
    assert_eq!(
        a.session.token_deadline(warn),
        Some(Duration::from_secs(30))
    );
    let expired = now.after(Duration::from_secs(100));
    a.session.token_timer(expired);
    let got = a.frames();
    assert_eq!(got[0]["type"], "kicked");
    assert_eq!(got[0]["code"], ErrorCode::ROOM_TOKEN_EXPIRED_KICKED_OUT.0);
    assert!(a.session.rooms.is_empty());
    assert_eq!(a.session.token_deadline(expired), None);
}

#[test]
fn a_token_is_checked_against_the_time_passed_in() {
    let h = Harness::new(|_| {});
    let then = t0();
    let later = then.after(Duration::from_secs(3600));
    let mut a = h.session(1, 2, later);
    // Valid at `then` for 100 s: expired at `later`, whatever the machine's clock says.
    a.login(1, "r1", "alice", &token("alice", then, 100), later);
    let got = a.frames();
    assert_eq!(got[0]["code"], ErrorCode::ROOM_TOKEN_EXPIRE_ERROR.0);
    a.login(2, "r1", "alice", &token("alice", later, 100), later);
    assert_eq!(a.kinds(), vec!["reply:0"]);
}

#[test]
fn requests_are_paced_per_session_on_virtual_time() {
    let h = Harness::new(|c| {
        let app = c.apps.entry(1).or_insert_with(|| AppConfig::dev(1));
        app.limits.requests_per_connection = 3.0;
    });
    let now = t0();
    let mut a = h.session(1, 1, now);
    let ping = |a: &mut Peer, id: u64, now: Now| {
        a.send(&format!(r#"{{"id":{id},"type":"ping"}}"#), now);
        a.frames()[0]["code"].as_u64().unwrap()
    };
    let limited = u64::from(ErrorCode::ROOM_ERROR_SIGNALLING_FREQUENCY_LIMIT.0);
    assert_eq!(
        [
            ping(&mut a, 1, now),
            ping(&mut a, 2, now),
            ping(&mut a, 3, now)
        ],
        [0; 3]
    );
    assert_eq!(ping(&mut a, 4, now), limited);
    assert_eq!(
        ping(&mut a, 5, now.after(Duration::from_millis(100))),
        limited
    );
    assert_eq!(ping(&mut a, 6, now.after(Duration::from_millis(400))), 0);
}

#[test]
fn a_closed_session_stops_its_streams_and_plays_everywhere() {
    let mut h = Harness::new(|_| {});
    let now = t0();
    let (mut a, mut b) = (h.session(1, 1, now), h.session(2, 1, now));
    a.login(1, "r1", "alice", "", now);
    a.login(2, "r2", "alice", "", now);
    b.login(1, "r1", "bob", "", now);
    a.send(
        r#"{"id":3,"type":"publish","room_id":"r1","stream_id":"s1"}"#,
        now,
    );
    a.send(
        r#"{"id":4,"type":"publish","room_id":"r2","stream_id":"s2"}"#,
        now,
    );
    b.send(
        r#"{"id":2,"type":"play","room_id":"r1","stream_id":"s1"}"#,
        now,
    );
    a.frames();
    b.frames();
    a.session.close();
    let mut commands = h.sfu_commands();
    commands.sort();
    let expected = vec![
        ("close", 1, String::new()),
        ("unpublish", 1, "s1".to_string()),
        ("unpublish", 1, "s2".to_string()),
    ];
    assert_eq!(commands, expected);
    // Bob sees the stream go (as a member and as its player) and Alice leave.
    assert_eq!(
        b.kinds(),
        vec!["stream_update", "user_update", "stream_unavailable"]
    );
    b.session.close();
    let commands = h.sfu_commands();
    assert!(commands.contains(&("close", 2, String::new())));
}

#[test]
fn ids_that_do_not_grow_are_refused_unless_sent_again() {
    let h = Harness::new(|_| {});
    let now = t0();
    let mut a = h.session(1, 1, now);
    let ping = |a: &mut Peer, id: u64| {
        a.send(&format!(r#"{{"id":{id},"type":"ping"}}"#), now);
        a.frames()
            .iter()
            .map(|f| (f["id"].as_u64().unwrap(), f["code"].as_u64().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ping(&mut a, 5), vec![(5, 0)]);
    assert_eq!(ping(&mut a, 9), vec![(9, 0)]);
    // 5 again: done already (a resumed engine sending it again): no second reply.
    assert_eq!(ping(&mut a, 5), vec![]);
    // 7 was never sent: an id that does not grow is answered, and refused.
    let illegal = u64::from(ErrorCode::COMMON_ILLEGAL_PARAM.0);
    assert_eq!(ping(&mut a, 7), vec![(7, illegal)]);
    assert_eq!(ping(&mut a, 10), vec![(10, 0)]);
}
