//! The server against an attacker (issue: hardening). Each test is one attack that worked on the
//! server before this change: forged tokens through a padding oracle, one user exhausting memory
//! with streams and an unacknowledged session, a custom command to thousands, floods of
//! connections that never log in, a kicked session that kept its rights, tokens that never
//! expire, and WebSocket upgrades from any origin. Clients come from several loopback addresses
//! (127.0.0.x) so per-address limits can be told from the rest.

mod common;
use base64::Engine as _;
use common::*;
use futures_util::StreamExt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::MaybeTlsStream;
use zrooms_server::config::TokenLayout;
use zrooms_token::{generate, Claims, Layout};

const APP: u32 = 5;

/// A server whose app 5 needs tokens (no appSign), with `layouts`.
fn token_app(layouts: Vec<TokenLayout>) -> ServerConfig {
    let mut c = ServerConfig {
        dev_default: false,
        ..ServerConfig::default()
    };
    c.apps.insert(
        APP,
        AppConfig {
            server_secret: Some(SECRET.into()),
            token_layouts: layouts,
            ..AppConfig::dev(APP)
        },
    );
    c
}

fn claims(user_id: &str, expire: i64) -> Claims {
    Claims {
        app_id: APP,
        user_id: user_id.into(),
        nonce: 7,
        ctime: now_s(),
        expire,
        payload: String::new(),
    }
}

fn gcm(user_id: &str, expire: i64) -> String {
    generate(
        &claims(user_id, expire),
        SECRET.as_bytes(),
        Layout::Gcm { nonce: [9; 12] },
    )
    .unwrap()
}

fn cbc(user_id: &str, expire: i64) -> String {
    let iv = Layout::Cbc {
        iv: *b"0123456789abcdef",
    };
    generate(&claims(user_id, expire), SECRET.as_bytes(), iv).unwrap()
}

/// A TCP connection to the server from the loopback address `from`.
async fn tcp_from(server: &Server, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    socket.connect(server.local_addr()).await.unwrap()
}

/// A client that said hello to `app_id` from `from`.
async fn client_from(server: &Server, app_id: u32, from: [u8; 4]) -> Client {
    let tcp = tcp_from(server, from).await;
    let (ws, _) = tokio_tungstenite::client_async(server.url(), MaybeTlsStream::Plain(tcp))
        .await
        .unwrap();
    let mut c = Client::raw(ws);
    let (code, _) = c.request(hello(app_id)).await;
    assert_eq!(code, ErrorCode::SUCCESS);
    c
}

fn hello(app_id: u32) -> Request {
    Request::Hello {
        version: PROTOCOL_VERSION,
        app_id,
        app_sign: String::new(),
        sdk_version: "test".into(),
        resume: None,
    }
}

/// Whether the server closed `tcp` (EOF or reset) before sending anything.
async fn closed_by_server(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// The server's counters, read as an operator on the loopback address would.
async fn metrics(server: &Server) -> String {
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    text
}

fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from {text}"))
}

/// The padding-oracle attack on a CBC token: the attacker keeps the last ciphertext block of
/// its own valid token and varies the block before it (the IV of a one-block token), which is
/// how the plaintext is learned byte by byte when "bad padding" and "bad JSON" answer
/// differently. Every answer must be the same, and nothing may log in. The app here opted into
/// CBC (the worst case) and lifts the throttle, so every forged token is really verified.
#[tokio::test]
async fn the_padding_oracle_attack_learns_nothing() {
    let mut config = token_app(vec![TokenLayout::Gcm, TokenLayout::Cbc]);
    config.auth_failures_per_ip = 1e9;
    config.apps.get_mut(&APP).unwrap().auth_failures_per_app = 1e9;
    let s = server(config).await;
    let mut attacker = client_from(&s, APP, [127, 0, 0, 2]).await;
    let own = cbc("mallory", now_s() + 600);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&own[2..])
        .unwrap();
    let last: Vec<u8> = raw[raw.len() - 16..].to_vec();
    let mut codes = std::collections::BTreeMap::<u32, usize>::new();
    let mut right_padding = 0;
    for pos in [15usize, 14] {
        for guess in 0..=255u8 {
            let mut iv = [0u8; 16];
            iv[pos] = guess;
            if pos == 14 {
                iv[15] = 0x55;
            }
            let mut forged = raw[..8].to_vec();
            forged.extend_from_slice(&16u16.to_be_bytes());
            forged.extend_from_slice(&iv);
            forged.extend_from_slice(&16u16.to_be_bytes());
            forged.extend_from_slice(&last);
            let token = format!(
                "04{}",
                base64::engine::general_purpose::STANDARD.encode(&forged)
            );
            let code = attacker.login_token("vault", "mallory", &token).await;
            *codes.entry(code.0).or_default() += 1;
            if pkcs7_ok(&iv, &last) {
                right_padding += 1;
            }
        }
    }
    assert!(
        right_padding >= 1,
        "the forged set must hold tokens whose padding was right, or the test proves nothing"
    );
    assert_eq!(
        codes.keys().copied().collect::<Vec<_>>(),
        vec![ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED.0],
        "answers: {codes:?} ({right_padding} had a right padding)"
    );
    // The real token still works: the attacker's own login is not broken by the attack.
    assert_eq!(
        attacker.login_token("vault", "mallory", &own).await,
        ErrorCode::SUCCESS
    );
    s.shutdown().await;
}

/// Whether AES-CBC decryption of `block` under `iv` with the test secret ends in a valid PKCS#7
/// padding (computed here, with the secret, only to show the attack's set held both kinds).
fn pkcs7_ok(iv: &[u8; 16], block: &[u8]) -> bool {
    use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
    let mut buf = block.to_vec();
    cbc::Decryptor::<aes::Aes256>::new_from_slices(SECRET.as_bytes(), iv)
        .unwrap()
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .is_ok()
}

#[tokio::test]
async fn an_app_that_did_not_opt_in_refuses_cbc_tokens() {
    let s = server(token_app(vec![TokenLayout::Gcm])).await;
    let mut u = client_from(&s, APP, [127, 0, 0, 1]).await;
    let until = now_s() + 600;
    assert_eq!(
        u.login_token("r", "u", &cbc("u", until)).await,
        ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED
    );
    assert_eq!(
        u.login_token("r", "u", &gcm("u", until)).await,
        ErrorCode::SUCCESS
    );
    s.shutdown().await;
}

/// Failed tokens are throttled per source address (a burst of 10, then 1/s by default) and
/// counted: past the burst even a valid token from that address is refused unchecked, with the
/// same answer as a bad one, while another address logs in.
#[tokio::test]
async fn failed_tokens_are_throttled_per_address_and_counted() {
    let s = server(token_app(vec![TokenLayout::Gcm])).await;
    let mut attacker = client_from(&s, APP, [127, 0, 0, 2]).await;
    let until = now_s() + 600;
    // An intact token of another user: its own code while the address has failures to spare.
    let someone_elses = gcm("someone-else", until);
    for i in 0..10 {
        assert_eq!(
            attacker.login_token("r", "mallory", &someone_elses).await,
            ErrorCode::ROOM_TOKEN_USERID_ERROR,
            "attempt {i}"
        );
    }
    for _ in 0..5 {
        assert_eq!(
            attacker.login_token("r", "mallory", &someone_elses).await,
            ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED
        );
    }
    assert_eq!(
        attacker
            .login_token("r", "mallory", &gcm("mallory", until))
            .await,
        ErrorCode::ROOM_ERROR_AUTHENTICATION_FAILED,
        "throttled: not even a valid token is looked at"
    );
    let mut user = client_from(&s, APP, [127, 0, 0, 1]).await;
    assert_eq!(
        user.login_token("r", "alice", &gcm("alice", until)).await,
        ErrorCode::SUCCESS
    );
    let m = metrics(&s).await;
    assert_eq!(counter(&m, "zrooms_auth_failures_total"), 10, "{m}");
    assert_eq!(counter(&m, "zrooms_auth_throttled_total"), 6, "{m}");
    s.shutdown().await;
}

/// A token may not live forever: one that expires in the year 9999 (or at i64::MAX, whose timer
/// used to wake every millisecond) is refused as expired.
#[tokio::test]
async fn tokens_expiring_too_far_ahead_are_refused() {
    let s = server(token_app(vec![TokenLayout::Gcm])).await;
    let mut u = client_from(&s, APP, [127, 0, 0, 1]).await;
    for expire in [253_402_300_799, i64::MAX] {
        assert_eq!(
            u.login_token("r", "u", &gcm("u", expire)).await,
            ErrorCode::ROOM_TOKEN_EXPIRE_ERROR,
            "expire {expire}"
        );
    }
    assert_eq!(
        u.login_token("r", "u", &gcm("u", now_s() + 6 * 24 * 3600))
            .await,
        ErrorCode::SUCCESS,
        "six days is within the default seven"
    );
    s.shutdown().await;
}

/// Stream IDs, rooms and limits per app; this app is open (no tokens) with ZEGO's caps.
fn open_app() -> ServerConfig {
    let mut c = unlimited();
    c.max_connections_per_ip = 0;
    c
}

#[tokio::test]
async fn one_session_publishes_at_most_four_streams_and_a_room_holds_a_bounded_number() {
    let mut config = open_app();
    config.apps.get_mut(&1).unwrap().max_streams_per_room = 6;
    let s = server(config).await;
    let mut a = Client::connect(&s, 1).await;
    a.login("r", "a", true).await;
    a.login("q", "a", true).await;
    let big = "i".repeat(1000);
    let publish = |room_id: &str, stream: &str| Request::Publish {
        room_id: room(room_id),
        stream_id: sid(stream),
        extra_info: big.clone(),
    };
    for i in 0..4 {
        let r = if i % 2 == 0 { "r" } else { "q" };
        let (code, _) = a.request(publish(r, &format!("a{i}"))).await;
        assert_eq!(code, ErrorCode::SUCCESS);
    }
    // A fifth stream, in either room: refused (ZEGO has four publish channels).
    assert_eq!(
        a.request(publish("q", "a4")).await.0,
        ErrorCode::PUBLISHER_FORBIDDEN
    );
    // Stopping one frees its place.
    let (code, _) = a
        .request(Request::Unpublish {
            room_id: room("r"),
            stream_id: sid("a0"),
        })
        .await;
    assert_eq!(code, ErrorCode::SUCCESS);
    assert_eq!(a.request(publish("q", "a4")).await.0, ErrorCode::SUCCESS);
    // Room q now holds 3 streams; others fill it to its cap of 6, then no more.
    let mut b = Client::connect(&s, 1).await;
    b.login("q", "b", true).await;
    for i in 0..3 {
        assert_eq!(
            b.request(publish("q", &format!("b{i}"))).await.0,
            ErrorCode::SUCCESS
        );
    }
    assert_eq!(
        b.request(publish("q", "b3")).await.0,
        ErrorCode::PUBLISHER_FORBIDDEN
    );
    s.shutdown().await;
}

/// A session that never acknowledges what it received cannot make the server keep an unbounded
/// window for it: past `replay_window_bytes` the oldest frames are forgotten, and an engine that
/// comes back having missed them starts a new session (it logs in afresh) instead of resuming.
#[tokio::test]
async fn the_replay_window_is_bounded_in_bytes() {
    for (updates, resumable) in [(10, true), (200, false)] {
        let mut config = open_app();
        config.replay_window_bytes = 64 * 1024;
        let s = server(config).await;
        let mut watcher = Client::connect(&s, 1).await;
        watcher.login("r", "w", true).await;
        let mut p = Client::connect(&s, 1).await;
        p.login("r", "p", true).await;
        assert_eq!(p.publish("r", "s").await, ErrorCode::SUCCESS);
        for i in 0..updates {
            let (code, _) = p
                .request(Request::SetStreamExtraInfo {
                    room_id: room("r"),
                    stream_id: sid("s"),
                    extra_info: format!("{i:04}{}", "x".repeat(1000)),
                })
                .await;
            assert_eq!(code, ErrorCode::SUCCESS);
        }
        // The watcher read everything it was sent (its pushes end with the last update) and
        // never acknowledged any of it; it comes back saying it got only its hello's reply.
        let last = format!("{:04}", updates - 1);
        watcher
            .push_where(|m| match m {
                ServerMsg::StreamExtraInfo { streams, .. }
                    if streams[0].extra_info.starts_with(&last) =>
                {
                    Some(())
                }
                _ => None,
            })
            .await;
        watcher.received = 1;
        assert_eq!(
            watcher.reconnect(&s, 1).await,
            resumable,
            "{updates} updates of 1 KB against a 64 KiB window"
        );
        s.shutdown().await;
    }
}

/// A login's snapshot lists at most 500 other members.
#[tokio::test]
async fn a_login_snapshot_is_bounded() {
    let s = server(open_app()).await;
    let mut members = Vec::new();
    for i in 0..505 {
        let mut c = Client::connect(&s, 1).await;
        assert_eq!(
            c.login("big", &format!("m{i}"), true).await.0,
            ErrorCode::SUCCESS
        );
        members.push(c);
    }
    let mut late = Client::connect(&s, 1).await;
    match late.login("big", "late", true).await {
        (
            code,
            Some(ReplyBody::Login {
                users,
                online_count,
                ..
            }),
        ) => {
            assert_eq!(code, ErrorCode::SUCCESS);
            assert_eq!(users.len(), 500);
            assert_eq!(online_count, 506, "the count is still exact");
        }
        other => panic!("{other:?}"),
    }
    s.shutdown().await;
}

/// A custom command names at most 100 recipients (1009013 beyond), and a list full of the same
/// user reaches that user once.
#[tokio::test]
async fn custom_command_recipients_are_bounded_and_deduplicated() {
    let s = server(open_app()).await;
    let mut a = Client::connect(&s, 1).await;
    a.login("r", "a", true).await;
    let mut b = Client::connect(&s, 1).await;
    b.login("r", "b", true).await;
    let command = |to: Vec<UserId>| Request::CustomCommand {
        room_id: room("r"),
        command: "hi".into(),
        to,
    };
    let many: Vec<UserId> = (0..101)
        .map(|i| UserId::new(format!("u{i}")).unwrap())
        .collect();
    assert_eq!(
        a.request(command(many)).await.0,
        ErrorCode::IM_INPUT_PARAMS_LENGTH_LIMIT
    );
    let same: Vec<UserId> = (0..100).map(|_| UserId::new("b").unwrap()).collect();
    assert_eq!(a.request(command(same)).await.0, ErrorCode::SUCCESS);
    // b's reply to a request of its own comes after anything sent to it before.
    let (code, _) = b.request(Request::Ping { received: 0 }).await;
    assert_eq!(code, ErrorCode::SUCCESS);
    let got = b
        .drain(Duration::ZERO)
        .await
        .into_iter()
        .filter(|m| matches!(m, ServerMsg::CustomCommand { .. }))
        .count();
    assert_eq!(got, 1);
    s.shutdown().await;
}

/// At most `max_connections_per_ip` (128 by default) connections from one address: the next is
/// closed at once, and other addresses are not affected.
#[tokio::test]
async fn connections_per_address_are_capped_by_default() {
    let s = server(ServerConfig::default()).await;
    let mut held = Vec::new();
    for _ in 0..128 {
        let tcp = tcp_from(&s, [127, 0, 0, 3]).await;
        held.push(tcp);
    }
    // The 128 are admitted: a WebSocket on the last address's neighbour works, and the 129th
    // from the flooding address is closed without a byte.
    let mut extra = tcp_from(&s, [127, 0, 0, 3]).await;
    assert!(closed_by_server(&mut extra).await);
    let mut user = client_from(&s, 1, [127, 0, 0, 1]).await;
    assert_eq!(user.login("r", "u", true).await.0, ErrorCode::SUCCESS);
    let m = metrics(&s).await;
    assert_eq!(counter(&m, "zrooms_connections_refused_per_ip_total"), 1);
    drop(held);
    s.shutdown().await;
}

/// Connections that have not logged in are a budget: over it the oldest is shed, so a flood of
/// them cannot keep a user out. A connection that logged in is never shed.
#[tokio::test]
async fn the_oldest_connection_that_has_not_logged_in_is_shed() {
    let mut config = open_app();
    config.max_pending_connections = 4;
    let s = server(config).await;
    let mut member = Client::connect(&s, 1).await;
    member.login("r", "member", true).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(Client::connect(&s, 1).await);
    }
    // The fifth connection pushes the budget over: the oldest idle one goes.
    let mut user = Client::connect(&s, 1).await;
    assert!(
        idle[0].recv().await.is_none(),
        "the oldest idle connection was shed"
    );
    assert_eq!(user.login("r", "user", true).await.0, ErrorCode::SUCCESS);
    // The member (connected first of all) is still served.
    let (code, _) = member.request(Request::Ping { received: 0 }).await;
    assert_eq!(code, ErrorCode::SUCCESS);
    let m = metrics(&s).await;
    assert!(counter(&m, "zrooms_connections_shed_total") >= 1, "{m}");
    s.shutdown().await;
}

/// A connection that does not log into a room within `login_timeout` is closed; one that did
/// stays.
#[tokio::test]
async fn a_connection_that_never_logs_in_is_closed() {
    let mut config = open_app();
    config.login_timeout = Duration::from_millis(300);
    let s = server(config).await;
    let mut member = Client::connect(&s, 1).await;
    member.login("r", "member", true).await;
    let mut idle = Client::connect(&s, 1).await;
    assert!(idle.recv().await.is_none(), "closed at the login timeout");
    // The member's deadline passed too (it connected first): it is still served.
    let (code, _) = member.request(Request::Ping { received: 0 }).await;
    assert_eq!(code, ErrorCode::SUCCESS);
    s.shutdown().await;
}

/// Partial request heads (slowloris) hold nothing for long: each is closed at the hello
/// timeout, and meanwhile a user is served. (Their CPU cost, which was a poll every 5 ms per
/// connection, is measured in bench/security.)
#[tokio::test]
async fn partial_request_heads_are_closed_at_the_hello_timeout() {
    let mut config = open_app();
    config.hello_timeout = Duration::from_millis(500);
    let s = server(config).await;
    let mut partial = Vec::new();
    for _ in 0..100 {
        let mut tcp = tcp_from(&s, [127, 0, 0, 4]).await;
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgr")
            .await
            .unwrap();
        partial.push(tcp);
    }
    let mut user = Client::connect(&s, 1).await;
    assert_eq!(user.login("r", "u", true).await.0, ErrorCode::SUCCESS);
    for tcp in &mut partial {
        assert!(closed_by_server(tcp).await);
    }
    s.shutdown().await;
}

/// A media offer (its SDP is never read: the grant is checked first) of one video track.
fn offer_of(stream: &str, direction: TrackDirection) -> Request {
    Request::MediaOffer {
        sdp: "v=0".into(),
        tracks: vec![TrackSpec {
            mid: "0".into(),
            stream_id: sid(stream),
            kind: TrackKind::Video,
            direction,
        }],
        fresh: false,
    }
}

/// Media needs a login, and a member's offer may name only what its session publishes or
/// plays.
#[tokio::test]
async fn media_offers_need_a_login_and_a_grant() {
    let s = server(open_app()).await;
    let mut c = Client::connect(&s, 1).await;
    let offer = |direction| offer_of("x", direction);
    assert_eq!(
        c.request(offer(TrackDirection::Send)).await.0,
        ErrorCode::COMMON_NOT_LOGIN_ROOM
    );
    c.login("r", "c", true).await;
    assert_eq!(
        c.request(offer(TrackDirection::Send)).await.0,
        ErrorCode::PUBLISHER_FORBIDDEN
    );
    assert_eq!(
        c.request(offer(TrackDirection::Recv)).await.0,
        ErrorCode::PLAYER_FORBIDDEN
    );
    s.shutdown().await;
}

/// A connection kicked out of a room (its user logged in elsewhere, 1002050) loses every right
/// there at once: it may not play, renew the room's token or offer media for what it played,
/// and it hears nothing more of the room's streams.
#[tokio::test]
async fn a_kicked_session_loses_every_right_in_its_room() {
    let s = server(open_app()).await;
    let mut p = Client::connect(&s, 1).await;
    p.login("r", "p", true).await;
    assert_eq!(p.publish("r", "s").await, ErrorCode::SUCCESS);
    let mut old = Client::connect(&s, 1).await;
    old.login("r", "u", true).await;
    let (code, _) = old
        .request(Request::Play {
            room_id: room("r"),
            stream_id: sid("s"),
        })
        .await;
    assert_eq!(code, ErrorCode::SUCCESS);
    let mut new = Client::connect(&s, 1).await;
    assert_eq!(new.login("r", "u", true).await.0, ErrorCode::SUCCESS);
    old.push_where(|m| match m {
        ServerMsg::Kicked { code, .. } if *code == ErrorCode::ROOM_KICKED_OUT => Some(()),
        _ => None,
    })
    .await;
    // Everything after the kick is refused.
    let play = Request::Play {
        room_id: room("r"),
        stream_id: sid("s"),
    };
    assert_eq!(old.request(play).await.0, ErrorCode::COMMON_NOT_LOGIN_ROOM);
    let renew = Request::RenewToken {
        room_id: room("r"),
        token: "04x".into(),
    };
    assert_eq!(old.request(renew).await.0, ErrorCode::COMMON_NOT_LOGIN_ROOM);
    let offer = offer_of("s", TrackDirection::Recv);
    assert_eq!(old.request(offer).await.0, ErrorCode::COMMON_NOT_LOGIN_ROOM);
    // The stream stops and starts again: the kicked connection hears nothing of it. The barrier
    // is its own request's reply, queued after anything sent to it before.
    let (code, _) = p
        .request(Request::SetStreamState {
            room_id: room("r"),
            stream_id: sid("s"),
            audio: 1,
            video: 1,
        })
        .await;
    assert_eq!(code, ErrorCode::SUCCESS);
    let (code, _) = p
        .request(Request::Unpublish {
            room_id: room("r"),
            stream_id: sid("s"),
        })
        .await;
    assert_eq!(code, ErrorCode::SUCCESS);
    assert_eq!(p.publish("r", "s").await, ErrorCode::SUCCESS);
    let (code, _) = old.request(Request::Ping { received: 0 }).await;
    assert_eq!(code, ErrorCode::SUCCESS);
    let heard: Vec<ServerMsg> = old
        .drain(Duration::ZERO)
        .await
        .into_iter()
        .filter(|m| {
            matches!(
                m,
                ServerMsg::StreamState { .. }
                    | ServerMsg::StreamAvailable { .. }
                    | ServerMsg::StreamUnavailable { .. }
                    | ServerMsg::StreamUpdate { .. }
            )
        })
        .collect();
    assert!(heard.is_empty(), "{heard:?}");
    s.shutdown().await;
}

/// `allowed_origins`: a browser page from another origin cannot open a WebSocket; a listed
/// origin can, and SDKs (no `Origin`) always can.
#[tokio::test]
async fn websocket_origins_can_be_restricted() {
    let mut config = open_app();
    config.allowed_origins = vec!["https://class.example".into()];
    let s = server(config).await;
    let with_origin = |origin: Option<&str>| {
        let mut req = s.url().into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        req
    };
    assert!(
        tokio_tungstenite::connect_async(with_origin(Some("https://evil.example")))
            .await
            .is_err()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(with_origin(Some("https://class.example")))
        .await
        .unwrap();
    drop(ws.next());
    let (ws, _) = tokio_tungstenite::connect_async(with_origin(None))
        .await
        .unwrap();
    let mut c = Client::raw(ws);
    assert_eq!(c.request(hello(1)).await.0, ErrorCode::SUCCESS);
    let m = metrics(&s).await;
    assert_eq!(counter(&m, "zrooms_connections_refused_origin_total"), 1);
    s.shutdown().await;
}

/// Near the descriptor limit the server still admits a user who logs in: connections that have
/// not logged in are shed, oldest first, to make room. A real server process runs under a low
/// `ulimit -n` (400 descriptors: 144 for connections after the reserve).
#[tokio::test]
async fn at_the_descriptor_limit_users_still_get_in() {
    let dir = std::env::temp_dir().join(format!("zrooms-fd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("apps.toml");
    std::fs::write(
        &conf,
        "dev_default = true\nmax_connections_per_ip = 0\nmax_pending_connections = 0\n",
    )
    .unwrap();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 400 && exec \"$0\" --port 0 --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_zrooms-server"))
        .arg(&conf)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
        .await
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no url in {line:?}"))
        .to_string();
    // 200 WebSockets that say hello and never log in: more than the process can hold.
    let mut idle = Vec::new();
    for _ in 0..200 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await {
            let mut c = Client::raw(ws);
            c.send_raw(
                &serde_json::to_string(&ClientFrame {
                    id: 1,
                    req: hello(1),
                })
                .unwrap(),
            )
            .await;
            idle.push(c);
        }
    }
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let mut user = Client::raw(ws);
    assert_eq!(user.request(hello(1)).await.0, ErrorCode::SUCCESS);
    assert_eq!(user.login("r", "u", true).await.0, ErrorCode::SUCCESS);
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
