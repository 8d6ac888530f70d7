//! Real devices: microphone and speaker through cpal, camera through nokhwa (V4L2).
//!
//! Device lists leave out pseudo devices (ALSA's `null`, which swallows playback and captures
//! zeros), but such a device can still be chosen by its ID: headless machines and tests play
//! and capture through it. A device that consumes or produces faster than real time (the null
//! device has no clock) is paced here, so its callbacks do not spin a core.
//!
//! Every device runs on a thread of its own that owns the cpal or nokhwa stream (they are not
//! `Send` everywhere) and stops when its handle drops. Opening reports success or the reason
//! before the handle is returned, so the engine can fall back to the synthetic source and say
//! so with `localDeviceExceptionOccurred`.

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, PolynomialDegree, Resampler};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::pipeline::{Pushed, RawFormat, RawFrame, AUDIO_FRAME, AUDIO_RATE};

/// ZEGO's `ZegoDeviceType`.
pub mod device_type {
    pub const CAMERA: u32 = 1;
    pub const MICROPHONE: u32 = 2;
    pub const SPEAKER: u32 = 3;
}

/// ZEGO's `ZegoDeviceExceptionType`.
pub mod exception {
    pub const GENERIC: u32 = 1;
    pub const INVALID_ID: u32 = 2;
    pub const DEVICE_UNPLUGGED: u32 = 6;
}

/// A device as the app sees it (`ZegoDeviceInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: String,
    pub name: String,
}

/// ZEGO's `ZegoAudioDeviceType`: Input 0, Output 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AudioDirection {
    Input,
    Output,
}

/// Why a device did not open: ZEGO's exception type and a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceError {
    pub exception: u32,
    pub device_id: String,
    pub reason: String,
}

impl DeviceError {
    fn new(exception: u32, device_id: &str, reason: impl ToString) -> Self {
        DeviceError {
            exception,
            device_id: device_id.to_owned(),
            reason: reason.to_string(),
        }
    }
}

fn device_id(d: &cpal::Device) -> String {
    d.id().map(|i| i.to_string()).unwrap_or_default()
}

fn device_name(d: &cpal::Device) -> String {
    d.description()
        .map(|desc| desc.name().to_owned())
        .unwrap_or_else(|_| d.to_string())
}

/// ALSA's `null` and the like: real streams, no hardware behind them.
fn is_pseudo(d: &cpal::Device) -> bool {
    let id = device_id(d);
    id.rsplit(':').next() == Some("null")
        || d.description()
            .is_ok_and(|desc| desc.driver() == Some("null"))
}

fn supports(d: &cpal::Device, dir: AudioDirection) -> bool {
    match dir {
        AudioDirection::Input => d.supports_input(),
        AudioDirection::Output => d.supports_output(),
    }
}

/// The audio devices of one direction, without pseudo devices.
pub fn audio_devices(dir: AudioDirection) -> Vec<DeviceInfo> {
    let host = cpal::default_host();
    let devices = match dir {
        AudioDirection::Input => host.input_devices().map(|d| d.collect::<Vec<_>>()),
        AudioDirection::Output => host.output_devices().map(|d| d.collect::<Vec<_>>()),
    };
    devices
        .unwrap_or_default()
        .iter()
        .filter(|d| !is_pseudo(d))
        .map(|d| DeviceInfo {
            id: device_id(d),
            name: device_name(d),
        })
        .collect()
}

/// The system's default device of a direction, when it is a usable, real one.
pub fn default_audio_device(dir: AudioDirection) -> Option<DeviceInfo> {
    let host = cpal::default_host();
    let d = match dir {
        AudioDirection::Input => host.default_input_device(),
        AudioDirection::Output => host.default_output_device(),
    }?;
    (!is_pseudo(&d) && supports(&d, dir)).then(|| DeviceInfo {
        id: device_id(&d),
        name: device_name(&d),
    })
}

/// A device by ID (listed or pseudo), or the default one for `""`.
fn find_audio(dir: AudioDirection, id: &str) -> Result<cpal::Device, DeviceError> {
    let host = cpal::default_host();
    if id.is_empty() {
        let d = match dir {
            AudioDirection::Input => host.default_input_device(),
            AudioDirection::Output => host.default_output_device(),
        };
        return match d {
            Some(d) if !is_pseudo(&d) && supports(&d, dir) => Ok(d),
            _ => Err(DeviceError::new(exception::GENERIC, "", "no audio device")),
        };
    }
    let found = host
        .devices()
        .map_err(|e| DeviceError::new(exception::GENERIC, id, e))?
        .find(|d| device_id(d) == id && supports(d, dir));
    found.ok_or_else(|| DeviceError::new(exception::INVALID_ID, id, "no such device"))
}

/// The cameras nokhwa finds (V4L2 on Linux).
pub fn video_devices() -> Vec<DeviceInfo> {
    match nokhwa::query(nokhwa::utils::ApiBackend::Auto) {
        Ok(list) => list
            .iter()
            .map(|c| DeviceInfo {
                id: c.index().as_string(),
                name: c.human_name(),
            })
            .collect(),
        Err(e) => {
            tracing::debug!("camera query: {e}");
            Vec::new()
        }
    }
}

/// A stream format the engine can use: its rate, channels and sample type.
#[derive(Clone, Copy, Debug)]
struct Format {
    rate: u32,
    channels: u16,
    sample: cpal::SampleFormat,
}

/// 48 kHz in i16 or f32 with one or two channels when the device offers it (no resampling);
/// otherwise its default format, resampled.
fn negotiate(d: &cpal::Device, dir: AudioDirection) -> Result<Format, String> {
    let ranges: Vec<cpal::SupportedStreamConfigRange> = match dir {
        AudioDirection::Input => d
            .supported_input_configs()
            .map(|r| r.collect())
            .map_err(|e| e.to_string())?,
        AudioDirection::Output => d
            .supported_output_configs()
            .map(|r| r.collect())
            .map_err(|e| e.to_string())?,
    };
    let usable =
        |s: cpal::SampleFormat| matches!(s, cpal::SampleFormat::I16 | cpal::SampleFormat::F32);
    let mut best: Option<Format> = None;
    for r in &ranges {
        if usable(r.sample_format()) && r.channels() <= 2 && r.contains_rate(AUDIO_RATE) {
            let f = Format {
                rate: AUDIO_RATE,
                channels: r.channels(),
                sample: r.sample_format(),
            };
            // Fewer channels first: mono is what the engine carries.
            if best.is_none_or(|b| f.channels < b.channels) {
                best = Some(f);
            }
        }
    }
    if let Some(f) = best {
        return Ok(f);
    }
    let default = match dir {
        AudioDirection::Input => d.default_input_config(),
        AudioDirection::Output => d.default_output_config(),
    }
    .map_err(|e| e.to_string())?;
    if !usable(default.sample_format()) {
        return Err(format!("sample format {:?}", default.sample_format()));
    }
    Ok(Format {
        rate: default.sample_rate(),
        channels: default.channels().max(1),
        sample: default.sample_format(),
    })
}

/// Mono f32 at one rate to mono f32 at another (rubato, cubic interpolation), through FIFOs
/// so callers can feed and take any amounts.
struct RateConverter {
    resampler: Option<Async<f32>>,
    input: Vec<f32>,
    output: VecDeque<f32>,
    scratch: Vec<f32>,
}

/// Frames per resampler chunk.
const CHUNK: usize = 480;

impl RateConverter {
    fn new(from: u32, to: u32) -> Self {
        let resampler = (from != to)
            .then(|| {
                Async::<f32>::new_poly(
                    f64::from(to) / f64::from(from),
                    1.1,
                    PolynomialDegree::Cubic,
                    CHUNK,
                    1,
                    FixedAsync::Input,
                )
                .map_err(|e| tracing::warn!("resampler {from} -> {to}: {e}"))
                .ok()
            })
            .flatten();
        let out_max = resampler.as_ref().map_or(CHUNK, |r| r.output_frames_max());
        RateConverter {
            resampler,
            input: Vec::new(),
            output: VecDeque::new(),
            scratch: vec![0.0; out_max],
        }
    }

    fn push(&mut self, samples: impl IntoIterator<Item = f32>) {
        let Some(r) = self.resampler.as_mut() else {
            self.output.extend(samples);
            return;
        };
        self.input.extend(samples);
        while self.input.len() >= r.input_frames_next() {
            let need = r.input_frames_next();
            let capacity = self.scratch.len();
            let (Ok(inp), Ok(mut out)) = (
                InterleavedSlice::new(&self.input[..], 1, need),
                InterleavedSlice::new_mut(&mut self.scratch[..], 1, capacity),
            ) else {
                self.input.clear();
                return;
            };
            match r.process_into_buffer(&inp, &mut out, None) {
                Ok((used, made)) => {
                    self.output
                        .extend(self.scratch.get(..made).unwrap_or_default().iter().copied());
                    self.input.drain(..used.min(self.input.len()));
                }
                Err(e) => {
                    tracing::debug!("resample: {e}");
                    self.input.clear();
                    return;
                }
            }
        }
    }
}

/// Keeps a clock-less device to real time: sleeps while more than 40 ms ahead.
struct Pacer {
    start: Instant,
    frames: u64,
    rate: u32,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        Pacer {
            start: Instant::now(),
            frames: 0,
            rate: rate.max(1),
        }
    }

    fn after(&mut self, frames: usize) {
        self.frames += frames as u64;
        let due = Duration::from_secs_f64(self.frames as f64 / f64::from(self.rate));
        let elapsed = self.start.elapsed();
        if due > elapsed + Duration::from_millis(40) {
            std::thread::sleep(due - elapsed - Duration::from_millis(20));
        }
    }
}

/// The app's device choices and switches, shared by the engine's API, the media driver and
/// the player threads.
#[derive(Debug)]
pub struct DeviceSettings {
    /// Capture from devices (the default, as ZEGO's desktop SDK does); false: the synthetic
    /// pattern and tone (`advancedConfig.capture = "synthetic"`).
    pub use_devices: bool,
    /// Chosen devices; `""` is the system default (the first camera).
    pub microphone: String,
    pub speaker: String,
    pub cameras: [String; 4],
    /// `enableAudioCaptureDevice`: false releases the microphone (silence is sent).
    pub mic_enabled: bool,
    /// `setCaptureVolume` / 100.
    pub capture_volume: Arc<Mutex<f32>>,
    pub mix: SharedMix,
    /// What runs now: the speaker's device and frames played, microphones and cameras by
    /// publish channel.
    pub speaker_running: Option<(String, Arc<AtomicU64>, Arc<AtomicU64>)>,
    pub microphones: HashMap<usize, String>,
    pub camera_ids: HashMap<usize, String>,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            use_devices: true,
            microphone: String::new(),
            speaker: String::new(),
            cameras: Default::default(),
            mic_enabled: true,
            capture_volume: Arc::new(Mutex::new(1.0)),
            mix: Arc::new(Mutex::new(Mix {
                all_gain: 1.0,
                ..Default::default()
            })),
            speaker_running: None,
            microphones: HashMap::new(),
            camera_ids: HashMap::new(),
        }
    }
}

/// What the speaker plays: every played stream's decoded audio, mixed.
#[derive(Debug, Default)]
pub struct Mix {
    /// 48 kHz mono per stream, waiting to be played (bounded to 200 ms each).
    streams: HashMap<String, VecDeque<f32>>,
    /// Per-stream gain (`setPlayVolume`/`mutePlayStreamAudio`), 1.0 when unset.
    gains: HashMap<String, f32>,
    /// `setAllPlayStreamVolume` (1.0 = 100).
    pub all_gain: f32,
    /// `muteSpeaker`.
    pub muted: bool,
}

impl Mix {
    /// A played stream's decoded PCM (48 kHz mono).
    pub fn push(&mut self, stream_id: &str, pcm: &[i16]) {
        let q = self.streams.entry(stream_id.to_owned()).or_default();
        q.extend(pcm.iter().map(|&s| f32::from(s) / 32768.0));
        let excess = q.len().saturating_sub(AUDIO_RATE as usize / 5);
        q.drain(..excess);
    }

    pub fn remove(&mut self, stream_id: &str) {
        self.streams.remove(stream_id);
        self.gains.remove(stream_id);
    }

    pub fn set_gain(&mut self, stream_id: &str, gain: f32) {
        self.gains.insert(stream_id.to_owned(), gain);
    }

    /// The next `n` mixed samples (silence where nothing is queued).
    fn take(&mut self, n: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; n];
        let all = if self.muted { 0.0 } else { self.all_gain };
        for (id, q) in self.streams.iter_mut() {
            let g = all * self.gains.get(id).copied().unwrap_or(1.0);
            for (o, s) in out.iter_mut().zip(q.drain(..n.min(q.len()))) {
                *o += s * g;
            }
        }
        for o in &mut out {
            *o = o.clamp(-1.0, 1.0);
        }
        out
    }
}

pub type SharedMix = Arc<Mutex<Mix>>;

/// A running output stream that plays a [`Mix`].
pub struct Speaker {
    running: Capture,
    /// Device frames written so far, and the peak (0..32767) of the latest buffer played
    /// (for tests and diagnostics).
    pub frames: Arc<AtomicU64>,
    pub peak: Arc<AtomicU64>,
}

impl Speaker {
    /// Opens `device_id` (`""`: the default output) and plays `mix` on it.
    pub fn open(device_id: &str, mix: SharedMix) -> Result<Speaker, DeviceError> {
        let frames = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let (id, f, pk) = (device_id.to_owned(), frames.clone(), peak.clone());
        let running = spawn_device(
            "zrooms-speaker",
            device_id,
            move |_stop| open_output(&id, mix, (f, pk)),
            hold,
        )?;
        Ok(Speaker {
            running,
            frames,
            peak,
        })
    }

    pub fn device_id(&self) -> &str {
        &self.running.device_id
    }
}

/// Keeps a device's stream until `stop`.
fn hold<S>(stream: S, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stream);
}

/// The device, its negotiated format and stream config, and a pacer when it has no clock.
fn prepare(
    dir: AudioDirection,
    id: &str,
) -> Result<(cpal::Device, Format, cpal::StreamConfig, Option<Pacer>), DeviceError> {
    let device = find_audio(dir, id)?;
    let format =
        negotiate(&device, dir).map_err(|e| DeviceError::new(exception::GENERIC, id, e))?;
    let config = cpal::StreamConfig {
        channels: format.channels,
        sample_rate: format.rate,
        buffer_size: cpal::BufferSize::Default,
    };
    let pacer = is_pseudo(&device).then(|| Pacer::new(format.rate));
    Ok((device, format, config, pacer))
}

fn open_output(
    id: &str,
    mix: SharedMix,
    (frames, peak): (Arc<AtomicU64>, Arc<AtomicU64>),
) -> Result<cpal::Stream, DeviceError> {
    let (device, format, config, mut pacer) = prepare(AudioDirection::Output, id)?;
    let err = |e: String| DeviceError::new(exception::GENERIC, id, e);
    let mut conv = RateConverter::new(AUDIO_RATE, format.rate);
    let channels = usize::from(format.channels);
    // Fills `n` device frames of mono from the mix (resampled when the rates differ).
    let mut next = move |n: usize| -> Vec<f32> {
        while conv.output.len() < n {
            let want = CHUNK.max(n - conv.output.len());
            let mixed = mix.lock().map(|mut m| m.take(want)).unwrap_or_default();
            if mixed.is_empty() {
                break;
            }
            conv.push(mixed);
        }
        let k = n.min(conv.output.len());
        let mut out: Vec<f32> = conv.output.drain(..k).collect();
        out.resize(n, 0.0);
        if let Some(p) = pacer.as_mut() {
            p.after(n);
        }
        frames.fetch_add(n as u64, Ordering::Relaxed);
        let loudest = out.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        peak.store((loudest * 32767.0) as u64, Ordering::Relaxed);
        out
    };
    let on_error = |e: cpal::Error| tracing::warn!("speaker: {e}");
    let stream = match format.sample {
        cpal::SampleFormat::F32 => device.build_output_stream::<f32, _, _>(
            config,
            move |buf: &mut [f32], _| {
                let mono = next(buf.len() / channels);
                for (frame, s) in buf.chunks_mut(channels).zip(mono) {
                    frame.fill(s);
                }
            },
            on_error,
            Some(Duration::from_secs(2)),
        ),
        _ => device.build_output_stream::<i16, _, _>(
            config,
            move |buf: &mut [i16], _| {
                let mono = next(buf.len() / channels);
                for (frame, s) in buf.chunks_mut(channels).zip(mono) {
                    frame.fill((s * 32767.0) as i16);
                }
            },
            on_error,
            Some(Duration::from_secs(2)),
        ),
    }
    .map_err(|e| err(e.to_string()))?;
    stream.play().map_err(|e| err(e.to_string()))?;
    Ok(stream)
}

/// A running capture: a microphone (cpal) or a camera (nokhwa) feeding a publisher the way
/// custom capture does. Stops when dropped.
pub struct Capture {
    stop: Arc<AtomicBool>,
    pub device_id: String,
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Runs `open` on a thread of its own and waits for it to report; the thread keeps what it
/// opened until `stop`.
fn spawn_device<S: 'static>(
    name: &str,
    device_id: &str,
    open: impl FnOnce(Arc<AtomicBool>) -> Result<S, DeviceError> + Send + 'static,
    run: impl FnOnce(S, Arc<AtomicBool>) + Send + 'static,
) -> Result<Capture, DeviceError> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std_mpsc::channel();
    let s = stop.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || match open(s.clone()) {
            Ok(state) => {
                let _ = ready_tx.send(Ok(()));
                run(state, s);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| DeviceError::new(exception::GENERIC, device_id, e))?;
    match ready_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => Ok(Capture {
            stop,
            device_id: device_id.to_owned(),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            stop.store(true, Ordering::Release);
            Err(DeviceError::new(
                exception::GENERIC,
                device_id,
                "the device did not open",
            ))
        }
    }
}

/// Captures `device_id` (`""`: the default input) as 48 kHz mono into `out`, 20 ms at a time,
/// scaled by `volume` (`setCaptureVolume`, 1.0 = 100) read for every packet.
pub fn open_microphone(
    device_id: &str,
    out: std_mpsc::SyncSender<Pushed>,
    volume: Arc<Mutex<f32>>,
) -> Result<Capture, DeviceError> {
    let id = device_id.to_owned();
    spawn_device(
        "zrooms-mic",
        device_id,
        move |_stop| {
            let (device, format, config, mut pacer) = prepare(AudioDirection::Input, &id)?;
            let err = |e: String| DeviceError::new(exception::GENERIC, &id, e);
            let mut conv = RateConverter::new(format.rate, AUDIO_RATE);
            let channels = usize::from(format.channels);
            // Downmixed, resampled, and handed on 20 ms at a time.
            let mut deliver = move |mono: Vec<f32>| {
                let n = mono.len();
                conv.push(mono);
                let gain = volume.lock().map(|v| *v).unwrap_or(1.0);
                while conv.output.len() >= AUDIO_FRAME {
                    let pcm: Vec<i16> = conv
                        .output
                        .drain(..AUDIO_FRAME)
                        .map(|s| ((s * gain).clamp(-1.0, 1.0) * 32767.0) as i16)
                        .collect();
                    // A full queue means the publisher is behind: the packet goes.
                    let _ = out.try_send(Pushed::Audio(pcm));
                }
                if let Some(p) = pacer.as_mut() {
                    p.after(n);
                }
            };
            let on_error = |e: cpal::Error| tracing::warn!("microphone: {e}");
            let timeout = Some(Duration::from_secs(2));
            let stream = match format.sample {
                cpal::SampleFormat::F32 => device.build_input_stream::<f32, _, _>(
                    config,
                    move |buf: &[f32], _| {
                        deliver(
                            buf.chunks(channels)
                                .map(|f| f.iter().sum::<f32>() / channels as f32)
                                .collect(),
                        )
                    },
                    on_error,
                    timeout,
                ),
                _ => device.build_input_stream::<i16, _, _>(
                    config,
                    move |buf: &[i16], _| {
                        deliver(
                            buf.chunks(channels)
                                .map(|f| {
                                    f.iter().map(|&s| f32::from(s) / 32768.0).sum::<f32>()
                                        / channels as f32
                                })
                                .collect(),
                        )
                    },
                    on_error,
                    timeout,
                ),
            }
            .map_err(|e| err(e.to_string()))?;
            stream.play().map_err(|e| err(e.to_string()))?;
            Ok(stream)
        },
        hold,
    )
}

/// Captures camera `device_id` (`""`: the first camera) near `width`x`height`@`fps` into
/// `out` as RGBA frames (the publisher converts them to I420 and encodes them).
pub fn open_camera(
    device_id: &str,
    (width, height, fps): (u32, u32, u32),
    out: std_mpsc::SyncSender<Pushed>,
) -> Result<Capture, DeviceError> {
    use nokhwa::pixel_format::RgbAFormat;
    use nokhwa::utils::{
        CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
    };
    let id = device_id.to_owned();
    spawn_device(
        "zrooms-camera",
        device_id,
        move |_stop| {
            let cameras = video_devices();
            let chosen = if id.is_empty() {
                cameras.first()
            } else {
                cameras.iter().find(|c| c.id == id)
            };
            let Some(info) = chosen else {
                let kind = if id.is_empty() {
                    exception::GENERIC
                } else {
                    exception::INVALID_ID
                };
                return Err(DeviceError::new(kind, &id, "no such camera"));
            };
            let index = info
                .id
                .parse::<u32>()
                .map(CameraIndex::Index)
                .unwrap_or_else(|_| CameraIndex::String(info.id.clone()));
            let wanted = CameraFormat::new(Resolution::new(width, height), FrameFormat::YUYV, fps);
            let requested =
                RequestedFormat::new::<RgbAFormat>(RequestedFormatType::Closest(wanted));
            let err = |e: nokhwa::NokhwaError| DeviceError::new(exception::GENERIC, &info.id, e);
            let mut camera = nokhwa::Camera::new(index, requested).map_err(err)?;
            camera.open_stream().map_err(err)?;
            Ok(camera)
        },
        move |mut camera, stop| {
            let mut failures = 0;
            while !stop.load(Ordering::Acquire) {
                let frame = camera.frame().and_then(|b| camera_frame(&b));
                match frame {
                    Ok(raw) => {
                        failures = 0;
                        let _ = out.try_send(Pushed::Video(raw));
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::debug!("camera frame: {e}");
                        if failures > 50 {
                            tracing::warn!("camera stopped delivering frames: {e}");
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            let _ = camera.stop_stream();
        },
    )
}

/// A camera buffer as an I420 frame (yuv crate): YUYV directly, anything else through RGBA.
fn camera_frame(buffer: &nokhwa::Buffer) -> Result<RawFrame, nokhwa::NokhwaError> {
    let res = buffer.resolution();
    let (w, h) = (res.width() & !1, res.height() & !1);
    let converted = if buffer.source_frame_format() == nokhwa::utils::FrameFormat::YUYV {
        yuyv_to_i420(buffer.buffer(), res.width(), w, h)
    } else {
        let rgba = buffer.decode_image::<nokhwa::pixel_format::RgbAFormat>()?;
        rgba_to_i420(rgba.as_raw(), rgba.width(), w, h)
    };
    converted.ok_or_else(|| nokhwa::NokhwaError::GeneralError("colour conversion failed".into()))
}

/// Packed YUYV (`stride_px` pixels a row) to a `w`x`h` I420 frame.
fn yuyv_to_i420(data: &[u8], stride_px: u32, w: u32, h: u32) -> Option<RawFrame> {
    let mut planar = yuv::YuvPlanarImageMut::alloc(w, h, yuv::YuvChromaSubsampling::Yuv420);
    let packed = yuv::YuvPackedImage {
        yuy: data,
        yuy_stride: stride_px * 2,
        width: w,
        height: h,
    };
    yuv::yuyv422_to_yuv420(&mut planar, &packed).ok()?;
    Some(pack(&planar, w, h))
}

/// RGBA (`stride_px` pixels a row) to a `w`x`h` I420 frame (BT.601, limited range).
fn rgba_to_i420(data: &[u8], stride_px: u32, w: u32, h: u32) -> Option<RawFrame> {
    let mut planar = yuv::YuvPlanarImageMut::alloc(w, h, yuv::YuvChromaSubsampling::Yuv420);
    yuv::rgba_to_yuv420(
        &mut planar,
        data,
        stride_px * 4,
        yuv::YuvRange::Limited,
        yuv::YuvStandardMatrix::Bt601,
        yuv::YuvConversionMode::Balanced,
    )
    .ok()?;
    Some(pack(&planar, w, h))
}

fn pack(planar: &yuv::YuvPlanarImageMut<u8>, w: u32, h: u32) -> RawFrame {
    let mut data = Vec::with_capacity((w * h * 3 / 2) as usize);
    let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
    for (plane, stride, pw, ph) in [
        (
            planar.y_plane.borrow(),
            planar.y_stride,
            w as usize,
            h as usize,
        ),
        (planar.u_plane.borrow(), planar.u_stride, cw, ch),
        (planar.v_plane.borrow(), planar.v_stride, cw, ch),
    ] {
        for row in 0..ph {
            let start = row * stride as usize;
            data.extend_from_slice(plane.get(start..start + pw).unwrap_or_default());
        }
    }
    RawFrame {
        format: RawFormat::I420,
        width: w,
        height: h,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_sums_scales_mutes_and_bounds() {
        let mut m = Mix {
            all_gain: 1.0,
            ..Default::default()
        };
        m.push("a", &[16384; 4]);
        m.push("b", &[8192; 2]);
        m.set_gain("b", 0.5);
        let out = m.take(4);
        assert_eq!(out, vec![0.625, 0.625, 0.5, 0.5]);
        m.push("a", &vec![1000; AUDIO_RATE as usize]);
        assert_eq!(
            m.streams["a"].len(),
            AUDIO_RATE as usize / 5,
            "200 ms at most"
        );
        m.muted = true;
        assert!(m.take(10).iter().all(|&s| s == 0.0));
    }

    #[test]
    fn camera_formats_convert_to_i420() {
        // 4x2 YUYV: luma 10, 20, 30, 40 per row, chroma 100/200.
        let yuyv: Vec<u8> = [10, 100, 20, 200, 30, 100, 40, 200].repeat(2);
        let f = yuyv_to_i420(&yuyv, 4, 4, 2).unwrap();
        assert_eq!(f.data.len(), 4 * 2 + 2 * 2);
        assert_eq!(&f.data[..8], &[10, 20, 30, 40, 10, 20, 30, 40]);
        assert_eq!(&f.data[8..], &[100, 100, 200, 200]);
        // White and black RGBA to limited-range luma.
        let rgba: Vec<u8> = [[255u8, 255, 255, 255], [0, 0, 0, 255]].concat().repeat(4);
        let f = rgba_to_i420(&rgba, 2, 2, 4).unwrap();
        assert!(f.data[0] >= 234 && f.data[1] <= 17, "{:?}", &f.data[..2]);
    }

    #[test]
    fn rates_convert_with_the_tone_kept() {
        let mut c = RateConverter::new(44_100, AUDIO_RATE);
        let tone = (0..44_100).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 44_100.0).sin());
        c.push(tone);
        let out: Vec<f32> = c.output.drain(..).collect();
        assert!(
            (47_000..=48_000).contains(&out.len()),
            "{} samples",
            out.len()
        );
        // Zero crossings upward over the last half second: 440 Hz at 48 kHz.
        let tail = &out[out.len() - 24_000..];
        let ups = tail
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!((218..=222).contains(&ups), "{ups} crossings in 0.5 s");
    }
}
