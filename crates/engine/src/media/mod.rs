//! The engine's media: one str0m peer connection carrying every published and played stream
//! of every room, tracks added and removed as streams start and stop.
//!
//! The engine is always the offerer: [`Media::negotiate`] turns pending track changes into an
//! SDP offer plus a track map for the server, and [`Media::on_answer`] applies the answer. The
//! driver feeds datagrams and time in and drains [`Media::poll`]; encoded frames from the
//! publisher threads go out through [`Media::write`].

pub mod devices;
pub mod pattern;
pub mod pipeline;
pub mod vp8;

use crate::{EngineEvent, MediaEvent};
use pipeline::{
    CustomSources, Encoded, MeterMap, Packet, Player, Publisher, RenderMap, VideoConfig,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::mpsc;
use zrooms_proto::wire::{TrackDirection, TrackKind, TrackSpec};
use zrooms_proto::StreamId;
use zrooms_session::{MediaCmd, Session};

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
    /// Frames through this track since the last stats, and the byte count then.
    frames: u64,
    bytes_at_last_stats: u64,
    last_stats: Option<Instant>,
    /// When a keyframe was last asked for because a received frame had a gap.
    last_gap_request: Option<Instant>,
}

impl Track {
    fn new(
        stream_id: StreamId,
        kind: TrackKind,
        direction: TrackDirection,
        channel: Option<usize>,
    ) -> Track {
        Track {
            mid: None,
            stream_id,
            kind,
            direction,
            channel,
            state: TrackState::ToAdd,
            frames: 0,
            bytes_at_last_stats: 0,
            last_stats: None,
            last_gap_request: None,
        }
    }
}

/// Keyframe requests for gaps in one received video track, at most this often.
const GAP_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// Stopped m-lines a peer may carry before it is rebuilt with only its live tracks.
const RETIRED_LIMIT: usize = 8;

/// A peer with the codecs the engine encodes and decodes, which are the ones the SFU answers
/// with (`zrooms_proto::media`).
fn new_rtc(local: SocketAddr) -> Rtc {
    let config = Rtc::builder().set_stats_interval(Some(QUALITY_INTERVAL));
    let mut rtc = zrooms_proto::media::with_codecs(config).build(Instant::now());
    match Candidate::host(local, "udp") {
        Ok(c) => {
            rtc.add_local_candidate(c);
        }
        Err(e) => tracing::warn!("host candidate {local}: {e}"),
    }
    rtc
}

/// How often quality figures are reported (ZEGO: every 3 s).
pub const QUALITY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3);

/// What the driver must do after draining the peer.
pub struct Transmit {
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

pub struct Media {
    rtc: Option<Rtc>,
    local: Option<SocketAddr>,
    tracks: Vec<Track>,
    pending: Option<SdpPendingOffer>,
    in_flight: bool,
    /// m-lines of stopped streams in the current peer: they stay in every later offer.
    retired: usize,
    /// The next offer comes from a new peer that replaces the server's current one.
    fresh: bool,
    publishers: HashMap<usize, Publisher>,
    players: HashMap<StreamId, Player>,
    /// The latest figures per stream and direction.
    quality: HashMap<(StreamId, TrackDirection), crate::Quality>,
    /// Which kinds (1 audio, 2 video) reported since the stream's last quality event.
    quality_seen: HashMap<(StreamId, TrackDirection), u8>,
    /// Streams whose first packet of each kind has been seen.
    first_seen: HashMap<(StreamId, TrackKind), ()>,
    /// Per channel; applies to the next publish and to the one running.
    video_configs: [VideoConfig; 4],
    audio_configs: [pipeline::AudioConfig; 4],
    /// Channels whose video comes from the app (`enableCustomVideoCapture`).
    custom_video: [bool; 4],
    /// Channels whose audio comes from the app (`enableCustomAudioIO`).
    custom_audio: [bool; 4],
    /// Channels the app previews, and their captures while nothing is published there.
    previews: [bool; 4],
    preview_only: HashMap<usize, Publisher>,
    /// Per channel: (silent, black), applied to the running publisher and the next one.
    mutes: [(bool, bool); 4],
    pub custom_sources: CustomSources,
    pub render: RenderMap,
    pub levels: MeterMap,
    encoded_tx: mpsc::UnboundedSender<Encoded>,
    keyframe_tx: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedSender<EngineEvent>,
    pub deadline: Option<Instant>,
    /// The output playing every played stream while any plays (devices.rs).
    speaker: Option<devices::Speaker>,
    /// The speaker device that failed to open: reported once, not retried for each stream.
    speaker_failed: Option<String>,
}

impl Media {
    pub fn new(
        events: mpsc::UnboundedSender<EngineEvent>,
        encoded_tx: mpsc::UnboundedSender<Encoded>,
        keyframe_tx: mpsc::UnboundedSender<String>,
        render: RenderMap,
        custom_sources: CustomSources,
        levels: MeterMap,
    ) -> Self {
        Media {
            rtc: None,
            local: None,
            tracks: Vec::new(),
            pending: None,
            in_flight: false,
            retired: 0,
            fresh: false,
            publishers: HashMap::new(),
            players: HashMap::new(),
            first_seen: HashMap::new(),
            quality: HashMap::new(),
            quality_seen: HashMap::new(),
            video_configs: [VideoConfig::default(); 4],
            audio_configs: [pipeline::AudioConfig::default(); 4],
            custom_video: [false; 4],
            custom_audio: [false; 4],
            mutes: [(false, false); 4],
            previews: [false; 4],
            preview_only: HashMap::new(),
            custom_sources,
            render,
            levels,
            encoded_tx,
            keyframe_tx,
            events,
            deadline: None,
            speaker: None,
            speaker_failed: None,
        }
    }

    fn device_exception(&self, device_type: u32, e: &devices::DeviceError) {
        tracing::info!(
            device_type,
            device = %e.device_id,
            "device unavailable ({}): using the synthetic source",
            e.reason
        );
        let _ = self
            .events
            .send(EngineEvent::Media(MediaEvent::LocalDeviceException {
                exception: e.exception,
                device_type,
                device_id: e.device_id.clone(),
            }));
    }

    fn settings<T>(&self, f: impl FnOnce(&mut devices::DeviceSettings) -> T) -> Option<T> {
        self.levels.lock().ok().map(|mut l| f(&mut l.devices))
    }

    /// Opens the speaker while streams play and closes it when none do; reopens it when the
    /// app chose another output.
    fn update_speaker(&mut self) {
        let Some((use_devices, wanted)) = self.settings(|d| (d.use_devices, d.speaker.clone()))
        else {
            return;
        };
        let wanted_open = use_devices && !self.players.is_empty();
        if self
            .speaker
            .as_ref()
            .is_some_and(|s| !wanted_open || s.device_id() != wanted)
        {
            self.speaker = None;
            self.settings(|d| d.speaker_running = None);
        }
        if !wanted_open || self.speaker.is_some() || self.speaker_failed.as_ref() == Some(&wanted) {
            return;
        }
        let Some(mix) = self.settings(|d| d.mix.clone()) else {
            return;
        };
        match devices::Speaker::open(&wanted, mix) {
            Ok(speaker) => {
                let running = (
                    speaker.device_id().to_owned(),
                    speaker.frames.clone(),
                    speaker.peak.clone(),
                );
                self.settings(|d| d.speaker_running = Some(running));
                self.speaker = Some(speaker);
                self.speaker_failed = None;
            }
            Err(e) => {
                self.device_exception(devices::device_type::SPEAKER, &e);
                self.speaker_failed = Some(wanted);
            }
        }
    }

    /// Applies changed device choices: the speaker, and microphones released or reopened.
    pub fn apply_devices(&mut self) {
        // A speaker that failed is retried when the app chooses another one (update_speaker
        // compares the choice with the failed device), not on every other change.
        self.update_speaker();
        let Some((enabled, mic, volume)) = self.settings(|d| {
            (
                d.mic_enabled,
                d.microphone.clone(),
                d.capture_volume.clone(),
            )
        }) else {
            return;
        };
        let mut opened = Vec::new();
        let mut failures = Vec::new();
        for (&channel, p) in self.publishers.iter_mut() {
            let Some(tx) = p.device_tx.clone() else {
                continue;
            };
            let stale = p
                .mic
                .as_ref()
                .is_some_and(|m| !enabled || m.device_id != mic);
            if stale {
                p.mic = None;
            }
            if enabled && p.mic.is_none() {
                match devices::open_microphone(&mic, tx, volume.clone()) {
                    Ok(m) => {
                        opened.push((channel, m.device_id.clone()));
                        p.mic = Some(m);
                    }
                    Err(e) => failures.push(e),
                }
            }
        }
        let running: Vec<(usize, String)> = self
            .publishers
            .iter()
            .filter_map(|(c, p)| p.mic.as_ref().map(|m| (*c, m.device_id.clone())))
            .collect();
        self.settings(|d| d.microphones = running.into_iter().collect());
        for e in failures {
            self.device_exception(devices::device_type::MICROPHONE, &e);
        }
    }

    /// The local UDP address once the peer exists; the driver binds it.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Creates the peer connection on first use, with `local` as its host candidate.
    pub fn ensure_peer(&mut self, local: SocketAddr) {
        if self.rtc.is_some() {
            return;
        }
        self.rtc = Some(new_rtc(local));
        self.local = Some(local);
    }

    pub fn needs_peer(&self) -> bool {
        self.rtc.is_none() && !self.tracks.is_empty()
    }

    /// Applies a session decision: start or stop a publisher's or player's tracks.
    pub fn command(&mut self, cmd: MediaCmd) {
        match cmd {
            MediaCmd::StartPublish { channel, stream_id } => {
                for kind in [TrackKind::Audio, TrackKind::Video] {
                    self.tracks.push(Track::new(
                        stream_id.clone(),
                        kind,
                        TrackDirection::Send,
                        Some(channel),
                    ));
                }
                // A preview-only capture of this channel gives way to the publisher, which
                // previews too.
                self.preview_only.remove(&channel);
                let publisher = self.spawn_capture(channel, stream_id.as_str(), true);
                self.publishers.insert(channel, publisher);
            }
            MediaCmd::Mute {
                channel,
                silent,
                black,
            } => {
                if let Some(m) = self.mutes.get_mut(channel) {
                    *m = (silent, black);
                }
                if let Some(p) = self.publishers.get(&channel) {
                    p.silent.store(silent, Ordering::Release);
                    p.black.store(black, Ordering::Release);
                }
            }
            MediaCmd::StopPublish { channel, stream_id } => {
                self.publishers.remove(&channel);
                self.settings(|d| {
                    d.microphones.remove(&channel);
                    d.camera_ids.remove(&channel);
                });
                if self.previews.get(channel).copied().unwrap_or(false) {
                    let capture = self.spawn_capture(channel, stream_id.as_str(), false);
                    self.preview_only.insert(channel, capture);
                }
                if let Ok(mut l) = self.levels.lock() {
                    if let Some(slot) = l.captured.get_mut(channel) {
                        *slot = 0.0;
                    }
                }
                if let Ok(mut map) = self.custom_sources.lock() {
                    if let Some(slot) = map.get_mut(channel) {
                        *slot = None;
                    }
                }
                self.stop_tracks(|t| {
                    t.direction == TrackDirection::Send && t.stream_id == stream_id
                });
            }
            MediaCmd::StartPlay { stream_id } => {
                for kind in [TrackKind::Audio, TrackKind::Video] {
                    self.tracks.push(Track::new(
                        stream_id.clone(),
                        kind,
                        TrackDirection::Recv,
                        None,
                    ));
                }
                self.players.insert(
                    stream_id.clone(),
                    Player::start(
                        stream_id.to_string(),
                        self.render.clone(),
                        self.levels.clone(),
                        self.events.clone(),
                        self.keyframe_tx.clone(),
                    ),
                );
                self.update_speaker();
            }
            MediaCmd::StopPlay { stream_id } => {
                self.players.remove(&stream_id);
                self.settings(|d| {
                    if let Ok(mut mix) = d.mix.lock() {
                        mix.remove(stream_id.as_str());
                    }
                });
                self.update_speaker();
                if let Ok(mut l) = self.levels.lock() {
                    l.remote.remove(stream_id.as_str());
                    l.last_picture.remove(stream_id.as_str());
                }
                self.first_seen.retain(|(s, _), _| *s != stream_id);
                self.stop_tracks(|t| {
                    t.direction == TrackDirection::Recv && t.stream_id == stream_id
                });
            }
        }
    }

    /// Starts the capture thread of `channel`: a publisher (`encode`), or a preview-only
    /// capture of the synthetic source.
    fn spawn_capture(&mut self, channel: usize, stream_id: &str, encode: bool) -> Publisher {
        let app_video = encode && self.custom_video.get(channel).copied().unwrap_or(false);
        let app_audio = encode && self.custom_audio.get(channel).copied().unwrap_or(false);
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        if app_video || app_audio {
            if let Ok(mut map) = self.custom_sources.lock() {
                if let Some(slot) = map.get_mut(channel) {
                    *slot = Some(tx.clone());
                }
            }
        }
        // Devices feed the publisher the way the app's custom capture does; where one is
        // missing or fails, the synthetic source stays and the app is told.
        let settings = self
            .settings(|d| {
                (
                    d.use_devices,
                    d.mic_enabled,
                    d.microphone.clone(),
                    d.cameras.get(channel).cloned().unwrap_or_default(),
                    d.capture_volume.clone(),
                )
            })
            .unwrap_or_default();
        let (use_devices, mic_enabled, mic_id, camera_id, volume) = settings;
        let config = self.video_configs.get(channel).copied().unwrap_or_default();
        let (mut mic, mut camera, mut device_audio) = (None, None, false);
        if use_devices && !app_video {
            match devices::open_camera(
                &camera_id,
                (config.width, config.height, config.fps),
                tx.clone(),
            ) {
                Ok(c) => camera = Some(c),
                Err(e) => self.device_exception(devices::device_type::CAMERA, &e),
            }
        }
        if use_devices && encode && !app_audio {
            // A released microphone (enableAudioCaptureDevice(false)) sends silence.
            device_audio = true;
            if mic_enabled {
                match devices::open_microphone(&mic_id, tx.clone(), volume) {
                    Ok(m) => mic = Some(m),
                    Err(e) => {
                        self.device_exception(devices::device_type::MICROPHONE, &e);
                        device_audio = false;
                    }
                }
            }
        }
        let custom_video = app_video || camera.is_some();
        let custom_audio = app_audio || device_audio;
        let custom = (custom_video || custom_audio).then_some(rx);
        let mut publisher = Publisher::start(
            channel,
            stream_id,
            (
                self.video_configs.get(channel).copied().unwrap_or_default(),
                self.audio_configs.get(channel).copied().unwrap_or_default(),
            ),
            custom,
            self.mutes.get(channel).copied().unwrap_or_default(),
            pipeline::Sinks {
                out: self.encoded_tx.clone(),
                events: self.events.clone(),
                levels: self.levels.clone(),
            },
            pipeline::Mode {
                encode,
                preview: self.previews.get(channel).copied().unwrap_or(false),
                custom_video,
                custom_audio,
            },
        );
        let (mic_id, cam_id) = (
            mic.as_ref().map(|m| m.device_id.clone()),
            camera.as_ref().map(|c| c.device_id.clone()),
        );
        self.settings(|d| {
            match mic_id {
                Some(id) => d.microphones.insert(channel, id),
                None => d.microphones.remove(&channel),
            };
            match cam_id {
                Some(id) => d.camera_ids.insert(channel, id),
                None => d.camera_ids.remove(&channel),
            };
        });
        publisher.mic = mic;
        publisher.camera = camera;
        publisher.device_tx = device_audio.then_some(tx);
        publisher
    }

    /// `startPreview` / `stopPreview`: the channel's captured pictures go to the app too; with
    /// no publisher on the channel a capture runs for the preview alone.
    pub fn set_preview(&mut self, channel: usize, on: bool) {
        let Some(slot) = self.previews.get_mut(channel) else {
            return;
        };
        *slot = on;
        if let Some(p) = self.publishers.get(&channel) {
            p.preview.store(on, Ordering::Release);
        } else if on {
            if !self.preview_only.contains_key(&channel) {
                let capture = self.spawn_capture(channel, "", false);
                self.preview_only.insert(channel, capture);
            }
        } else {
            self.preview_only.remove(&channel);
        }
    }

    /// `setAudioConfig`: takes effect at once on a running publisher of `channel`.
    pub fn set_audio_config(&mut self, channel: usize, config: pipeline::AudioConfig) {
        if let Some(slot) = self.audio_configs.get_mut(channel) {
            *slot = config;
        }
        if let Some(p) = self.publishers.get(&channel) {
            if let Ok(mut c) = p.audio.lock() {
                *c = config;
            }
        }
    }

    /// `enableCustomAudioIO`: applies to the next publish on `channel`.
    pub fn set_custom_audio(&mut self, channel: usize, enable: bool) {
        if let Some(slot) = self.custom_audio.get_mut(channel) {
            *slot = enable;
        }
    }

    /// `enableCustomVideoCapture`: applies to the next publish on `channel`.
    pub fn set_custom_video(&mut self, channel: usize, enable: bool) {
        if let Some(slot) = self.custom_video.get_mut(channel) {
            *slot = enable;
        }
    }

    /// `setVideoConfig`: takes effect at once on a running publisher of `channel`.
    pub fn set_video_config(&mut self, channel: usize, config: VideoConfig) {
        if let Some(slot) = self.video_configs.get_mut(channel) {
            *slot = config;
        }
        if let Some(p) = self.publishers.get(&channel) {
            if let Ok(mut c) = p.config.lock() {
                *c = config;
            }
        }
    }

    fn stop_tracks(&mut self, pred: impl Fn(&Track) -> bool) {
        let gone: Vec<(StreamId, TrackDirection)> = self
            .tracks
            .iter()
            .filter(|t| pred(t))
            .map(|t| (t.stream_id.clone(), t.direction))
            .collect();
        for key in gone {
            self.quality.remove(&key);
            self.quality_seen.remove(&key);
        }
        self.tracks.retain_mut(|t| {
            if !pred(t) {
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

    /// Builds an offer for pending changes, if none is in flight; returns it with the track map.
    pub fn negotiate(&mut self, session: &mut Session) -> bool {
        if self.in_flight {
            return false;
        }
        if self.tracks.is_empty() {
            // Nothing published or played: the peer goes (the server's side times out), and
            // the next stream starts a new one.
            if let Some(mut rtc) = self.rtc.take() {
                rtc.disconnect();
                self.local = None;
                self.deadline = None;
                self.retired = 0;
                self.fresh = true;
            }
            return false;
        }
        let changes = self
            .tracks
            .iter()
            .any(|t| matches!(t.state, TrackState::ToAdd | TrackState::ToStop));
        if !changes || self.rtc.is_none() {
            return false;
        }
        let stopping = self
            .tracks
            .iter()
            .filter(|t| t.state == TrackState::ToStop)
            .count();
        if self.retired + stopping > RETIRED_LIMIT {
            self.rebuild_peer();
        }
        let Some(rtc) = self.rtc.as_mut() else {
            return false;
        };
        let mut api = rtc.sdp_api();
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
                    t.mid =
                        Some(api.add_media(kind, dir, Some(t.stream_id.to_string()), None, None));
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
        let Some((offer, pending)) = api.apply() else {
            return false;
        };
        let specs: Vec<TrackSpec> = self
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
        let sdp = offer.to_sdp_string();
        tracing::debug!(
            bytes = sdp.len(),
            tracks = specs.len(),
            retired = self.retired,
            fresh = self.fresh,
            "media offer"
        );
        session.send_media_offer(sdp, specs, self.fresh);
        self.fresh = false;
        true
    }

    /// Replaces the peer with a new one carrying only the live tracks, so stopped streams'
    /// m-lines do not pile up in the SDP: every live track is offered again (on the same UDP
    /// socket) and the server swaps its side of the peer for the new one.
    fn rebuild_peer(&mut self) {
        let Some(local) = self.local else {
            return;
        };
        if let Some(mut old) = self.rtc.replace(new_rtc(local)) {
            old.disconnect();
        }
        self.tracks
            .retain(|t| !matches!(t.state, TrackState::ToStop | TrackState::Stopping));
        for t in &mut self.tracks {
            t.state = TrackState::ToAdd;
            t.mid = None;
        }
        self.retired = 0;
        self.fresh = true;
    }

    /// The server's answer to the offer in flight.
    pub fn on_answer(&mut self, answer: Result<String, zrooms_proto::ErrorCode>) {
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
            // A refused offer leaves nothing half-open: its new tracks are dropped.
            TrackState::Negotiating => false,
            TrackState::Stopping => false,
            _ => true,
        });
        if let (true, Some(rtc)) = (applied, self.rtc.as_mut()) {
            // Player tracks never send: their send streams only cost time.
            zrooms_proto::media::drop_send_streams(rtc, newly_active);
        }
    }

    /// A datagram for the peer.
    pub fn receive(&mut self, source: SocketAddr, data: &[u8]) {
        let (Some(rtc), Some(local)) = (self.rtc.as_mut(), self.local) else {
            return;
        };
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: local,
                contents,
            },
        );
        if let Err(e) = rtc.handle_input(input) {
            tracing::debug!("media input: {e}");
        }
    }

    pub fn timeout(&mut self, now: Instant) {
        if let Some(rtc) = self.rtc.as_mut() {
            let _ = rtc.handle_input(Input::Timeout(now));
        }
    }

    /// Writes an encoded frame into its track.
    pub fn write(&mut self, e: Encoded) {
        let Some(rtc) = self.rtc.as_mut() else {
            return;
        };
        let Some(track) = self.tracks.iter_mut().find(|t| {
            t.state == TrackState::Active && t.channel == Some(e.channel) && t.kind == e.kind
        }) else {
            return;
        };
        let Some(mid) = track.mid else {
            return;
        };
        track.frames += 1;
        let Some(writer) = rtc.writer(mid) else {
            return;
        };
        let codec = match (e.kind, e.codec) {
            (TrackKind::Audio, _) => Codec::Opus,
            (TrackKind::Video, pipeline::VideoCodec::H264) => Codec::H264,
            (TrackKind::Video, pipeline::VideoCodec::Vp8) => Codec::Vp8,
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
        else {
            return;
        };
        let time = match e.kind {
            TrackKind::Audio => {
                MediaTime::new(e.rtp_time, str0m::media::Frequency::FORTY_EIGHT_KHZ)
            }
            TrackKind::Video => MediaTime::new(e.rtp_time, str0m::media::Frequency::NINETY_KHZ),
        };
        if let Err(err) = writer.write(pt, e.captured, time, e.data) {
            tracing::debug!("write: {err}");
        }
    }

    /// A player thread could not decode: ask the publisher for a keyframe.
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

    /// Drains the peer: datagrams to send go to `out`; media reaches the players and the
    /// session (first media of a stream makes its player Playing). Returns true when the
    /// session was given something (its outputs must be drained again).
    pub fn poll(&mut self, session: &mut Session, out: &mut Vec<Transmit>) -> bool {
        let mut touched = false;
        loop {
            let Some(rtc) = self.rtc.as_mut() else {
                self.deadline = None;
                return touched;
            };
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.deadline = Some(t);
                    return touched;
                }
                Ok(Output::Transmit(t)) => out.push(Transmit {
                    destination: t.destination,
                    contents: t.contents.to_vec(),
                }),
                Ok(Output::Event(Event::MediaData(data))) => {
                    let Some(track) = self
                        .tracks
                        .iter_mut()
                        .find(|t| t.mid == Some(data.mid) && t.direction == TrackDirection::Recv)
                    else {
                        continue;
                    };
                    track.frames += 1;
                    let (stream_id, kind) = (track.stream_id.clone(), track.kind);
                    // A video frame after lost packets (not recovered by retransmission) does
                    // not decode cleanly until the next keyframe: ask for one now, at most
                    // every GAP_KEYFRAME_INTERVAL (the server throttles too).
                    let now = Instant::now();
                    if kind == TrackKind::Video
                        && !data.contiguous
                        && track
                            .last_gap_request
                            .is_none_or(|t| now.duration_since(t) >= GAP_KEYFRAME_INTERVAL)
                    {
                        track.last_gap_request = Some(now);
                        if let Some(mut writer) = rtc.writer(data.mid) {
                            let _ = writer.request_keyframe(None, KeyframeRequestKind::Pli);
                        }
                    }
                    if self
                        .first_seen
                        .insert((stream_id.clone(), kind), ())
                        .is_none()
                    {
                        let ev = match kind {
                            TrackKind::Video => MediaEvent::PlayerRecvVideoFirstFrame {
                                stream_id: stream_id.to_string(),
                            },
                            TrackKind::Audio => MediaEvent::PlayerRecvAudioFirstFrame {
                                stream_id: stream_id.to_string(),
                            },
                        };
                        let _ = self.events.send(EngineEvent::Media(ev));
                        session.handle_media_received(Instant::now(), &stream_id);
                        touched = true;
                    }
                    let codec = match data.params.spec().codec {
                        Codec::Vp8 => pipeline::VideoCodec::Vp8,
                        _ => pipeline::VideoCodec::H264,
                    };
                    if kind == TrackKind::Video {
                        self.quality
                            .entry((stream_id.clone(), TrackDirection::Recv))
                            .or_default()
                            .video_codec_id = codec.zego_id();
                    }
                    if let Some(player) = self.players.get(&stream_id) {
                        let time_ms =
                            data.time.numer() as f64 * 1000.0 / data.time.denom().max(1) as f64;
                        let _ = player.tx.send(Packet {
                            kind,
                            codec,
                            data: Arc::clone(&data.data),
                            time_ms,
                        });
                    }
                }
                Ok(Output::Event(Event::KeyframeRequest(req))) => {
                    let channel = self
                        .tracks
                        .iter()
                        .find(|t| t.mid == Some(req.mid) && t.direction == TrackDirection::Send)
                        .and_then(|t| t.channel);
                    if let Some(p) = channel.and_then(|c| self.publishers.get(&c)) {
                        p.keyframe.store(true, Ordering::Release);
                    }
                }
                Ok(Output::Event(Event::MediaEgressStats(s))) => {
                    self.stats(s.mid, s.bytes, s.rtt, s.loss, s.timestamp);
                }
                Ok(Output::Event(Event::MediaIngressStats(s))) => {
                    self.stats(s.mid, s.bytes, s.rtt, s.loss, s.timestamp);
                }
                Ok(Output::Event(_)) => {}
                Err(e) => {
                    tracing::warn!("peer connection failed: {e}");
                    self.deadline = None;
                    return touched;
                }
            }
        }
    }

    /// One track's periodic figures; a stream's report goes out when both of its tracks have
    /// reported for the interval.
    fn stats(
        &mut self,
        mid: Mid,
        bytes: u64,
        rtt: Option<std::time::Duration>,
        loss: Option<f32>,
        at: Instant,
    ) {
        let Some(track) = self.tracks.iter_mut().find(|t| t.mid == Some(mid)) else {
            return;
        };
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
        let (stream_id, kind, direction) = (track.stream_id.clone(), track.kind, track.direction);
        let sent_codec = track
            .channel
            .filter(|_| direction == TrackDirection::Send)
            .and_then(|c| self.publishers.get(&c))
            .and_then(|p| p.config.lock().ok().map(|c| c.codec.zego_id()));
        let q = self
            .quality
            .entry((stream_id.clone(), direction))
            .or_default();
        match kind {
            TrackKind::Audio => {
                q.audio_fps = fps;
                q.audio_kbps = kbps;
                q.audio_bytes = bytes;
            }
            TrackKind::Video => {
                q.video_fps = fps;
                q.video_kbps = kbps;
                q.video_bytes = bytes;
                if let Some(id) = sent_codec {
                    q.video_codec_id = id;
                }
            }
        }
        if let Some(rtt) = rtt {
            q.rtt_ms = rtt.as_secs_f64() * 1000.0;
        }
        if let Some(loss) = loss {
            q.loss = loss as f64;
        }
        // Report once both kinds have their figures for this interval.
        let seen = self
            .quality_seen
            .entry((stream_id.clone(), direction))
            .or_default();
        *seen |= match kind {
            TrackKind::Audio => 1,
            TrackKind::Video => 2,
        };
        if *seen == 3 {
            *seen = 0;
            let quality = q.clone();
            let stream_id = stream_id.to_string();
            let ev = match direction {
                TrackDirection::Send => MediaEvent::PublisherQuality { stream_id, quality },
                TrackDirection::Recv => MediaEvent::PlayerQuality { stream_id, quality },
            };
            let _ = self.events.send(EngineEvent::Media(ev));
        }
    }

    /// Stops every pipeline and forgets the peer (the connection to the server is gone).
    pub fn reset(&mut self) {
        self.publishers.clear();
        self.speaker = None;
        self.settings(|d| {
            d.speaker_running = None;
            d.microphones.clear();
            d.camera_ids.clear();
        });
        self.preview_only.clear();
        if let Ok(mut map) = self.custom_sources.lock() {
            *map = Default::default();
        }
        self.players.clear();
        self.tracks.clear();
        self.first_seen.clear();
        self.pending = None;
        self.in_flight = false;
        self.retired = 0;
        self.fresh = false;
        if let Some(mut rtc) = self.rtc.take() {
            rtc.disconnect();
        }
        self.local = None;
        self.deadline = None;
    }
}
