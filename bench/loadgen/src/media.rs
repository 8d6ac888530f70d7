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
//!
//! Counting is by send time, carried in the media ([`Clock`]): every video frame and audio
//! packet ends with the time it was sent. Frames sent while the window is open are expected at
//! every player; a player counts a frame whose send time is in the window if it arrives within
//! [`LATE`] of being sent (the run waits that long after the window closes), and notes how long
//! each video frame took (the latency figures, late frames included). A frame later than that
//! is lost, as it would be to a real-time player; a frame sent before the window never counts.

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
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;
use zrooms_proto::wire::*;

pub const FPS: u32 = 15;
const KEY_EVERY: u64 = 30;
const DELTA_BYTES: usize = 4_500;
const KEY_BYTES: usize = 15_000;
const AUDIO_BYTES: usize = 120;
/// A frame that arrives later than this after it was sent counts as lost.
const LATE: Duration = Duration::from_secs(1);
/// Bytes at the end of each frame that carry its send time.
const STAMP_BYTES: usize = 8;

/// The scenario's time base and its counting window, in microseconds since `epoch`.
pub struct Clock {
    epoch: Instant,
    open: AtomicU64,
    close: AtomicU64,
}

impl Clock {
    fn new() -> Arc<Clock> {
        Arc::new(Clock {
            epoch: Instant::now(),
            open: AtomicU64::new(u64::MAX),
            close: AtomicU64::new(u64::MAX),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn open(&self) {
        self.open.store(self.now(), Ordering::Relaxed);
    }

    fn close(&self) {
        self.close.store(self.now(), Ordering::Relaxed);
    }

    /// Whether a frame sent at `stamp` is counted.
    fn counts(&self, stamp: u64) -> bool {
        stamp >= self.open.load(Ordering::Relaxed) && stamp < self.close.load(Ordering::Relaxed)
    }
}

/// Writes `micros` into the last [`STAMP_BYTES`] of `out`, 7 bits a byte with the top bit set:
/// no zero byte, so no H.264 start code can appear.
fn put_stamp(out: &mut [u8], micros: u64) {
    let Some(start) = out.len().checked_sub(STAMP_BYTES) else {
        return;
    };
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b = 0x80 | ((micros >> (7 * i)) & 0x7f) as u8;
    }
}

/// The send time at the end of a frame's last packet, if it carries one.
fn read_stamp(payload: &[u8]) -> Option<u64> {
    let tail = payload.get(payload.len().checked_sub(STAMP_BYTES)?..)?;
    tail.iter().enumerate().try_fold(0u64, |acc, (i, b)| {
        (b & 0x80 != 0).then(|| acc | (((b & 0x7f) as u64) << (7 * i)))
    })
}

/// An audio payload sent at `micros`.
fn audio_payload(len: usize, micros: u64) -> Vec<u8> {
    let mut a = vec![0x78; len];
    put_stamp(&mut a, micros);
    a
}
/// Datagram payload of the baseline (a typical RTP packet).
const CHUNK: usize = 1_200;

/// The encoded frame `n` of a stream, sent at `micros`: Annex B NAL units without start-code
/// emulation, the send time in the last bytes.
fn video_frame(n: u64, micros: u64) -> Vec<u8> {
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
    put_stamp(&mut out, micros);
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

/// Asks the kernel to hand a UDP GSO message (the SFU sends a frame's packets to one player as
/// one) to this socket as one buffer with its segment size, instead of cutting it into
/// datagrams first (`UDP_GRO`). Where that is refused, datagrams come one by one as before.
fn enable_gro(socket: &UdpSocket) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a c_int option value of the right size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        r == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        false
    }
}

/// One read: the bytes, their source and the size of each datagram in them (the last may be
/// shorter; a plain datagram is one segment of its own size).
#[cfg(target_os = "linux")]
fn recv_segments(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, usize)> {
    use std::os::fd::AsRawFd;

    #[repr(C, align(8))]
    struct Control([u8; 64]);

    let mut control = Control([0; 64]);
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: msg describes live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let n = n as usize;
    let mut segment = n;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsgs.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                if size > 0 {
                    segment = size as usize;
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let source = match addr.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { *(&addr as *const _ as *const libc::sockaddr_in) };
            SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { *(&addr as *const _ as *const libc::sockaddr_in6) };
            SocketAddr::from((a.sin6_addr.s6_addr, u16::from_be(a.sin6_port)))
        }
        _ => return Err(std::io::Error::other("unknown address family")),
    };
    Ok((n, source, segment.max(1)))
}

#[cfg(not(target_os = "linux"))]
fn recv_segments(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, usize)> {
    let (n, source) = socket.try_recv_from(buf)?;
    Ok((n, source, n.max(1)))
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

/// Counters a peer task updates and the scenario reads: frames of the window sent (publishers)
/// or received (players), and each received video frame's latency in microseconds.
#[derive(Default)]
pub struct Counters {
    pub video: AtomicU64,
    pub audio: AtomicU64,
    pub connected: AtomicU64,
    pub latency: std::sync::Mutex<Vec<u32>>,
}

impl Counters {
    /// A frame of `kind` whose last packet `payload` arrived now.
    fn received(&self, clock: &Clock, kind: TrackKind, payload: &[u8]) {
        let Some(stamp) = read_stamp(payload).filter(|s| clock.counts(*s)) else {
            return;
        };
        let took = clock.now().saturating_sub(stamp);
        let in_time = took <= LATE.as_micros() as u64;
        match kind {
            TrackKind::Video => {
                if in_time {
                    self.video.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut l) = self.latency.lock() {
                    l.push(took.min(u32::MAX as u64) as u32);
                }
            }
            TrackKind::Audio if in_time => {
                self.audio.fetch_add(1, Ordering::Relaxed);
            }
            TrackKind::Audio => {}
        }
    }

    /// A frame of `kind` sent at `stamp`.
    fn sent(&self, clock: &Clock, kind: TrackKind, stamp: u64) {
        if clock.counts(stamp) {
            match kind {
                TrackKind::Video => self.video.fetch_add(1, Ordering::Relaxed),
                TrackKind::Audio => self.audio.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
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
    enable_gro(&socket);
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
    let receive_only: Vec<Mid> = specs
        .iter()
        .filter(|t| t.direction == TrackDirection::Recv)
        .map(|t| Mid::from(t.mid.as_str()))
        .collect();
    let reply = c
        .request(Request::MediaOffer {
            sdp: offer.to_sdp_string(),
            tracks: specs,
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
    // Receive-only m-lines never send: their send streams only cost time.
    zrooms_proto::media::drop_send_streams(&mut rtc, receive_only);
    Ok((rtc, socket, mids))
}

/// Drains a peer's output until its next timeout: datagrams out, a player's packets counted.
async fn drain(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    mids: &Mids,
    counters: &Counters,
    clock: &Clock,
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
                        counters.received(clock, TrackKind::Video, &p.payload)
                    }
                    Some(TrackKind::Audio) => {
                        counters.received(clock, TrackKind::Audio, &p.payload)
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
    clock: Arc<Clock>,
) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    // Room for a whole GSO message (up to 64 datagrams, under 64 KiB).
    let mut buf = vec![0u8; 65_536];
    let start = Instant::now();
    let (mut frame_n, mut audio_n) = (0u64, 0u64);
    let mut connected = false;
    loop {
        let Some(timeout) =
            drain(&mut rtc, &socket, &mids, &counters, &clock, &mut connected).await
        else {
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
                for _ in 0..RECV_BATCH {
                    let read = socket.try_io(Interest::READABLE, || recv_segments(&socket, &mut buf));
                    let (n, source, segment) = match read {
                        Ok(r) => r,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => return,
                    };
                    for datagram in buf.get(..n).unwrap_or_default().chunks(segment) {
                        let Ok(contents) = datagram.try_into() else { continue };
                        let input = Input::Receive(Instant::now(), Receive {
                            proto: Protocol::Udp, source, destination: local, contents,
                        });
                        if rtc.handle_input(input).is_err() {
                            return;
                        }
                        if drain(&mut rtc, &socket, &mids, &counters, &clock, &mut connected).await.is_none() {
                            return;
                        }
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
                                let stamp = clock.now();
                                let _ = writer.write(pt, now, t, video_frame(frame_n, stamp));
                                counters.sent(&clock, TrackKind::Video, stamp);
                            }
                            TrackKind::Audio if now >= next_audio => {
                                let t = MediaTime::new(audio_n * 960, Frequency::FORTY_EIGHT_KHZ);
                                let stamp = clock.now();
                                let _ = writer.write(pt, now, t, audio_payload(AUDIO_BYTES, stamp));
                                counters.sent(&clock, TrackKind::Audio, stamp);
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
    /// Video frames' latency, send to last packet received, p50 / p99 / max in ms.
    pub latency_ms: (f64, f64, f64),
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

/// p50, p99 and max of the players' video latencies, in ms.
fn latency_ms(cs: &[Arc<Counters>]) -> (f64, f64, f64) {
    let mut all: Vec<f64> = cs
        .iter()
        .filter_map(|c| c.latency.lock().ok().map(|l| l.clone()))
        .flatten()
        .map(|us| us as f64 / 1000.0)
        .collect();
    (
        crate::client::pct(&mut all, 50.0),
        crate::client::pct(&mut all, 99.0),
        crate::client::pct(&mut all, 100.0),
    )
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
    let clock = Clock::new();
    let mut keep = Vec::new();
    let mut pub_counters = Vec::new();
    let mut play_counters = Vec::new();
    let mut setup_failed = 0;
    for p in 0..publishers {
        let publisher = format!("publisher{p}");
        let counters = start_publisher(
            server,
            room,
            &publisher,
            &format!("pub{p}"),
            &clock,
            &mut keep,
        )
        .await?;
        pub_counters.push(counters);
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
                keep.push(tokio::spawn(run_peer(
                    rtc,
                    socket,
                    mids,
                    false,
                    counters,
                    clock.clone(),
                )));
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
    clock.open();
    tokio::time::sleep(Duration::from_secs(seconds as u64)).await;
    clock.close();
    let (cpu, wall, rss_kib) = window.close(server);
    let loadgen_cpu = self_cpu() - cpu0;
    tokio::time::sleep(LATE).await;
    let (sent, sent_audio) = sum(&pub_counters);
    let (received, received_audio) = sum(&play_counters);
    for k in keep {
        k.abort();
    }
    let n_players = play_counters.len() as u64;
    Ok(MediaResult {
        legs: publishers as u64 * players as u64,
        cores: cpu / wall,
        loadgen_cores: loadgen_cpu / wall,
        expected_video: sent * n_players,
        received_video: received,
        expected_audio: sent_audio * n_players,
        received_audio,
        rss_kib,
        setup_failed,
        latency_ms: latency_ms(&play_counters),
    })
}

/// Logs `user` into `room`, publishes `stream` and starts a str0m peer sending it (video and
/// audio, counted with `clock`); its tasks go to `keep`.
async fn start_publisher(
    server: &Server,
    room: &str,
    user: &str,
    stream: &str,
    clock: &Arc<Clock>,
    keep: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Arc<Counters>, String> {
    let mut c = Client::connect(&server.url).await?;
    c.login(room, user).await?;
    c.request(Request::Publish {
        room_id: room_id(room)?,
        stream_id: stream_id(stream)?,
        extra_info: String::new(),
    })
    .await?;
    let tracks = [
        (stream.to_string(), TrackKind::Audio, TrackDirection::Send),
        (stream.to_string(), TrackKind::Video, TrackDirection::Send),
    ];
    let (rtc, socket, mids) = negotiate(&mut c, &tracks).await?;
    let counters = Arc::new(Counters::default());
    keep.push(tokio::spawn(run_peer(
        rtc,
        socket,
        mids,
        true,
        counters.clone(),
        clock.clone(),
    )));
    keep.push(keepalive(c));
    Ok(counters)
}

/// One stream (640x360@15 and audio) published and played by str0m peers in app 1: what an
/// attack costs a user's media (`zrooms-loadgen security`).
pub struct Probe {
    clock: Arc<Clock>,
    publisher: Arc<Counters>,
    players: Vec<Arc<Counters>>,
    keep: Vec<tokio::task::JoinHandle<()>>,
    room: String,
    stream: String,
}

impl Probe {
    pub async fn start(server: &Server, room: &str, stream: &str) -> Result<Probe, String> {
        let clock = Clock::new();
        let mut keep = Vec::new();
        let publisher =
            start_publisher(server, room, "probe-publisher", stream, &clock, &mut keep).await?;
        let mut probe = Probe {
            clock,
            publisher,
            players: Vec::new(),
            keep,
            room: room.to_string(),
            stream: stream.to_string(),
        };
        let mut c = Client::connect(&server.url).await?;
        c.login(room, "probe-player").await?;
        probe.play(c).await?;
        Ok(probe)
    }

    /// Plays the probe's stream on `c` (a session of any app, logged into any room) and counts
    /// what it receives with the probe's clock; returns that player's counters.
    pub async fn play(&mut self, mut c: Client) -> Result<Arc<Counters>, String> {
        c.request(Request::Play {
            room_id: room_id(&self.room)?,
            stream_id: stream_id(&self.stream)?,
        })
        .await?;
        let tracks = [
            (self.stream.clone(), TrackKind::Audio, TrackDirection::Recv),
            (self.stream.clone(), TrackKind::Video, TrackDirection::Recv),
        ];
        let (rtc, socket, mids) = negotiate(&mut c, &tracks).await?;
        let counters = Arc::new(Counters::default());
        self.keep.push(tokio::spawn(run_peer(
            rtc,
            socket,
            mids,
            false,
            counters.clone(),
            self.clock.clone(),
        )));
        self.keep.push(keepalive(c));
        self.players.push(counters.clone());
        Ok(counters)
    }

    /// Opens the counting window.
    pub fn open(&self) {
        self.clock.open();
    }

    /// Closes the window and waits for late frames: (video frames sent, received by each
    /// player in the order they were added).
    pub async fn close(self) -> (u64, Vec<u64>) {
        self.clock.close();
        tokio::time::sleep(LATE).await;
        let sent = self.publisher.video.load(Ordering::Relaxed);
        let got = self
            .players
            .iter()
            .map(|c| c.video.load(Ordering::Relaxed))
            .collect();
        for k in self.keep {
            k.abort();
        }
        (sent, got)
    }
}

/// A peer of `c` that publishes `stream` on the SFU without sending media: the attacker's way to
/// own an SFU peer. Returns its peer and socket, and a STUN request it would send.
pub async fn attacker_peer(
    c: &mut Client,
    stream: &str,
) -> Result<(Rtc, UdpSocket, Option<Vec<u8>>), String> {
    let tracks = [(stream.to_string(), TrackKind::Audio, TrackDirection::Send)];
    let (mut rtc, socket, _) = negotiate(c, &tracks).await?;
    let mut stun = None;
    for _ in 0..100 {
        match rtc.poll_output() {
            Ok(Output::Transmit(t)) => {
                stun = Some(t.contents.to_vec());
                break;
            }
            Ok(Output::Timeout(t)) => {
                let t = t.max(Instant::now());
                if rtc.handle_input(Input::Timeout(t)).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok((rtc, socket, stun))
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
    let clock = Clock::new();
    let mut pub_counters = Vec::new();
    let mut play_counters = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..players {
        let s = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        set_buffers(&s);
        s.send_to(b"SUB", target).await.map_err(|e| e.to_string())?;
        let counters = Arc::new(Counters::default());
        play_counters.push(counters.clone());
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, _)) = s.recv_from(&mut buf).await {
                // First byte: 1 = the last datagram of a video frame, 2 = audio; then 12
                // bytes of header, then the payload.
                let d = buf.get(..n).unwrap_or_default();
                let kind = match d.first() {
                    Some(1) => TrackKind::Video,
                    Some(2) => TrackKind::Audio,
                    _ => continue,
                };
                counters.received(&clock, kind, d.get(13..).unwrap_or_default());
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..publishers {
        let s = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        set_buffers(&s);
        let counters = Arc::new(Counters::default());
        pub_counters.push(counters.clone());
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let (mut f, mut a) = (0u64, 0u64);
            loop {
                let next_video = start + Duration::from_secs_f64(f as f64 / FPS as f64);
                let next_audio = start + Duration::from_millis(20 * a);
                tokio::time::sleep_until(next_video.min(next_audio)).await;
                if tokio::time::Instant::now() >= next_video {
                    let stamp = clock.now();
                    let frame = video_frame(f, stamp);
                    let chunks: Vec<&[u8]> = frame.chunks(CHUNK).collect();
                    for (i, c) in chunks.iter().enumerate() {
                        let mut d = Vec::with_capacity(c.len() + 13);
                        d.push(if i + 1 == chunks.len() { 1 } else { 0 });
                        d.extend_from_slice(&[0; 12]);
                        d.extend_from_slice(c);
                        let _ = s.send_to(&d, target).await;
                    }
                    counters.sent(&clock, TrackKind::Video, stamp);
                    f += 1;
                }
                if tokio::time::Instant::now() >= next_audio {
                    let stamp = clock.now();
                    let mut d = vec![2u8];
                    d.extend_from_slice(&[0; 12]);
                    d.extend_from_slice(&audio_payload(AUDIO_BYTES, stamp));
                    let _ = s.send_to(&d, target).await;
                    counters.sent(&clock, TrackKind::Audio, stamp);
                    a += 1;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = Window::open(forwarder);
    let cpu0 = self_cpu();
    clock.open();
    tokio::time::sleep(Duration::from_secs(seconds as u64)).await;
    clock.close();
    let (cpu, wall, rss_kib) = window.close(forwarder);
    let loadgen_cpu = self_cpu() - cpu0;
    tokio::time::sleep(LATE).await;
    let (sent, sent_audio) = sum(&pub_counters);
    let (received, received_audio) = sum(&play_counters);
    for t in tasks {
        t.abort();
    }
    Ok(MediaResult {
        legs: publishers as u64 * players as u64,
        cores: cpu / wall,
        loadgen_cores: loadgen_cpu / wall,
        expected_video: sent * players as u64,
        received_video: received,
        expected_audio: sent_audio * players as u64,
        received_audio,
        rss_kib,
        setup_failed: 0,
        latency_ms: latency_ms(&play_counters),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_the_frame_and_makes_no_start_code() {
        for micros in [0, 1, 127, 128, 1 << 40, (1 << 56) - 1] {
            let f = video_frame(3, micros);
            assert_eq!(read_stamp(&f), Some(micros));
            assert!(!f[4..].windows(3).any(|w| w == [0, 0, 1]));
            assert_eq!(
                read_stamp(&audio_payload(AUDIO_BYTES, micros)),
                Some(micros)
            );
        }
        // A payload that carries no stamp is not read as one.
        assert_eq!(
            read_stamp(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f]),
            None
        );
        assert_eq!(read_stamp(&[0x80; 4]), None);
    }
}
