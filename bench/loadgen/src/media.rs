//! Media scenarios: real str0m peers through the SFU (ICE, DTLS, SRTP, RTCP, as the engine
//! does), against a raw UDP forwarder carrying the same packets.
//!
//! Publishers send H.264-shaped frames (Annex B NAL units: SPS, PPS and an IDR every 2 s, a
//! slice otherwise; the bytes are not a picture, which the SFU never looks at) at a 640x360@15
//! bitrate (ZEGO's 360p preset, 600 kbit/s) and Opus-sized audio every 20 ms. Players run
//! str0m in RTP mode (SRTP, RTCP, NACK and TWCC as usual, but no depacketizing): a video frame
//! counts as received when its last packet (the RTP marker) arrives, an audio frame with its one
//! packet: the same rule as the raw UDP baseline's receivers. Depacketizing 100,000 packets a
//! second cost the load generator more than the SFU spent forwarding them.

use crate::client::{room_id, stream_id, Client, Server, Window};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;
use zrooms_proto::wire::*;

pub const FPS: u32 = 15;
const KEY_EVERY: u64 = 30;
const DELTA_BYTES: usize = 4_500;
const KEY_BYTES: usize = 15_000;
const AUDIO_BYTES: usize = 120;
/// How much later than sends receipts are counted.
const LAG: Duration = Duration::from_millis(300);
/// Datagram payload of the baseline (a typical RTP packet).
const CHUNK: usize = 1_200;

/// The encoded frame `n` of a stream: Annex B NAL units without start-code emulation.
fn video_frame(n: u64) -> Vec<u8> {
    let key = n.is_multiple_of(KEY_EVERY);
    let mut out = Vec::with_capacity(KEY_BYTES + 64);
    let mut nal = |header: u8, len: usize, seed: u64| {
        out.extend_from_slice(&[0, 0, 0, 1, header]);
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push((x as u8).max(1));
        }
    };
    if key {
        nal(0x67, 12, n);
        nal(0x68, 4, n + 1);
        nal(0x65, KEY_BYTES, n + 2);
    } else {
        nal(0x41, DELTA_BYTES, n + 3);
    }
    out
}

/// Datagrams a peer reads before it looks at its timers again.
const RECV_BATCH: usize = 64;
/// Kernel receive buffer of every peer's socket (capped by `net.core.rmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for [`SOCKET_BUFFER`] each way, as the SFU does for its socket.
pub fn set_buffers(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
}

/// A peer with the codec set the engine and the SFU use (`zrooms_proto::media`); players
/// (`rtp_mode`) get packets instead of frames.
fn new_rtc(local: SocketAddr, rtp_mode: bool) -> Rtc {
    let builder = zrooms_proto::media::with_codecs(Rtc::builder()).set_rtp_mode(rtp_mode);
    let mut rtc = builder.build(Instant::now());
    if let Ok(c) = Candidate::host(local, "udp") {
        rtc.add_local_candidate(c);
    }
    rtc
}

/// Counters a peer task updates and the scenario reads.
#[derive(Default)]
pub struct Counters {
    pub video: AtomicU64,
    pub audio: AtomicU64,
    pub connected: AtomicU64,
}

/// Keeps a signaling connection alive (pings, drains) for as long as the scenario runs.
fn keepalive(mut c: Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let Ok((_, text)) = c.frame(Request::Ping { received: 0 }) else { return };
                    if c.ws.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                m = c.ws.next() => if !matches!(m, Some(Ok(_))) { return },
            }
        }
    })
}

/// Each m-line of a peer and what it carries.
type Mids = HashMap<Mid, TrackKind>;

/// Negotiates a peer with the SFU over `c`: one m-line per (stream, kind) in `tracks`.
async fn negotiate(
    c: &mut Client,
    tracks: &[(String, TrackKind, TrackDirection)],
) -> Result<(Rtc, UdpSocket, Mids), String> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    set_buffers(&socket);
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let player = tracks.iter().all(|t| t.2 == TrackDirection::Recv);
    let mut rtc = new_rtc(local, player);
    let mut api = rtc.sdp_api();
    let mut mids = Mids::new();
    let mut specs = Vec::new();
    for (stream, kind, dir) in tracks {
        let media_kind = match kind {
            TrackKind::Audio => MediaKind::Audio,
            TrackKind::Video => MediaKind::Video,
        };
        let direction = match dir {
            TrackDirection::Send => Direction::SendOnly,
            TrackDirection::Recv => Direction::RecvOnly,
        };
        let mid = api.add_media(media_kind, direction, Some(stream.clone()), None, None);
        mids.insert(mid, *kind);
        specs.push(TrackSpec {
            mid: mid.to_string(),
            stream_id: stream_id(stream)?,
            kind: *kind,
            direction: *dir,
        });
    }
    let (offer, pending) = api.apply().ok_or("nothing to offer")?;
    let reply = c
        .request(Request::MediaOffer {
            sdp: offer.to_sdp_string(),
            tracks: specs.clone(),
            fresh: false,
        })
        .await?;
    let Some(ReplyBody::MediaAnswer { sdp }) = reply else {
        return Err("no media answer".into());
    };
    let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|e| e.to_string())?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| e.to_string())?;
    drop_unused_senders(&mut rtc, &specs);
    Ok((rtc, socket, mids))
}

/// str0m gives every m-line it offers a send stream, receive-only ones included; each costs a
/// pass on every input. A receive-only m-line never sends (its RTCP goes out under the
/// session's own SSRC), so its send stream goes, as the engine does (`media/mod.rs`).
fn drop_unused_senders(rtc: &mut Rtc, specs: &[TrackSpec]) {
    let mut api = rtc.direct_api();
    for t in specs.iter().filter(|t| t.direction == TrackDirection::Recv) {
        let mid = Mid::from(t.mid.as_str());
        if let Some(ssrc) = api.stream_tx_by_mid(mid, None).map(|s| s.ssrc()) {
            api.remove_stream_tx(ssrc);
        }
    }
}

/// Drains a peer's output until its next timeout: datagrams out, a player's packets counted.
async fn drain(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    mids: &Mids,
    counters: &Counters,
    connected: &mut bool,
) -> Option<Instant> {
    loop {
        match rtc.poll_output() {
            Ok(Output::Timeout(t)) => return Some(t),
            Ok(Output::Transmit(t)) => {
                let _ = socket.send_to(&t.contents, t.destination).await;
            }
            Ok(Output::Event(Event::Connected)) => {
                *connected = true;
                counters.connected.store(1, Ordering::Relaxed);
            }
            Ok(Output::Event(Event::RtpPacket(p))) => {
                let mid = rtc.direct_api().stream_rx(&p.header.ssrc).map(|s| s.mid());
                match mid.and_then(|m| mids.get(&m)) {
                    Some(TrackKind::Video) if p.header.marker => {
                        counters.video.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(TrackKind::Audio) => {
                        counters.audio.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            Ok(Output::Event(_)) => {}
            Err(_) => return None,
        }
    }
}

/// Drives a peer: datagrams and time in, datagrams out; `send` (publishers) writes the next
/// video frame every 1/15 s and audio every 20 ms once connected.
async fn run_peer(
    mut rtc: Rtc,
    socket: UdpSocket,
    mids: Mids,
    send: bool,
    counters: Arc<Counters>,
) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut buf = vec![0u8; 2048];
    let start = Instant::now();
    let (mut frame_n, mut audio_n) = (0u64, 0u64);
    let mut connected = false;
    loop {
        let Some(timeout) = drain(&mut rtc, &socket, &mids, &counters, &mut connected).await else {
            return;
        };
        let next_video = start + Duration::from_secs_f64(frame_n as f64 / FPS as f64);
        let next_audio = start + Duration::from_millis(20 * audio_n);
        let wake = if send && connected {
            timeout.min(next_video).min(next_audio)
        } else {
            timeout
        };
        tokio::select! {
            r = socket.readable() => {
                if r.is_err() {
                    return;
                }
                // What the socket holds, each datagram followed by a drain of the peer.
                for i in 0..RECV_BATCH {
                    let (n, source) = match socket.try_recv_from(&mut buf) {
                        Ok(r) => r,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => return,
                    };
                    let Ok(contents) = buf.get(..n).unwrap_or_default().try_into() else { continue };
                    let input = Input::Receive(Instant::now(), Receive {
                        proto: Protocol::Udp, source, destination: local, contents,
                    });
                    if rtc.handle_input(input).is_err() {
                        return;
                    }
                    if i + 1 < RECV_BATCH
                        && drain(&mut rtc, &socket, &mids, &counters, &mut connected).await.is_none()
                    {
                        return;
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if rtc.handle_input(Input::Timeout(now)).is_err() {
                    return;
                }
                if send && connected {
                    for (mid, kind) in &mids {
                        let Some(writer) = rtc.writer(*mid) else { continue };
                        let codec = match kind { TrackKind::Video => Codec::H264, TrackKind::Audio => Codec::Opus };
                        let Some(pt) = writer.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt()) else { continue };
                        match kind {
                            TrackKind::Video if now >= next_video => {
                                let t = MediaTime::new(frame_n * 90_000 / FPS as u64, Frequency::NINETY_KHZ);
                                let _ = writer.write(pt, now, t, video_frame(frame_n));
                                counters.video.fetch_add(1, Ordering::Relaxed);
                            }
                            TrackKind::Audio if now >= next_audio => {
                                let t = MediaTime::new(audio_n * 960, Frequency::FORTY_EIGHT_KHZ);
                                let _ = writer.write(pt, now, t, vec![0x78; AUDIO_BYTES]);
                                counters.audio.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                    }
                    if now >= next_video { frame_n += 1; }
                    if now >= next_audio { audio_n += 1; }
                }
            }
        }
    }
}

pub struct MediaResult {
    pub legs: u64,
    /// Server (or forwarder) CPU over the window, in cores.
    pub cores: f64,
    /// This load generator's own CPU over the window, in cores.
    pub loadgen_cores: f64,
    pub expected_video: u64,
    pub received_video: u64,
    pub expected_audio: u64,
    pub received_audio: u64,
    pub rss_kib: u64,
    pub setup_failed: u32,
}

impl MediaResult {
    pub fn video_loss(&self) -> f64 {
        1.0 - self.received_video as f64 / self.expected_video.max(1) as f64
    }
    pub fn audio_loss(&self) -> f64 {
        1.0 - self.received_audio as f64 / self.expected_audio.max(1) as f64
    }
}

fn self_cpu() -> f64 {
    crate::client::proc_usage(std::process::id())
        .map(|u| u.0)
        .unwrap_or(f64::NAN)
}

fn sum(cs: &[Arc<Counters>]) -> (u64, u64) {
    cs.iter().fold((0, 0), |(v, a), c| {
        (
            v + c.video.load(Ordering::Relaxed),
            a + c.audio.load(Ordering::Relaxed),
        )
    })
}

/// `publishers` streams in one room, each played by all `players`, through the SFU.
pub async fn sfu(
    server: &Server,
    publishers: u32,
    players: u32,
    seconds: u32,
) -> Result<MediaResult, String> {
    let room = "bench-media";
    let mut keep = Vec::new();
    let mut pub_counters = Vec::new();
    let mut play_counters = Vec::new();
    let mut setup_failed = 0;
    for p in 0..publishers {
        let stream = format!("pub{p}");
        let mut c = Client::connect(&server.url).await?;
        c.login(room, &format!("publisher{p}")).await?;
        c.request(Request::Publish {
            room_id: room_id(room)?,
            stream_id: stream_id(&stream)?,
            extra_info: String::new(),
        })
        .await?;
        let tracks = [
            (stream.clone(), TrackKind::Audio, TrackDirection::Send),
            (stream.clone(), TrackKind::Video, TrackDirection::Send),
        ];
        let (rtc, socket, mids) = negotiate(&mut c, &tracks).await?;
        let counters = Arc::new(Counters::default());
        pub_counters.push(counters.clone());
        keep.push(tokio::spawn(run_peer(rtc, socket, mids, true, counters)));
        keep.push(keepalive(c));
    }
    for n in 0..players {
        let setup = async {
            let mut c = Client::connect(&server.url).await?;
            c.login(room, &format!("player{n}")).await?;
            let mut tracks = Vec::new();
            for p in 0..publishers {
                let stream = format!("pub{p}");
                c.request(Request::Play {
                    room_id: room_id(room)?,
                    stream_id: stream_id(&stream)?,
                })
                .await?;
                tracks.push((stream.clone(), TrackKind::Audio, TrackDirection::Recv));
                tracks.push((stream, TrackKind::Video, TrackDirection::Recv));
            }
            let (rtc, socket, mids) = negotiate(&mut c, &tracks).await?;
            Ok::<_, String>((c, rtc, socket, mids))
        };
        match setup.await {
            Ok((c, rtc, socket, mids)) => {
                let counters = Arc::new(Counters::default());
                play_counters.push(counters.clone());
                keep.push(tokio::spawn(run_peer(rtc, socket, mids, false, counters)));
                keep.push(keepalive(c));
            }
            Err(e) => {
                eprintln!("player {n}: {e}");
                setup_failed += 1;
            }
        }
    }
    // Everyone connects and the first keyframes go round before the window opens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Window::open(server);
    let cpu0 = self_cpu();
    // Receipts are counted over the same window as sends, 300 ms later (frames in flight).
    let (sent0, sent_a0) = sum(&pub_counters);
    tokio::time::sleep(LAG).await;
    let (recv0, recv_a0) = sum(&play_counters);
    tokio::time::sleep(Duration::from_secs(seconds as u64) - LAG).await;
    let (sent1, sent_a1) = sum(&pub_counters);
    tokio::time::sleep(LAG).await;
    let (recv1, recv_a1) = sum(&play_counters);
    let (cpu, wall, rss_kib) = window.close(server);
    let loadgen_cpu = self_cpu() - cpu0;
    for k in keep {
        k.abort();
    }
    let n_players = play_counters.len() as u64;
    Ok(MediaResult {
        legs: publishers as u64 * players as u64,
        cores: cpu / wall,
        loadgen_cores: loadgen_cpu / wall,
        expected_video: (sent1 - sent0) * n_players,
        received_video: recv1 - recv0,
        expected_audio: (sent_a1 - sent_a0) * n_players,
        received_audio: recv_a1 - recv_a0,
        rss_kib,
        setup_failed,
    })
}

/// The same streams as datagrams through the raw UDP forwarder: every frame cut into 1,200-byte
/// datagrams, audio one datagram each; every receiver gets every stream.
pub async fn udp_baseline(
    forwarder: &Server,
    publishers: u32,
    players: u32,
    seconds: u32,
) -> Result<MediaResult, String> {
    let target: SocketAddr = forwarder
        .url
        .trim_start_matches("udp://")
        .parse()
        .map_err(|e| format!("forwarder address: {e}"))?;
    let received = Arc::new(AtomicU64::new(0));
    let received_audio = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..players {
        let s = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        set_buffers(&s);
        s.send_to(b"SUB", target).await.map_err(|e| e.to_string())?;
        let (received, received_audio) = (received.clone(), received_audio.clone());
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = s.recv_from(&mut buf).await {
                // First byte: 1 = the last datagram of a video frame, 2 = audio.
                match buf.get(..n).and_then(|b| b.first()) {
                    Some(1) => received.fetch_add(1, Ordering::Relaxed),
                    Some(2) => received_audio.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = Arc::new(AtomicU64::new(0));
    let sent_audio = Arc::new(AtomicU64::new(0));
    for _ in 0..publishers {
        let s = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        set_buffers(&s);
        let (sent, sent_audio) = (sent.clone(), sent_audio.clone());
        tasks.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let (mut f, mut a) = (0u64, 0u64);
            loop {
                let next_video = start + Duration::from_secs_f64(f as f64 / FPS as f64);
                let next_audio = start + Duration::from_millis(20 * a);
                tokio::time::sleep_until(next_video.min(next_audio)).await;
                if tokio::time::Instant::now() >= next_video {
                    let frame = video_frame(f);
                    let chunks: Vec<&[u8]> = frame.chunks(CHUNK).collect();
                    for (i, c) in chunks.iter().enumerate() {
                        let mut d = Vec::with_capacity(c.len() + 13);
                        d.push(if i + 1 == chunks.len() { 1 } else { 0 });
                        d.extend_from_slice(&[0; 12]);
                        d.extend_from_slice(c);
                        let _ = s.send_to(&d, target).await;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    f += 1;
                }
                if tokio::time::Instant::now() >= next_audio {
                    let mut d = vec![2u8];
                    d.extend_from_slice(&[0x78; AUDIO_BYTES + 12]);
                    let _ = s.send_to(&d, target).await;
                    sent_audio.fetch_add(1, Ordering::Relaxed);
                    a += 1;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = Window::open(forwarder);
    let cpu0 = self_cpu();
    let pair =
        |v: &AtomicU64, a: &AtomicU64| (v.load(Ordering::Relaxed), a.load(Ordering::Relaxed));
    let (s0, sa0) = pair(&sent, &sent_audio);
    tokio::time::sleep(LAG).await;
    let (r0, ra0) = pair(&received, &received_audio);
    tokio::time::sleep(Duration::from_secs(seconds as u64) - LAG).await;
    let (s1, sa1) = pair(&sent, &sent_audio);
    tokio::time::sleep(LAG).await;
    let (r1, ra1) = pair(&received, &received_audio);
    let (cpu, wall, rss_kib) = window.close(forwarder);
    let loadgen_cpu = self_cpu() - cpu0;
    for t in tasks {
        t.abort();
    }
    Ok(MediaResult {
        legs: publishers as u64 * players as u64,
        cores: cpu / wall,
        loadgen_cores: loadgen_cpu / wall,
        expected_video: (s1 - s0) * players as u64,
        received_video: r1 - r0,
        expected_audio: (sa1 - sa0) * players as u64,
        received_audio: ra1 - ra0,
        rss_kib,
        setup_failed: 0,
    })
}
