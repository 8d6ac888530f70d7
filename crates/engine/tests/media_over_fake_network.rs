//! The engine's media peer against the server's SFU core, in one process, over a fake network
//! that loses and reorders datagrams, on virtual time: no sockets, threads or clock. The way
//! str0m tests two peers, with the SFU in the middle.
//!
//! A publisher peer sends VP8 frames of the test pattern (each carries its frame number) and
//! audio frames carrying theirs; a player peer receives them through the SFU. Every frame that
//! arrives must be byte for byte the one sent at its media time, video must arrive almost
//! entirely (retransmissions recover the losses), and the decoded pictures must show the
//! frame numbers sent, in order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use zrooms_engine::media::pattern::{read_counter, stream_tag, test_pattern};
use zrooms_engine::media::peer::{Frame, MediaPeer, PeerOutput, VideoCodec};
use zrooms_engine::media::pipeline::is_keyframe;
use zrooms_engine::media::vp8::{Vp8Decoder, Vp8Encoder};
use zrooms_engine::proto::wire::{TrackDirection, TrackKind};
use zrooms_engine::proto::StreamId;
use zrooms_server::sfu::SfuCore;

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
const FPS: u64 = 30;
/// Virtual time the test runs for.
const RUN: Duration = Duration::from_secs(6);

/// Datagrams in flight: each is lost with probability `loss`, else delivered after a base
/// delay plus up to `jitter` (so packets sent together arrive out of order).
/// A datagram in flight: when it arrives, its send order, from, to, bytes.
type Datagram = (Instant, u64, SocketAddr, SocketAddr, Vec<u8>);

struct Network {
    in_flight: BinaryHeap<Reverse<Datagram>>,
    seq: u64,
    rng: u64,
    loss: f64,
    delay: Duration,
    jitter: Duration,
    sent: u64,
    lost: u64,
    /// Datagrams delivered after one sent later on the same path.
    reordered: u64,
    last_delivered: std::collections::HashMap<(SocketAddr, SocketAddr), u64>,
}

impl Network {
    fn random(&mut self) -> f64 {
        // xorshift64*: deterministic, so a failure reproduces.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        self.sent += 1;
        if self.random() < self.loss {
            self.lost += 1;
            return;
        }
        let at = now + self.delay + self.jitter.mul_f64(self.random());
        self.seq += 1;
        self.in_flight.push(Reverse((at, self.seq, from, to, data)));
    }

    /// The next datagram due by `now`.
    fn due(&mut self, now: Instant) -> Option<(SocketAddr, SocketAddr, Vec<u8>)> {
        if self.in_flight.peek().is_some_and(|Reverse(d)| d.0 <= now) {
            let Reverse((_, seq, from, to, data)) = self.in_flight.pop()?;
            let last = self.last_delivered.entry((from, to)).or_default();
            if seq < *last {
                self.reordered += 1;
            }
            *last = (*last).max(seq);
            return Some((from, to, data));
        }
        None
    }
}

/// One end: its peer, its address, and what it received (RTP time → bytes).
struct End {
    peer: MediaPeer,
    addr: SocketAddr,
    video: BTreeMap<u64, Vec<u8>>,
    audio: BTreeMap<u64, Vec<u8>>,
    keyframe_wanted: bool,
    /// A player decodes what it receives, and asks for a keyframe when it cannot (as the
    /// engine's player threads do): RTP time → the frame number the picture shows.
    decoder: Option<Vp8Decoder>,
    pictures: BTreeMap<u64, Option<u32>>,
    /// After frames lost for good, nothing is decoded until a keyframe, asked for again every
    /// 500 ms (as the engine's player does): since when, or when last asked.
    frozen: Option<Instant>,
    /// When frames were lost for good, and when a picture was next shown after each.
    gaps: Vec<Instant>,
    shown_at: Vec<Instant>,
}

impl End {
    fn new(addr: SocketAddr, now: Instant) -> End {
        let mut peer = MediaPeer::default();
        peer.ensure(addr, now);
        End {
            peer,
            addr,
            video: BTreeMap::new(),
            audio: BTreeMap::new(),
            keyframe_wanted: false,
            decoder: None,
            pictures: BTreeMap::new(),
            frozen: None,
            gaps: Vec::new(),
            shown_at: Vec::new(),
        }
    }

    /// Drives the peer at `now` and sends what it produced.
    fn step(&mut self, now: Instant, net: &mut Network) {
        if self.peer.deadline.is_some_and(|d| d <= now) {
            self.peer.timeout(now);
        }
        while let Some(out) = self.peer.poll(now) {
            match out {
                PeerOutput::Transmit {
                    destination,
                    contents,
                } => net.send(now, self.addr, destination, contents),
                PeerOutput::Received {
                    stream_id,
                    kind,
                    data,
                    time_ms,
                    contiguous,
                    ..
                } => {
                    if kind == TrackKind::Video {
                        if !contiguous {
                            self.gaps.push(now);
                            self.frozen.get_or_insert(now);
                        }
                        let rtp_time = (time_ms * 90.0).round() as u64;
                        self.decode(&stream_id, &data, rtp_time, now);
                    }
                    // Keyed by RTP time, in the codec's clock.
                    let (store, ticks_per_ms) = match kind {
                        TrackKind::Video => (&mut self.video, 90.0),
                        TrackKind::Audio => (&mut self.audio, 48.0),
                    };
                    store.insert((time_ms * ticks_per_ms).round() as u64, data.to_vec());
                }
                PeerOutput::KeyframeWanted { .. } => self.keyframe_wanted = true,
                PeerOutput::Figures(_) => {}
            }
        }
    }
}

impl End {
    fn decode(&mut self, stream: &StreamId, data: &[u8], rtp_time: u64, now: Instant) {
        let Some(decoder) = self.decoder.as_mut() else {
            return;
        };
        if let Some(asked) = self.frozen {
            if !is_keyframe(VideoCodec::Vp8, data) {
                if now - asked >= Duration::from_millis(500) {
                    self.frozen = Some(now);
                    self.peer.request_keyframe(stream.as_str());
                }
                return;
            }
            self.frozen = None;
        }
        match decoder.decode(data) {
            Some(p) => {
                let counter = read_counter(p.y(), p.width, p.height, p.width as usize);
                self.pictures.insert(rtp_time, counter);
                self.shown_at.push(now);
            }
            None => self.peer.request_keyframe(stream.as_str()),
        }
    }
}

/// Negotiates `end`'s tracks of `stream` with the SFU as connection `conn`.
fn connect(
    end: &mut End,
    sfu: &mut SfuCore,
    conn: u64,
    stream: &StreamId,
    dir: TrackDirection,
    now: Instant,
) {
    let channel = (dir == TrackDirection::Send).then_some(0);
    end.peer.add_tracks(stream, dir, channel);
    let offer = end
        .peer
        .negotiate(now)
        .expect("an offer for the new tracks");
    let answer = sfu.offer(conn, &offer.sdp, offer.tracks, offer.fresh, now);
    assert!(answer.is_ok(), "the SFU answers: {answer:?}");
    end.peer.on_answer(answer);
}

#[test]
fn vp8_and_audio_cross_the_sfu_over_a_lossy_reordering_network() {
    let t0 = Instant::now();
    let sfu_addr = SocketAddr::from(([10, 0, 0, 1], 5000));
    let mut sfu = SfuCore::new(sfu_addr);
    let mut net = Network {
        in_flight: BinaryHeap::new(),
        seq: 0,
        rng: 0x1234_5678_9abc_def1,
        loss: 0.03,
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(15),
        sent: 0,
        lost: 0,
        reordered: 0,
        last_delivered: Default::default(),
    };
    let stream = StreamId::new("s1").unwrap();
    let mut publisher = End::new(SocketAddr::from(([10, 0, 0, 2], 6000)), t0);
    let mut player = End::new(SocketAddr::from(([10, 0, 0, 3], 6000)), t0);
    player.decoder = Some(Vp8Decoder::new().unwrap());
    connect(
        &mut publisher,
        &mut sfu,
        1,
        &stream,
        TrackDirection::Send,
        t0,
    );
    connect(&mut player, &mut sfu, 2, &stream, TrackDirection::Recv, t0);

    let mut encoder = Vp8Encoder::new(WIDTH, HEIGHT, FPS as u32, 600, 90).unwrap();
    let tag = stream_tag(stream.as_str());
    let mut sent_video: BTreeMap<u64, (u32, Vec<u8>)> = BTreeMap::new();
    let mut sent_audio: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let (mut next_video, mut next_audio) = (0u64, 0u64);
    let mut now = t0;
    while now < t0 + RUN {
        // Every datagram due by now, to its end.
        while let Some((from, to, data)) = net.due(now) {
            if to == sfu_addr {
                sfu.datagram(from, &data, now);
            } else if to == publisher.addr {
                publisher.peer.receive(from, &data, now);
            } else if to == player.addr {
                player.peer.receive(from, &data, now);
            }
        }
        let elapsed = now - t0;
        // A video frame every 1/30 s (a keyframe when a player asked), audio every 20 ms.
        if elapsed >= Duration::from_millis(next_video * 1000 / FPS) {
            let n = next_video as u32;
            let keyframe = std::mem::take(&mut publisher.keyframe_wanted) || n == 0;
            let picture = test_pattern(WIDTH, HEIGHT, n, tag);
            if let Some(data) = encoder.encode(&picture, keyframe) {
                let rtp_time = next_video * 90_000 / FPS;
                sent_video.insert(rtp_time, (n, data.clone()));
                publisher.peer.write(Frame {
                    channel: 0,
                    kind: TrackKind::Video,
                    codec: VideoCodec::Vp8,
                    data,
                    rtp_time,
                    captured: now,
                });
            }
            next_video += 1;
        }
        if elapsed >= Duration::from_millis(next_audio * 20) {
            let data: Vec<u8> = (0..80)
                .map(|i| (next_audio as u8).wrapping_add(i))
                .collect();
            let rtp_time = next_audio * 960;
            sent_audio.insert(rtp_time, data.clone());
            publisher.peer.write(Frame {
                channel: 0,
                kind: TrackKind::Audio,
                codec: VideoCodec::default(),
                data,
                rtp_time,
                captured: now,
            });
            next_audio += 1;
        }
        publisher.step(now, &mut net);
        player.step(now, &mut net);
        sfu.tick(now);
        for (to, data) in sfu.take_outgoing() {
            net.send(now, sfu_addr, to, data);
        }
        now += Duration::from_millis(1);
    }

    assert!(
        net.lost > 0,
        "the network lost datagrams ({} sent)",
        net.sent
    );
    assert!(net.reordered > 0, "the network reordered datagrams");
    // Media written before the path was up is not sent: count four seconds from the first
    // frame that came.
    let first_video = *player
        .video
        .keys()
        .next()
        .expect("video reached the player");
    let expected: Vec<&u64> = sent_video
        .keys()
        .filter(|t| **t >= first_video && **t < first_video + 4 * 90_000)
        .collect();
    let arrived = expected
        .iter()
        .filter(|t| player.video.contains_key(t))
        .count();
    assert!(
        arrived * 100 >= expected.len() * 95,
        "video: {arrived} of {} frames arrived ({} of {} datagrams lost)",
        expected.len(),
        net.lost,
        net.sent
    );
    // Every frame that came is the one sent at its time, byte for byte.
    for (t, data) in &player.video {
        let (_, sent) = sent_video.get(t).expect("a frame that was sent");
        assert_eq!(data, sent, "video frame at RTP time {t}");
    }
    for (t, data) in &player.audio {
        assert_eq!(Some(data), sent_audio.get(t), "audio frame at RTP time {t}");
    }
    let first_audio = *player
        .audio
        .keys()
        .next()
        .expect("audio reached the player");
    let audio_expected = sent_audio
        .keys()
        .filter(|t| **t >= first_audio && **t < first_audio + 4 * 48_000)
        .count();
    let audio_arrived = player
        .audio
        .range(first_audio..first_audio + 4 * 48_000)
        .count();
    assert!(
        // Audio is not retransmitted: about 3 % lost on each of the two hops.
        audio_arrived * 100 >= audio_expected * 85,
        "audio: {audio_arrived} of {audio_expected} frames arrived"
    );
    // The pictures decode to the frame numbers sent, in order; only frames before the first
    // keyframe and between a loss and the next keyframe are not shown.
    let mut shown = Vec::new();
    for (t, counter) in &player.pictures {
        let (n, _) = sent_video[t];
        assert_eq!(
            *counter,
            Some(n),
            "the picture at RTP time {t} shows frame {n}"
        );
        shown.push(n);
    }
    assert!(shown.windows(2).all(|w| w[0] < w[1]), "pictures in order");
    // A packet lost on its way and again when retransmitted holds the player's reordering
    // buffer for most of a second, and what it held is not shown: a keyframe is asked for
    // and pictures come back within a second and a half of each such gap.
    for gap in &player.gaps {
        let back = player.shown_at.iter().find(|t| *t > gap);
        assert!(
            back.is_some_and(|t| *t - *gap < Duration::from_millis(1500)),
            "pictures are shown again after the gap at {:?}",
            *gap - t0
        );
    }
    let last = player.shown_at.last().copied().unwrap_or(t0);
    assert!(
        t0 + RUN - last < Duration::from_millis(500),
        "pictures to the end"
    );
    assert!(
        shown.len() * 100 >= player.video.len() * 60,
        "{} of {} received frames decoded ({} gaps)",
        shown.len(),
        player.video.len(),
        player.gaps.len()
    );
}
