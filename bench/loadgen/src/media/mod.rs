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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zrooms_proto::wire::*;

mod baseline;
mod net;
mod peer;
mod probe;

pub use baseline::udp_baseline;
pub use net::set_buffers;
use net::*;
use peer::*;
pub use probe::{attacker_peer, Probe};

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
    /// Whether publishers send yet ([`Clock::held`]).
    sending: std::sync::atomic::AtomicBool,
}

impl Clock {
    fn new() -> Arc<Clock> {
        Arc::new(Clock {
            epoch: Instant::now(),
            open: AtomicU64::new(u64::MAX),
            close: AtomicU64::new(u64::MAX),
            sending: true.into(),
        })
    }

    /// A clock whose publishers hold their media until [`Clock::release`]: with hundreds of
    /// players to set up, publishers already sending made the load generator spend its CPU
    /// forwarding to the players set up so far, and the rest took minutes to join.
    fn held() -> Arc<Clock> {
        let c = Clock::new();
        c.sending.store(false, Ordering::Relaxed);
        c
    }

    fn release(&self) {
        self.sending.store(true, Ordering::Relaxed);
    }

    fn sending(&self) -> bool {
        self.sending.load(Ordering::Relaxed)
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
    /// Each player's video and audio frames received in time.
    pub per_player: Vec<(u64, u64)>,
    /// What each player should have received: video and audio frames of every stream.
    pub per_player_expected: (u64, u64),
    /// Streams each player plays, and the window's length in seconds.
    pub streams: u32,
    pub seconds: f64,
}

impl MediaResult {
    pub fn video_loss(&self) -> f64 {
        1.0 - self.received_video as f64 / self.expected_video.max(1) as f64
    }
    pub fn audio_loss(&self) -> f64 {
        1.0 - self.received_audio as f64 / self.expected_audio.max(1) as f64
    }

    /// Video frames a second per stream that players got: the lowest, the 10th percentile and
    /// the median over players.
    pub fn fps_spread(&self) -> (f64, f64, f64) {
        let per = (self.streams.max(1) as f64) * self.seconds.max(1e-9);
        let mut fps: Vec<f64> = self.per_player.iter().map(|p| p.0 as f64 / per).collect();
        (
            crate::client::pct(&mut fps, 0.0),
            crate::client::pct(&mut fps, 10.0),
            crate::client::pct(&mut fps, 50.0),
        )
    }

    /// The largest share of audio frames one player lost.
    pub fn worst_audio_loss(&self) -> f64 {
        let expected = self.per_player_expected.1.max(1) as f64;
        self.per_player
            .iter()
            .map(|p| 1.0 - p.1 as f64 / expected)
            .fold(0.0, f64::max)
    }

    /// Players that got no video frame at all while some were sent.
    pub fn dead_players(&self) -> usize {
        let sent = self.per_player_expected.0;
        self.per_player
            .iter()
            .filter(|p| sent > 0 && p.0 == 0)
            .count()
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

/// Each player's video and audio frames received in time.
fn per_player(cs: &[Arc<Counters>]) -> Vec<(u64, u64)> {
    cs.iter()
        .map(|c| {
            (
                c.video.load(Ordering::Relaxed),
                c.audio.load(Ordering::Relaxed),
            )
        })
        .collect()
}

fn sum(cs: &[Arc<Counters>]) -> (u64, u64) {
    cs.iter().fold((0, 0), |(v, a), c| {
        (
            v + c.video.load(Ordering::Relaxed),
            a + c.audio.load(Ordering::Relaxed),
        )
    })
}

// size: one scenario read top to bottom: servers, publishers, players, the window, the late wait, the counts.
/// `publishers` streams in one room, each played by all `players`, through the SFU.
pub async fn sfu(
    server: &Server,
    publishers: u32,
    players: u32,
    seconds: u32,
) -> Result<MediaResult, String> {
    let room = "bench-media";
    let clock = Clock::held();
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
    // Everyone is set up: media starts, and the first keyframes go round before the window
    // opens.
    clock.release();
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
        per_player: per_player(&play_counters),
        per_player_expected: (sent, sent_audio),
        streams: publishers,
        seconds: seconds as f64,
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
