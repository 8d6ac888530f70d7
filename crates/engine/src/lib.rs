//! The engine: a tokio driver around the sans-IO [`Session`].
//!
//! [`Engine::start`] spawns one driver task and returns a handle plus the receiver of
//! [`EngineEvent`]s. The handle turns API calls into [`Command`]s with an [`OpId`]; the event
//! stream carries every outcome, including each call's completion, in one total order.
//!
//! The driver (`driver.rs`) owns the session and the media and does their I/O; the codec threads
//! talk to it through bounded queues (`queue.rs`).

mod driver;
pub mod media;
mod netwatch;
pub mod queue;
pub mod tls;

use media::pipeline::{CustomSources, PlayState, Pushed, RawFrame, Settings};
use media::Media;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
pub use zrooms_session::{Command, OpId, OpValue, RoomConfig, SessionConfig, SessionEvent};

pub use zrooms_proto as proto;
pub use zrooms_session as session;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `ws://host:port` or `wss://host:port` of the room server.
    pub server_url: String,
    /// The TLS client for `wss://` ([`tls::client_config`]); `None`: the system's roots only.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    pub session: SessionConfig,
    /// Capture from the microphone and camera (false: the synthetic pattern and tone).
    pub use_devices: bool,
}

/// Everything an engine reports, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    Session(SessionEvent),
    Media(MediaEvent),
    /// A decoded picture of a played stream (only for streams whose app asked for frames).
    VideoFrame(VideoFrame),
    /// Decoded audio of a played stream (likewise).
    AudioFrame(AudioFrame),
    /// A captured picture for the app's preview of a publish channel.
    PreviewFrame(VideoFrame, usize),
}

/// Media milestones, with ZEGO's event names.
#[derive(Clone, Debug, PartialEq)]
pub enum MediaEvent {
    PublisherCapturedVideoFirstFrame {
        channel: usize,
    },
    PublisherCapturedAudioFirstFrame,
    PublisherRenderVideoFirstFrame {
        channel: usize,
    },
    PublisherVideoSizeChanged {
        channel: usize,
        width: u32,
        height: u32,
    },
    PlayerRecvVideoFirstFrame {
        stream_id: String,
    },
    PlayerRecvAudioFirstFrame {
        stream_id: String,
    },
    PlayerRenderVideoFirstFrame {
        stream_id: String,
    },
    PlayerVideoSizeChanged {
        stream_id: String,
        width: u32,
        height: u32,
    },
    /// Every 3 s per published stream.
    PublisherQuality {
        stream_id: String,
        quality: Quality,
    },
    /// Every 3 s per played stream.
    PlayerQuality {
        stream_id: String,
        quality: Quality,
    },
    /// ZEGO's `localDeviceExceptionOccurred(exceptionType, deviceType, deviceID)`: a device
    /// is missing or failed; the stream carries the synthetic source instead.
    LocalDeviceException {
        exception: u32,
        device_type: u32,
        device_id: String,
    },
}

/// One stream's figures over the last quality interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quality {
    pub video_fps: f64,
    pub audio_fps: f64,
    pub video_kbps: f64,
    pub audio_kbps: f64,
    pub rtt_ms: f64,
    /// 0..1
    pub loss: f64,
    pub video_bytes: u64,
    pub audio_bytes: u64,
    /// ZEGO's `ZegoVideoCodecID` of the video: 0 H.264, 2 VP8.
    pub video_codec_id: u32,
}

impl Quality {
    /// ZEGO's `ZegoStreamQualityLevel` from loss and round-trip time.
    pub fn level(&self) -> u32 {
        match (self.loss, self.rtt_ms) {
            (l, r) if l < 0.02 && r < 100.0 => 0,
            (l, r) if l < 0.05 && r < 200.0 => 1,
            (l, r) if l < 0.10 && r < 400.0 => 2,
            (l, _) if l < 0.20 => 3,
            _ => 4,
        }
    }
}

/// An I420 picture: Y, then U, then V planes, tightly packed.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoFrame {
    pub stream_id: String,
    pub width: u32,
    pub height: u32,
    pub timestamp_ms: f64,
    pub data: Vec<u8>,
}

/// Interleaved 16-bit PCM.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioFrame {
    pub stream_id: String,
    pub sample_rate: u32,
    pub channels: u32,
    pub samples: Vec<i16>,
}

pub(crate) enum Cmd {
    Api(OpId, Command),
    VideoConfig(usize, media::pipeline::VideoConfig),
    CustomVideo(usize, bool),
    CustomAudio(usize, bool),
    AudioConfig(usize, media::pipeline::AudioConfig),
    Preview(usize, bool),
    /// Device choices changed (in the shared settings): apply them, then say so.
    Devices(Option<oneshot::Sender<()>>),
    Destroy(oneshot::Sender<()>),
    /// Makes the driver panic: how a test shows that a dead driver settles every call.
    Fail,
}

/// A handle to a running engine. Dropping it stops the driver as `destroy` would.
pub struct Engine {
    tx: mpsc::UnboundedSender<Cmd>,
    next_op: AtomicU64,
    custom: CustomSources,
    /// Player switches and meters (media/shared.rs), shared with the media threads.
    state: Arc<PlayState>,
    /// Device choices, shared with the driver.
    settings: Settings,
}

impl Engine {
    pub fn start(
        rt: &Handle,
        config: EngineConfig,
    ) -> (Engine, mpsc::UnboundedReceiver<EngineEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let custom: CustomSources = Arc::new(Mutex::new(Default::default()));
        let state = Arc::new(PlayState::default());
        let settings: Settings = Arc::new(Mutex::new(media::devices::DeviceSettings {
            use_devices: config.use_devices,
            ..Default::default()
        }));
        let media = Media::new(
            ev_tx.clone(),
            (state.clone(), settings.clone()),
            custom.clone(),
        );
        rt.spawn(driver::drive(config, rx, ev_tx, media));
        (
            Engine {
                tx,
                next_op: AtomicU64::new(1),
                custom,
                state,
                settings,
            },
            ev_rx,
        )
    }

    /// ZEGO's `setVideoConfig` for `channel` (0..3).
    pub fn set_video_config(&self, channel: usize, config: media::pipeline::VideoConfig) {
        let _ = self.tx.send(Cmd::VideoConfig(channel, config));
    }

    /// ZEGO's `setAudioConfig` for `channel`.
    pub fn set_audio_config(&self, channel: usize, config: media::pipeline::AudioConfig) {
        let _ = self.tx.send(Cmd::AudioConfig(channel, config));
    }

    /// `startPreview` / `stopPreview` of `channel`.
    pub fn set_preview(&self, channel: usize, on: bool) {
        let _ = self.tx.send(Cmd::Preview(channel, on));
    }

    /// ZEGO's `enableCustomVideoCapture` for `channel`; applies to the next publish.
    pub fn enable_custom_video(&self, channel: usize, enable: bool) {
        let _ = self.tx.send(Cmd::CustomVideo(channel, enable));
    }

    /// A frame pushed by the app for `channel`. False when no custom-capture publisher runs
    /// there or it is behind (the frame is dropped).
    pub fn push_custom_frame(&self, channel: usize, frame: RawFrame) -> bool {
        self.push(channel, Pushed::Video(frame))
    }

    /// ZEGO's `enableCustomAudioIO` for `channel`; applies to the next publish.
    pub fn enable_custom_audio(&self, channel: usize, enable: bool) {
        let _ = self.tx.send(Cmd::CustomAudio(channel, enable));
    }

    /// 48 kHz mono PCM pushed by the app for `channel` (same rules as frames).
    pub fn push_custom_audio(&self, channel: usize, pcm: Vec<i16>) -> bool {
        self.push(channel, Pushed::Audio(pcm))
    }

    fn push(&self, channel: usize, item: Pushed) -> bool {
        let Ok(map) = self.custom.lock() else {
            return false;
        };
        match map.get(channel).and_then(Option::as_ref) {
            Some(tx) => tx.try_send(item).is_ok(),
            None => false,
        }
    }

    /// The latest captured level (loudest publish channel) and each played stream's level,
    /// 0..100, for the sound-level monitor.
    pub fn sound_levels(&self) -> (f32, Vec<(String, f32)>) {
        (self.state.captured_level(), self.state.remote_levels())
    }

    /// The latest decoded picture of a played stream (`takePlayStreamSnapshot`).
    pub fn snapshot(&self, stream_id: &str) -> Option<Arc<media::pattern::I420>> {
        self.state.get(stream_id)?.picture()
    }

    /// Whether a player runs for the stream (from the session's start until its stop).
    pub fn is_playing(&self, stream_id: &str) -> bool {
        self.state
            .get(stream_id)
            .is_some_and(|p| p.playing.load(Ordering::Acquire))
    }

    /// Which decoded media of `stream_id` the app wants as frames (mutes and volumes set
    /// before are kept).
    pub fn set_render(&self, stream_id: &str, video: bool, audio: bool) {
        let played = self.state.stream(stream_id);
        played.view_video.store(video, Ordering::Relaxed);
        played.view_audio.store(audio, Ordering::Relaxed);
    }

    /// The stream stopped playing: its view, mutes and volume are forgotten (ZEGO resets a
    /// player's switches with `stopPlayingStream`).
    pub fn clear_render(&self, stream_id: &str) {
        self.state.forget(stream_id);
    }

    /// `mutePlayStreamVideo` (`Some(stream)`) or `muteAllPlayStreamVideo` (`None`): a muted
    /// stream's video is not decoded, and no frame of it reaches the app.
    pub fn mute_play_video(&self, stream_id: Option<&str>, mute: bool) {
        match stream_id {
            Some(id) => self
                .state
                .stream(id)
                .video_muted
                .store(mute, Ordering::Relaxed),
            None => self.state.all_video_muted.store(mute, Ordering::Relaxed),
        }
    }

    /// `mutePlayStreamAudio` / `muteAllPlayStreamAudio`: silence to the view and the speaker.
    pub fn mute_play_audio(&self, stream_id: Option<&str>, mute: bool) {
        match stream_id {
            Some(id) => self
                .state
                .stream(id)
                .audio_muted
                .store(mute, Ordering::Relaxed),
            None => self.state.all_audio_muted.store(mute, Ordering::Relaxed),
        }
    }

    /// `setPlayVolume` / `setAllPlayStreamVolume`, 0..200 (100: unchanged).
    pub fn set_play_volume(&self, stream_id: Option<&str>, volume: u32) {
        let gain = volume.min(200) as f32 / 100.0;
        match stream_id {
            Some(id) => self.state.stream(id).volume.set(gain),
            None => self.state.all_volume.set(gain),
        }
    }

    /// Whether the app's view takes a decoded frame of the stream now (its view wants the
    /// kind, and for video, it is not muted).
    pub fn frame_wanted(&self, stream_id: &str, video: bool) -> bool {
        let Some(p) = self.state.get(stream_id) else {
            return false;
        };
        if video {
            p.view_video.load(Ordering::Relaxed) && !self.state.video_muted(&p)
        } else {
            p.view_audio.load(Ordering::Relaxed)
        }
    }

    /// `muteSpeaker`: the speaker plays silence; views still get the audio.
    pub fn mute_speaker(&self, mute: bool) {
        self.state.speaker_muted.store(mute, Ordering::Relaxed);
    }

    pub fn is_speaker_muted(&self) -> bool {
        self.state.speaker_muted.load(Ordering::Relaxed)
    }

    /// `setCaptureVolume`, 0..200 (100: unchanged), applied to the microphones' samples.
    pub fn set_capture_volume(&self, volume: u32) {
        if let Ok(d) = self.settings.lock() {
            d.capture_volume.set(volume.min(200) as f32 / 100.0);
        }
    }

    /// Reads or changes the device settings; `apply`: the media driver acts on the change
    /// (reopens the speaker, releases or reopens microphones).
    pub fn devices<T>(
        &self,
        apply: bool,
        f: impl FnOnce(&mut media::devices::DeviceSettings) -> T,
    ) -> Option<T> {
        let out = self.settings.lock().ok().map(|mut d| f(&mut d));
        if apply {
            let _ = self.tx.send(Cmd::Devices(None));
        }
        out
    }

    /// Changes the device settings and resolves once the driver has acted on the change (the
    /// speaker and microphones open or closed as chosen), like every other call completes.
    pub fn apply_devices(
        &self,
        f: impl FnOnce(&mut media::devices::DeviceSettings),
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        if let Ok(mut d) = self.settings.lock() {
            f(&mut d);
        }
        let (ack, done) = oneshot::channel();
        let sent = self.tx.send(Cmd::Devices(Some(ack))).is_ok();
        async move {
            if sent {
                // A driver that is gone answers nothing: the call completes all the same.
                let _ = done.await;
            }
        }
    }

    /// Submits an API call; its [`SessionEvent::Completed`] carries the returned id.
    pub fn call(&self, cmd: Command) -> OpId {
        let op = self.next_op.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Cmd::Api(op, cmd));
        op
    }

    /// Makes the driver fail as a bug would (it panics; the runtime contains it). For tests of
    /// what the binding does when the driver is gone.
    #[doc(hidden)]
    pub fn fail_for_test(&self) {
        let _ = self.tx.send(Cmd::Fail);
    }

    /// Leaves every room (telling the server) and stops the driver; no event follows.
    pub async fn destroy(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Cmd::Destroy(ack)).is_ok() {
            let _ = done.await;
        }
    }
}
