//! Entry points for the cargo-fuzz targets in `fuzz/` (not a stable API): the server's
//! handling of a peer's bytes, without sockets.

use crate::config::{AppConfig, ServerConfig};
use crate::sfu::{SfuCore, SfuHandle};
use crate::Shared;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;
use zrooms_proto::wire::{TrackDirection, TrackKind, TrackSpec};
use zrooms_proto::StreamId;

/// A secret the signaling target's app 2 verifies tokens with.
pub const SECRET: &str = "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz";

/// A fuzz input as signaling: each line is one text frame (see [`signaling`]).
pub fn signaling_bytes(data: &[u8]) -> usize {
    let text = String::from_utf8_lossy(data);
    let frames: Vec<&str> = text.split('\n').collect();
    signaling(&frames)
}

/// Text frames from peers, through two connections of one in-memory server (app 1 is open,
/// app 2 needs tokens), with the SFU commands they cause applied to a socketless SFU.
pub fn signaling(frames: &[&str]) -> usize {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return 0;
    };
    rt.block_on(async {
        let addr = SocketAddr::from(([127, 0, 0, 1], 9));
        let (sfu, mut commands) = SfuHandle::detached(addr);
        let mut config = ServerConfig::default();
        config.apps.insert(
            2,
            AppConfig {
                server_secret: Some(SECRET.into()),
                ..AppConfig::dev(2)
            },
        );
        let shared = Shared::new(config, sfu);
        let queued = run_frames(&shared, 2, frames);
        let mut core = SfuCore::new(addr);
        let now = Instant::now();
        while let Ok(cmd) = commands.try_recv() {
            core.command(cmd, now);
        }
        core.tick(now);
        tokio::task::yield_now().await;
        queued + core.take_outgoing().len()
    })
}

/// Token parsing: `data` as a token string and as a token's binary body (so the fuzzer works on
/// the layout directly), and as a privilege payload.
pub fn token(data: &[u8]) {
    use base64::Engine as _;
    let secret = SECRET.as_bytes();
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = zrooms_token::verify(s, secret, 1, "u", 0, zrooms_token::Check::ANY);
        let _ = zrooms_token::parse_privileges(s);
    }
    let token = format!(
        "04{}",
        base64::engine::general_purpose::STANDARD.encode(data)
    );
    let _ = zrooms_token::verify(&token, secret, 1, "u", 0, zrooms_token::Check::ANY);
}

fn tracks() -> Vec<TrackSpec> {
    let spec = |mid: &str, stream: &str, kind, direction| {
        StreamId::new(stream).ok().map(|stream_id| TrackSpec {
            mid: mid.into(),
            stream_id,
            kind,
            direction,
        })
    };
    [
        spec("0", "pub", TrackKind::Audio, TrackDirection::Send),
        spec("1", "play", TrackKind::Video, TrackDirection::Recv),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// An offer a str0m client makes: one audio track sent, one video track received.
fn valid_offer() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| {
        let mut rtc = Rtc::builder().build(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        api.apply()
            .map(|(offer, _pending)| offer.to_sdp_string())
            .unwrap_or_default()
    })
}

/// The SFU's handling of a peer's SDP and first UDP datagrams. First byte even: the rest is an
/// SDP offer. Odd: a valid offer is accepted, and the rest is datagrams (u16 big-endian length
/// + bytes each), from that peer's address and now and then from a stranger's.
pub fn sdp_datagrams(data: &[u8]) -> usize {
    let Some((&mode, mut rest)) = data.split_first() else {
        return 0;
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut sfu = SfuCore::new(addr);
    // Virtual time: each datagram arrives 5 ms after the one before.
    let mut now = Instant::now();
    if mode % 2 == 0 {
        let sdp = String::from_utf8_lossy(rest);
        let _ = sfu.offer(1, &sdp, tracks(), false, now);
        sfu.tick(now);
        return sfu.take_outgoing().len();
    }
    let _ = sfu.offer(1, valid_offer(), tracks(), false, now);
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let stranger = SocketAddr::from(([10, 0, 0, 1], 40000));
    let mut n = 0usize;
    while let [hi, lo, body @ ..] = rest {
        let take = usize::from(u16::from_be_bytes([*hi, *lo])).min(body.len());
        let (datagram, tail) = body.split_at(take);
        now += std::time::Duration::from_millis(5);
        sfu.datagram(if n % 3 == 2 { stranger } else { peer }, datagram, now);
        sfu.tick(now);
        rest = tail;
        n += 1;
    }
    sfu.take_outgoing().len()
}

/// Runs text frames through sessions of an in-memory server (no sockets): each frame goes to
/// session `i % conns`, which says hello to app 1 first unless the frame is a hello itself; a
/// frame that would close its connection closes it and a new one takes its place. Returns how
/// many frames were queued to the peers.
fn run_frames(shared: &std::sync::Arc<Shared>, conns: usize, frames: &[&str]) -> usize {
    use crate::clock::Now;
    use crate::session::Session;
    use crate::state::Outbound;
    use std::sync::atomic::Ordering;
    let hello = r#"{"id":0,"type":"hello","version":1,"app_id":1}"#;
    let now = Now::system();
    let open = |receivers: &mut Vec<tokio::sync::mpsc::Receiver<_>>| {
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let (out, rx, _stuck) = Outbound::new(id, shared.config.outbound_queue);
        receivers.push(rx);
        Session::new(
            id,
            out,
            shared.clone(),
            std::net::IpAddr::from([127, 0, 0, 1]),
        )
    };
    let mut receivers = Vec::new();
    let mut live: Vec<Session> = (0..conns.max(1)).map(|_| open(&mut receivers)).collect();
    for (i, frame) in frames.iter().enumerate() {
        let k = i % live.len();
        if live[k].app.is_none() && !frame.contains("hello") && !live[k].on_text(hello, now) {
            continue;
        }
        if !live[k].on_text(frame, now) {
            let fresh = open(&mut receivers);
            std::mem::replace(&mut live[k], fresh).close();
        }
        // Every token timer fires at once: the fuzzer reaches the warning and expiry paths.
        if live[k].token_deadline(now).is_some() {
            live[k].token_timer(now);
        }
    }
    for c in live {
        c.close();
    }
    receivers
        .iter_mut()
        .map(|rx| std::iter::from_fn(|| rx.try_recv().ok()).count())
        .sum()
}
