//! Capture → encode threads for publishers and decode threads for players.
//!
//! Codecs are CPU work, so they never run on the tokio driver: each publisher channel has one
//! thread that paces its sources (video at the configured fps, audio every 20 ms), encodes
//! (H.264 via openh264, Opus) and hands encoded frames to the driver; each played stream has
//! one thread that decodes what the driver gives it and emits frames to the app.

use super::pattern::{stream_tag, test_pattern, Tone, I420};
use super::vp8::{Vp8Decoder, Vp8Encoder};
use crate::queue;
use crate::{AudioFrame, EngineEvent, MediaEvent, VideoFrame};
use openh264::encoder::{
    Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, RateControlMode, UsageType,
};
use openh264::formats::{BgraSliceU8, RgbaSliceU8, YUVBuffer, YUVSource};
use openh264::OpenH264API;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zrooms_proto::wire::TrackKind;

/// Opus frames are 20 ms at 48 kHz.
pub const AUDIO_RATE: u32 = 48_000;
pub const AUDIO_FRAME: usize = 960;

/// ZEGO's `ZegoAudioConfig`, as the Opus encoder uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioConfig {
    pub bitrate_kbps: u32,
    /// Stereo presets encode two channels (the mono source on both).
    pub stereo: bool,
}

impl Default for AudioConfig {
    /// ZEGO's default: StandardQuality, 48 kbps mono.
    fn default() -> Self {
        AudioConfig {
            bitrate_kbps: 48,
            stereo: false,
        }
    }
}

fn opus_encoder(config: &AudioConfig) -> Option<opus::Encoder> {
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

/// ZEGO's `ZegoVideoConfig`, as the encoder uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoConfig {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// Seconds between keyframes (ZEGO: 2).
    pub keyframe_interval: u32,
    pub codec: VideoCodec,
}

/// The video codecs the engine encodes and decodes (ZEGO's `ZegoVideoCodecID` 0 and 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VideoCodec {
    #[default]
    H264,
    Vp8,
}

impl VideoCodec {
    /// ZEGO's `ZegoVideoCodecID`.
    pub fn zego_id(self) -> u32 {
        match self {
            VideoCodec::H264 => 0,
            VideoCodec::Vp8 => 2,
        }
    }
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

impl Default for VideoConfig {
    /// ZEGO's default: 360p, 15 fps, 600 kbps.
    fn default() -> Self {
        VideoConfig {
            width: 640,
            height: 360,
            fps: 15,
            bitrate_kbps: 600,
            keyframe_interval: 2,
            codec: VideoCodec::H264,
        }
    }
}

/// Pixel layouts accepted from custom capture (ZEGO's `ZegoVideoFrameFormat` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawFormat {
    I420 = 1,
    Bgra = 4,
    Rgba = 5,
}

impl RawFormat {
    pub fn from_zego(v: u32) -> Option<RawFormat> {
        match v {
            1 => Some(RawFormat::I420),
            4 => Some(RawFormat::Bgra),
            5 => Some(RawFormat::Rgba),
            _ => None,
        }
    }

    /// Bytes a tightly packed frame of this size takes.
    pub fn frame_len(self, width: u32, height: u32) -> usize {
        match self {
            RawFormat::I420 => I420::len_for(width, height),
            RawFormat::Bgra | RawFormat::Rgba => width as usize * height as usize * 4,
        }
    }
}

/// A frame pushed by the app (custom video capture).
pub struct RawFrame {
    pub format: RawFormat,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RawFrame {
    /// The frame as packed I420, converted when it is RGBA or BGRA.
    fn to_i420(&self) -> Option<I420> {
        if self.format == RawFormat::I420 {
            let data = self
                .data
                .get(..self.format.frame_len(self.width, self.height))?;
            return Some(I420 {
                width: self.width,
                height: self.height,
                data: data.to_vec(),
            });
        }
        let yuv = self.to_yuv()?;
        Some(pack_i420(&yuv, self.width, self.height))
    }

    fn to_yuv(&self) -> Option<YUVBuffer> {
        let (w, h) = (self.width as usize, self.height as usize);
        let data = self
            .data
            .get(..self.format.frame_len(self.width, self.height))?;
        Some(match self.format {
            RawFormat::I420 => YUVBuffer::from_vec(data.to_vec(), w, h),
            RawFormat::Rgba => YUVBuffer::from_rgba8_source(RgbaSliceU8::new(data, (w, h))),
            RawFormat::Bgra => YUVBuffer::from_bgra8_source(BgraSliceU8::new(data, (w, h))),
        })
    }
}

/// Where the app's custom frames go, per channel, while a custom-capture publisher runs.
pub type CustomSources = Arc<Mutex<[Option<std_mpsc::SyncSender<Pushed>>; 4]>>;

/// What the app pushes into a custom-capture publisher.
pub enum Pushed {
    Video(RawFrame),
    /// 48 kHz mono PCM.
    Audio(Vec<i16>),
}

/// What a publisher thread produces.
pub struct Encoded {
    pub channel: usize,
    pub kind: TrackKind,
    /// For video frames; audio is always Opus.
    pub codec: VideoCodec,
    pub data: Vec<u8>,
    /// Media time in the codec's clock (90 kHz video, 48 kHz audio).
    pub rtp_time: u64,
    pub captured: Instant,
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
    /// sends (devices.rs).
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
    pub levels: MeterMap,
    /// The channel's "next frame is a keyframe" switch (set at start).
    pub keyframe: Arc<AtomicBool>,
}

/// Events of the codec threads, on their way to the driver, which puts them in the engine's
/// one ordered event stream. Decoded and previewed frames and the rest take separate queues:
/// frames are large and many, and only the latest matter.
#[derive(Clone)]
pub struct ThreadEvents {
    pub notices: queue::Sender<EngineEvent>,
    pub frames: queue::Sender<EngineEvent>,
}

/// Frames waiting for the driver (all threads of an engine together); the oldest are dropped.
pub const FRAME_EVENTS_QUEUE: usize = 8;
/// Other thread events waiting for the driver (first frames, size changes): a few per stream,
/// so this many are reached only when the driver stalls; the oldest are dropped then.
pub const NOTICE_EVENTS_QUEUE: usize = 256;

impl ThreadEvents {
    /// A pair of queues and their receivers (notices, frames).
    pub fn new() -> (
        Self,
        queue::Receiver<EngineEvent>,
        queue::Receiver<EngineEvent>,
    ) {
        let (notices, notices_rx) = queue::bounded(NOTICE_EVENTS_QUEUE, None);
        let (frames, frames_rx) = queue::bounded(FRAME_EVENTS_QUEUE, None);
        (ThreadEvents { notices, frames }, notices_rx, frames_rx)
    }

    /// Queues `ev`; false when the driver is gone.
    pub fn send(&self, ev: EngineEvent) -> bool {
        match ev {
            EngineEvent::VideoFrame(_)
            | EngineEvent::AudioFrame(_)
            | EngineEvent::PreviewFrame(..) => self.frames.push(ev),
            _ => self.notices.push(ev),
        }
    }
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

fn h264_encoder(config: &VideoConfig) -> Option<Encoder> {
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

fn publish_loop(
    channel: usize,
    tag: u32,
    (shared_config, shared_audio): (Arc<Mutex<VideoConfig>>, Arc<Mutex<AudioConfig>>),
    custom: Option<std_mpsc::Receiver<Pushed>>,
    Sinks {
        out,
        events,
        levels,
        ..
    }: Sinks,
    flags: Flags,
) {
    let Flags {
        stop,
        keyframe,
        silent,
        black,
        preview,
        encode,
        custom_video,
        custom_audio,
    } = flags;
    // Pushed PCM waiting to be sent, 20 ms at a time; bounded to 1 s so a fast pusher cannot
    // grow it without limit.
    let mut pushed_pcm: std::collections::VecDeque<i16> = std::collections::VecDeque::new();

    let mut first_preview = true;
    let current = |c: &Arc<Mutex<VideoConfig>>| c.lock().map(|g| *g).unwrap_or_default();
    let mut config = current(&shared_config);
    let Some(mut video) = VideoEncoder::new(&config) else {
        return;
    };
    let current_audio = |c: &Arc<Mutex<AudioConfig>>| c.lock().map(|g| *g).unwrap_or_default();
    let mut audio_config = current_audio(&shared_audio);
    let Some(mut opus) = opus_encoder(&audio_config) else {
        return;
    };
    let mut tone = Tone::new(440.0, AUDIO_RATE);
    let start = Instant::now();
    let mut frame_interval = Duration::from_secs_f64(1.0 / config.fps.max(1) as f64);
    let audio_interval = Duration::from_millis(20);
    let (mut next_video, mut next_audio) = (start, start);
    let (mut frames, mut audio_frames) = (0u32, 0u64);
    let mut opus_buf = vec![0u8; 1500];
    let mut custom_size = (0u32, 0u32);
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if let Some(rx) = &custom {
            // Custom capture: encode what the app pushed, when it pushed it.
            while let Ok(pushed) = rx.try_recv() {
                let raw = match pushed {
                    Pushed::Audio(pcm) => {
                        pushed_pcm.extend(pcm);
                        let excess = pushed_pcm.len().saturating_sub(AUDIO_RATE as usize);
                        pushed_pcm.drain(..excess);
                        continue;
                    }
                    Pushed::Video(raw) => raw,
                };

                let picture = if black.load(Ordering::Acquire) {
                    black_frame(raw.width, raw.height)
                } else {
                    match raw.to_i420() {
                        Some(p) => p,
                        None => continue,
                    }
                };
                if custom_size != (raw.width, raw.height) {
                    if custom_size == (0, 0) {
                        let _ = events.send(EngineEvent::Media(
                            MediaEvent::PublisherCapturedVideoFirstFrame { channel },
                        ));
                    }
                    custom_size = (raw.width, raw.height);
                    let _ =
                        events.send(EngineEvent::Media(MediaEvent::PublisherVideoSizeChanged {
                            channel,
                            width: raw.width,
                            height: raw.height,
                        }));
                }
                if preview.load(Ordering::Acquire) {
                    to_preview(&events, channel, &picture, &mut first_preview);
                }
                if !encode {
                    continue;
                }
                let key = keyframe.swap(false, Ordering::AcqRel);
                if let Some(data) = video.encode(&picture, key, &config) {
                    out.push(Encoded {
                        channel,
                        kind: TrackKind::Video,
                        codec: video.codec(),
                        data,
                        rtp_time: (Instant::now() - start).as_micros() as u64 * 90 / 1000,
                        captured: Instant::now(),
                    });
                }
            }
            if custom_video {
                next_video = now + Duration::from_secs(3600);
            }
        }
        if now >= next_video {
            let latest = current(&shared_config);
            if latest != config {
                // setVideoConfig while publishing: a new encoder at the new size and rate.
                if let Some(enc) = VideoEncoder::new(&latest) {
                    video = enc;
                    if (latest.width, latest.height) != (config.width, config.height) {
                        let _ = events.send(EngineEvent::Media(
                            MediaEvent::PublisherVideoSizeChanged {
                                channel,
                                width: latest.width,
                                height: latest.height,
                            },
                        ));
                    }
                    config = latest;
                    frame_interval = Duration::from_secs_f64(1.0 / config.fps.max(1) as f64);
                }
            }
            let frame = if black.load(Ordering::Acquire) {
                black_frame(config.width, config.height)
            } else {
                test_pattern(config.width, config.height, frames, tag)
            };
            if frames == 0 {
                let _ = events.send(EngineEvent::Media(
                    MediaEvent::PublisherCapturedVideoFirstFrame { channel },
                ));
                let _ = events.send(EngineEvent::Media(MediaEvent::PublisherVideoSizeChanged {
                    channel,
                    width: config.width,
                    height: config.height,
                }));
            }
            if preview.load(Ordering::Acquire) {
                to_preview(&events, channel, &frame, &mut first_preview);
            }
            let key = keyframe.swap(false, Ordering::AcqRel);
            let encoded = if encode {
                video.encode(&frame, key, &config)
            } else {
                None
            };
            if let Some(data) = encoded {
                let rtp_time = (next_video - start).as_micros() as u64 * 90 / 1000;
                out.push(Encoded {
                    channel,
                    kind: TrackKind::Video,
                    codec: video.codec(),
                    data,
                    rtp_time,
                    captured: now,
                });
            }
            frames = frames.wrapping_add(1);
            next_video += frame_interval;
        }
        if now >= next_audio && !encode {
            next_audio += audio_interval;
        } else if now >= next_audio {
            if audio_frames == 0 {
                let _ = events.send(EngineEvent::Media(
                    MediaEvent::PublisherCapturedAudioFirstFrame,
                ));
            }
            let mut pcm = if custom_audio {
                // Starved: silence rather than a gap.
                let n = pushed_pcm.len().min(AUDIO_FRAME);
                let mut pcm: Vec<i16> = pushed_pcm.drain(..n).collect();
                pcm.resize(AUDIO_FRAME, 0);
                pcm
            } else {
                tone.next_samples(AUDIO_FRAME)
            };
            if silent.load(Ordering::Acquire) {
                pcm.fill(0);
            }
            if let Ok(mut l) = levels.lock() {
                if let Some(slot) = l.captured.get_mut(channel) {
                    *slot = sound_level(&pcm);
                }
            }
            let latest = current_audio(&shared_audio);
            if latest != audio_config {
                if let Some(enc) = opus_encoder(&latest) {
                    opus = enc;
                    audio_config = latest;
                }
            }
            let pcm = if audio_config.stereo {
                pcm.iter().flat_map(|&s| [s, s]).collect()
            } else {
                pcm
            };
            if let Ok(n) = opus.encode(&pcm, &mut opus_buf) {
                out.push(Encoded {
                    channel,
                    kind: TrackKind::Audio,
                    codec: VideoCodec::H264,
                    data: opus_buf.get(..n).unwrap_or_default().to_vec(),
                    rtp_time: audio_frames * AUDIO_FRAME as u64,
                    captured: now,
                });
            }
            audio_frames += 1;
            next_audio += audio_interval;
        }
        let wake = next_video.min(next_audio);
        let now = Instant::now();
        if wake > now {
            let nap =
                (wake - now).min(Duration::from_millis(if custom.is_some() { 5 } else { 20 }));
            std::thread::sleep(nap);
        }
    }
}

/// Hands memory freed by a finished publisher or player (encoders, decoders, buffers) back to
/// the system. glibc gives each thread that allocates its own arena and keeps what is freed
/// there; with a thread per stream, a long session that starts and stops many streams grew the
/// process by about 90 MB over 1,000 streams without leaking anything (bench/results/soak-cycles.md).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's arenas; it takes no
    // pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the app can read back at any time: the latest sound levels (0..100, captured per
/// publish channel and per played stream) and each played stream's latest picture.
#[derive(Debug, Default)]
pub struct Meters {
    pub captured: [f32; 4],
    pub remote: std::collections::HashMap<String, f32>,
    pub last_picture: std::collections::HashMap<String, Arc<I420>>,
    /// Device choices and the speaker's mix (devices.rs).
    pub devices: super::devices::DeviceSettings,
}

pub type MeterMap = Arc<Mutex<Meters>>;

/// ZEGO's 0..100 sound level of 16-bit PCM: its RMS from -60 dBFS (0) to 0 dBFS (100).
pub fn sound_level(pcm: &[i16]) -> f32 {
    if pcm.is_empty() {
        return 0.0;
    }
    let sum: f64 = pcm.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let rms = (sum / pcm.len() as f64).sqrt() / 32768.0;
    if rms <= 1e-6 {
        return 0.0;
    }
    (((20.0 * rms.log10() + 60.0) / 60.0 * 100.0).clamp(0.0, 100.0)) as f32
}

/// Which decoded media the app wants for a stream (it gave a view with callbacks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Render {
    pub video: bool,
    pub audio: bool,
}

pub type RenderMap = Arc<Mutex<std::collections::HashMap<String, Render>>>;

/// A packet for a player thread.
pub struct Packet {
    pub kind: TrackKind,
    pub codec: VideoCodec,
    pub data: Arc<[u8]>,
    pub time_ms: f64,
    /// False after frames lost for good (see [`super::peer::PeerOutput::Received`]).
    pub contiguous: bool,
}

/// Whether an encoded video frame is a keyframe: VP8's frame tag has its key-frame bit clear;
/// an H.264 access unit (Annex B) holds an IDR slice.
pub fn is_keyframe(codec: VideoCodec, data: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => data.first().is_some_and(|b| b & 1 == 0),
        VideoCodec::H264 => data
            .windows(4)
            .any(|w| w[0] == 0 && w[1] == 0 && w[2] == 1 && w[3] & 0x1f == 5),
    }
}

/// After frames lost for good, a player shows nothing new until a keyframe (decoding on top of
/// a missing reference shows a corrupted picture), and asks for one at most this often.
const FROZEN_KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// A running player thread; dropping it stops the thread.
pub struct Player {
    pub tx: queue::Sender<Packet>,
}

/// Packets waiting for one player thread (some 3 s of audio and video); the oldest are
/// dropped. A dropped video packet freezes the picture until a keyframe (one is asked for); a
/// dropped audio packet is concealed by the playout.
pub const PLAYER_QUEUE: usize = 256;

impl Player {
    pub fn start(
        stream_id: String,
        render: RenderMap,
        levels: MeterMap,
        events: ThreadEvents,
        keyframe: queue::Sender<String>,
    ) -> Player {
        let gap = Arc::new(AtomicBool::new(false));
        let lost = gap.clone();
        let on_drop = Box::new(move |p: &Packet| {
            if p.kind == TrackKind::Video {
                lost.store(true, Ordering::Release);
            }
        });
        let (tx, mut rx) = queue::bounded(PLAYER_QUEUE, Some(on_drop));
        let spawned = std::thread::Builder::new()
            .name("zrooms-play".into())
            .spawn(move || {
                let sinks = (render, levels, events, keyframe);
                play_loop(stream_id, &mut rx, gap, sinks);
                release_freed_memory();
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the player thread: {e}");
        }
        Player { tx }
    }
}

/// What a player thread reads its switches from and writes to.
type PlayerSinks = (RenderMap, MeterMap, ThreadEvents, queue::Sender<String>);

fn play_loop(
    stream_id: String,
    rx: &mut queue::Receiver<Packet>,
    gap: Arc<AtomicBool>,
    (render, levels, events, keyframe): PlayerSinks,
) {
    let mut video = match openh264::decoder::Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("H.264 decoder: {e}");
            return;
        }
    };
    let mut vp8: Option<Vp8Decoder> = None;
    let mut opus = match opus::Decoder::new(AUDIO_RATE, opus::Channels::Mono) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("Opus decoder: {e}");
            return;
        }
    };
    let mut size = (0u32, 0u32);
    let mut rendered = false;
    // Since when the video waits for a keyframe, and when one was last asked for.
    let mut frozen: Option<Instant> = None;
    let mut pcm = vec![0i16; AUDIO_FRAME * 6];
    let mut playout = Playout::default();
    loop {
        let wants_now = || {
            render
                .lock()
                .map(|m| m.get(&stream_id).copied().unwrap_or_default())
                .unwrap_or_default()
        };
        // Release the audio that is due, at a steady 20 ms pace: each slot's packet decoded, or
        // the decoder's concealment for a packet that was lost or is too late.
        while let Some(slot) = playout.due(Instant::now()) {
            let Some(samples) = decode_slot(&mut opus, &slot, &mut pcm) else {
                continue;
            };
            if let Ok(mut l) = levels.lock() {
                l.remote.insert(stream_id.clone(), sound_level(samples));
                if l.devices.speaker_running.is_some() {
                    if let Ok(mut mix) = l.devices.mix.lock() {
                        mix.push(&stream_id, samples);
                    }
                }
            }
            if wants_now().audio {
                let _ = events.send(EngineEvent::AudioFrame(AudioFrame {
                    stream_id: stream_id.clone(),
                    sample_rate: AUDIO_RATE,
                    channels: 1,
                    samples: samples.to_vec(),
                }));
            }
        }
        let packet = match rx.recv_timeout(playout.wait(Instant::now())) {
            Ok(p) => p,
            Err(queue::RecvError::Timeout) => continue,
            Err(queue::RecvError::Closed) => return,
        };
        let wants = wants_now();
        match packet.kind {
            TrackKind::Video => {
                // Lost on the network for good, or dropped from this thread's full queue.
                if !packet.contiguous || gap.swap(false, Ordering::AcqRel) {
                    frozen.get_or_insert_with(Instant::now);
                }
                if let Some(asked) = frozen {
                    if !is_keyframe(packet.codec, &packet.data) {
                        if asked.elapsed() >= FROZEN_KEYFRAME_INTERVAL {
                            frozen = Some(Instant::now());
                            keyframe.push(stream_id.clone());
                        }
                        continue;
                    }
                    frozen = None;
                }
                match decode_video(&mut video, &mut vp8, packet.codec, &packet.data) {
                    Ok(Some(picture)) => {
                        let (w, h) = (picture.width, picture.height);
                        if !rendered {
                            rendered = true;
                            let _ = events.send(EngineEvent::Media(
                                MediaEvent::PlayerRenderVideoFirstFrame {
                                    stream_id: stream_id.clone(),
                                },
                            ));
                        }
                        if size != (w, h) {
                            size = (w, h);
                            let _ = events.send(EngineEvent::Media(
                                MediaEvent::PlayerVideoSizeChanged {
                                    stream_id: stream_id.clone(),
                                    width: w,
                                    height: h,
                                },
                            ));
                        }
                        let picture = Arc::new(picture);
                        if let Ok(mut m) = levels.lock() {
                            m.last_picture.insert(stream_id.clone(), picture.clone());
                        }
                        if wants.video {
                            let _ = events.send(EngineEvent::VideoFrame(VideoFrame {
                                stream_id: stream_id.clone(),
                                width: w,
                                height: h,
                                timestamp_ms: packet.time_ms,
                                data: picture.data.clone(),
                            }));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!("decode {stream_id}: {e}");
                        keyframe.push(stream_id.clone());
                    }
                }
            }
            TrackKind::Audio => playout.push(packet.time_ms, packet.data.to_vec(), Instant::now()),
        }
    }
}

/// Packets held before audio starts flowing (60 ms): absorbs network jitter.
const PLAYOUT_DEPTH: usize = 3;
/// More than this (200 ms) waiting means the app or the network stalled: the oldest go.
const PLAYOUT_MAX: usize = 10;
/// After this many slots concealed with nothing left to play (200 ms), playback stops and
/// waits to refill (the stream paused or ended).
const STALL_SLOTS: u32 = 10;
/// One Opus packet's duration.
const SLOT: Duration = Duration::from_millis(20);

/// What plays in one 20 ms slot.
#[derive(Debug, PartialEq)]
enum Slot {
    Packet(Vec<u8>),
    /// Lost or too late: the decoder conceals it.
    Lost,
}

/// A jitter buffer of 20 ms audio packets ordered by media time. Playback starts once
/// [`PLAYOUT_DEPTH`] packets are held, then takes one slot every 20 ms: its packet, or
/// concealment when it is missing, so the output stays continuous under loss and jitter.
/// Packets for slots already played are late and dropped.
#[derive(Default)]
struct Playout {
    packets: std::collections::BTreeMap<i64, Vec<u8>>,
    /// The next slot to play and when; `None` while (re)filling.
    clock: Option<(i64, Instant)>,
    /// Slots concealed in a row.
    missing: u32,
}

impl Playout {
    fn push(&mut self, time_ms: f64, data: Vec<u8>, now: Instant) {
        let slot = (time_ms / SLOT.as_millis() as f64).round() as i64;
        if self.clock.is_some_and(|(next, _)| slot < next) {
            return;
        }
        self.packets.insert(slot, data);
        while self.packets.len() > PLAYOUT_MAX {
            self.packets.pop_first();
            // Skip the clock ahead of what was dropped.
            if let (Some((next, at)), Some((&first, _))) =
                (self.clock, self.packets.first_key_value())
            {
                self.clock = Some((next.max(first), at));
            }
        }
        if self.clock.is_none() && self.packets.len() >= PLAYOUT_DEPTH {
            if let Some((&first, _)) = self.packets.first_key_value() {
                self.clock = Some((first, now));
            }
        }
    }

    /// What plays in the slot that is due, if one is.
    fn due(&mut self, now: Instant) -> Option<Slot> {
        let (slot, at) = self.clock?;
        if now < at {
            return None;
        }
        // Far behind (the thread was starved): restart the pace instead of bursting.
        let next_at = if now > at + 5 * SLOT {
            now + SLOT
        } else {
            at + SLOT
        };
        match self.packets.remove(&slot) {
            Some(p) => {
                self.missing = 0;
                self.clock = Some((slot + 1, next_at));
                Some(Slot::Packet(p))
            }
            None if self.packets.is_empty() && self.missing >= STALL_SLOTS => {
                self.clock = None;
                self.missing = 0;
                None
            }
            None => {
                self.missing += 1;
                self.clock = Some((slot + 1, next_at));
                Some(Slot::Lost)
            }
        }
    }

    /// How long the thread may wait for a packet before a slot is due.
    fn wait(&self, now: Instant) -> Duration {
        match self.clock {
            Some((_, t)) => t.saturating_duration_since(now),
            None => Duration::from_millis(500),
        }
    }
}

/// Decodes one playout slot into `pcm`: its packet, or for a lost slot exactly one packet's
/// worth (20 ms) of the decoder's concealment. libopus conceals as many samples as the output
/// has room for, so a lost slot given the whole buffer would insert 120 ms and stretch the
/// stream.
fn decode_slot<'a>(opus: &mut opus::Decoder, slot: &Slot, pcm: &'a mut [i16]) -> Option<&'a [i16]> {
    let n = match slot {
        Slot::Packet(data) => opus.decode(data, pcm, false).ok()?,
        Slot::Lost => opus.decode(&[], pcm.get_mut(..AUDIO_FRAME)?, false).ok()?,
    };
    pcm.get(..n)
}

/// Decodes one video frame with the decoder of its codec (the VP8 one made on first use).
fn decode_video(
    h264: &mut openh264::decoder::Decoder,
    vp8: &mut Option<Vp8Decoder>,
    codec: VideoCodec,
    data: &[u8],
) -> Result<Option<I420>, String> {
    match codec {
        VideoCodec::H264 => match h264.decode(data) {
            Ok(Some(yuv)) => {
                let (w, h) = yuv.dimensions();
                Ok(Some(pack_i420(&yuv, w as u32, h as u32)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        },
        VideoCodec::Vp8 => {
            if vp8.is_none() {
                *vp8 = Vp8Decoder::new();
            }
            match vp8.as_mut() {
                Some(dec) => dec
                    .decode(data)
                    .map(Some)
                    .ok_or_else(|| "VP8 frame did not decode".to_string()),
                None => Err("no VP8 decoder".into()),
            }
        }
    }
}

/// Copies a decoded picture into a tightly packed I420 buffer.
fn pack_i420(yuv: &impl YUVSource, w: u32, h: u32) -> I420 {
    let (w, h) = (w as usize, h as usize);
    let (ys, us, vs) = yuv.strides();
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut data = Vec::with_capacity(I420::len_for(w as u32, h as u32));
    for (plane, stride, pw, ph) in [
        (yuv.y(), ys, w, h),
        (yuv.u(), us, cw, ch),
        (yuv.v(), vs, cw, ch),
    ] {
        for row in 0..ph {
            let line = plane
                .get(row * stride..row * stride + pw)
                .unwrap_or_default();
            data.extend_from_slice(line);
            data.resize(data.len() + (pw - line.len()), 0);
        }
    }
    I420 {
        width: w as u32,
        height: h as u32,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::read_counter;

    #[test]
    fn playout_waits_for_depth_paces_conceals_and_refills() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let pkt = |n: u8| vec![n];
        let mut p = Playout::default();
        p.push(1000.0, pkt(1), ms(0));
        p.push(1020.0, pkt(2), ms(1));
        assert_eq!(p.due(ms(2)), None, "not before the buffer holds its depth");
        // Slot 1040 is lost; 1060 arrives.
        p.push(1060.0, pkt(4), ms(2));
        assert_eq!(p.due(ms(2)), Some(Slot::Packet(pkt(1))));
        assert_eq!(p.due(ms(10)), None, "the next slot waits its 20 ms");
        assert_eq!(p.due(ms(22)), Some(Slot::Packet(pkt(2))));
        assert_eq!(
            p.due(ms(42)),
            Some(Slot::Lost),
            "a lost packet is concealed in its slot"
        );
        // Too late for its slot: dropped.
        p.push(1040.0, pkt(3), ms(50));
        assert_eq!(p.due(ms(62)), Some(Slot::Packet(pkt(4))));
        // Nothing more: concealment for 200 ms, then it stops and refills.
        let mut concealed = 0;
        for k in 0..20 {
            if p.due(ms(82 + 20 * k)) == Some(Slot::Lost) {
                concealed += 1;
            }
        }
        assert_eq!(concealed, STALL_SLOTS);
        assert!(p.clock.is_none());
        for i in 0..20 {
            p.push(2000.0 + 20.0 * f64::from(i), pkt(i as u8), ms(600));
        }
        assert_eq!(p.packets.len(), PLAYOUT_MAX, "bounded");
        assert_eq!(
            p.due(ms(600)),
            Some(Slot::Packet(pkt(10))),
            "the oldest went"
        );
    }

    #[test]
    fn a_lost_slot_conceals_one_packet_of_audio() {
        let mut enc = opus_encoder(&AudioConfig::default()).unwrap();
        let mut dec = opus::Decoder::new(AUDIO_RATE, opus::Channels::Mono).unwrap();
        let tone: Vec<i16> = (0..AUDIO_FRAME)
            .map(|i| (8000.0 * (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin()) as i16)
            .collect();
        let mut packet = vec![0u8; 1500];
        let len = enc.encode(&tone, &mut packet).unwrap();
        packet.truncate(len);
        let mut pcm = vec![0i16; AUDIO_FRAME * 6];
        let played = decode_slot(&mut dec, &Slot::Packet(packet), &mut pcm).map(<[i16]>::len);
        assert_eq!(played, Some(AUDIO_FRAME));
        let concealed = decode_slot(&mut dec, &Slot::Lost, &mut pcm).map(<[i16]>::len);
        assert_eq!(concealed, Some(AUDIO_FRAME), "20 ms for a 20 ms slot");
    }

    #[test]
    fn counter_survives_h264() {
        let config = VideoConfig::default();
        let mut enc = h264_encoder(&config).unwrap();
        let mut dec = openh264::decoder::Decoder::new().unwrap();
        let mut seen = Vec::new();
        for n in 0..10 {
            let f = test_pattern(config.width, config.height, n, 1);
            let yuv = YUVBuffer::from_vec(f.data, 640, 360);
            let bits = enc.encode(&yuv).unwrap().to_vec();
            if let Ok(Some(pic)) = dec.decode(&bits) {
                let packed = pack_i420(&pic, 640, 360);
                seen.push(read_counter(packed.y(), 640, 360, 640));
            }
        }
        assert_eq!(seen, (0..10).map(Some).collect::<Vec<_>>());
    }
}
