//! The engine's media: one str0m peer connection carrying every published and played stream
//! of every room, tracks added and removed as streams start and stop.
//!
//! The peer connection itself, its tracks and their negotiation are [`peer::MediaPeer`], a
//! sans-IO core that takes the time with every input. `Media` adds what runs beside it: the
//! capture and codec threads (publishers, players), devices, and the quality reports built
//! from the peer's per-track figures. The engine is always the offerer: [`Media::negotiate`]
//! returns the offer for the session to send and [`Media::on_answer`] applies the answer. The
//! driver feeds datagrams and time in and drains [`Media::poll`]; encoded frames from the
//! publisher threads go out through [`Media::write`].

pub mod devices;
pub mod pattern;
pub mod peer;
pub mod pipeline;
pub mod vp8;

use crate::queue;
use crate::{EngineEvent, MediaEvent};
use peer::{MediaPeer, PeerOutput};
use pipeline::ThreadEvents;
use pipeline::{
    CustomSources, Encoded, MeterMap, Packet, Player, Publisher, RenderMap, VideoConfig,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use zrooms_proto::wire::{TrackDirection, TrackKind};
use zrooms_proto::StreamId;
use zrooms_session::MediaCmd;

pub use peer::QUALITY_INTERVAL;

/// What the driver must do after draining the peer.
pub struct Transmit {
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

pub struct Media {
    peer: MediaPeer,
    publishers: HashMap<usize, Publisher>,
    players: HashMap<StreamId, Player>,
    /// The latest figures per stream and direction.
    quality: HashMap<(StreamId, TrackDirection), crate::Quality>,
    /// Which kinds (1 audio, 2 video) reported since the stream's last quality event.
    quality_seen: HashMap<(StreamId, TrackDirection), u8>,
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
    encoded_tx: queue::Sender<Encoded>,
    keyframe_tx: queue::Sender<String>,
    /// Per channel: the next frame encoded there is a keyframe (a player asked, or a frame of
    /// the channel was dropped on its way to the peer).
    keyframes: [Arc<AtomicBool>; 4],
    thread_events: ThreadEvents,
    /// The driver's own events (this runs on the driver).
    events: mpsc::UnboundedSender<EngineEvent>,
    /// The output playing every played stream while any plays (devices.rs).
    speaker: Option<devices::Speaker>,
    /// The speaker device that failed to open: reported once, not retried for each stream.
    speaker_failed: Option<String>,
}

/// Encoded frames waiting for the driver to write them into the peer (all channels
/// together: about a second of audio and video); the oldest are dropped, and a dropped video
/// frame makes its channel's next frame a keyframe.
pub const ENCODED_QUEUE: usize = 64;
/// Keyframe requests of player threads waiting for the driver; the oldest are dropped (a
/// request repeats while it is not answered).
pub const KEYFRAME_QUEUE: usize = 16;

/// What the driver reads from the media threads.
pub struct Inbox {
    pub encoded: queue::Receiver<Encoded>,
    pub keyframes: queue::Receiver<String>,
    pub notices: queue::Receiver<EngineEvent>,
    pub frames: queue::Receiver<EngineEvent>,
}

impl Media {
    pub fn new(
        events: mpsc::UnboundedSender<EngineEvent>,
        render: RenderMap,
        custom_sources: CustomSources,
        levels: MeterMap,
    ) -> (Self, Inbox) {
        let keyframes: [Arc<AtomicBool>; 4] = Default::default();
        let wanted = keyframes.clone();
        let on_drop = Box::new(move |e: &Encoded| {
            if let (TrackKind::Video, Some(flag)) = (e.kind, wanted.get(e.channel)) {
                flag.store(true, Ordering::Release);
            }
        });
        let (encoded_tx, encoded) = queue::bounded(ENCODED_QUEUE, Some(on_drop));
        let (keyframe_tx, keyframe_rx) = queue::bounded(KEYFRAME_QUEUE, None);
        let (thread_events, notices, frames) = ThreadEvents::new();
        let inbox = Inbox {
            encoded,
            keyframes: keyframe_rx,
            notices,
            frames,
        };
        let media = Media {
            peer: MediaPeer::default(),
            publishers: HashMap::new(),
            players: HashMap::new(),
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
            keyframes,
            thread_events,
            events,
            speaker: None,
            speaker_failed: None,
        };
        (media, inbox)
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
        self.peer.local_addr()
    }

    /// Creates the peer connection on first use, with `local` as its host candidate.
    pub fn ensure_peer(&mut self, local: SocketAddr, now: Instant) {
        self.peer.ensure(local, now);
    }

    pub fn needs_peer(&self) -> bool {
        self.peer.needs_peer()
    }

    /// When the peer next wants [`Media::timeout`].
    pub fn deadline(&self) -> Option<Instant> {
        self.peer.deadline
    }

    /// Applies a session decision: start or stop a publisher's or player's tracks.
    pub fn command(&mut self, cmd: MediaCmd) {
        match cmd {
            MediaCmd::StartPublish { channel, stream_id } => {
                self.peer
                    .add_tracks(&stream_id, TrackDirection::Send, Some(channel));
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
                self.stop_tracks(&stream_id, TrackDirection::Send);
            }
            MediaCmd::StartPlay { stream_id } => {
                self.peer.add_tracks(&stream_id, TrackDirection::Recv, None);
                self.players.insert(
                    stream_id.clone(),
                    Player::start(
                        stream_id.to_string(),
                        self.render.clone(),
                        self.levels.clone(),
                        self.thread_events.clone(),
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
                self.stop_tracks(&stream_id, TrackDirection::Recv);
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
                events: self.thread_events.clone(),
                keyframe: self.keyframes.get(channel).cloned().unwrap_or_default(),
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

    fn stop_tracks(&mut self, stream_id: &StreamId, direction: TrackDirection) {
        let key = (stream_id.clone(), direction);
        self.quality.remove(&key);
        self.quality_seen.remove(&key);
        self.peer.stop_tracks(stream_id, direction);
    }

    /// The offer for pending track changes, if any and none is in flight: the session sends
    /// it.
    pub fn negotiate(&mut self, now: Instant) -> Option<peer::Offer> {
        self.peer.negotiate(now)
    }

    /// The server's answer to the offer in flight.
    pub fn on_answer(&mut self, answer: Result<String, zrooms_proto::ErrorCode>) {
        self.peer.on_answer(answer);
    }

    /// A datagram for the peer.
    pub fn receive(&mut self, source: SocketAddr, data: &[u8], now: Instant) {
        self.peer.receive(source, data, now);
    }

    pub fn timeout(&mut self, now: Instant) {
        self.peer.timeout(now);
    }

    /// Writes an encoded frame into its track.
    pub fn write(&mut self, e: Encoded) {
        self.peer.write(e);
    }

    /// A player thread could not decode: ask the publisher for a keyframe.
    pub fn request_keyframe(&mut self, stream_id: &str) {
        self.peer.request_keyframe(stream_id);
    }

    /// Drains the peer: datagrams to send go to `out`; frames go to the players. Returns the
    /// streams whose first media arrived (the session makes their players Playing).
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Transmit>) -> Vec<StreamId> {
        let mut first_media = Vec::new();
        while let Some(output) = self.peer.poll(now) {
            match output {
                PeerOutput::Transmit {
                    destination,
                    contents,
                } => out.push(Transmit {
                    destination,
                    contents,
                }),
                PeerOutput::Received {
                    stream_id,
                    kind,
                    codec,
                    data,
                    time_ms,
                    first,
                    contiguous,
                } => {
                    if first {
                        self.first_frame(&stream_id, kind);
                        first_media.push(stream_id.clone());
                    }
                    if kind == TrackKind::Video {
                        let key = (stream_id.clone(), TrackDirection::Recv);
                        self.quality.entry(key).or_default().video_codec_id = codec.zego_id();
                    }
                    if let Some(player) = self.players.get(&stream_id) {
                        let packet = Packet {
                            kind,
                            codec,
                            data,
                            time_ms,
                            contiguous,
                        };
                        player.tx.push(packet);
                    }
                }
                PeerOutput::KeyframeWanted { channel } => {
                    if let Some(flag) = self.keyframes.get(channel) {
                        flag.store(true, Ordering::Release);
                    }
                }
                PeerOutput::Figures(f) => self.stats(f),
            }
        }
        first_media
    }

    fn first_frame(&self, stream_id: &StreamId, kind: TrackKind) {
        let stream_id = stream_id.to_string();
        let ev = match kind {
            TrackKind::Video => MediaEvent::PlayerRecvVideoFirstFrame { stream_id },
            TrackKind::Audio => MediaEvent::PlayerRecvAudioFirstFrame { stream_id },
        };
        let _ = self.events.send(EngineEvent::Media(ev));
    }

    /// One track's periodic figures; a stream's report goes out when both of its tracks have
    /// reported for the interval.
    fn stats(&mut self, f: peer::TrackFigures) {
        let (stream_id, kind, direction) = (f.stream_id, f.kind, f.direction);
        let (fps, kbps, bytes, rtt, loss) = (f.fps, f.kbps, f.bytes, f.rtt, f.loss);
        let sent_codec = f
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
        self.peer.reset();
    }
}
