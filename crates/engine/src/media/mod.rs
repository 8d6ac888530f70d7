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

mod captures;
pub mod devices;
pub mod pattern;
pub mod peer;
pub mod pipeline;
pub mod player;
pub mod publisher;
mod quality;
pub mod shared;
pub mod vp8;

use crate::queue;
use crate::{EngineEvent, MediaEvent};
use captures::Captures;
use peer::{MediaPeer, PeerOutput};
use pipeline::ThreadEvents;
use pipeline::{CustomSources, Encoded, Packet, PlayState, Player, Settings, VideoConfig};
use quality::QualityReports;
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
    captures: Captures,
    players: HashMap<StreamId, Player>,
    quality: QualityReports,
    pub custom_sources: CustomSources,
    /// The player switches and meters the app reads and sets (media/shared.rs).
    state: Arc<PlayState>,
    settings: Settings,
    /// What the speaker plays: the players push into it, the speaker's pump takes from it.
    mix: devices::SharedMix,
    keyframe_tx: queue::Sender<String>,
    thread_events: ThreadEvents,
    /// The driver's own events (this runs on the driver).
    events: mpsc::UnboundedSender<EngineEvent>,
    /// The output playing every played stream while any plays (media/devices/).
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
        (state, settings): (Arc<PlayState>, Settings),
        custom_sources: CustomSources,
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
        let captures = Captures::new(
            keyframes,
            (encoded_tx, thread_events.clone()),
            events.clone(),
            custom_sources.clone(),
            (state.clone(), settings.clone()),
        );
        let media = Media {
            peer: MediaPeer::default(),
            captures,
            players: HashMap::new(),
            quality: QualityReports::default(),
            custom_sources,
            state,
            settings,
            mix: Default::default(),
            keyframe_tx,
            thread_events,
            events,
            speaker: None,
            speaker_failed: None,
        };
        (media, inbox)
    }

    fn settings<T>(&self, f: impl FnOnce(&mut devices::DeviceSettings) -> T) -> Option<T> {
        self.settings.lock().ok().map(|mut d| f(&mut d))
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
            self.close_speaker();
        }
        if !wanted_open || self.speaker.is_some() || self.speaker_failed.as_ref() == Some(&wanted) {
            return;
        }
        let muted = self.state.speaker_muted.clone();
        match devices::Speaker::open(&wanted, (self.mix.clone(), muted)) {
            Ok(speaker) => {
                if let Ok(mut mix) = self.mix.lock() {
                    mix.open = true;
                }
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
                captures::device_exception(&self.events, devices::device_type::SPEAKER, &e);
                self.speaker_failed = Some(wanted);
            }
        }
    }

    fn close_speaker(&mut self) {
        self.speaker = None;
        if let Ok(mut mix) = self.mix.lock() {
            mix.close();
        }
        self.settings(|d| d.speaker_running = None);
    }

    /// Applies changed device choices: the speaker, and microphones released or reopened.
    pub fn apply_devices(&mut self) {
        // A speaker that failed is retried when the app chooses another one (update_speaker
        // compares the choice with the failed device), not on every other change.
        self.update_speaker();
        self.captures.apply_microphones();
    }

    /// `startPreview` / `stopPreview` of `channel`.
    pub fn set_preview(&mut self, channel: usize, on: bool) {
        self.captures.set_preview(channel, on);
    }

    /// `setAudioConfig`: takes effect at once on a running publisher of `channel`.
    pub fn set_audio_config(&mut self, channel: usize, config: pipeline::AudioConfig) {
        self.captures.set_audio_config(channel, config);
    }

    /// `enableCustomAudioIO`: applies to the next publish on `channel`.
    pub fn set_custom_audio(&mut self, channel: usize, enable: bool) {
        self.captures.set_custom_audio(channel, enable);
    }

    /// `enableCustomVideoCapture`: applies to the next publish on `channel`.
    pub fn set_custom_video(&mut self, channel: usize, enable: bool) {
        self.captures.set_custom_video(channel, enable);
    }

    /// `setVideoConfig`: takes effect at once on a running publisher of `channel`.
    pub fn set_video_config(&mut self, channel: usize, config: VideoConfig) {
        self.captures.set_video_config(channel, config);
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
                self.captures.start_publish(channel, stream_id.as_str());
            }
            MediaCmd::Mute {
                channel,
                silent,
                black,
            } => self.captures.mute(channel, silent, black),
            MediaCmd::StopPublish { channel, stream_id } => {
                self.captures.stop_publish(channel, stream_id.as_str());
                self.stop_tracks(&stream_id, TrackDirection::Send);
            }
            MediaCmd::StartPlay { stream_id } => {
                self.peer.add_tracks(&stream_id, TrackDirection::Recv, None);
                let links = player::PlayerLinks {
                    state: self.state.clone(),
                    mix: self.mix.clone(),
                    events: self.thread_events.clone(),
                    keyframe: self.keyframe_tx.clone(),
                };
                // A player already there stops first (its stop clears the shared entry).
                self.players.remove(&stream_id);
                let player = Player::start(stream_id.to_string(), links);
                self.players.insert(stream_id.clone(), player);
                self.update_speaker();
            }
            MediaCmd::StopPlay { stream_id } => {
                // Dropping the player stops its thread and clears its level and picture.
                self.players.remove(&stream_id);
                if let Ok(mut mix) = self.mix.lock() {
                    mix.remove(stream_id.as_str());
                }
                self.update_speaker();
                self.stop_tracks(&stream_id, TrackDirection::Recv);
            }
        }
    }

    fn stop_tracks(&mut self, stream_id: &StreamId, direction: TrackDirection) {
        self.quality.forget(stream_id, direction);
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
                        self.quality.received_codec(&stream_id, codec.zego_id());
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
                PeerOutput::KeyframeWanted { channel } => self.captures.keyframe_wanted(channel),
                PeerOutput::Figures(f) => {
                    let sending = f.channel.filter(|_| f.direction == TrackDirection::Send);
                    let sent_codec = sending.and_then(|c| self.captures.sent_codec(c));
                    if let Some(ev) = self.quality.figures(f, sent_codec) {
                        let _ = self.events.send(EngineEvent::Media(ev));
                    }
                }
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

    /// Stops every pipeline and forgets the peer (the connection to the server is gone).
    pub fn reset(&mut self) {
        self.captures.reset();
        self.close_speaker();
        self.players.clear();
        self.peer.reset();
    }
}
