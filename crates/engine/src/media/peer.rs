//! The engine's media peer without threads, sockets or clock: one str0m peer connection
//! carrying every published and played track, and its negotiation with the server's SFU.
//!
//! Inputs come with the time (`now`), the way str0m takes them: track changes
//! ([`MediaPeer::add_tracks`], [`MediaPeer::stop_tracks`]), the SFU's answer, datagrams,
//! timeouts and encoded frames. [`MediaPeer::negotiate`] returns an offer for the server and
//! touches nothing else; [`MediaPeer::poll`] returns what the peer produced: datagrams, received
//! frames, keyframe requests for a channel, per-track figures, the next deadline. The engine's
//! driver feeds it from its socket and threads (`media/mod.rs`); tests feed it from a fake
//! network against the SFU core (`tests/media_over_fake_network.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use zrooms_proto::wire::{TrackDirection, TrackKind, TrackSpec};
use zrooms_proto::{ErrorCode, StreamId};

pub use super::pipeline::{Encoded as Frame, VideoCodec};

/// How often per-track figures are produced (ZEGO reports quality every 3 s).
pub const QUALITY_INTERVAL: Duration = Duration::from_secs(3);
/// Keyframe requests for gaps in one received video track, at most this often.
const GAP_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
/// Stopped m-lines a peer may carry before it is rebuilt with only its live tracks.
const RETIRED_LIMIT: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TrackState {
    /// Waiting for the next offer.
    ToAdd,
    /// In the offer in flight.
    Negotiating,
    Active,
    /// To be removed in the next offer.
    ToStop,
    /// Removed in the offer in flight.
    Stopping,
}

struct Track {
    mid: Option<Mid>,
    stream_id: StreamId,
    kind: TrackKind,
    direction: TrackDirection,
    channel: Option<usize>,
    state: TrackState,
    /// Frames through this track since the last figures, and the byte count then.
    frames: u64,
    bytes_at_last_stats: u64,
    last_stats: Option<Instant>,
    /// When a keyframe was last asked for because a received frame had a gap.
    last_gap_request: Option<Instant>,
}

/// An SDP offer for the server, with the role of each m-line.
#[derive(Debug)]
pub struct Offer {
    pub sdp: String,
    pub tracks: Vec<TrackSpec>,
    /// From a new peer that replaces the server's current one.
    pub fresh: bool,
}

/// One track's figures over the last interval.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackFigures {
    pub stream_id: StreamId,
    pub kind: TrackKind,
    pub direction: TrackDirection,
    pub channel: Option<usize>,
    pub kbps: f64,
    pub fps: f64,
    pub bytes: u64,
    pub rtt: Option<Duration>,
    pub loss: Option<f32>,
}

/// What the peer produced.
pub enum PeerOutput {
    /// A datagram to send.
    Transmit {
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// A frame of a played stream. `first`: the first of its kind for that stream.
    Received {
        stream_id: StreamId,
        kind: TrackKind,
        codec: VideoCodec,
        data: Arc<[u8]>,
        /// Media time, in milliseconds.
        time_ms: f64,
        first: bool,
        /// False for the first frame after packets that were lost for good: a video decoder
        /// waits for the next keyframe (one was asked for).
        contiguous: bool,
    },
    /// A player asked for a keyframe of the stream published on `channel`.
    KeyframeWanted {
        channel: usize,
    },
    Figures(TrackFigures),
}

/// See the module's documentation.
#[derive(Default)]
pub struct MediaPeer {
    rtc: Option<Rtc>,
    local: Option<SocketAddr>,
    tracks: Vec<Track>,
    pending: Option<SdpPendingOffer>,
    in_flight: bool,
    /// m-lines of stopped streams in the current peer: they stay in every later offer.
    retired: usize,
    /// The next offer comes from a new peer that replaces the server's current one.
    fresh: bool,
    /// Streams whose first frame of each kind has been seen.
    first_seen: std::collections::HashSet<(StreamId, TrackKind)>,
    /// When the peer next wants [`MediaPeer::timeout`].
    pub deadline: Option<Instant>,
}

/// A peer with the codecs the engine encodes and decodes, which are the ones the SFU answers
/// with (`zrooms_proto::media`).
fn new_rtc(local: SocketAddr, now: Instant) -> Rtc {
    let config = Rtc::builder().set_stats_interval(Some(QUALITY_INTERVAL));
    let mut rtc = zrooms_proto::media::with_codecs(config).build(now);
    match Candidate::host(local, "udp") {
        Ok(c) => {
            rtc.add_local_candidate(c);
        }
        Err(e) => tracing::warn!("host candidate {local}: {e}"),
    }
    rtc
}

impl MediaPeer {
    /// The local UDP address once the peer exists.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Creates the peer connection on first use, with `local` as its host candidate.
    pub fn ensure(&mut self, local: SocketAddr, now: Instant) {
        if self.rtc.is_none() {
            self.rtc = Some(new_rtc(local, now));
            self.local = Some(local);
        }
    }

    /// Tracks wait for a peer (the driver binds a socket and calls [`MediaPeer::ensure`]).
    pub fn needs_peer(&self) -> bool {
        self.rtc.is_none() && !self.tracks.is_empty()
    }

    /// An audio and a video track of `stream_id`, in the next offer.
    pub fn add_tracks(
        &mut self,
        stream_id: &StreamId,
        direction: TrackDirection,
        channel: Option<usize>,
    ) {
        for kind in [TrackKind::Audio, TrackKind::Video] {
            self.tracks.push(Track {
                mid: None,
                stream_id: stream_id.clone(),
                kind,
                direction,
                channel,
                state: TrackState::ToAdd,
                frames: 0,
                bytes_at_last_stats: 0,
                last_stats: None,
                last_gap_request: None,
            });
        }
    }

    /// The tracks of `stream_id` in `direction` go in the next offer (at once if never
    /// offered).
    pub fn stop_tracks(&mut self, stream_id: &StreamId, direction: TrackDirection) {
        if direction == TrackDirection::Recv {
            self.first_seen.retain(|(s, _)| s != stream_id);
        }
        self.tracks.retain_mut(|t| {
            if t.stream_id != *stream_id || t.direction != direction {
                return true;
            }
            match t.state {
                // Never offered: just forget it.
                TrackState::ToAdd => false,
                TrackState::Active | TrackState::Negotiating => {
                    t.state = TrackState::ToStop;
                    true
                }
                TrackState::ToStop | TrackState::Stopping => true,
            }
        });
    }

    /// An offer for the pending track changes, when there are some and none is in flight.
    /// Without tracks the peer goes (the server's side times out) and the next stream starts a
    /// new one.
    pub fn negotiate(&mut self, now: Instant) -> Option<Offer> {
        if self.in_flight {
            return None;
        }
        if self.tracks.is_empty() {
            if let Some(mut rtc) = self.rtc.take() {
                rtc.disconnect();
                self.local = None;
                self.deadline = None;
                self.retired = 0;
                self.fresh = true;
            }
            return None;
        }
        let changes = self
            .tracks
            .iter()
            .any(|t| matches!(t.state, TrackState::ToAdd | TrackState::ToStop));
        if !changes || self.rtc.is_none() {
            return None;
        }
        let stopping = self
            .tracks
            .iter()
            .filter(|t| t.state == TrackState::ToStop)
            .count();
        if self.retired + stopping > RETIRED_LIMIT {
            self.rebuild(now);
        }
        let (sdp, pending) = self.apply_changes()?;
        let tracks: Vec<TrackSpec> = self
            .tracks
            .iter()
            .filter(|t| matches!(t.state, TrackState::Negotiating | TrackState::Active))
            .filter_map(|t| {
                Some(TrackSpec {
                    mid: t.mid?.to_string(),
                    stream_id: t.stream_id.clone(),
                    kind: t.kind,
                    direction: t.direction,
                })
            })
            .collect();
        self.pending = Some(pending);
        self.in_flight = true;
        let fresh = std::mem::take(&mut self.fresh);
        let (bytes, n, retired) = (sdp.len(), tracks.len(), self.retired);
        tracing::debug!(bytes, tracks = n, retired, fresh, "media offer");
        Some(Offer { sdp, tracks, fresh })
    }

    /// Adds the tracks to add and stops the tracks to stop, in one SDP change.
    fn apply_changes(&mut self) -> Option<(String, SdpPendingOffer)> {
        let mut api = self.rtc.as_mut()?.sdp_api();
        for t in &mut self.tracks {
            match t.state {
                TrackState::ToAdd => {
                    let kind = match t.kind {
                        TrackKind::Audio => MediaKind::Audio,
                        TrackKind::Video => MediaKind::Video,
                    };
                    let dir = match t.direction {
                        TrackDirection::Send => Direction::SendOnly,
                        TrackDirection::Recv => Direction::RecvOnly,
                    };
                    let stream = Some(t.stream_id.to_string());
                    t.mid = Some(api.add_media(kind, dir, stream, None, None));
                    t.state = TrackState::Negotiating;
                }
                TrackState::ToStop => {
                    if let Some(mid) = t.mid {
                        api.stop_media(mid);
                        self.retired += 1;
                    }
                    t.state = TrackState::Stopping;
                }
                _ => {}
            }
        }
        let (offer, pending) = api.apply()?;
        Some((offer.to_sdp_string(), pending))
    }

    /// Replaces the peer with a new one carrying only the live tracks, so stopped streams'
    /// m-lines do not pile up in the SDP: every live track is offered again (on the same UDP
    /// socket) and the server swaps its side of the peer for the new one.
    fn rebuild(&mut self, now: Instant) {
        let (Some(local), Some(old)) = (self.local, self.rtc.as_mut()) else {
            return;
        };
        old.disconnect();
        self.rtc = Some(new_rtc(local, now));
        self.tracks
            .retain(|t| !matches!(t.state, TrackState::ToStop | TrackState::Stopping));
        for t in &mut self.tracks {
            t.state = TrackState::ToAdd;
            t.mid = None;
        }
        self.retired = 0;
        self.fresh = true;
    }

    /// The server's answer to the offer in flight. A refused offer leaves nothing half-open:
    /// its new tracks are dropped.
    pub fn on_answer(&mut self, answer: Result<String, ErrorCode>) {
        self.in_flight = false;
        let pending = self.pending.take();
        let applied = match (answer, pending, self.rtc.as_mut()) {
            (Ok(sdp), Some(pending), Some(rtc)) => match SdpAnswer::from_sdp_string(&sdp) {
                Ok(answer) => rtc.sdp_api().accept_answer(pending, answer).is_ok(),
                Err(_) => false,
            },
            (Err(code), _, _) => {
                tracing::warn!("media offer refused: {code}");
                false
            }
            _ => false,
        };
        let newly_active: Vec<Mid> = self
            .tracks
            .iter()
            .filter(|t| t.state == TrackState::Negotiating && t.direction == TrackDirection::Recv)
            .filter_map(|t| t.mid)
            .collect();
        self.tracks.retain_mut(|t| match t.state {
            TrackState::Negotiating if applied => {
                t.state = TrackState::Active;
                true
            }
            TrackState::Negotiating | TrackState::Stopping => false,
            _ => true,
        });
        if let (true, Some(rtc)) = (applied, self.rtc.as_mut()) {
            // Player tracks never send: their send streams only cost time.
            zrooms_proto::media::drop_send_streams(rtc, newly_active);
        }
    }

    /// A datagram for the peer.
    pub fn receive(&mut self, source: SocketAddr, data: &[u8], now: Instant) {
        let (Some(rtc), Some(local)) = (self.rtc.as_mut(), self.local) else {
            return;
        };
        let Ok(contents) = data.try_into() else {
            return;
        };
        let receive = Receive {
            proto: Protocol::Udp,
            source,
            destination: local,
            contents,
        };
        if let Err(e) = rtc.handle_input(Input::Receive(now, receive)) {
            tracing::debug!("media input: {e}");
        }
    }

    pub fn timeout(&mut self, now: Instant) {
        if let Some(rtc) = self.rtc.as_mut() {
            let _ = rtc.handle_input(Input::Timeout(now));
        }
    }

    /// Writes an encoded frame into its channel's active track (dropped when there is none).
    pub fn write(&mut self, f: Frame) {
        let Some(rtc) = self.rtc.as_mut() else {
            return;
        };
        let active = |t: &&mut Track| {
            t.state == TrackState::Active && t.channel == Some(f.channel) && t.kind == f.kind
        };
        let Some(track) = self.tracks.iter_mut().find(active) else {
            return;
        };
        let Some(writer) = track.mid.and_then(|mid| rtc.writer(mid)) else {
            return;
        };
        track.frames += 1;
        let (codec, clock) = match (f.kind, f.codec) {
            (TrackKind::Audio, _) => (Codec::Opus, Frequency::FORTY_EIGHT_KHZ),
            (TrackKind::Video, VideoCodec::H264) => (Codec::H264, Frequency::NINETY_KHZ),
            (TrackKind::Video, VideoCodec::Vp8) => (Codec::Vp8, Frequency::NINETY_KHZ),
        };
        let pt = writer.payload_params().find(|p| p.spec().codec == codec);
        let Some(pt) = pt.map(|p| p.pt()) else {
            return;
        };
        let time = MediaTime::new(f.rtp_time, clock);
        if let Err(err) = writer.write(pt, f.captured, time, f.data) {
            tracing::debug!("write: {err}");
        }
    }

    /// Asks the publisher of a played stream for a keyframe (its decoder lost its place).
    pub fn request_keyframe(&mut self, stream_id: &str) {
        let Some(rtc) = self.rtc.as_mut() else {
            return;
        };
        let mid = self
            .tracks
            .iter()
            .find(|t| {
                t.state == TrackState::Active
                    && t.direction == TrackDirection::Recv
                    && t.kind == TrackKind::Video
                    && t.stream_id.as_str() == stream_id
            })
            .and_then(|t| t.mid);
        if let Some(mut writer) = mid.and_then(|m| rtc.writer(m)) {
            let _ = writer.request_keyframe(None, KeyframeRequestKind::Pli);
        }
    }

    /// The peer's next output, or `None` when it waits for [`MediaPeer::deadline`] (or has no
    /// peer). `now` is when the output is taken (a gap's keyframe request is paced by it).
    pub fn poll(&mut self, now: Instant) -> Option<PeerOutput> {
        loop {
            let Some(rtc) = self.rtc.as_mut() else {
                self.deadline = None;
                return None;
            };
            let event = match rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.deadline = Some(t);
                    return None;
                }
                Ok(Output::Transmit(t)) => {
                    let (destination, contents) = (t.destination, t.contents.to_vec());
                    return Some(PeerOutput::Transmit {
                        destination,
                        contents,
                    });
                }
                Ok(Output::Event(ev)) => ev,
                Err(e) => {
                    tracing::warn!("peer connection failed: {e}");
                    self.deadline = None;
                    return None;
                }
            };
            if let Some(out) = self.on_event(event, now) {
                return Some(out);
            }
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) -> Option<PeerOutput> {
        match event {
            Event::MediaData(data) => self.received(data, now),
            Event::KeyframeRequest(req) => {
                let sent =
                    |t: &&Track| t.mid == Some(req.mid) && t.direction == TrackDirection::Send;
                let channel = self.tracks.iter().find(sent).and_then(|t| t.channel)?;
                Some(PeerOutput::KeyframeWanted { channel })
            }
            Event::MediaEgressStats(s) => self.figures(s.mid, s.bytes, s.rtt, s.loss, s.timestamp),
            Event::MediaIngressStats(s) => self.figures(s.mid, s.bytes, s.rtt, s.loss, s.timestamp),
            _ => None,
        }
    }

    /// A frame of a played stream. A video frame after lost packets (not recovered by
    /// retransmission) does not decode cleanly until the next keyframe: one is asked for at
    /// once, at most every [`GAP_KEYFRAME_INTERVAL`] (the server throttles too).
    fn received(&mut self, data: str0m::media::MediaData, now: Instant) -> Option<PeerOutput> {
        let rtc = self.rtc.as_mut()?;
        let played =
            |t: &&mut Track| t.mid == Some(data.mid) && t.direction == TrackDirection::Recv;
        let track = self.tracks.iter_mut().find(played)?;
        track.frames += 1;
        let (stream_id, kind) = (track.stream_id.clone(), track.kind);
        let gap_due = track
            .last_gap_request
            .is_none_or(|t| now.saturating_duration_since(t) >= GAP_KEYFRAME_INTERVAL);
        if kind == TrackKind::Video && !data.contiguous && gap_due {
            track.last_gap_request = Some(now);
            if let Some(mut writer) = rtc.writer(data.mid) {
                let _ = writer.request_keyframe(None, KeyframeRequestKind::Pli);
            }
        }
        let first = self.first_seen.insert((stream_id.clone(), kind));
        let codec = match data.params.spec().codec {
            Codec::Vp8 => VideoCodec::Vp8,
            _ => VideoCodec::H264,
        };
        let time_ms = data.time.numer() as f64 * 1000.0 / data.time.denom().max(1) as f64;
        Some(PeerOutput::Received {
            stream_id,
            kind,
            codec,
            data: Arc::clone(&data.data),
            time_ms,
            first,
            contiguous: data.contiguous,
        })
    }

    /// One track's figures since its last ones.
    fn figures(
        &mut self,
        mid: Mid,
        bytes: u64,
        rtt: Option<Duration>,
        loss: Option<f32>,
        at: Instant,
    ) -> Option<PeerOutput> {
        let track = self.tracks.iter_mut().find(|t| t.mid == Some(mid))?;
        let secs = track
            .last_stats
            .map(|t| at.saturating_duration_since(t).as_secs_f64())
            .unwrap_or(QUALITY_INTERVAL.as_secs_f64())
            .max(0.001);
        let kbps = bytes.saturating_sub(track.bytes_at_last_stats) as f64 * 8.0 / 1000.0 / secs;
        let fps = track.frames as f64 / secs;
        track.frames = 0;
        track.bytes_at_last_stats = bytes;
        track.last_stats = Some(at);
        Some(PeerOutput::Figures(TrackFigures {
            stream_id: track.stream_id.clone(),
            kind: track.kind,
            direction: track.direction,
            channel: track.channel,
            kbps,
            fps,
            bytes,
            rtt,
            loss,
        }))
    }

    /// Forgets every track and the peer (the server session is gone).
    pub fn reset(&mut self) {
        if let Some(mut rtc) = self.rtc.take() {
            rtc.disconnect();
        }
        *self = MediaPeer::default();
    }
}
