//! Microphone and speaker through cpal: format negotiation, rate conversion, pacing of
//! clockless devices, and the mix of played streams the speaker plays.

use super::super::pipeline::{Pushed, AUDIO_FRAME, AUDIO_RATE};
use super::super::shared::AtomicF32;
use super::*;
use cpal::traits::{DeviceTrait, StreamTrait};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, PolynomialDegree, Resampler};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// What the speaker plays: every played stream's decoded audio (its gain applied by its
/// player), mixed. Player threads push into it and the speaker's pump thread takes from it;
/// the device callback never touches it.
#[derive(Debug, Default)]
pub struct Mix {
    /// A speaker plays the mix: players push only while one does.
    pub open: bool,
    /// 48 kHz mono per stream, waiting to be played (bounded to 200 ms each: the oldest go).
    pub(super) streams: HashMap<String, VecDeque<f32>>,
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
    }

    /// No speaker plays: nothing is kept.
    pub fn close(&mut self) {
        self.open = false;
        self.streams.clear();
    }

    /// Mixes the next `out.len()` samples into `out` (silence where nothing is queued).
    pub(super) fn take_into(&mut self, out: &mut [f32]) {
        out.fill(0.0);
        let n = out.len();
        for q in self.streams.values_mut() {
            for (o, s) in out.iter_mut().zip(q.drain(..n.min(q.len()))) {
                *o += s;
            }
        }
        for o in out.iter_mut() {
            *o = o.clamp(-1.0, 1.0);
        }
    }
}

pub type SharedMix = Arc<Mutex<Mix>>;

/// Mono samples at the device's rate between a device callback and its pump thread: 200 ms.
/// The speaker's pump keeps it filled only to twice the device's buffer; the microphone's
/// pump empties it whenever the callback wakes it. A full ring refuses the newest samples (a
/// stalled pump: the publisher's 20 ms clock sends silence for what is missing).
fn device_ring(rate: u32) -> (rtrb::Producer<f32>, rtrb::Consumer<f32>) {
    rtrb::RingBuffer::new((rate as usize / 5).max(CHUNK * 2))
}

/// A running output stream that plays a [`Mix`].
///
/// Two threads: the device's callback only copies samples out of a lock-free ring (no lock,
/// no allocation) and wakes the pump; the pump (the thread that holds the device) mixes the
/// played streams, applies `muteSpeaker`, resamples to the device's rate and refills the
/// ring to twice the device's buffer.
pub struct Speaker {
    running: Capture,
    /// Device frames written so far, and the peak (0..32767) of the latest buffer played
    /// (for tests and diagnostics).
    pub frames: Arc<AtomicU64>,
    pub peak: Arc<AtomicU64>,
}

/// What the speaker's pump reads: the mix and the speaker mute.
pub type SpeakerInput = (SharedMix, Arc<AtomicBool>);

impl Speaker {
    /// Opens `device_id` (`""`: the default output) and plays the mix on it.
    pub fn open(device_id: &str, input: SpeakerInput) -> Result<Speaker, DeviceError> {
        let frames = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let (id, f, pk) = (device_id.to_owned(), frames.clone(), peak.clone());
        let running = spawn_device(
            "zrooms-speaker",
            device_id,
            move |_stop| open_output(&id, (f, pk)),
            move |(stream, pump): (cpal::Stream, OutputPump), stop| {
                pump.run(&input, &stop);
                drop(stream);
            },
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

/// The speaker's side of the ring: mixes, resamples and refills.
pub(super) struct OutputPump {
    ring: rtrb::Producer<f32>,
    conv: RateConverter,
    /// Device frames the callback asked for last time.
    want: Arc<AtomicUsize>,
    rate: u32,
}

impl OutputPump {
    fn run(mut self, (mix, muted): &SpeakerInput, stop: &AtomicBool) {
        let mut scratch = vec![0.0f32; CHUNK];
        let capacity = self.ring.buffer().capacity();
        while !stop.load(Ordering::Acquire) {
            let target = (2 * self.want.load(Ordering::Relaxed))
                .max(self.rate as usize / 50)
                .min(capacity);
            while capacity - self.ring.slots() < target {
                if self.conv.output.is_empty() {
                    if let Ok(mut m) = mix.lock() {
                        m.take_into(&mut scratch);
                    }
                    if muted.load(Ordering::Relaxed) {
                        scratch.fill(0.0);
                    }
                    self.conv.push(scratch.iter().copied());
                    if self.conv.output.is_empty() {
                        break;
                    }
                }
                let room = target - (capacity - self.ring.slots());
                let k = room.min(self.conv.output.len());
                for s in self.conv.output.drain(..k) {
                    let _ = self.ring.push(s);
                }
            }
            // Woken by the callback after each buffer; the timeout only notices `stop`.
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }
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
    (frames, peak): (Arc<AtomicU64>, Arc<AtomicU64>),
) -> Result<(cpal::Stream, OutputPump), DeviceError> {
    let (device, format, config, mut pacer) = prepare(AudioDirection::Output, id)?;
    let err = |e: String| DeviceError::new(exception::GENERIC, id, e);
    let channels = usize::from(format.channels);
    let (ring, mut samples) = device_ring(format.rate);
    let want = Arc::new(AtomicUsize::new(0));
    let pump = OutputPump {
        ring,
        conv: RateConverter::new(AUDIO_RATE, format.rate),
        want: want.clone(),
        rate: format.rate,
    };
    // This thread becomes the pump (spawn_device runs open and run on one thread).
    let pump_thread = std::thread::current();
    // The callback: samples out of the ring (silence when it runs dry), nothing else shared.
    let mut fill = move |n: usize, put: &mut dyn FnMut(usize, f32)| {
        want.store(n, Ordering::Relaxed);
        let mut loudest = 0.0f32;
        for i in 0..n {
            let s = samples.pop().unwrap_or(0.0);
            loudest = loudest.max(s.abs());
            put(i, s);
        }
        pump_thread.unpark();
        if let Some(p) = pacer.as_mut() {
            p.after(n);
        }
        frames.fetch_add(n as u64, Ordering::Relaxed);
        peak.store((loudest * 32767.0) as u64, Ordering::Relaxed);
    };
    let on_error = |e: cpal::Error| tracing::warn!("speaker: {e}");
    let stream = match format.sample {
        cpal::SampleFormat::F32 => device.build_output_stream::<f32, _, _>(
            config,
            move |buf: &mut [f32], _| {
                fill(buf.len() / channels, &mut |i, s| {
                    if let Some(frame) = buf.get_mut(i * channels..(i + 1) * channels) {
                        frame.fill(s);
                    }
                })
            },
            on_error,
            Some(Duration::from_secs(2)),
        ),
        _ => device.build_output_stream::<i16, _, _>(
            config,
            move |buf: &mut [i16], _| {
                fill(buf.len() / channels, &mut |i, s| {
                    if let Some(frame) = buf.get_mut(i * channels..(i + 1) * channels) {
                        frame.fill((s * 32767.0) as i16);
                    }
                })
            },
            on_error,
            Some(Duration::from_secs(2)),
        ),
    }
    .map_err(|e| err(e.to_string()))?;
    stream.play().map_err(|e| err(e.to_string()))?;
    Ok((stream, pump))
}

/// Captures `device_id` (`""`: the default input) as 48 kHz mono into `out`, 20 ms at a time,
/// scaled by `volume` (`setCaptureVolume`, 1.0 = 100) read for every packet.
///
/// The device's callback only downmixes into a lock-free ring and wakes the pump (the thread
/// that holds the device), which resamples, scales and hands on 20 ms packets.
pub fn open_microphone(
    device_id: &str,
    out: std_mpsc::SyncSender<Pushed>,
    volume: Arc<AtomicF32>,
) -> Result<Capture, DeviceError> {
    let id = device_id.to_owned();
    spawn_device(
        "zrooms-mic",
        device_id,
        move |_stop| open_input(&id),
        move |(stream, mut samples, rate): (cpal::Stream, rtrb::Consumer<f32>, u32), stop| {
            let mut conv = RateConverter::new(rate, AUDIO_RATE);
            while !stop.load(Ordering::Acquire) {
                // Woken by the callback after each buffer; the timeout only notices `stop`.
                std::thread::park_timeout(Duration::from_millis(50));
                let n = samples.slots();
                if let Ok(chunk) = samples.read_chunk(n) {
                    conv.push(chunk);
                }
                let gain = volume.get();
                while conv.output.len() >= AUDIO_FRAME {
                    let pcm: Vec<i16> = conv
                        .output
                        .drain(..AUDIO_FRAME)
                        .map(|s| ((s * gain).clamp(-1.0, 1.0) * 32767.0) as i16)
                        .collect();
                    // A full queue means the publisher is behind: the packet goes.
                    let _ = out.try_send(Pushed::Audio(pcm));
                }
            }
            drop(stream);
        },
    )
}

/// Opens the input device; its callback downmixes each buffer into the ring it returns.
fn open_input(id: &str) -> Result<(cpal::Stream, rtrb::Consumer<f32>, u32), DeviceError> {
    let (device, format, config, mut pacer) = prepare(AudioDirection::Input, id)?;
    let err = |e: String| DeviceError::new(exception::GENERIC, id, e);
    let channels = usize::from(format.channels);
    let (mut ring, samples) = device_ring(format.rate);
    let pump_thread = std::thread::current();
    let mut deliver = move |frames: &mut dyn Iterator<Item = f32>| {
        let mut n = 0;
        for s in frames {
            // Full: the pump stalled; the newest samples go (see device_ring).
            let _ = ring.push(s);
            n += 1;
        }
        pump_thread.unpark();
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
                    &mut buf
                        .chunks(channels)
                        .map(|f| f.iter().sum::<f32>() / channels as f32),
                )
            },
            on_error,
            timeout,
        ),
        _ => device.build_input_stream::<i16, _, _>(
            config,
            move |buf: &[i16], _| {
                deliver(&mut buf.chunks(channels).map(|f| {
                    f.iter().map(|&s| f32::from(s) / 32768.0).sum::<f32>() / channels as f32
                }))
            },
            on_error,
            timeout,
        ),
    }
    .map_err(|e| err(e.to_string()))?;
    stream.play().map_err(|e| err(e.to_string()))?;
    Ok((stream, samples, format.rate))
}
