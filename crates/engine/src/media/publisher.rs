//! Publisher threads: one per publish channel, pacing its sources (video at the configured fps,
//! audio every 20 ms; the synthetic pattern and tone, the app's pushed frames, or devices),
//! encoding (H.264 via openh264 or VP8, Opus) and handing encoded frames to the driver.

use super::pattern::{stream_tag, test_pattern, Tone, I420};
use super::pipeline::*;
use super::vp8::Vp8Encoder;
use crate::queue;
use crate::{EngineEvent, MediaEvent, VideoFrame};
use openh264::encoder::{
    Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, RateControlMode, UsageType,
};
use openh264::formats::YUVBuffer;
use openh264::OpenH264API;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zrooms_proto::wire::TrackKind;

pub(super) fn opus_encoder(config: &AudioConfig) -> Option<opus::Encoder> {
    let channels = if config.stereo {
        opus::Channels::Stereo
    } else {
        opus::Channels::Mono
    };
    let mut enc = match opus::Encoder::new(AUDIO_RATE, channels, opus::Application::Audio) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("Opus encoder: {e}");
            return None;
        }
    };
    // Constant bitrate: what the app configured is what goes out.
    if let Err(e) = enc.set_vbr(false) {
        tracing::debug!("Opus CBR: {e}");
    }
    let bps = (config.bitrate_kbps.clamp(6, 510) * 1000) as i32;
    if let Err(e) = enc.set_bitrate(opus::Bitrate::Bits(bps)) {
        tracing::debug!("Opus bitrate: {e}");
    }
    Some(enc)
}

/// The encoder of a publisher, by codec.
enum VideoEncoder {
    H264(Box<Encoder>),
    Vp8(Option<Vp8Encoder>),
}

impl VideoEncoder {
    fn new(config: &VideoConfig) -> Option<VideoEncoder> {
        match config.codec {
            VideoCodec::H264 => h264_encoder(config).map(|e| VideoEncoder::H264(Box::new(e))),
            VideoCodec::Vp8 => Some(VideoEncoder::Vp8(None)),
        }
    }

    fn codec(&self) -> VideoCodec {
        match self {
            VideoEncoder::H264(_) => VideoCodec::H264,
            VideoEncoder::Vp8(_) => VideoCodec::Vp8,
        }
    }

    /// Encodes a packed I420 picture of any size (the VP8 encoder follows size changes).
    fn encode(&mut self, picture: &I420, keyframe: bool, config: &VideoConfig) -> Option<Vec<u8>> {
        match self {
            VideoEncoder::H264(enc) => {
                if keyframe {
                    enc.force_intra_frame();
                }
                let yuv = YUVBuffer::from_vec(
                    picture.data.clone(),
                    picture.width as usize,
                    picture.height as usize,
                );
                match enc.encode(&yuv) {
                    Ok(bits) => Some(bits.to_vec()).filter(|d| !d.is_empty()),
                    Err(e) => {
                        tracing::debug!("encode: {e}");
                        None
                    }
                }
            }
            VideoEncoder::Vp8(slot) => {
                let size = (picture.width, picture.height);
                let fresh = slot.as_ref().is_none_or(|e| e.size() != size);
                if fresh {
                    *slot = Vp8Encoder::new(
                        size.0,
                        size.1,
                        config.fps,
                        config.bitrate_kbps,
                        config.fps * config.keyframe_interval,
                    );
                }
                slot.as_mut()?.encode(picture, keyframe || fresh)
            }
        }
    }
}

/// A running publisher thread; dropping it stops the thread.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    pub keyframe: Arc<AtomicBool>,
    /// Read by the thread before every frame, so a change applies while publishing.
    pub config: Arc<Mutex<VideoConfig>>,
    /// Likewise for audio.
    pub audio: Arc<Mutex<AudioConfig>>,
    /// Mutes: silence instead of the source's audio, black instead of its video.
    pub silent: Arc<AtomicBool>,
    pub black: Arc<AtomicBool>,
    /// Captured pictures also go to the app's preview.
    pub preview: Arc<AtomicBool>,
    /// The microphone and camera feeding this publisher, and where a reopened microphone
    /// sends (media/devices/).
    pub mic: Option<super::devices::Capture>,
    pub camera: Option<super::devices::Capture>,
    pub device_tx: Option<std_mpsc::SyncSender<Pushed>>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// What a capture thread does with its pictures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Encode and send (a publisher); false: capture for the preview only.
    pub encode: bool,
    pub preview: bool,
    /// Video comes from the app (`enableCustomVideoCapture`), not the pattern.
    pub custom_video: bool,
    /// Audio comes from the app (`enableCustomAudioIO`), not the tone.
    pub custom_audio: bool,
}

/// Where a publisher thread's output goes.
#[derive(Clone)]
pub struct Sinks {
    pub out: queue::Sender<Encoded>,
    pub events: ThreadEvents,
    /// Where this channel's captured level goes.
    pub levels: Arc<PlayState>,
    /// The channel's "next frame is a keyframe" switch (set at start).
    pub keyframe: Arc<AtomicBool>,
}

impl Publisher {
    /// `custom`: frames pushed by the app replace the synthetic pattern.
    pub fn start(
        channel: usize,
        stream_id: &str,
        (config, audio): (VideoConfig, AudioConfig),
        custom: Option<std_mpsc::Receiver<Pushed>>,
        (silent, black): (bool, bool),
        sinks: Sinks,
        mode: Mode,
    ) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let keyframe = sinks.keyframe.clone();
        keyframe.store(true, Ordering::Release);
        let config = Arc::new(Mutex::new(config));
        let audio = Arc::new(Mutex::new(audio));
        let a = audio.clone();
        let silent = Arc::new(AtomicBool::new(silent));
        let black = Arc::new(AtomicBool::new(black));
        let preview = Arc::new(AtomicBool::new(mode.preview));
        let flags = Flags {
            stop: stop.clone(),
            keyframe: keyframe.clone(),
            silent: silent.clone(),
            black: black.clone(),
            preview: preview.clone(),
            encode: mode.encode,
            custom_video: mode.custom_video,
            custom_audio: mode.custom_audio,
        };
        let c = config.clone();
        let tag = stream_tag(stream_id);
        let spawned = std::thread::Builder::new()
            .name(format!("zrooms-pub{channel}"))
            .spawn(move || {
                publish_loop(channel, tag, (c, a), custom, sinks, flags);
                release_freed_memory();
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the publisher thread: {e}");
        }
        Publisher {
            stop,
            keyframe,
            config,
            audio,
            silent,
            black,
            preview,
            mic: None,
            camera: None,
            device_tx: None,
        }
    }
}

pub(super) fn h264_encoder(config: &VideoConfig) -> Option<Encoder> {
    let cfg = EncoderConfig::new()
        .bitrate(openh264::encoder::BitRate::from_bps(
            config.bitrate_kbps * 1000,
        ))
        .max_frame_rate(FrameRate::from_hz(config.fps as f32))
        .usage_type(UsageType::CameraVideoRealTime)
        .profile(Profile::Baseline)
        .rate_control_mode(RateControlMode::Bitrate)
        // Skipping frames under pressure is what keeps the bitrate in bounds.
        .skip_frames(true)
        .intra_frame_period(IntraFramePeriod::from_num_frames(
            config.fps * config.keyframe_interval,
        ));
    match Encoder::with_api_config(OpenH264API::from_source(), cfg) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!("H.264 encoder: {e}");
            None
        }
    }
}

/// The switches a publisher thread reads.
struct Flags {
    stop: Arc<AtomicBool>,
    keyframe: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
    black: Arc<AtomicBool>,
    preview: Arc<AtomicBool>,
    encode: bool,
    custom_video: bool,
    custom_audio: bool,
}

/// Hands a captured picture to the app's preview (the first one is announced).
fn to_preview(events: &ThreadEvents, channel: usize, picture: &I420, first: &mut bool) {
    if std::mem::take(first) {
        let _ = events.send(EngineEvent::Media(
            MediaEvent::PublisherRenderVideoFirstFrame { channel },
        ));
    }
    let _ = events.send(EngineEvent::PreviewFrame(
        VideoFrame {
            stream_id: String::new(),
            width: picture.width,
            height: picture.height,
            timestamp_ms: 0.0,
            data: picture.data.clone(),
        },
        channel,
    ));
}

/// A black I420 picture.
fn black_frame(width: u32, height: u32) -> I420 {
    let luma = (width * height) as usize;
    let mut data = vec![128u8; I420::len_for(width, height)];
    data[..luma].fill(16);
    I420 {
        width,
        height,
        data,
    }
}

/// A publisher thread's state: its encoders, the pacing of its sources, what the app pushed.
struct Capture {
    channel: usize,
    tag: u32,
    shared_config: Arc<Mutex<VideoConfig>>,
    shared_audio: Arc<Mutex<AudioConfig>>,
    custom: Option<std_mpsc::Receiver<Pushed>>,
    sinks: Sinks,
    flags: Flags,
    config: VideoConfig,
    video: VideoEncoder,
    audio_config: AudioConfig,
    opus: opus::Encoder,
    tone: Tone,
    /// Pushed PCM waiting to be sent, 20 ms at a time; bounded to 1 s so a fast pusher cannot
    /// grow it without limit.
    pushed_pcm: std::collections::VecDeque<i16>,
    first_preview: bool,
    start: Instant,
    frame_interval: Duration,
    next_video: Instant,
    next_audio: Instant,
    frames: u32,
    audio_frames: u64,
    opus_buf: Vec<u8>,
    custom_size: (u32, u32),
}

const AUDIO_INTERVAL: Duration = Duration::from_millis(20);

fn current<T: Copy + Default>(c: &Arc<Mutex<T>>) -> T {
    c.lock().map(|g| *g).unwrap_or_default()
}

fn publish_loop(
    channel: usize,
    tag: u32,
    (shared_config, shared_audio): (Arc<Mutex<VideoConfig>>, Arc<Mutex<AudioConfig>>),
    custom: Option<std_mpsc::Receiver<Pushed>>,
    sinks: Sinks,
    flags: Flags,
) {
    let config = current(&shared_config);
    let Some(video) = VideoEncoder::new(&config) else {
        return;
    };
    let audio_config = current(&shared_audio);
    let Some(opus) = opus_encoder(&audio_config) else {
        return;
    };
    let start = Instant::now();
    let mut c = Capture {
        channel,
        tag,
        shared_config,
        shared_audio,
        custom,
        sinks,
        flags,
        frame_interval: Duration::from_secs_f64(1.0 / config.fps.max(1) as f64),
        config,
        video,
        audio_config,
        opus,
        tone: Tone::new(440.0, AUDIO_RATE),
        pushed_pcm: std::collections::VecDeque::new(),
        first_preview: true,
        start,
        next_video: start,
        next_audio: start,
        frames: 0,
        audio_frames: 0,
        opus_buf: vec![0u8; 1500],
        custom_size: (0, 0),
    };
    while !c.flags.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if c.custom.is_some() {
            c.take_pushed();
            if c.flags.custom_video {
                c.next_video = now + Duration::from_secs(3600);
            }
        }
        if now >= c.next_video {
            c.video_tick(now);
        }
        if now >= c.next_audio {
            c.audio_tick(now);
        }
        c.wait();
    }
}

impl Capture {
    fn event(&self, ev: MediaEvent) {
        self.sinks.events.send(EngineEvent::Media(ev));
    }

    /// Custom capture: encodes what the app pushed, when it pushed it.
    fn take_pushed(&mut self) {
        while let Some(pushed) = self.custom.as_ref().and_then(|rx| rx.try_recv().ok()) {
            let raw = match pushed {
                Pushed::Audio(pcm) => {
                    self.pushed_pcm.extend(pcm);
                    let excess = self.pushed_pcm.len().saturating_sub(AUDIO_RATE as usize);
                    self.pushed_pcm.drain(..excess);
                    continue;
                }
                Pushed::Video(raw) => raw,
            };
            let picture = if self.flags.black.load(Ordering::Acquire) {
                black_frame(raw.width, raw.height)
            } else {
                match raw.to_i420() {
                    Some(p) => p,
                    None => continue,
                }
            };
            let (channel, (width, height)) = (self.channel, (raw.width, raw.height));
            if self.custom_size != (width, height) {
                if self.custom_size == (0, 0) {
                    self.event(MediaEvent::PublisherCapturedVideoFirstFrame { channel });
                }
                self.custom_size = (width, height);
                let size = MediaEvent::PublisherVideoSizeChanged {
                    channel,
                    width,
                    height,
                };
                self.event(size);
            }
            let now = Instant::now();
            let rtp_time = (now - self.start).as_micros() as u64 * 90 / 1000;
            self.show_and_encode(&picture, rtp_time, now);
        }
    }

    /// The preview, then the encoder (a publisher's; a preview-only capture encodes nothing).
    fn show_and_encode(&mut self, picture: &I420, rtp_time: u64, captured: Instant) {
        if self.flags.preview.load(Ordering::Acquire) {
            let events = &self.sinks.events;
            to_preview(events, self.channel, picture, &mut self.first_preview);
        }
        if !self.flags.encode {
            return;
        }
        let key = self.flags.keyframe.swap(false, Ordering::AcqRel);
        if let Some(data) = self.video.encode(picture, key, &self.config) {
            self.sinks.out.push(Encoded {
                channel: self.channel,
                kind: TrackKind::Video,
                codec: self.video.codec(),
                data,
                rtp_time,
                captured,
            });
        }
    }

    /// The synthetic source's next picture (after applying a changed config).
    fn video_tick(&mut self, now: Instant) {
        self.apply_video_config();
        let (w, h) = (self.config.width, self.config.height);
        let frame = if self.flags.black.load(Ordering::Acquire) {
            black_frame(w, h)
        } else {
            test_pattern(w, h, self.frames, self.tag)
        };
        if self.frames == 0 {
            let channel = self.channel;
            self.event(MediaEvent::PublisherCapturedVideoFirstFrame { channel });
            let size = MediaEvent::PublisherVideoSizeChanged {
                channel,
                width: w,
                height: h,
            };
            self.event(size);
        }
        let rtp_time = (self.next_video - self.start).as_micros() as u64 * 90 / 1000;
        self.show_and_encode(&frame, rtp_time, now);
        self.frames = self.frames.wrapping_add(1);
        self.next_video += self.frame_interval;
    }

    /// `setVideoConfig` while publishing: a new encoder at the new size and rate.
    fn apply_video_config(&mut self) {
        let latest = current(&self.shared_config);
        if latest == self.config {
            return;
        }
        let Some(enc) = VideoEncoder::new(&latest) else {
            return;
        };
        self.video = enc;
        if (latest.width, latest.height) != (self.config.width, self.config.height) {
            let size = MediaEvent::PublisherVideoSizeChanged {
                channel: self.channel,
                width: latest.width,
                height: latest.height,
            };
            self.event(size);
        }
        self.config = latest;
        self.frame_interval = Duration::from_secs_f64(1.0 / latest.fps.max(1) as f64);
    }

    /// The next 20 ms of audio: the tone or what the app pushed (silence when starved or
    /// muted), metered, encoded (a preview-only capture sends none).
    fn audio_tick(&mut self, now: Instant) {
        self.next_audio += AUDIO_INTERVAL;
        if !self.flags.encode {
            return;
        }
        if self.audio_frames == 0 {
            self.event(MediaEvent::PublisherCapturedAudioFirstFrame);
        }
        let mut pcm = if self.flags.custom_audio {
            let n = self.pushed_pcm.len().min(AUDIO_FRAME);
            let mut pcm: Vec<i16> = self.pushed_pcm.drain(..n).collect();
            pcm.resize(AUDIO_FRAME, 0);
            pcm
        } else {
            self.tone.next_samples(AUDIO_FRAME)
        };
        if self.flags.silent.load(Ordering::Acquire) {
            pcm.fill(0);
        }
        if let Some(level) = self.sinks.levels.captured.get(self.channel) {
            level.set(sound_level(&pcm));
        }
        let latest = current(&self.shared_audio);
        if latest != self.audio_config {
            if let Some(enc) = opus_encoder(&latest) {
                self.opus = enc;
                self.audio_config = latest;
            }
        }
        let pcm = if self.audio_config.stereo {
            pcm.iter().flat_map(|&s| [s, s]).collect()
        } else {
            pcm
        };
        if let Ok(n) = self.opus.encode(&pcm, &mut self.opus_buf) {
            self.sinks.out.push(Encoded {
                channel: self.channel,
                kind: TrackKind::Audio,
                codec: VideoCodec::H264,
                data: self.opus_buf.get(..n).unwrap_or_default().to_vec(),
                rtp_time: self.audio_frames * AUDIO_FRAME as u64,
                captured: now,
            });
        }
        self.audio_frames += 1;
    }

    /// Sleeps until the next frame is due (at most 5 ms when the app pushes, 20 ms otherwise).
    fn wait(&self) {
        let wake = self.next_video.min(self.next_audio);
        let now = Instant::now();
        if wake > now {
            let cap = if self.custom.is_some() { 5 } else { 20 };
            std::thread::sleep((wake - now).min(Duration::from_millis(cap)));
        }
    }
}
