//! What the capture, codec and driver threads exchange: configs, frames, packets, the events
//! of the threads, meters. Codecs are CPU work, so they never run on the tokio driver: the
//! threads themselves are [`super::publisher`] (capture and encode, one per publish channel)
//! and [`super::player`] (decode, one per played stream).

use super::pattern::I420;
use crate::queue;
use crate::EngineEvent;
use openh264::formats::{BgraSliceU8, RgbaSliceU8, YUVBuffer, YUVSource};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;
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
    pub(super) fn to_i420(&self) -> Option<I420> {
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

/// The app's device choices, locked by the app's calls and the driver only.
pub type Settings = Arc<Mutex<super::devices::DeviceSettings>>;

pub use super::shared::{PlayState, Played};

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

/// Copies a decoded picture into a tightly packed I420 buffer.
pub(super) fn pack_i420(yuv: &impl YUVSource, w: u32, h: u32) -> I420 {
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

pub use super::player::{Player, PLAYER_QUEUE};
pub use super::publisher::{Mode, Publisher, Sinks};
