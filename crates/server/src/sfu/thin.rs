//! Overload degrades video, not everything: when a worker cannot keep up, a share of its
//! players get keyframes only, so their video goes on at a reduced rate while every player
//! keeps its audio and the others their full video.
//!
//! - [`Load`] watches the worker's lag in each of its queues ([`Queue`]): how long the oldest
//!   datagram of each read had waited in the socket (the kernel stamps arrivals), and how old
//!   the first packet of each batch handed over by other workers was. While even the smallest
//!   lag of a [`WINDOW`] in either queue is above [`LAG_HIGH`] (that queue never drained: a
//!   backlog, not a burst), or any lag of the window is above [`LAG_SEVERE`], the level (the
//!   share of players thinned) goes up by [`STEP_UP`]; when it is below [`LAG_LOW`] it comes
//!   down by [`STEP_DOWN`]; between, it holds. The lag says "cannot keep up" whatever the
//!   cause (forwarding work, a slow send path, a box shared with other processes), and it
//!   falls when thinning has freed enough, so the level settles.
//! - Each peer has a fixed rank in [0, 1) ([`rank`]); peers ranked below the level are
//!   thinned, so the same players stay thinned while the level holds.
//! - A thinned player's video legs pass only keyframes ([`Gate`]), renumbered to run on
//!   without gaps (a gap would make the player ask for retransmissions that cannot come, then
//!   for keyframes). When the player is no longer thinned, its legs still wait for a keyframe
//!   (a delta frame on top of the missing ones would show garbage), then open; the publisher is
//!   asked for one. A thinned player's own keyframe requests are not passed on: the publisher's
//!   regular keyframes are what it gets, and a storm of requested keyframes would cost every
//!   other player of the stream.
//!
//! - A player whose own receiver reports show more than [`LOSS_HIGH`] of a video track lost
//!   (it, or its link, cannot keep up) is thinned too, for [`CONGESTION_HOLD`] after the last
//!   such report ([`Congestion`]); then it gets full video again, and is thinned again if the
//!   loss comes back. One slow player costs nobody else anything.
//!
//! Time is passed in: the controller runs on virtual time in tests.

use std::time::{Duration, Instant};
use str0m::format::Codec;

/// The span over which the lag is watched.
pub const WINDOW: Duration = Duration::from_millis(200);
/// Lags that raise and lower the level.
pub const LAG_HIGH: Duration = Duration::from_millis(20);
pub const LAG_LOW: Duration = Duration::from_millis(5);
/// A single lag this long also raises it: a worker this far behind has lost real time.
pub const LAG_SEVERE: Duration = Duration::from_millis(250);
/// How much of the players one window thins more, or gives back. Small steps up: players
/// given their video back ask for keyframes, a burst that reads as lag for a window or two;
/// with a quarter per window (tried) the level overshot to everyone and swung between half
/// and all (30 x 30 at 1.4 times the capacity: median player 5.9 fps; with 0.1, 12.8 fps).
pub const STEP_UP: f64 = 0.1;
pub const STEP_DOWN: f64 = 0.05;

/// Where a worker's work waits.
#[derive(Clone, Copy, Debug)]
pub enum Queue {
    /// Its UDP socket.
    Socket = 0,
    /// What other workers handed it.
    Hops = 1,
}

/// A worker's load controller.
#[derive(Debug, Default)]
pub struct Load {
    start: Option<Instant>,
    /// The smallest lag of this window's reads from each queue (`None`: no read yet).
    lag: [Option<Duration>; 2],
    /// The largest lag of this window's reads, any queue.
    worst: Duration,
    /// The share of this worker's players that get keyframes only.
    pub level: f64,
}

impl Load {
    /// A read from `queue` at `now` found its oldest item `lag` old (`None`: no stamp, or
    /// nothing was read); at the end of a window, the new level if it changed.
    pub fn record(&mut self, lag: Option<(Queue, Duration)>, now: Instant) -> Option<f64> {
        let start = *self.start.get_or_insert(now);
        if let Some((q, l)) = lag {
            let slot = &mut self.lag[q as usize];
            *slot = Some(slot.map_or(l, |m| m.min(l)));
            self.worst = self.worst.max(l);
        }
        if now.saturating_duration_since(start) < WINDOW {
            return None;
        }
        // The queue that stayed furthest behind; a queue not read from: nothing waited.
        let lag = self
            .lag
            .iter_mut()
            .map(|l| l.take().unwrap_or_default())
            .max()
            .unwrap_or_default();
        let worst = std::mem::take(&mut self.worst);
        self.start = Some(now);
        tracing::trace!(?lag, ?worst, level = self.level, "SFU load window");
        let before = self.level;
        if lag > LAG_HIGH || worst > LAG_SEVERE {
            self.level = (self.level + STEP_UP).min(1.0);
        } else if lag < LAG_LOW {
            self.level = (self.level - STEP_DOWN).max(0.0);
        }
        (self.level != before).then_some(self.level)
    }
}

/// How often the SFU's peers compute their tracks' statistics (receiver-reported loss).
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Loss on a player's video track, from its receiver reports, that thins that player.
pub const LOSS_HIGH: f32 = 0.1;
/// How long a player stays thinned after its last report of such loss.
pub const CONGESTION_HOLD: Duration = Duration::from_secs(5);

/// What one player's receiver reports say about its video.
#[derive(Debug, Default)]
pub struct Congestion {
    until: Option<Instant>,
}

impl Congestion {
    /// A video track of the player reported `loss` (0..1) at `now`.
    pub fn report(&mut self, loss: f32, now: Instant) {
        if loss > LOSS_HIGH {
            self.until = Some(now + CONGESTION_HOLD);
        }
    }

    /// Whether the player is to be thinned now for its own loss.
    pub fn congested(&self, now: Instant) -> bool {
        self.until.is_some_and(|t| now < t)
    }
}

/// A peer's place in the thinning order, spread evenly over [0, 1) by its connection.
pub fn rank(conn: u64) -> f64 {
    // splitmix64: neighbouring connections get unrelated ranks.
    let mut z = conn.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether an RTP payload of `codec` begins a keyframe (H.264: an SPS or IDR NAL unit, alone,
/// aggregated or the start of a fragmented one; VP8: the first packet of a key frame).
pub fn starts_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::H264 => h264_key(payload),
        Codec::Vp8 => vp8_key(payload),
        _ => false,
    }
}

fn h264_key(p: &[u8]) -> bool {
    let key = |nal: u8| matches!(nal & 0x1f, 5 | 7);
    let Some(&head) = p.first() else {
        return false;
    };
    match head & 0x1f {
        // STAP-A: 16-bit sizes, each followed by a NAL unit.
        24 => {
            let mut at = 1;
            while let (Some(&hi), Some(&lo)) = (p.get(at), p.get(at + 1)) {
                let size = usize::from(u16::from_be_bytes([hi, lo]));
                if p.get(at + 2).is_some_and(|n| key(*n)) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        // FU-A: the start fragment names the NAL type.
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && key(*fu)),
        _ => key(head),
    }
}

fn vp8_key(p: &[u8]) -> bool {
    // Payload descriptor (RFC 7741): X, S and the partition index in the first byte.
    let Some(&b0) = p.first() else {
        return false;
    };
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return false;
    }
    let mut at = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = p.get(1) else {
            return false;
        };
        at = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            at += if p.get(at).is_some_and(|b| b & 0x80 != 0) {
                2
            } else {
                1
            };
        }
        if x & 0x40 != 0 {
            at += 1;
        }
        if x & 0x30 != 0 {
            at += 1;
        }
    }
    // The VP8 payload header: P (bit 0) is 0 for a key frame.
    p.get(at).is_some_and(|h| h & 0x01 == 0)
}

/// What a video leg lets through.
#[derive(Debug, Default)]
pub struct Gate {
    /// Only keyframes pass (thinned now, or waiting for the first keyframe after).
    keys_only: bool,
    /// The source timestamp of the last keyframe begun: its other packets pass too.
    key_ts: Option<u32>,
    /// Packets were dropped since the last one that passed.
    dropped: bool,
}

impl Gate {
    /// Whether a packet passes for a player `thinned` or not; `Some(true)` when packets were
    /// dropped before it (the leg continues its numbering from its last packet).
    pub fn pass(&mut self, thinned: bool, key_start: bool, ts: u32, marker: bool) -> Option<bool> {
        if key_start {
            self.key_ts = Some(ts);
        }
        if thinned {
            self.keys_only = true;
        }
        if !self.keys_only {
            return Some(false);
        }
        if self.key_ts != Some(ts) {
            self.dropped = true;
            return None;
        }
        if !thinned && marker {
            // The keyframe is whole: what follows builds on it.
            self.keys_only = false;
        }
        Some(std::mem::take(&mut self.dropped))
    }

    pub fn keys_only(&self) -> bool {
        self.keys_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_rises_while_backlogged_and_falls_slowly_after() {
        let mut load = Load::default();
        let mut now = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(load.record(None, now), None);
        let near = |l: f64, want: f64| assert!((l - want).abs() < 1e-9, "{l} != {want}");
        // Every read of a window 25 ms or more behind: a step more thinned.
        now += ms(100);
        assert_eq!(load.record(Some((Queue::Socket, ms(30))), now), None);
        now += ms(100);
        near(
            load.record(Some((Queue::Socket, ms(25))), now).unwrap(),
            STEP_UP,
        );
        now += WINDOW;
        near(
            load.record(Some((Queue::Socket, ms(40))), now).unwrap(),
            2.0 * STEP_UP,
        );
        // A burst (one read behind, another caught up) is no backlog.
        now += ms(100);
        load.record(Some((Queue::Socket, ms(200))), now);
        now += ms(100);
        assert_eq!(load.record(Some((Queue::Socket, ms(6))), now), None);
        // Between the thresholds it holds.
        now += WINDOW;
        assert_eq!(load.record(Some((Queue::Socket, ms(10))), now), None);
        // Caught up: given back in small steps; a window without reads counts as caught up.
        now += WINDOW;
        let l = load.record(Some((Queue::Socket, ms(1))), now).unwrap();
        near(l, 2.0 * STEP_UP - STEP_DOWN);
        now += WINDOW;
        let l = load.record(None, now).unwrap();
        near(l, 2.0 * STEP_UP - 2.0 * STEP_DOWN);
        // But a read a quarter of a second behind is overload on its own.
        now += ms(100);
        load.record(Some((Queue::Socket, ms(1))), now);
        load.record(Some((Queue::Socket, ms(300))), now);
        now += ms(100);
        let l = load.record(Some((Queue::Socket, ms(1))), now).unwrap();
        near(l, 3.0 * STEP_UP - 2.0 * STEP_DOWN);
        load.level = 0.4;
        // Hops that never drain count as much as a socket that never does.
        for _ in 0..2 {
            now += WINDOW / 2;
            load.record(Some((Queue::Socket, ms(1))), now);
            load.record(Some((Queue::Hops, ms(50))), now);
        }
        near(load.level, 0.4 + STEP_UP);
        for _ in 0..100 {
            now += WINDOW;
            load.record(Some((Queue::Socket, ms(500))), now);
        }
        assert_eq!(load.level, 1.0);
    }

    #[test]
    fn a_player_losing_video_is_thinned_until_its_loss_has_been_gone_a_while() {
        let mut c = Congestion::default();
        let t0 = Instant::now();
        assert!(!c.congested(t0));
        c.report(0.05, t0);
        assert!(!c.congested(t0), "5 % is tolerated");
        c.report(0.3, t0);
        assert!(c.congested(t0 + CONGESTION_HOLD - Duration::from_millis(1)));
        // A later lossy report extends it; clean ones do not end it early.
        c.report(0.2, t0 + Duration::from_secs(3));
        c.report(0.0, t0 + Duration::from_secs(4));
        assert!(c.congested(t0 + Duration::from_secs(7)));
        assert!(!c.congested(t0 + Duration::from_secs(3) + CONGESTION_HOLD));
    }

    #[test]
    fn ranks_spread_over_the_unit_interval() {
        let ranks: Vec<f64> = (0..1000).map(rank).collect();
        assert!(ranks.iter().all(|r| (0.0..1.0).contains(r)));
        let below_half = ranks.iter().filter(|r| **r < 0.5).count();
        assert!((400..600).contains(&below_half), "{below_half}");
    }

    #[test]
    fn keyframes_are_found_in_h264_and_vp8_payloads() {
        // H.264: SPS, IDR, a STAP-A holding an SPS, FU-A starts of an IDR and of a P slice.
        assert!(starts_keyframe(Codec::H264, &[0x67, 0x42]));
        assert!(starts_keyframe(Codec::H264, &[0x65, 0x88]));
        assert!(starts_keyframe(
            Codec::H264,
            &[0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68]
        ));
        assert!(starts_keyframe(Codec::H264, &[0x7c, 0x85, 0]));
        assert!(
            !starts_keyframe(Codec::H264, &[0x7c, 0x05, 0]),
            "a middle fragment"
        );
        assert!(!starts_keyframe(Codec::H264, &[0x7c, 0x81, 0]), "a P slice");
        assert!(!starts_keyframe(Codec::H264, &[0x41, 0x9a]));
        assert!(!starts_keyframe(Codec::H264, &[]));
        // VP8: S=1, partition 0, no extensions; key frame (P=0) and interframe (P=1).
        assert!(starts_keyframe(Codec::Vp8, &[0x10, 0x50]));
        assert!(!starts_keyframe(Codec::Vp8, &[0x10, 0x51]));
        // With X, I (15-bit picture ID): the payload header comes after 4 bytes.
        assert!(starts_keyframe(Codec::Vp8, &[0x90, 0x80, 0x81, 0x23, 0x50]));
        assert!(
            !starts_keyframe(Codec::Vp8, &[0x00, 0x50]),
            "not a partition start"
        );
        assert!(!starts_keyframe(Codec::Opus, &[0x10, 0x50]));
    }

    #[test]
    fn a_thinned_leg_passes_whole_keyframes_and_reopens_after_one() {
        let mut g = Gate::default();
        // Open: everything passes.
        assert_eq!(g.pass(false, false, 100, true), Some(false));
        // Thinned: deltas dropped, a keyframe's packets pass, the first after drops rebases.
        assert_eq!(g.pass(true, false, 200, true), None);
        assert_eq!(g.pass(true, true, 300, false), Some(true));
        assert_eq!(g.pass(true, false, 300, true), Some(false));
        assert_eq!(g.pass(true, false, 400, true), None);
        // No longer thinned: deltas still wait for the next keyframe, which opens the gate.
        assert_eq!(g.pass(false, false, 500, true), None);
        assert!(g.keys_only());
        assert_eq!(g.pass(false, true, 600, false), Some(true));
        assert_eq!(g.pass(false, false, 600, true), Some(false));
        assert!(!g.keys_only());
        assert_eq!(g.pass(false, false, 700, true), Some(false));
    }
}
