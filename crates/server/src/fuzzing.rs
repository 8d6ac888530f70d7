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
        let queued = crate::conn::run_frames(&shared, 2, frames);
        let mut core = SfuCore::new(addr);
        while let Ok(cmd) = commands.try_recv() {
            core.command(cmd);
        }
        core.tick(Instant::now());
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
    if mode % 2 == 0 {
        let sdp = String::from_utf8_lossy(rest);
        let _ = sfu.offer(1, &sdp, tracks(), false);
        sfu.tick(Instant::now());
        return sfu.take_outgoing().len();
    }
    let _ = sfu.offer(1, valid_offer(), tracks(), false);
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let stranger = SocketAddr::from(([10, 0, 0, 1], 40000));
    let mut n = 0usize;
    while let [hi, lo, body @ ..] = rest {
        let take = usize::from(u16::from_be_bytes([*hi, *lo])).min(body.len());
        let (datagram, tail) = body.split_at(take);
        sfu.datagram(if n % 3 == 2 { stranger } else { peer }, datagram);
        sfu.tick(Instant::now());
        rest = tail;
        n += 1;
    }
    sfu.take_outgoing().len()
}
