//! Microphone and speaker through cpal: format negotiation, rate conversion, pacing of
//! clockless devices, and the mix of played streams the speaker plays.

use super::super::pipeline::{Pushed, AUDIO_FRAME, AUDIO_RATE};
use super::*;
use cpal::traits::{DeviceTrait, StreamTrait};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, PolynomialDegree, Resampler};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A stream format the engine can use: its rate, channels and sample type.
#[derive(Clone, Copy, Debug)]
pub(super) struct Format {
    rate: u32,
    channels: u16,
    sample: cpal::SampleFormat,
}

/// 48 kHz in i16 or f32 with one or two channels when the device offers it (no resampling);
/// otherwise its default format, resampled.
pub(super) fn negotiate(d: &cpal::Device, dir: AudioDirection) -> Result<Format, String> {
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
pub(super) struct RateConverter {
    resampler: Option<Async<f32>>,
    input: Vec<f32>,
    pub(super) output: VecDeque<f32>,
    scratch: Vec<f32>,
}

/// Frames per resampler chunk.
pub(super) const CHUNK: usize = 480;

impl RateConverter {
    pub(super) fn new(from: u32, to: u32) -> Self {
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

    pub(super) fn push(&mut self, samples: impl IntoIterator<Item = f32>) {
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
pub(super) struct Pacer {
    start: Instant,
    frames: u64,
    rate: u32,
}

impl Pacer {
    pub(super) fn new(rate: u32) -> Self {
        Pacer {
            start: Instant::now(),
            frames: 0,
            rate: rate.max(1),
        }
    }

    pub(super) fn after(&mut self, frames: usize) {
        self.frames += frames as u64;
        let due = Duration::from_secs_f64(self.frames as f64 / f64::from(self.rate));
        let elapsed = self.start.elapsed();
        if due > elapsed + Duration::from_millis(40) {
            std::thread::sleep(due - elapsed - Duration::from_millis(20));
        }
    }
}

/// What the speaker plays: every played stream's decoded audio, mixed.
#[derive(Debug, Default)]
pub struct Mix {
    /// 48 kHz mono per stream, waiting to be played (bounded to 200 ms each).
    pub(super) streams: HashMap<String, VecDeque<f32>>,
    /// Per-stream gain (`setPlayVolume`/`mutePlayStreamAudio`), 1.0 when unset.
    pub(super) gains: HashMap<String, f32>,
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
    pub(super) fn take(&mut self, n: usize) -> Vec<f32> {
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
pub(super) fn hold<S>(stream: S, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stream);
}

/// The device, its negotiated format and stream config, and a pacer when it has no clock.
pub(super) fn prepare(
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

pub(super) fn open_output(
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
