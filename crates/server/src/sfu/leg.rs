//! A peer of the SFU, and one forwarded track as a player receives it ([`Leg`]).

use crate::state::ConnId;
use std::collections::HashMap;
use std::time::Instant;
use str0m::media::{Mid, Pt};
use str0m::rtp::Ssrc;
use str0m::Rtc;
use zrooms_proto::wire::TrackSpec;

/// The SFU side of a peer: ICE-lite, RTP mode (packets in and out, no frames), with the
/// codecs every client decodes (`zrooms_proto::media`). Browsers offer more (VP9, AV1, other
/// H.264 profiles, RED, ulpfec); the answer leaves those out, so a browser publishes in one of
/// these. RTX (NACK), TWCC and PLI/FIR are str0m's defaults.
pub(super) fn peer_config() -> str0m::RtcConfig {
    zrooms_proto::media::with_codecs(Rtc::builder().set_ice_lite(true))
        .set_rtp_mode(true)
        // Each player track's loss, from its receiver reports: a player that cannot keep up
        // gets keyframes only for a while (`thin::Congestion`).
        .set_stats_interval(Some(super::thin::STATS_INTERVAL))
}

pub(super) struct Peer {
    pub rtc: Rtc,
    /// The app of the connection's session.
    pub app_id: u32,
    /// The local ICE ufrag, under which [`Sfu::by_ufrag`] finds this peer.
    pub ufrag: String,
    /// Source addresses learned for this peer (at most [`MAX_ADDRS_PER_PEER`]).
    pub addrs: usize,
    pub tracks: HashMap<Mid, TrackSpec>,
    pub last_keyframe_request: HashMap<Mid, Instant>,
    /// The forwarding state of each player track written to.
    pub legs: HashMap<Mid, Leg>,
    /// Player tracks whose publisher's codec this peer did not negotiate (told once per offer).
    pub no_codec: std::collections::HashSet<Mid>,
    /// Where notices for this peer's session go.
    pub notices: Option<super::Notices>,
    pub deadline: Instant,
    /// Place in the thinning order ([`super::thin::rank`]) and whether this player gets
    /// keyframes only now.
    pub rank: f64,
    pub thinned: bool,
    /// What this player's own receiver reports say.
    pub congestion: super::thin::Congestion,
}

impl Peer {
    /// Whether this player gets keyframes only now: ranked below the worker's thinning
    /// `level`, or congested by its own receiver reports.
    pub fn should_thin(&self, level: f64, now: Instant) -> bool {
        self.rank < level || self.congestion.congested(now)
    }
}

/// Where a leg's packets come from: a publisher's peer and its stream's SSRC.
pub(super) type Source = (ConnId, Ssrc);

/// One published track as one player track receives it. The player's stream has its own
/// sequence numbers and timestamps: the source's, shifted by offsets that are set when the
/// leg starts and moved when its source changes, so the player sees one stream that goes on
/// (one SSRC, sequence numbers counting up by one, time moving with the wall clock), never
/// one that jumps back (libwebrtc drops packets that seem older than half the sequence space).
pub(super) struct Leg {
    pub source: Source,
    /// The player track's stream: written by SSRC (str0m finds a stream by mid with a scan
    /// over the peer's streams, once per packet per leg otherwise).
    pub ssrc: Ssrc,
    /// The source's payload type and the player's for the same codec.
    pub pt: (Pt, Pt),
    /// The player's sequence number is the source's plus this.
    pub seq_offset: i64,
    /// The player's timestamp is the source's plus this (modulo 2^32).
    pub ts_offset: u32,
    /// The first sequence number of the current source: anything the source sent before it
    /// (reordered or retransmitted) would land on numbers the player already had.
    pub floor: u64,
    /// The highest sequence number written, its timestamp and when it was written.
    pub last_seq: u64,
    pub last_ts: u32,
    pub last_at: Instant,
    /// What passes while the player is thinned and after (video only).
    pub gate: super::thin::Gate,
}

/// The first sequence number of a new leg: low enough that the rollover counter is 0 for the
/// first 49,000 packets (the receiver assumes 0; nothing signals another), not always the same.
fn first_seq(ssrc: Ssrc) -> u64 {
    1 + (*ssrc as u64 & 0x3fff)
}

impl Leg {
    pub fn new(source: Source, pt: (Pt, Pt), src_seq: u64, player_ssrc: Ssrc, now: Instant) -> Leg {
        let start = first_seq(player_ssrc);
        Leg {
            source,
            ssrc: player_ssrc,
            pt,
            seq_offset: start as i64 - src_seq as i64,
            ts_offset: 0,
            floor: start,
            last_seq: start.saturating_sub(1),
            last_ts: 0,
            last_at: now,
            gate: Default::default(),
        }
    }

    /// Continues the player's stream from a new source: the next packet follows the last one
    /// written, and its time is the last one's plus the wall-clock time since (at least one
    /// tick), in the codec's clock rate.
    pub fn rebase(&mut self, source: Source, src_seq: u64, src_ts: u32, rate: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last_at);
        let ticks = ((elapsed.as_micros() as u64 * rate as u64) / 1_000_000).max(1) as u32;
        self.source = source;
        self.floor = self.last_seq + 1;
        self.seq_offset = self.floor as i64 - src_seq as i64;
        self.ts_offset = self.last_ts.wrapping_add(ticks).wrapping_sub(src_ts);
    }

    /// The player's sequence number and timestamp for a source packet, or `None` for a packet
    /// older than the leg (sent before it started or before its source changed).
    pub fn map(&mut self, src_seq: u64, src_ts: u32, now: Instant) -> Option<(u64, u32)> {
        let seq = u64::try_from(src_seq as i64 + self.seq_offset)
            .ok()
            .filter(|s| *s >= self.floor)?;
        let ts = src_ts.wrapping_add(self.ts_offset);
        if seq > self.last_seq {
            self.last_seq = seq;
            self.last_ts = ts;
            self.last_at = now;
        }
        Some((seq, ts))
    }
}
